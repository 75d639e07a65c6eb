//! The stage kinds this build knows. Adding a kind means adding one line here.

use pipe_stage_api::StageKind;

static COMMAND: pipe_stage_command::Command = pipe_stage_command::Command;

/// Every kind, in the order `pipe kinds` lists them.
pub fn all() -> Vec<&'static dyn StageKind> {
    vec![&COMMAND]
}

pub fn find(name: &str) -> Option<&'static dyn StageKind> {
    all().into_iter().find(|k| k.name() == name)
}
