//! `pipe caption` and `pipe serve`: one-off captioning and the demo server, with a model from a
//! directory / Hub id (`--model`) or from a pipeline stage's current artifact (`--stage`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use pipe::cache::{Artifact, Cache};
use pipe::dag;
use pipe::plan::{Planner, State};
use pipe_blip::DecodeParams;
use pipe_blip::decode::{MAX_BATCH, MAX_BEAMS, MAX_NEW_TOKENS};
use pipe_hub::{HubOptions, ModelDir};
use pipe_infer::{CaptionSettings, Skipped, caption_files_skipping, find_images};
use pipe_stage_api::BackendChoice;

use super::{CliError, Exit};

/// Where the model comes from.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ModelSource {
    /// A checkpoint directory in the Hugging Face layout, or a Hub id in the local HF cache.
    #[arg(long)]
    model: Option<String>,
    /// The current artifact of this pipeline stage (e.g. `train`); it must be fresh.
    #[arg(long)]
    stage: Option<String>,
}

/// The Burn backend to run the model on.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Backend {
    /// CUDA, else a hardware wgpu GPU (as this build has them), else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU (a build with `--features cuda`).
    Cuda,
    /// Vulkan / Metal / DX12 (a build with `--features wgpu`).
    Wgpu,
}

impl From<Backend> for BackendChoice {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => BackendChoice::Auto,
            Backend::Cpu => BackendChoice::Cpu,
            Backend::Cuda => BackendChoice::Cuda,
            Backend::Wgpu => BackendChoice::Wgpu,
        }
    }
}

/// A count from 1 to `max`: anything else is a usage error (exit 2) naming the flag.
fn at_most(max: usize) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=max as u64)
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every image was captioned; 1 when some could not be \
    read or decoded (each is skipped with a warning naming it and why, the others are printed); \
    3 when none could be; 2 for bad usage, a model that cannot be found, or a folder or glob \
    with no image."
)]
pub struct CaptionArgs {
    #[command(flatten)]
    source: ModelSource,
    /// Images to caption: files, folders (their image files, by name) or glob patterns such as
    /// 'photos/*.jpg' (quoted, or the shell expands them). A file that cannot be read or decoded
    /// is skipped with a warning; pipe then exits 1 after printing the others' captions.
    #[arg(required = true, value_name = "IMAGE|FOLDER|GLOB")]
    images: Vec<PathBuf>,
    /// Beams of the beam search (1: greedy; the default with --do-sample), as the infer stage's
    /// `num_beams`.
    #[arg(
        long,
        default_value_t = DecodeParams::default().num_beams,
        default_value_if("do_sample", clap::builder::ArgPredicate::IsPresent, "1"),
        value_parser = at_most(MAX_BEAMS)
    )]
    num_beams: usize,
    /// Most tokens generated per caption, as the infer stage's `max_new_tokens`.
    #[arg(long, default_value_t = DecodeParams::default().max_new_tokens, value_parser = at_most(MAX_NEW_TOKENS))]
    max_new_tokens: usize,
    /// Draw each token from the model's distribution instead of taking the most likely one
    /// (with --num-beams 1), as the infer stage's `do_sample`.
    #[arg(long)]
    do_sample: bool,
    /// With --do-sample: logits are divided by this (below 1: surer, above: more varied).
    #[arg(long, default_value_t = DecodeParams::default().temperature, requires = "do_sample")]
    temperature: f32,
    /// With --do-sample: only the K most likely tokens can be drawn (0: all).
    #[arg(long, default_value_t = DecodeParams::default().top_k, requires = "do_sample")]
    top_k: usize,
    /// With --do-sample: only the most likely tokens whose probabilities sum to P can be drawn.
    #[arg(long, default_value_t = DecodeParams::default().top_p, requires = "do_sample")]
    top_p: f32,
    /// With --do-sample: the draws' seed (the same images in the same order and seed give the
    /// same captions).
    #[arg(long, default_value_t = DecodeParams::default().seed, requires = "do_sample")]
    seed: u64,
    /// Text every caption starts with, e.g. "a picture of".
    #[arg(long)]
    prompt: Option<String>,
    /// Images captioned in one model call.
    #[arg(long, default_value_t = 8, value_parser = at_most(MAX_BATCH))]
    batch_size: usize,
    /// Where the model runs.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// A JSON list of {"image", "caption", "tokens"} (the images captioned).
    #[arg(long, conflicts_with = "jsonl")]
    json: bool,
    /// One {"image", "caption"} per line: what `pipe score --predictions` reads (the images
    /// captioned; a skipped one has no line).
    #[arg(long)]
    jsonl: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    source: ModelSource,
    /// Address to bind. The default serves this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 7860)]
    port: u16,
    /// Largest request body, in MB (larger: 413).
    #[arg(long, default_value_t = 10)]
    max_body_mb: usize,
    /// Largest image, in megapixels, read from its header before decoding (larger: 413).
    #[arg(long, default_value_t = 36)]
    max_megapixels: u64,
    /// Longest a request may take, queueing included (longer: 504).
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
    /// Requests admitted at once (more: 429).
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Open connections at once (more: 503 and closed).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_connections: u32,
    /// Longest a client may take to send its headers, or sit idle between requests.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_s: u64,
    /// Longest Ctrl-C / SIGTERM waits for requests in progress (a second signal: none).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    shutdown_grace_s: u64,
    /// Most images captioned in one model call.
    #[arg(long, default_value_t = 8, value_parser = at_most(MAX_BATCH))]
    max_batch: usize,
    /// How long to wait for more requests to fill a batch.
    #[arg(long, default_value_t = 5)]
    batch_window_ms: u64,
    /// Default beams for requests that do not say.
    #[arg(long, default_value_t = pipe_serve::ServeOptions::default().decode.num_beams, value_parser = at_most(MAX_BEAMS))]
    num_beams: usize,
    /// Default most tokens per caption for requests that do not say.
    #[arg(long, default_value_t = pipe_serve::ServeOptions::default().decode.max_new_tokens, value_parser = at_most(MAX_NEW_TOKENS))]
    max_new_tokens: usize,
    /// Example images offered on the page (files or folders).
    #[arg(long, num_args = 1..)]
    examples: Vec<PathBuf>,
    /// Allow cross-origin requests to the API.
    #[arg(long)]
    cors: bool,
    /// Where the model runs.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
}

