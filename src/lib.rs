//! `pipe`: a declarative pipeline orchestrator with a content-hashed artifact cache.
//!
//! Data flows top to bottom, and each module uses only those above it:
//! pipeline.toml → [`spec`] → [`dag`] → [`plan`] (keys, status) → [`cache`] → [`run`] →
//! [`results`]; The binary (`main.rs`, `cli/`) ties them to the command line.

pub mod cache;
pub mod dag;
pub mod hash;
pub mod kinds;
pub mod plan;
pub mod results;
pub mod run;
pub mod spec;
