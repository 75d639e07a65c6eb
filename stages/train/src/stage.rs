//! The `train` stage kind.
//!
//! ```toml
//! [stages.train]
//! deps = ["collate"]
//! model = "Salesforce/blip-image-captioning-base"   # or a directory, or "scratch" + config
//! method = "lora"                # or "full"
//! lora = { r = 16, alpha = 32, dropout = 0.05, targets = ["query", "value"] }
//! lr = 1e-4
//! epochs = 5
//! batch_size = 4                 # images per micro-batch, each with all its captions
//! patience = 2
//! devices = 1                    # data-parallel peers: a number, or "all" the pool gives
//! ```
//!
//! Artifact: `model/` (merged, HF layout), `adapter/` (PEFT, LoRA only), `loss_history.json`,
//! `summary.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use pipe_backend::{OnDevices, resolve_on};
use pipe_blip::Blip;
use pipe_blip::config::BlipConfig;
use pipe_blip::weights::load_model;
use pipe_data::collate::Collated;
use pipe_hub::{HubOptions, ModelDir, ModelSource};
use pipe_stage_api::{
    Deps, DeviceCount, Outcome, ParamError, SizeEstimate, StageContext, StageError, StageKind,
    Upstream, pick_dep,
};

use crate::error::TrainError;
use crate::export::{write_hf_model, write_json, write_peft_adapter};
use crate::fit::{FitConfig, Fitted, fit};
use crate::init::random_init;
use crate::lora::{LoraAdapter, LoraSpec, Trainable, count_params, targeted, without_dropout};
use crate::params::{Method, TrainParams};
use pipe_features::{Features, META, Mismatch};

/// The `train` stage kind.
pub struct Train;

impl StageKind for Train {
    fn name(&self) -> &'static str {
        "train"
    }

    fn version(&self) -> u32 {
        // 2: unmerged LoRA branches with dropout, weight decay spares 1-D parameters, the
        // backend RNG reseeded per epoch; artifacts of 1 were trained differently.
        // 3: summary.json no longer says whether the run resumed (the manifest does).
        // 4: LoRA dropout masks seeded per micro-batch (not drawn from the backend's shared
        // stream); the loss divided by a host-counted token total; summary.json's params
        // name `devices`; model/ carries the base's generation_config.json; loss_history.json
        // records each step's learning rate.
        4
    }

    fn about(&self) -> &'static str {
        "fine-tune BLIP (LoRA or full) with early stopping; exports HF and PEFT checkpoints"
    }

    fn template(&self) -> Option<String> {
        let required = toml::from_str("model = \"MODEL\"").ok()?;
        pipe_stage_api::params_template::<TrainParams>(&required).ok()
    }

    fn headline(&self) -> &'static [&'static str] {
        &["best_val_loss", "epochs"]
    }

    fn check(&self, params: &toml::Table) -> Result<(), ParamError> {
        TrainParams::parse(params).map(|_| ())
    }

    fn inputs(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
    ) -> Result<Vec<PathBuf>, ParamError> {
        let p = TrainParams::parse(params)?;
        Ok(match &p.config {
            Some(c) if p.is_scratch() => ModelDir {
                dir: pipeline_dir.join(c),
            }
            .key_files(false),
            _ => ModelSource::in_pipeline(&p.model, pipeline_dir).key_files(),
        })
    }

    fn fetch(&self, params: &toml::Table, pipeline_dir: &Path) -> Result<(), StageError> {
        let p = TrainParams::parse(params)?;
        if !p.is_scratch() {
            ModelSource::in_pipeline(&p.model, pipeline_dir).fetch()?;
        }
        Ok(())
    }

    fn estimate(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
        _deps: &BTreeMap<String, Upstream>,
    ) -> Option<SizeEstimate> {
        let p = TrainParams::parse(params).ok()?;
        if p.is_scratch() {
            return None;
        }
        let dir = ModelSource::in_pipeline(&p.model, pipeline_dir).find()?;
        let bytes = std::fs::metadata(dir.weights_path()).ok()?.len();
        Some(SizeEstimate {
            bytes,
            images: None,
            basis: "the model, as large as the base's weights".to_string(),
        })
    }

    fn uses_accelerator(&self) -> bool {
        true
    }

    fn devices(&self, params: &toml::Table) -> DeviceCount {
        TrainParams::parse(params).map_or_else(|_| DeviceCount::default(), |p| p.devices)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        Ok(run_stopping_after(ctx, None)?)
    }
}

