//! What can make a collate run (or a reader of its artifact) fail.

use std::path::PathBuf;

use pipe_stage_api::ParamError;

use crate::prep::PrepError;

#[derive(Debug, thiserror::Error)]
pub enum CollateError {
    #[error(transparent)]
    Params(#[from] ParamError),

    #[error("cannot read the prep artifact")]
    Prep(#[from] PrepError),

    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: invalid JSON", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    #[error("{}: cannot load the tokenizer: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },

    #[error("cannot tokenize caption {text:?}: {message}")]
    Encode { text: String, message: String },

    #[error("image {} changed since prep (its content hash differs); rerun prep", path.display())]
    ImageChanged { path: PathBuf },

    #[error("image {}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },

    #[error("{}: {message}", path.display())]
    Artifact { path: PathBuf, message: String },
}

/// Read and parse a JSON file, naming it in either error.
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, CollateError> {
    let bytes = std::fs::read(path).map_err(|source| CollateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| CollateError::Json {
        path: path.to_path_buf(),
        source,
    })
}
