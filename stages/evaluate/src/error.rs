//! Why an evaluate run failed.

use pipe_stage_api::ParamError;

/// Every failure of the `evaluate` stage.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error(transparent)]
    Features(#[from] pipe_features::FeaturesError),
    #[error("the {split} split of the collate artifact {dir} holds no image")]
    EmptySplit { split: String, dir: String },
    #[error("image `{id}` of the collate artifact is not in the prep artifact {dir}")]
    MissingReference { id: String, dir: String },
    #[error("image `{id}` has no reference caption")]
    NoReferences { id: String },
    #[error(
        "the collate artifact's images are {collate}x{collate_w} but the model takes \
         {model}x{model} images; collate with the model's own preprocessor_config.json"
    )]
    ImageSize {
        collate: u32,
        collate_w: u32,
        model: usize,
    },
    #[error(transparent)]
    Backend(#[from] pipe_backend::BackendError),
    #[error(transparent)]
    Load(#[from] pipe_blip::LoadError),
    #[error(transparent)]
    Hub(#[from] pipe_hub::HubError),
    #[error(transparent)]
    Caption(#[from] pipe_blip::CaptionError),
    #[error(transparent)]
    Collate(#[from] pipe_data::collate::CollateError),
    #[error(transparent)]
    Prep(#[from] pipe_data::prep::PrepError),
    #[error(transparent)]
    Metrics(#[from] pipe_metrics::MetricsError),
    #[error("cannot read the loss history {path}: {message}")]
    LossHistory { path: String, message: String },
    #[error("cannot draw {path}: {message}")]
    Plot { path: String, message: String },
    #[error("cannot encode a PNG for {path}: {message}")]
    Png { path: String, message: String },
    #[error("cannot write {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl EvaluateError {
    pub(crate) fn write(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| EvaluateError::Write {
            path: path.display().to_string(),
            source,
        }
    }
}
