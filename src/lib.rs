//! `pipe`: a declarative pipeline orchestrator with a content-hashed artifact cache. It knows
//! no stage kind and no model: the binary hands it a [`registry::Registry`].
//!
//! Data flows top to bottom, and each module uses only those above it:
//! pipeline.toml → [`spec`] (checked against the [`registry`]) → [`dag`] → [`hash`] →
//! [`cache`] → [`plan`] (keys, status) → [`run`] → [`results`]. The binary (`main.rs`, `cli/`)
//! ties them to the command line.

pub mod cache;
pub mod dag;
pub mod hash;
pub mod plan;
pub mod registry;
pub mod results;
pub mod run;
pub mod spec;

/// Render an error and all its sources on one line: `outer: inner: innermost`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
