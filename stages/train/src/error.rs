//! The train stage's errors.

use std::path::PathBuf;

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Param(#[from] pipe_stage_api::ParamError),
    #[error(transparent)]
    Backend(#[from] pipe_backend::BackendError),
    #[error(transparent)]
    Load(#[from] pipe_blip::LoadError),
    #[error(transparent)]
    Hub(#[from] pipe_hub::HubError),
    #[error(transparent)]
    Config(#[from] pipe_blip::config::ConfigError),
    #[error(transparent)]
    Collate(#[from] pipe_data::collate::CollateError),
    #[error("the collate artifact has no {0} images")]
    EmptySplit(&'static str),
    #[error("LoRA targets {targets:?} match no Linear layer of the model")]
    NoTargets { targets: Vec<String> },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {action} {path}: {message}")]
    Checkpoint {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{path}: {message}")]
    Features { path: PathBuf, message: String },
    #[error(transparent)]
    Encoded(#[from] pipe_features::FeaturesError),
    #[error("cannot write {path}: {message}")]
    Export { path: PathBuf, message: String },
    #[error("training stopped after epoch {epoch} (test hook); its checkpoint is in the work dir")]
    Interrupted { epoch: usize },
    #[error("the training loss became {0} (diverged); lower `lr`")]
    Diverged(f32),
    #[error("data-parallel peer {peer}: {message}")]
    Peer { peer: usize, message: String },
    #[error("no device to train on")]
    NoDevice,
}

impl TrainError {
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| TrainError::Io {
            action,
            path,
            source,
        }
    }
}
