//! `pipe caption` and `pipe serve`: one-off captioning and the demo server, with a model from a
//! directory / Hub id (`--model`) or from a pipeline stage's current artifact (`--stage`).

use std::path::{Path, PathBuf};

use pipe::cache::{Artifact, Cache};
use pipe::dag;
use pipe::plan::{Planner, State};
use pipe_blip::DecodeParams;
use pipe_blip::decode::{MAX_BATCH, MAX_BEAMS, MAX_NEW_TOKENS};
use pipe_hub::{HubOptions, ModelDir};
use pipe_infer::{CaptionSettings, caption_files};
use pipe_stage_api::{BackendChoice, Silent};

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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Backend {
    Auto,
    Cpu,
    Cuda,
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
pub struct CaptionArgs {
    #[command(flatten)]
    source: ModelSource,
    /// Image files to caption.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    // The infer stage's defaults.
    #[arg(long, default_value_t = DecodeParams::default().num_beams, value_parser = at_most(MAX_BEAMS))]
    num_beams: usize,
    #[arg(long, default_value_t = DecodeParams::default().max_new_tokens, value_parser = at_most(MAX_NEW_TOKENS))]
    max_new_tokens: usize,
    /// Text every caption starts with, e.g. "a picture of".
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long, default_value_t = 8, value_parser = at_most(MAX_BATCH))]
    batch_size: usize,
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// A JSON list of {"image", "caption", "tokens"}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    source: ModelSource,
    /// Address to bind. The default serves this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
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
    #[arg(long, default_value_t = pipe_serve::ServeOptions::default().decode.max_new_tokens, value_parser = at_most(MAX_NEW_TOKENS))]
    max_new_tokens: usize,
    /// Example images offered on the page (files or folders).
    #[arg(long, num_args = 1..)]
    examples: Vec<PathBuf>,
    /// Allow cross-origin requests to the API.
    #[arg(long)]
    cors: bool,
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

pub fn caption(pipeline: &Path, args: &CaptionArgs) -> Result<Exit, CliError> {
    let (model, _) = resolve(pipeline, &args.source)?;
    let settings = CaptionSettings {
        generation: DecodeParams {
            num_beams: args.num_beams,
            max_new_tokens: args.max_new_tokens,
            ..DecodeParams::default()
        }
        .generation(),
        prompt: args.prompt.clone(),
        batch_size: args.batch_size,
    };
    let captions = caption_files(
        &model,
        &args.images,
        &settings,
        args.backend.into(),
        &Silent,
    )
    .map_err(|e| CliError::Caption(Box::new(e)))?;
    if args.json {
        let list: Vec<_> = args
            .images
            .iter()
            .zip(&captions)
            .map(|(image, c)| serde_json::json!({ "image": image, "caption": c.text, "tokens": c.tokens }))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else {
        for (image, c) in args.images.iter().zip(&captions) {
            outln!("{}\t{}", image.display(), c.text);
        }
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
