//! The `pipe` binary. Everything but argument parsing and printing lives in the library.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    cli::init_tracing(args.verbose, args.quiet);
    match cli::main(args) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {}", pipe::run::error_chain(&e));
            e.exit_code().into()
        }
    }
}
