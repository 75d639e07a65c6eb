//! The command line: parse once, dispatch, print. Human output by default, `--json` for scripts.
//!
//! Exit codes: 0 success; 1 a stage failed (run), corruption was found (verify) or a stage is
//! not fresh (`status --check`); 2 bad usage or an invalid pipeline; 3 an I/O or cache error.

/// `println!` for the binary's stdout: a closed stdout (`pipe run | head -1`) stops the
/// output, never the work (`println!` would panic on EPIPE and abort the run).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` with the same rule as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

mod doctor;
mod exec;
mod exp;
mod exp_page;
mod export;
mod follow;
mod model;
mod output;
mod remote;
mod score;
mod sweep;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use indicatif::MultiProgress;

use pipe::cache::{Cache, CacheError};
use pipe::dag::{self, Format, UnknownStage};
use pipe::plan::{Planner, State};
use pipe::remote::SyncError;
use pipe::results::{self, ResultsError};
use pipe::run::{self, RunOptions};
use pipe::spec::{self, ExecutorKind, Override, Spec, SpecError};
use pipe::tries::{self, Tries, Try, TryError, TryStatus};

/// Set once stdout is gone: nothing more is written to it.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Write to stdout, and flush; after the first failure (a closed pipe, a full disk) stop
/// writing to it, with one debug line.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        tracing::debug!("stdout is closed, output stops here: {e}");
    }
}

/// `pipe --version`: the version and the backends this build has.
#[cfg(all(feature = "cuda", feature = "wgpu"))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, cuda, wgpu)");
#[cfg(all(feature = "cuda", not(feature = "wgpu")))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, cuda)");
#[cfg(all(not(feature = "cuda"), feature = "wgpu"))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, wgpu)");
#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (backends: cpu; build with --features cuda or wgpu for a GPU)"
);

/// The heading the flags every subcommand takes are listed under.
const GLOBAL: &str = "Global options";

const EXAMPLES: &str = "\
Examples:
  pipe run                          run what is stale (all of it, the first time)
  pipe status                       what is stale, and why
  pipe run --set train.lr=3e-4      try a value; results under results/tries/, see `pipe exp show`
  pipe show evaluate                an artifact: its key, files, parameters and metrics
  pipe caption --stage train a.jpg  caption images with the trained model
  pipe export train out/model       the trained model as plain files, with a model card
  pipe doctor                       backends, devices, caches and the METEOR jar found here";

