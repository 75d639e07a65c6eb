//! The stage kinds this build knows. Adding a kind means adding one line here.

use pipe_stage_api::StageKind;

static COMMAND: pipe_stage_command::Command = pipe_stage_command::Command;
static PREP: pipe_data::Prep = pipe_data::Prep;
static COLLATE: pipe_data::Collate = pipe_data::Collate;
static TRAIN: pipe_train::Train = pipe_train::Train;
static EVALUATE: pipe_evaluate::Evaluate = pipe_evaluate::Evaluate;
static INFER: pipe_blip::infer::Infer = pipe_blip::infer::Infer;
static ENCODE: pipe_train::Encode = pipe_train::Encode;

/// Every kind, in the order `pipe kinds` lists them.
pub fn all() -> Vec<&'static dyn StageKind> {
    vec![
        &PREP, &COLLATE, &ENCODE, &TRAIN, &EVALUATE, &INFER, &COMMAND,
    ]
}

pub fn find(name: &str) -> Option<&'static dyn StageKind> {
    all().into_iter().find(|k| k.name() == name)
}

/// The backend accelerator stages will run on, as recorded in their keys (`"cpu (flex)"`,
/// `"cuda:0"`), or why the pipeline's choice cannot be honoured by this build.
pub fn backend(
    choice: pipe_stage_api::BackendChoice,
) -> Result<String, pipe_blip::backend::BackendError> {
    pipe_blip::backend::resolve(choice).map(|b| b.describe())
}
