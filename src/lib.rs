//! `pipe`: a declarative pipeline orchestrator with a content-hashed artifact cache.
//!
//! Each module uses only those before it: [`kinds`] and [`hash`]; [`spec`] (pipeline.toml);
//! [`dag`]; [`cache`]; [`plan`] (keys, status); [`schedule`] (which stage to start or skip,
//! using none of the others); [`run`]; [`results`]. The binary (`main.rs`, `cli/`) ties them to
//! the command line.

pub mod cache;
pub mod dag;
pub mod hash;
pub mod kinds;
pub mod plan;
pub mod results;
pub mod run;
pub mod schedule;
pub mod spec;