#[derive(Debug, Parser)]
#[command(
    name = "pipe",
    version = VERSION,
    about = "Run a declarative ML pipeline; rerun only what a change made stale",
    after_help = EXAMPLES
)]
pub struct Args {
    /// The pipeline file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "pipeline.toml",
        env = "PIPE_PIPELINE",
        help_heading = GLOBAL
    )]
    pub pipeline: PathBuf,
    /// More logging (-v: info, -vv: debug, -vvv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the stale stages among STAGEs and their ancestors (all stages when none is named).
    Run {
        /// Stages to run, with their ancestors (default: all).
        stages: Vec<String>,
        /// Rerun the named stages (all, when none is named) even if they are fresh.
        #[arg(long)]
        force: bool,
        /// Override a value for this run: STAGE.KEY=VALUE (TOML syntax), or pipeline.KEY=VALUE.
        /// The run is recorded as a try (`pipe exp show`) and leaves results/ as it was.
        #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
        set: Vec<Override>,
        /// Record this run as a try called NAME (kept until `pipe exp remove`); without it, a
        /// `--set` run gets a name made of its overrides.
        #[arg(long, conflicts_with = "sweep")]
        name: Option<String>,
        /// Run every point of `[sweeps.NAME]`, each recorded as a try named after the sweep
        /// and its values; `-j N` runs up to N points at once.
        #[arg(long, value_name = "NAME")]
        sweep: Option<String>,
        /// Show what would run, and why, without running anything.
        #[arg(long)]
        dry_run: bool,
        /// After a failure, go on with the stages that do not depend on it.
        #[arg(long)]
        keep_going: bool,
        /// How many independent stages (with --sweep: points) may run at once; stages that
        /// use the accelerator always run one at a time.
        #[arg(short, long, default_value_t = 1)]
        jobs: usize,
        /// On a local miss, look the key up on the remote before executing the stage (an
        /// unreachable remote: one warning, and the run goes on locally).
        #[arg(long)]
        pull: bool,
        /// Push each stage's artifact to the remote as it finishes.
        #[arg(long)]
        push: bool,
        /// The remote for --pull/--push (`[remotes.NAME]`); default: `[pipeline] remote`.
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
        /// Where stages execute for this run: `local`, or `slurm` (each stage a Slurm job);
        /// default: `[executor] kind`. Keys and bytes are the same either way.
        #[arg(long, value_name = "KIND", value_parser = ["local", "slurm"])]
        executor: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Produce one stage key from the job description `pipe run` wrote (what a Slurm job runs).
    #[command(hide = true)]
    ExecStage {
        /// The job description (`job.json` in the job's directory).
        job: PathBuf,
    },
    /// Say for every stage whether it is fresh, stale (and why), missing or blocked.
    Status {
        /// Override a value for this command: STAGE.KEY=VALUE (TOML syntax), as `run --set`.
        #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
        set: Vec<Override>,
        /// Also say which current keys the remote has (NAME, or `[pipeline] remote`).
        #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
        remote: Option<String>,
        /// Exit with status 1 when any stage is not fresh (for scripts and CI; with -q,
        /// print nothing).
        #[arg(long)]
        check: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send the current artifacts of STAGEs (and their ancestors) to the remote cache.
    Push(remote::TransferArgs),
    /// Fetch the current artifacts of STAGEs (and their ancestors) from the remote cache.
    Pull(remote::TransferArgs),
    /// Show a stage's current artifact: key, path, parameters, inputs, timings, metrics.
    Show {
        /// The stage (as named in the pipeline file).
        stage: String,
        /// Override a value for this command: STAGE.KEY=VALUE (TOML syntax), as `run --set`.
        #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
        set: Vec<Override>,
        /// Watch a run of the stage that is under way (another terminal, a Slurm job): its
        /// epochs and validations as they happen, until its artifact is published.
        #[arg(long, conflicts_with = "json")]
        follow: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copy a stage's current artifact out of the cache into DIR as plain files.
    ///
    /// A model (train) gets a model card (DIR/README.md: base model, recipe, training and evaluation
    /// numbers) and the evaluation's decoding settings in DIR/model/generation_config.json.
    Export {
        /// The stage; its artifact must be fresh.
        stage: String,
        /// Where to put it: a new or empty directory.
        dir: PathBuf,
        /// Override a value for this command: STAGE.KEY=VALUE (TOML syntax), as `run --set`.
        #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
        set: Vec<Override>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Draw the pipeline's graph.
    Dag {
        /// text (a line per stage), mermaid or dot (Graphviz).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The stages as JSON: name, kind and dependencies of each, in run order.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Compare tries: `exp show` (a table), `exp diff A B`, `exp remove NAME…`.
    Exp {
        #[command(subcommand)]
        command: exp::ExpCommand,
    },
    /// Delete cached artifacts nothing uses (this pipeline, pipe.lock, tries, recent runs).
    ///
    /// Deletes the artifacts that neither this pipeline, nor pipe.lock, nor its tries, nor
    /// recent runs use; with --remote, the same on the remote cache instead of the local one.
    Gc {
        /// List what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Collect the remote cache (NAME, or `[pipeline] remote`), not the local one.
        #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
        remote: Option<String>,
        /// With --remote: spare objects written less than this long ago (a push in flight, a
        /// teammate's new try), e.g. `30m`, `2h`, `7days`, `0s`.
        #[arg(long, value_name = "AGE", requires = "remote", default_value = "1h",
              value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every cached artifact; evict those whose bytes changed.
    Verify {
        /// Report only; evict nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Caption images with a model (a directory, a Hub id, or a stage's artifact).
    Caption(model::CaptionArgs),
    /// Serve a web page and a JSON API that caption uploaded images.
    Serve(model::ServeArgs),
    /// Score predicted captions against references with the COCO caption metrics.
    Score(score::ScoreArgs),
    /// List the stage kinds; with KIND, its keys and defaults as a table to paste.
    ///
    /// With KIND: every key of that kind with its default and type, as a `[stages.NAME]`
    /// table to paste into pipeline.toml (keys without a default commented out).
    Kinds {
        /// A stage kind, e.g. `train`.
        kind: Option<String>,
        /// A JSON list of {"name", "about"}.
        #[arg(long)]
        json: bool,
    },
    /// Say what this build and machine offer a run: backends, devices, caches, METEOR.
    ///
    /// Backends and devices, the Hugging Face cache and offline mode, the METEOR jar, the
    /// pipeline file, the cache, its size and the free space where it is.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `pipe completions bash > ~/.local/share/bash-completion/completions/pipe`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print pipe's man page (roff): `pipe man > ~/.local/share/man/man1/pipe.1`.
    Man,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    UnknownStage(#[from] UnknownStage),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Metrics(#[from] pipe_metrics::MetricsError),
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Load(#[from] pipe_blip::LoadError),
    #[error(transparent)]
    Hub(#[from] pipe_hub::HubError),
    #[error(transparent)]
    Caption(Box<pipe_infer::InferError>),
    /// `pipe caption`: every image was skipped (each with a warning saying why).
    #[error("no image could be read or decoded ({skipped} skipped)")]
    Unreadable { skipped: usize },
    #[error(transparent)]
    Serve(#[from] pipe_serve::ServeError),
    #[error(transparent)]
    Tries(#[from] TryError),
    #[error(transparent)]
    Export(#[from] pipe::export::ExportError),
    #[error(transparent)]
    Sync(#[from] pipe::remote::SyncError),
    /// `exec-stage`: the stage failed, or its job description is not one.
    #[error(transparent)]
    Job(#[from] pipe::run::JobError),
    #[error("{0}")]
    Usage(String),
    /// `pipe exp apply` would not give the file the try's parameters; nothing was written.
    #[error("exp apply {name}: {reason}; {file} is left as it was")]
    Apply {
        name: String,
        file: String,
        reason: String,
    },
    /// The experiments page's plot could not be drawn.
    #[error("experiments page")]
    Page(#[source] pipe_evaluate::EvaluateError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Spec(SpecError::Invalid(..)) | CliError::UnknownStage(_) => 2,
            CliError::Spec(SpecError::Read { .. }) => 2,
            CliError::Cache(_) | CliError::Results(_) => 3,
            CliError::Metrics(pipe_metrics::MetricsError::Io { .. }) => 3,
            CliError::Metrics(_) => 2,
            CliError::Model(_) | CliError::Load(_) | CliError::Hub(_) => 2,
            CliError::Caption(_) | CliError::Unreadable { .. } => 3,
            CliError::Serve(pipe_serve::ServeError::Options(_)) => 2,
            CliError::Serve(_) => 3,
            CliError::Tries(TryError::Corrupt { .. } | TryError::Cache(_)) => 3,
            CliError::Tries(_) | CliError::Usage(_) | CliError::Apply { .. } => 2,
            CliError::Write { .. } | CliError::Page(_) => 3,
            CliError::Sync(
                SyncError::NoRemote { .. }
                | SyncError::UnknownRemote { .. }
                | SyncError::Remote(pipe_remote::RemoteError::Config { .. }),
            ) => 2,
            CliError::Sync(_) => 3,
            CliError::Job(_) => 1,
            CliError::Export(pipe::export::ExportError::NotEmpty { .. }) => 2,
            CliError::Export(_) => 3,
        }
    }
}

/// What the process exits with when no error escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    Failed,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Ok => std::process::ExitCode::SUCCESS,
            Exit::Failed => std::process::ExitCode::from(1),
        }
    }
}

pub fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a Slurm job's log or a CI log gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

pub fn main(args: Args) -> Result<Exit, CliError> {
    let load = |set: &[Override]| spec::load(&args.pipeline, set, &crate::REGISTRY);
    match args.command {
        Command::Run {
            stages,
            force,
            set,
            name,
            sweep,
            dry_run,
            keep_going,
            jobs,
            pull,
            push,
            remote,
            executor,
            json,
        } => {
            if let Some(name) = &name {
                tries::validate_name(name)?;
            }
            let spec = load(&set)?;
            let mut executor_options = spec.executor.clone();
            if let Some(kind) = executor.as_deref().and_then(ExecutorKind::parse) {
                executor_options.kind = kind;
            }
            let remote = if (pull || push) && !dry_run {
                remote::for_run(&spec, remote.as_deref())?
            } else {
                None
            };
            let opts = RunOptions {
                targets: stages,
                force,
                dry_run,
                keep_going,
                jobs,
                remote,
                pull,
                push,
                executor: executor_options,
                // An epoch's summary and the like, on stderr (stdout stays the run's report).
                notes: (!args.quiet).then(|| {
                    Arc::new(|stage: &str, line: &str| eprintln!("  {stage}: {line}"))
                        as run::NoteSink
                }),
            };
            if let Some(sweep) = sweep {
                let out = sweep::Output {
                    json,
                    quiet: args.quiet,
                };
                return sweep::run(&spec, &sweep, &set, &opts, out);
            }
            let try_of = (!set.is_empty() || name.is_some()).then(|| TryOf {
                overrides: set.iter().map(tries::override_text).collect(),
                name,
            });
            run_cmd(&spec, &opts, try_of.as_ref(), json, args.quiet)
        }
        Command::Exp { command } => exp::run(&load(&[])?, &command),
        Command::Status {
            set,
            remote,
            check,
            json,
        } => {
            let spec = load(&set)?;
            let cache = Cache::for_reading(&spec.cache_dir);
            let planner = Planner::new(&spec, &cache);
            let statuses = planner.status();
            planner.finish();
            let shown = match remote {
                Some(name) => {
                    let name = Some(name.as_str()).filter(|n| !n.is_empty());
                    remote::status(&spec, &statuses, name, json)?
                }
                None if check && args.quiet => Exit::Ok,
                None => {
                    // Only what is printed is estimated (prep's counts its image files).
                    let to_run = statuses
                        .iter()
                        .filter(|s| s.state != State::Fresh)
                        .map(|s| s.name.clone())
                        .collect();
                    let disk = pipe::disk::DiskPlan::new(&spec, &statuses, &to_run);
                    output::status(&statuses, &disk, read_lock(&spec).as_ref(), json);
                    Exit::Ok
                }
            };
            let stale = statuses.iter().any(|s| s.state != State::Fresh);
            Ok(if check && stale { Exit::Failed } else { shown })
        }
        Command::ExecStage { job } => exec::exec_stage(&job),
        Command::Push(transfer) => remote::push(&load(&[])?, &transfer),
        Command::Pull(transfer) => remote::pull(&load(&[])?, &transfer),
        Command::Show {
            stage,
            set,
            follow,
            json,
        } => {
            let spec = load(&set)?;
            dag::check_stage(&spec, &stage)?;
            let cache = Cache::for_reading(&spec.cache_dir);
            let planner = Planner::new(&spec, &cache);
            let statuses = planner.status();
            let status = statuses.into_iter().find(|s| s.name == stage);
            if follow {
                planner.finish();
                return match status {
                    Some(status) => follow::follow(&cache, &status),
                    None => Ok(Exit::Ok),
                };
            }
            if let (Some(status), Some(stage)) = (status, spec.stage(&stage)) {
                output::show(&planner, stage, &status, json);
            }
            planner.finish();
            Ok(Exit::Ok)
        }
        Command::Export {
            stage,
            dir,
            set,
            json,
        } => export::run(&load(&set)?, &stage, &dir, json),
        Command::Dag { format, json } => {
            let spec = load(&[])?;
            if json {
                let stages: Vec<_> = spec
                    .stages
                    .iter()
                    .map(|s| serde_json::json!({ "name": s.name, "kind": s.kind.name(), "deps": s.deps }))
                    .collect();
                output::print_json(&serde_json::json!({ "stages": stages }));
            } else {
                out!("{}", dag::render(&spec, format));
            }
            Ok(Exit::Ok)
        }
        Command::Gc {
            dry_run,
            remote: Some(name),
            older_than,
            json,
        } => {
            let spec = load(&[])?;
            let cache = Cache::for_reading(&spec.cache_dir);
            let roots = gc_roots(&spec, &cache);
            let name = Some(name.as_str()).filter(|n| !n.is_empty());
            remote::gc(&spec, &roots, name, older_than, dry_run, json)
        }
        Command::Gc {
            dry_run,
            remote: None,
            json,
            ..
        } => {
            let spec = load(&[])?;
            let cache = Cache::open(&spec.cache_dir)?;
            let roots = gc_roots(&spec, &cache);
            let report = cache.gc(&roots, dry_run)?;
            output::gc(&report, dry_run, json);
            Ok(Exit::Ok)
        }
        Command::Verify { dry_run, json } => {
            let spec = load(&[])?;
            let cache = Cache::open(&spec.cache_dir)?;
            let report = cache.verify(dry_run)?;
            output::verify(&report, dry_run, json);
            Ok(if report.problems.is_empty() {
                Exit::Ok
            } else {
                Exit::Failed
            })
        }
        Command::Score(score_args) => score::run(&score_args),
        Command::Caption(caption_args) => model::caption(&args.pipeline, &caption_args, args.quiet),
        Command::Serve(serve_args) => model::serve(&args.pipeline, &serve_args),
        Command::Doctor { json } => Ok(doctor::run(&args.pipeline, json)),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "pipe", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(Exit::Ok)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Args::command())
                .render(&mut page)
                .map_err(|source| CliError::Write {
                    path: PathBuf::from("<stdout>"),
                    source,
                })?;
            out!("{}", String::from_utf8_lossy(&page));
            Ok(Exit::Ok)
        }
        Command::Kinds {
            kind: Some(kind),
            json,
        } => {
            let Some(k) = crate::REGISTRY.kinds.iter().find(|k| k.name() == kind) else {
                let known: Vec<&str> = crate::REGISTRY.kinds.iter().map(|k| k.name()).collect();
                return Err(CliError::Usage(format!(
                    "no stage kind `{kind}`; this build has {}",
                    known.join(", ")
                )));
            };
            let template = k.template().unwrap_or_default();
            if json {
                output::print_json(&serde_json::json!({
                    "name": k.name(),
                    "about": k.about(),
                    "template": template,
                }));
            } else {
                let name = k.name();
                out!(
                    "# {name}: {}\n[stages.{name}]\nkind = \"{name}\"\n# deps = [\"…\"]  # the stages it reads\n{template}",
                    k.about()
                );
            }
            Ok(Exit::Ok)
        }
        Command::Kinds { kind: None, json } => {
            if json {
                let kinds: Vec<_> = crate::REGISTRY
                    .kinds
                    .iter()
                    .map(|k| serde_json::json!({ "name": k.name(), "about": k.about() }))
                    .collect();
                output::print_json(&serde_json::Value::Array(kinds));
            } else {
                for k in crate::REGISTRY.kinds {
                    outln!("{:10} {}", k.name(), k.about());
                }
            }
            Ok(Exit::Ok)
        }
    }
}

/// A run recorded as a try: its overrides (as `STAGE.KEY=VALUE`) and the name asked for.
struct TryOf {
    overrides: Vec<String>,
    name: Option<String>,
}

fn run_cmd(
    spec: &Spec,
    opts: &RunOptions,
    try_of: Option<&TryOf>,
    json: bool,
    quiet: bool,
) -> Result<Exit, CliError> {
    let cache = Cache::open(&spec.cache_dir)?;
    let planner = Planner::new(spec, &cache);
    if opts.dry_run {
        let (reports, disk) = run::dry_run(&planner, opts)?;
        planner.finish();
        output::run(&reports, None, json, true);
        if !json {
            output::disk(&disk);
        }
        return Ok(Exit::Ok);
    }
    let live = !json && !quiet;
    let done = run_and_record(&planner, opts, try_of, &MultiProgress::new(), &|r| {
        if live {
            output::run_line(r);
        }
    })?;
    planner.finish();
    exp::refresh_page(spec);
    if json {
        let name = done.recorded.as_ref().map(|(n, _)| n.as_str());
        output::run(&done.reports, name, true, false);
    } else if !quiet {
        output::run_summary(&done.reports);
        // A run with overrides shows its results under the try's name only.
        let results = match &done.recorded {
            Some((name, _)) if try_of.is_some_and(|t| !t.overrides.is_empty()) => {
                tries::results_dir(spec, name)
            }
            _ => spec.results_dir.clone(),
        };
        output::headlines(spec, &done.fresh, &results);
        if let Some((name, _)) = &done.recorded {
            outln!("{}", exp::try_line(spec, name));
        }
    }
    Ok(if done.failed { Exit::Failed } else { Exit::Ok })
}

/// What one run did.
struct Done {
    reports: Vec<run::StageReport>,
    /// The try it was recorded as, and how it ended.
    recorded: Option<(String, TryStatus)>,
    /// Whether a stage failed.
    failed: bool,
    /// The stages fresh after it, with their artifacts, in pipeline order.
    fresh: Vec<(String, pipe::cache::Artifact)>,
}

/// Run the selected stages, then make results/, the try and the run record match the cache
/// as it now stands.
fn run_and_record(
    planner: &Planner,
    opts: &RunOptions,
    try_of: Option<&TryOf>,
    bars: &MultiProgress,
    on_done: &dyn Fn(&run::StageReport),
) -> Result<Done, CliError> {
    let (spec, cache) = (planner.spec, planner.cache);
    let reports = run::execute(planner, opts, bars, on_done)?;
    let statuses = planner.status();
    let fresh: Vec<(&str, &pipe::cache::Artifact)> = statuses
        .iter()
        .filter(|s| s.state == State::Fresh)
        .filter_map(|s| s.artifact.as_ref().map(|a| (s.name.as_str(), a)))
        .collect();
    let keys = fresh
        .iter()
        .map(|(n, a)| (n.to_string(), a.manifest.key.clone()))
        .collect();
    let failed = reports.iter().any(|r| r.action == run::Action::Failed);
    let recorded = {
        let _lock = cache.meta_lock()?;
        // results/ shows the file's config: a run with overrides leaves it as it was.
        if try_of.is_none_or(|t| t.overrides.is_empty()) {
            results::update(spec, &fresh)?;
            write_lock(spec, &fresh);
        }
        match try_of {
            Some(t) => {
                let store = Tries::new(cache, &planner.pipeline_id);
                Some(record_try(spec, &store, t, failed, &keys, &fresh)?)
            }
            None => None,
        }
    };
    cache.record_run(&planner.pipeline_id, &spec.file, &keys)?;
    Ok(Done {
        reports,
        recorded,
        failed,
        fresh: fresh
            .iter()
            .map(|(n, a)| (n.to_string(), (*a).clone()))
            .collect(),
    })
}

/// What `gc` keeps, locally and on a remote: the current pipeline's keys, the keys pipe.lock
/// names (the committed config, even where this machine cannot key it), and those of tries,
/// recent runs and every pipeline's last artifacts (refs).
fn gc_roots(spec: &Spec, cache: &Cache) -> std::collections::BTreeSet<String> {
    let planner = Planner::new(spec, cache);
    let mut roots = cache.rooted_keys();
    roots.extend(planner.status().into_iter().filter_map(|s| s.key));
    if let Some(lock) = read_lock(spec) {
        roots.extend(lock.stages.into_values().map(|s| s.key));
    }
    planner.finish();
    roots
}

/// pipe.lock, if the pipeline has a readable one (a damaged one: a warning, and no lock).
pub(crate) fn read_lock(spec: &Spec) -> Option<pipe::lockfile::LockFile> {
    pipe::lockfile::read(spec).unwrap_or_else(|e| {
        tracing::warn!("{}", pipe::error_chain(&e));
        None
    })
}

/// Rewrite pipe.lock for the file's config when it changed. A lock that cannot be written is
/// a warning: the run's artifacts and results stand.
pub(crate) fn write_lock(spec: &Spec, fresh: &[(&str, &pipe::cache::Artifact)]) {
    match pipe::lockfile::write(spec, &pipe::lockfile::of(spec, fresh)) {
        Ok(true) => tracing::info!("wrote {}", pipe::lockfile::FILE),
        Ok(false) => {}
        Err(e) => tracing::warn!("{}", pipe::error_chain(&e)),
    }
}

/// Record the run as a try and show its results in `results/tries/NAME/`; its name and
/// status.
fn record_try(
    spec: &Spec,
    store: &Tries,
    t: &TryOf,
    failed: bool,
    keys: &BTreeMap<String, String>,
    fresh: &[(&str, &pipe::cache::Artifact)],
) -> Result<(String, TryStatus), CliError> {
    let name = match &t.name {
        Some(name) => name.clone(),
        None => store.unique_name(&t.overrides)?,
    };
    let status = if failed {
        TryStatus::Failed
    } else if keys.len() == spec.stages.len() {
        TryStatus::Ok
    } else {
        TryStatus::Incomplete
    };
    let record = Try {
        name: name.clone(),
        named: t.name.is_some(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        status,
        overrides: t.overrides.clone(),
        params: tries::effective_params(spec),
        keys: keys.clone(),
    };
    for pruned in store.save(&record, tries::KEEP_UNNAMED)? {
        results::remove_try(&tries::results_dir(spec, &pruned))?;
    }
    let root = tries::tries_results_root(&spec.results_dir);
    if let Some(clash) = spec.stages.iter().find(|s| s.results.starts_with(&root)) {
        tracing::warn!(
            "stage {} shows its results in {}: tries' results are not shown there",
            clash.name,
            root.display()
        );
    } else {
        results::update_try(&tries::results_dir(spec, &name), fresh)?;
    }
    Ok((name, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help` is the first documentation a user reads: every subcommand, flag and argument
    /// says what it is.
    #[test]
    fn every_subcommand_flag_and_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && arg.get_long_help().is_none() && id != "help" {
                    missing.push(format!("{path}: {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && !sub.is_hide_set() {
                    missing.push(format!("{name}: no about"));
                }
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Args::command(), "pipe", &mut missing);
        assert!(missing.is_empty(), "undocumented: {missing:#?}");
    }

    #[test]
    fn headline_numbers_have_four_significant_digits() {
        assert_eq!(output::significant(0.531_24), "0.5312");
        assert_eq!(output::significant(12.345_6), "12.35");
        assert_eq!(output::significant(1234.6), "1235");
        assert_eq!(output::significant(2.35e-9), "2.350e-9");
        assert_eq!(output::significant(0.0), "0");
    }

    #[test]
    fn global_flags_are_listed_apart_and_the_help_ends_with_examples() {
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("Global options:"), "{help}");
        assert!(help.contains("Examples:\n  pipe run"), "{help}");
        let options = help.find("Options:").expect("options");
        let global = help.find("Global options:").expect("global");
        let pipeline = help.find("--pipeline").expect("--pipeline");
        assert!(pipeline > global && global > options, "{help}");
    }

    /// Every argument, flag and choice of the subcommands in model.rs and score.rs says what
    /// it is in `--help`.
    #[test]
    fn caption_serve_and_score_describe_every_argument() {
        let mut cmd = super::Args::command();
        cmd.build();
        for name in ["caption", "serve", "score"] {
            let sub = cmd.find_subcommand(name).expect("a subcommand");
            let mut seen = 0;
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                seen += 1;
                assert!(
                    arg.get_help().is_some() || arg.get_long_help().is_some(),
                    "pipe {name}: `{id}` has no description"
                );
                for value in arg.get_possible_values() {
                    assert!(
                        value.get_help().is_some(),
                        "pipe {name} --{id}: the choice `{}` has no description",
                        value.get_name()
                    );
                }
            }
            assert!(seen >= 5, "pipe {name}: {seen} arguments");
        }
    }
}