/// The stage, stopped as a kill would stop it right after epoch `stop_after_epoch`'s
/// checkpoint (the run returns [`TrainError::Interrupted`]): how resumption is tested. Not
/// for use outside tests.
#[doc(hidden)]
pub fn run_stopping_after(
    ctx: &StageContext<'_>,
    stop_after_epoch: Option<usize>,
) -> Result<Outcome, TrainError> {
    let p = TrainParams::parse(ctx.params)?;
    let (collate_dir, encode_dir) = pick_deps(ctx.deps, &p)?;
    let backend = resolve_on(ctx.backend, ctx.device())?;
    let peers = p.devices.peers(ctx.devices.len());
    tracing::info!(backend = %backend, peers, "train");
    if ctx.devices.len() > 1 && peers > ctx.devices.len() {
        tracing::warn!(
            peers,
            devices = ctx.devices.len(),
            "more peers than devices: some devices run several"
        );
    }
    backend.run_on(
        ctx.devices,
        peers,
        TrainRun {
            ctx,
            params: &p,
            collate_dir,
            encode_dir,
            stop_after_epoch,
        },
    )
}

/// The encode artifact in `dir`, checked against what this run trains: the vision encoder
/// must stay frozen and be the one the features were computed with, over the same images.
fn open_features<B: Backend>(
    dir: &Path,
    collate_dir: &Path,
    col: &Collated,
    trainable: &Trainable<B>,
    spec: Option<&LoraSpec>,
    p: &TrainParams,
) -> Result<Features, TrainError> {
    let bad = |message: String| TrainError::Features {
        path: dir.join(META),
        message,
    };
    let trains_vision = match spec {
        Some(spec) => spec.names.iter().any(|n| n.starts_with("vision_model.")),
        None => !p.freeze_vision,
    };
    if trains_vision {
        return Err(bad(
            "train reads cached vision features (an encode dep) but would train the vision \
             encoder: set freeze_vision = true and keep LoRA targets in the text decoder, or \
             drop the encode dep"
                .into(),
        ));
    }
    let features = Features::open(dir)?;
    let meta = &features.meta;
    match features.mismatch(&trainable.model.vision_model, collate_dir, col.len())? {
        Some(Mismatch::Collate) => {
            return Err(bad(format!(
                "the features ({} images) were computed from another collate artifact than this \
                 stage's ({} images); make encode depend on the same collate stage",
                meta.images,
                col.len()
            )));
        }
        Some(Mismatch::Vision) => {
            return Err(bad(format!(
                "the features were computed with another vision encoder (encode's model = {:?}, \
                 train's = {:?}); give both stages the same model",
                meta.model, p.model
            )));
        }
        None => {}
    }
    tracing::info!(images = meta.images, dtype = ?meta.dtype, "reading vision features from encode");
    Ok(features)
}

/// The collate dep and the optional encode dep, by name when `collate`/`encode` say, else by
/// kind.
fn pick_deps<'a>(
    deps: &'a Deps,
    p: &TrainParams,
) -> Result<(&'a Path, Option<&'a Path>), ParamError> {
    let collate = pick_dep(deps, "collate", p.collate.as_deref(), &["collate"])?
        .ok_or_else(|| ParamError::new(["deps"], "train needs a collate stage among its deps"))?;
    let encode = pick_dep(deps, "encode", p.encode.as_deref(), &["encode"])?;
    Ok((collate.1, encode.map(|(_, d)| d)))
}

