//! The `pipe` binary: the registry of stage kinds this build has, argument parsing and
//! printing. The orchestration itself lives in the library, which knows no kind.

mod cli;

use clap::Parser;
use pipe::registry::Registry;
use pipe_stage_api::{BackendChoice, StageError, StageKind};

/// Every kind, in the order `pipe kinds` lists them. Adding a kind means adding it here.
static KINDS: &[&dyn StageKind] = &[
    &pipe_prep::Prep,
    &pipe_collate::Collate,
    &pipe_encode::Encode,
    &pipe_train::Train,
    &pipe_evaluate::Evaluate,
    &pipe_infer::Infer,
    &pipe_stage_command::Command,
];

static REGISTRY: Registry = Registry {
    kinds: KINDS,
    backend,
    devices: pipe_backend::device_count,
};

/// The Burn backend accelerator stages will run on, as recorded in their keys (no device
/// ordinal: keys travel between machines).
fn backend(choice: BackendChoice) -> Result<String, StageError> {
    Ok(pipe_backend::resolve(choice)?.key())
}

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    cli::init_tracing(args.verbose, args.quiet);
    match cli::main(args) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {}", pipe::error_chain(&e));
            e.exit_code().into()
        }
    }
}
