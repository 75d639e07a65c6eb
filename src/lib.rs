//! `pipe`: a declarative pipeline orchestrator with a content-hashed artifact cache. It knows
//! no stage kind and no model: the binary hands it a [`registry::Registry`].
//!
//! Each module uses only those before it: [`registry`] and [`hash`]; [`spec`] (pipeline.toml,
//! checked against the registry); [`dag`]; [`cache`]; [`plan`] (keys, status); [`schedule`]
//! (which stage to start or skip, using none of the others); [`slurm`] (stages as Slurm jobs);
//! [`run`]; [`results`]; [`tries`]
//! (recorded runs with overrides, compared and diffed); [`remote`] (artifacts to and from a
//! shared remote cache); [`lockfile`] (`pipe.lock`); [`export`] (an artifact copied out). The binary
//! (`main.rs`, `cli/`) ties them to the command line.

pub mod cache;
pub mod dag;
pub mod disk;
pub mod export;
pub mod hash;
pub mod lockfile;
pub mod plan;
pub mod registry;
pub mod remote;
pub mod results;
pub mod run;
pub mod schedule;
pub mod slurm;
pub mod spec;
pub mod tries;

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