struct TrainRun<'a> {
    ctx: &'a StageContext<'a>,
    params: &'a TrainParams,
    collate_dir: &'a Path,
    encode_dir: Option<&'a Path>,
    stop_after_epoch: Option<usize>,
}

impl OnDevices for TrainRun<'_> {
    type Output = Result<Outcome, TrainError>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output {
        train::<Autodiff<B>>(self, devices)
    }
}

fn train<B: AutodiffBackend>(
    job: TrainRun<'_>,
    devices: Vec<B::Device>,
) -> Result<Outcome, TrainError> {
    let (ctx, p) = (job.ctx, job.params);
    let device = &devices.first().cloned().ok_or(TrainError::NoDevice)?;
    B::seed(device, ctx.seed);
    let col = Collated::open(job.collate_dir)?;
    let (source_dir, model) = base_model::<B>(ctx, p, device)?;
    let (trainable, spec) = make_trainable(model, p, ctx.seed, device)?;
    let features = match job.encode_dir {
        Some(dir) => Some(open_features(
            dir,
            job.collate_dir,
            &col,
            &trainable,
            spec.as_ref(),
            p,
        )?),
        None => None,
    };
    let params = count_params(&trainable);
    tracing::info!(
        method = ?p.method,
        trainable_params = params.0,
        total_params = params.1,
        adapted_layers = spec.as_ref().map_or(0, |s| s.names.len()),
        "parameters"
    );

    let fingerprint = serde_json::json!({
        "params": p,
        "seed": ctx.seed,
        // What was collated, not where: the checkpoint survives a moved project.
        "collate": std::fs::read(job.collate_dir.join("collate.json"))
            .map(|b| blake3::hash(&b).to_hex().to_string())
            .unwrap_or_default(),
    })
    .to_string();
    let fitted = fit(
        trainable,
        &col,
        &FitConfig {
            params: p,
            spec: spec.as_ref(),
            seed: ctx.seed,
            work_dir: ctx.work_dir,
            fingerprint,
            progress: ctx.progress,
            stop_after_epoch: job.stop_after_epoch,
            features: features.as_ref(),
        },
        devices,
    )?;
    export(ctx, p, &source_dir, spec.as_ref(), &fitted, params)
}

/// The model training starts from, and the directory its config, tokenizer and preprocessor
/// come from.
fn base_model<B: AutodiffBackend>(
    ctx: &StageContext<'_>,
    p: &TrainParams,
    device: &B::Device,
) -> Result<(PathBuf, Blip<B>), TrainError> {
    if p.is_scratch() {
        let dir = ctx
            .pipeline_dir
            .join(p.config.as_deref().unwrap_or_default());
        let config = BlipConfig::from_file(&dir.join("config.json"))?;
        let model = random_init(Blip::<B>::new(&config, device), 0.02, ctx.seed);
        tracing::info!(config = %dir.display(), "random initialisation (training from scratch)");
        Ok((dir, model))
    } else {
        let dir =
            ModelSource::in_pipeline(&p.model, ctx.pipeline_dir).resolve(&HubOptions::from_env())?;
        let (_, model) = load_model::<B>(&dir, device)?;
        Ok((dir.dir, model))
    }
}

