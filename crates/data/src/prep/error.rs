//! What can make a prep run fail. Row-level problems (a malformed line, a missing image) are
//! not errors: they are reported in `summary.json` and the run goes on.

use std::path::PathBuf;

use pipe_stage_api::ParamError;

use super::split::Split;

#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error(transparent)]
    Params(#[from] ParamError),

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

    #[error("{}:{line}: {message}", file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{}: {message}", path.display())]
    Layout { path: PathBuf, message: String },

    #[error("split `{split}` has no usable images{detail}")]
    EmptySplit { split: Split, detail: String },

    #[error("cannot encode synthetic image {image}")]
    Encode {
        image: String,
        #[source]
        source: image::ImageError,
    },
}
