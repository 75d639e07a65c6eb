//! The stage kinds this build knows. Adding a kind means adding one line here.

use pipe_stage_api::StageKind;

static COMMAND: pipe_stage_command::Command = pipe_stage_command::Command;
static PREP: pipe_data::Prep = pipe_data::Prep;
static COLLATE: pipe_data::Collate = pipe_data::Collate;

/// Every kind, in the order `pipe kinds` lists them.
pub fn all() -> Vec<&'static dyn StageKind> {
    vec![&PREP, &COLLATE, &COMMAND]
}

pub fn find(name: &str) -> Option<&'static dyn StageKind> {
    all().into_iter().find(|k| k.name() == name)
}