/// What the optimiser updates: fresh LoRA branches on a frozen model, or the model itself
/// (its vision tower frozen if asked). The spec is `None` for full fine-tuning.
fn make_trainable<B: AutodiffBackend>(
    model: Blip<B>,
    p: &TrainParams,
    seed: u64,
    device: &B::Device,
) -> Result<(Trainable<B>, Option<LoraSpec>), TrainError> {
    match p.method {
        Method::Lora => {
            let model = model.no_grad();
            let layers = targeted(&model, &p.lora.targets);
            if layers.is_empty() {
                return Err(TrainError::NoTargets {
                    targets: p.lora.targets.clone(),
                });
            }
            let shapes: Vec<[usize; 2]> = layers.iter().map(|(_, s)| *s).collect();
            let lora = LoraAdapter::new(&shapes, p.lora.r, seed, device);
            let spec = LoraSpec {
                names: layers.into_iter().map(|(n, _)| n).collect(),
                r: p.lora.r,
                alpha: p.lora.alpha,
                dropout: p.lora.dropout,
            };
            let merged_only = without_dropout(&model, &spec);
            if p.lora.dropout > 0.0 && !merged_only.is_empty() {
                tracing::warn!(
                    dropout = p.lora.dropout,
                    layers = ?merged_only,
                    "lora.dropout applies to the text decoder's query/key/value; these targets \
                     train without it"
                );
            }
            Ok((Trainable { model, lora }, Some(spec)))
        }
        Method::Full => {
            // Loaded and freshly initialised parameters require gradients already.
            let mut model = model;
            if p.freeze_vision {
                model.vision_model = model.vision_model.no_grad();
            }
            let lora = LoraAdapter::empty();
            Ok((Trainable { model, lora }, None))
        }
    }
}

/// Writes the artifact (the merged model, the PEFT adapter, the loss history, the summary)
/// and says what the manifest records.
fn export<B: Backend>(
    ctx: &StageContext<'_>,
    p: &TrainParams,
    source_dir: &Path,
    spec: Option<&LoraSpec>,
    fitted: &Fitted<B>,
    (trainable_params, total_params): (usize, usize),
) -> Result<Outcome, TrainError> {
    ctx.progress.begin("exporting", None);
    let merged = match spec {
        Some(spec) => fitted.best.merged(spec),
        None => fitted.best.model.clone(),
    };
    write_hf_model(&merged, source_dir, &ctx.out_dir.join("model"))?;
    if let Some(spec) = spec {
        write_peft_adapter(
            &fitted.best.lora,
            spec,
            p.lora.dropout,
            &p.lora.targets,
            &p.model,
            &ctx.out_dir.join("adapter"),
        )?;
    }
    write_json(&ctx.out_dir.join("loss_history.json"), &fitted.history)?;
    let summary = serde_json::json!({
        "method": p.method,
        "model": p.model,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "adapted_layers": spec.map_or(0, |s| s.names.len()),
        "lora_scale": spec.map_or(0.0, LoraSpec::scale),
        "best_val_loss": fitted.best_val,
        "best_epoch": fitted.history.best_epoch,
        "initial_val_loss": fitted.history.initial_val_loss,
        "epochs": fitted.epochs_run,
        "steps": fitted.steps,
        "stopped_early": fitted.history.stopped_early,
        "params": p,
    });
    write_json(&ctx.out_dir.join("summary.json"), &summary)?;

    let mut outcome = Outcome::default();
    // How the artifact was made goes in the manifest, not the output: a resumed run's files
    // are byte-identical to an uninterrupted run's.
    let metrics = &mut outcome.metrics;
    if let Some(epoch) = fitted.resumed_from_epoch {
        metrics.insert("resumed_from_epoch".into(), epoch.into());
    }
    metrics.insert("best_val_loss".into(), fitted.best_val.into());
    metrics.insert("epochs".into(), fitted.epochs_run.into());
    metrics.insert("trainable_params".into(), trainable_params.into());
    metrics.insert("total_params".into(), total_params.into());
    metrics.insert("stopped_early".into(), fitted.history.stopped_early.into());
    outcome.results = vec![
        PathBuf::from("loss_history.json"),
        PathBuf::from("summary.json"),
        PathBuf::from("model"),
    ];
    if spec.is_some() {
        outcome.results.push(PathBuf::from("adapter"));
    }
    Ok(outcome)
}