/// The model of a source, and the stage artifact it came from.
fn resolve(
    pipeline: &Path,
    source: &ModelSource,
) -> Result<(ModelDir, Option<(String, Artifact)>), CliError> {
    if let Some(model) = &source.model {
        let hub = HubOptions::from_env();
        return Ok((
            pipe_hub::ModelSource::parse(model, &hub)?.resolve(&hub)?,
            None,
        ));
    }
    let Some(stage) = &source.stage else {
        return Err(CliError::Model(
            "give --model SRC or --stage NAME".to_string(),
        ));
    };
    let spec = pipe::spec::load(pipeline, &[], &crate::REGISTRY)?;
    dag::check_stage(&spec, stage)?;
    let cache = Cache::open(&spec.cache_dir)?;
    let planner = Planner::new(&spec, &cache);
    let status = planner.status().into_iter().find(|s| &s.name == stage);
    planner.finish();
    let Some(status) = status else {
        return Err(CliError::Model(format!("no stage `{stage}`")));
    };
    // A key this machine cannot compute (an input it lacks): the artifact pipe.lock names
    // for the committed config, once `pipe pull` fetched it.
    let locked = || {
        let lock = super::read_lock(&spec)?;
        let key = &lock.stages.get(stage)?.key;
        cache.artifact(key)
    };
    let artifact = match (status.state, status.artifact) {
        (State::Fresh, Some(a)) => a,
        (_, None)
            if status.key.is_none()
                && let Some(a) = locked() =>
        {
            tracing::info!(
                "stage `{stage}`: using {} from {} (its key cannot be computed here: {})",
                pipe::cache::short(&a.manifest.key),
                pipe::lockfile::FILE,
                status
                    .reasons
                    .iter()
                    .map(|r| r.text.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            a
        }
        (state, _) => {
            return Err(CliError::Model(format!(
                "stage `{stage}` is {}: run `pipe run {stage}` first",
                state.as_str()
            )));
        }
    };
    let model = ModelDir::in_artifact(&artifact.out())?;
    Ok((model, Some((stage.clone(), artifact))))
}

/// The images the arguments name, in their order, each once: a file as given (read or not: one
/// that cannot be is skipped later, with a warning), a folder's images, a glob's matches. A
/// folder or glob with no image is a usage error.
fn expand_images(args: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for arg in args {
        let is_glob = arg.to_string_lossy().contains(['*', '?', '[']);
        let found = if arg.is_file() || !(arg.is_dir() || is_glob) {
            vec![arg.clone()]
        } else {
            let found =
                find_images(&arg.to_string_lossy(), Path::new("")).map_err(|e| match e {
                    pipe_infer::InferError::Glob { .. } => CliError::Usage(e.to_string()),
                    other => CliError::Caption(Box::new(other)),
                })?;
            if found.is_empty() {
                let what = if arg.is_dir() {
                    "a folder without image files"
                } else {
                    "a glob that matches no file"
                };
                return Err(CliError::Usage(format!("{}: {what}", arg.display())));
            }
            found
        };
        out.extend(found.into_iter().filter(|p| seen.insert(p.clone())));
    }
    Ok(out)
}

/// Why an image was skipped, without its path (the warning names it first).
fn skip_reason(e: &Skipped) -> String {
    match e {
        Skipped::Image { reason, .. } => reason.clone(),
        Skipped::Read { source, .. } => format!("cannot read it: {source}"),
        other => pipe::error_chain(other),
    }
}

/// `pipe caption`'s progress bar: on stderr when it is a terminal and not `-q`.
struct CaptionBar(ProgressBar);

impl CaptionBar {
    fn new(quiet: bool, total: usize) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("captioning");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(bar)
    }
}

impl pipe_stage_api::Progress for CaptionBar {
    fn begin(&self, phase: &str, total: Option<u64>) {
        self.0.set_message(phase.to_string());
        if let Some(n) = total {
            self.0.set_length(n);
        }
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub fn caption(pipeline: &Path, args: &CaptionArgs, quiet: bool) -> Result<Exit, CliError> {
    let (model, _) = resolve(pipeline, &args.source)?;
    let images = expand_images(&args.images)?;
    let settings = CaptionSettings {
        generation: DecodeParams {
            num_beams: args.num_beams,
            max_new_tokens: args.max_new_tokens,
            do_sample: args.do_sample,
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
            ..DecodeParams::default()
        }
        .generation(),
        prompt: args.prompt.clone(),
        batch_size: args.batch_size,
    };
    let bar = CaptionBar::new(quiet, images.len());
    let warn = |path: &Path, e: &Skipped| {
        bar.0.suspend(|| {
            tracing::warn!("skipped {}: {}", path.display(), skip_reason(e));
        });
    };
    let results =
        caption_files_skipping(&model, &images, &settings, args.backend.into(), &bar, &warn)
            .map_err(|e| CliError::Caption(Box::new(e)));
    bar.0.finish_and_clear();
    let results = results?;
    let captioned: Vec<_> = images
        .iter()
        .zip(&results)
        .filter_map(|(image, r)| Some((image.display().to_string(), r.as_ref().ok()?)))
        .collect();
    let skipped = images.len() - captioned.len();
    if captioned.is_empty() {
        return Err(CliError::Unreadable { skipped });
    }
    if args.json {
        let list: Vec<_> = captioned
            .iter()
            .map(|(image, c)| serde_json::json!({ "image": image, "caption": c.text, "tokens": c.tokens }))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else if args.jsonl {
        for (image, c) in &captioned {
            outln!(
                "{}",
                serde_json::json!({ "image": image, "caption": c.text })
            );
        }
    } else {
        for (image, c) in &captioned {
            outln!("{image}\t{}", c.text);
        }
    }
    if skipped > 0 {
        tracing::warn!(
            "{skipped} of {} image(s) skipped (they cannot be read or decoded)",
            images.len()
        );
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

pub fn serve(pipeline: &Path, args: &ServeArgs) -> Result<Exit, CliError> {
    let (model, stage) = resolve(pipeline, &args.source)?;
    let mut opts = pipe_serve::ServeOptions {
        host: args.host,
        port: args.port,
        max_body_bytes: args.max_body_mb * 1_000_000,
        max_pixels: args.max_megapixels * 1_000_000,
        request_timeout: std::time::Duration::from_secs(args.timeout_s),
        queue_capacity: args.queue,
        max_connections: args.max_connections as usize,
        header_timeout: std::time::Duration::from_secs(args.header_timeout_s),
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_s),
        max_batch: args.max_batch,
        batch_window: std::time::Duration::from_millis(args.batch_window_ms),
        cors: args.cors,
        examples: args.examples.clone(),
        ..Default::default()
    };
    opts.decode.num_beams = args.num_beams;
    opts.decode.max_new_tokens = args.max_new_tokens;
    opts.info.source = args
        .source
        .model
        .clone()
        .or_else(|| args.source.stage.clone());
    if let Some((name, artifact)) = stage {
        opts.info.stage = Some(name);
        opts.info.stage_key = Some(artifact.manifest.key.clone());
        opts.info.metrics = Some(serde_json::Value::Object(artifact.manifest.metrics.clone()));
    }
    let server = pipe_serve::start_until_signal(&model.dir, args.backend.into(), opts)?;
    eprintln!("pipe serve: {} (Ctrl-C to stop)", server.url());
    server.wait()?;
    Ok(Exit::Ok)
}
