//! Where train and encode read their model from: a directory relative to pipeline.toml, a
//! directory anywhere, or a Hub id (see [`ModelDir::resolve`]).

use std::path::{Path, PathBuf};

use pipe_blip::load::{LoadError, ModelDir};

/// Resolve `model` (relative paths against `pipeline_dir`).
pub fn model_dir(model: &str, pipeline_dir: &Path) -> Result<ModelDir, LoadError> {
    let local = pipeline_dir.join(model);
    if local.is_dir() {
        ModelDir::resolve(&local.to_string_lossy())
    } else {
        ModelDir::resolve(model)
    }
}

/// The files of a model directory that decide what a stage computes: the config, the weights
/// (unless `weights` is false: training from scratch) and the tokenizer/preprocessor present.
pub fn model_files(dir: &Path, weights: bool) -> Vec<PathBuf> {
    let mut files = vec![dir.join("config.json")];
    if weights {
        files.push(dir.join("model.safetensors"));
    }
    for f in ["tokenizer.json", "preprocessor_config.json"] {
        if dir.join(f).is_file() {
            files.push(dir.join(f));
        }
    }
    files
}

/// [`model_files`] of `model`, or none when it cannot be resolved yet (the stage reports why,
/// with how to get the model, when it runs).
pub fn model_inputs(model: &str, pipeline_dir: &Path) -> Vec<PathBuf> {
    model_dir(model, pipeline_dir).map_or_else(|_| Vec::new(), |d| model_files(&d.dir, true))
}
