//! Where train and encode read their model from: a directory relative to pipeline.toml, a
//! directory anywhere, or a Hub id (see [`ModelDir::resolve`]).

use std::path::{Path, PathBuf};

use pipe_blip::load::{LoadError, ModelDir};

/// Resolve `model` (relative paths against `pipeline_dir`); may download a Hub id.
pub fn model_dir(model: &str, pipeline_dir: &Path) -> Result<ModelDir, LoadError> {
    ModelDir::resolve_in(model, pipeline_dir)
}

/// The files of `model` that key a stage, or none when it is not local yet (`pipe run`
/// fetches it first; a stage that cannot get it says how when it runs).
pub fn model_inputs(model: &str, pipeline_dir: &Path) -> Vec<PathBuf> {
    ModelDir::find_in(model, pipeline_dir).map_or_else(Vec::new, |d| d.key_files(true))
}
