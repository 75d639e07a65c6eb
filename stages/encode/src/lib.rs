//! The `encode` stage kind: run the frozen vision encoder once over every image of a collate
//! artifact and store its output, so training never runs it again for the same image.
//!
//! ```toml
//! [stages.encode]
//! deps = ["collate"]
//! model = "Salesforce/blip-image-captioning-base"   # the same model train starts from
//! dtype = "f32"        # or "f16": half the disk and memory traffic, ~1e-3 relative error
//! batch_size = 8
//!
//! [stages.train]
//! deps = ["collate", "encode"]                      # train reads the features
//! ```
//!
//! Artifact: `features.bin` + `features.json` (see [`pipe_features`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use pipe_backend::{BackendError, OnBackend, resolve_on};
use pipe_blip::config::BlipConfig;
use pipe_blip::weights::{LoadError, load_model};
use pipe_data::collate::{CollateError, Collated};
use pipe_features::{
    Dtype, FORMAT, FeatureWriter, FeaturesError, FeaturesMeta, collate_fingerprint,
    vision_fingerprint,
};
use pipe_hub::{HubError, HubOptions, ModelSource};
use pipe_stage_api::{
    Outcome, ParamError, SizeEstimate, StageContext, StageError, StageKind, Upstream, dep_names,
    parse_params, pick_dep, upstream_images,
};
use serde::{Deserialize, Serialize};

/// Why encoding failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Collate(#[from] CollateError),
    #[error(transparent)]
    Features(#[from] FeaturesError),
}

/// The `encode` stage kind.
pub struct Encode;

/// The stage's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeParams {
    /// A checkpoint directory (relative to pipeline.toml) or a Hub id.
    pub model: String,
    #[serde(default = "default_dtype")]
    pub dtype: Dtype,
    /// Images per vision-encoder call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_dtype() -> Dtype {
    Dtype::F32
}
fn default_batch_size() -> usize {
    8
}

impl EncodeParams {
    pub fn parse(table: &toml::Table) -> Result<Self, ParamError> {
        let p: Self = parse_params(table)?;
        if p.batch_size == 0 {
            return Err(ParamError::new(
                ["batch_size"],
                "batch_size must be at least 1",
            ));
        }
        if p.model == pipe_blip::SCRATCH {
            return Err(ParamError::new(
                ["model"],
                "encode needs trained vision weights; a model trained from scratch changes its \
                 vision encoder, so it cannot use cached features",
            ));
        }
        Ok(p)
    }
}

impl StageKind for Encode {
    fn name(&self) -> &'static str {
        "encode"
    }

    fn version(&self) -> u32 {
        1
    }

    fn about(&self) -> &'static str {
        "run the frozen vision encoder once per image; train reads the cached features"
    }

    fn template(&self) -> Option<String> {
        let required = toml::from_str("model = \"MODEL\"").ok()?;
        pipe_stage_api::params_template::<EncodeParams>(&required).ok()
    }

    fn check(&self, params: &toml::Table) -> Result<(), ParamError> {
        EncodeParams::parse(params).map(|_| ())
    }

    fn inputs(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
    ) -> Result<Vec<PathBuf>, ParamError> {
        let p = EncodeParams::parse(params)?;
        Ok(ModelSource::in_pipeline(&p.model, pipeline_dir).key_files())
    }

    fn fetch(&self, params: &toml::Table, pipeline_dir: &Path) -> Result<(), StageError> {
        let p = EncodeParams::parse(params)?;
        Ok(ModelSource::in_pipeline(&p.model, pipeline_dir).fetch()?)
    }

    fn uses_accelerator(&self) -> bool {
        true
    }

    fn estimate(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
        deps: &BTreeMap<String, Upstream>,
    ) -> Option<SizeEstimate> {
        let p = EncodeParams::parse(params).ok()?;
        let images = upstream_images(deps, &["collate"])?;
        let dir = ModelSource::in_pipeline(&p.model, pipeline_dir).find()?;
        let v = BlipConfig::from_file(&dir.config_path())
            .ok()?
            .vision_config;
        // One feature row per patch, plus the class token.
        let tokens = (v.image_size / v.patch_size).pow(2) + 1;
        let per_image = tokens * v.hidden_size * p.dtype.bytes();
        let what = format!("{tokens} tokens x {} x {:?}", v.hidden_size, p.dtype);
        Some(SizeEstimate::per_image(images, per_image as u64, &what))
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        Ok(run(ctx)?)
    }
}

fn run(ctx: &StageContext<'_>) -> Result<Outcome, EncodeError> {
    let p = EncodeParams::parse(ctx.params)?;
    let (_, collate_dir) = pick_dep(ctx.deps, "deps", None, &["collate"])?.ok_or_else(|| {
        ParamError::new(
            ["deps"],
            format!(
                "encode needs a collate stage among its deps (deps: {})",
                dep_names(ctx.deps)
            ),
        )
    })?;
    let backend = resolve_on(ctx.backend, ctx.device())?;
    tracing::info!(backend = %backend, "encode");
    backend.run(EncodeRun {
        ctx,
        params: &p,
        collate_dir,
    })
}

struct EncodeRun<'a> {
    ctx: &'a StageContext<'a>,
    params: &'a EncodeParams,
    collate_dir: &'a Path,
}

impl OnBackend for EncodeRun<'_> {
    type Output = Result<Outcome, EncodeError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        encode::<B>(self, &device)
    }
}

fn encode<B: Backend>(job: EncodeRun<'_>, device: &B::Device) -> Result<Outcome, EncodeError> {
    let (ctx, p) = (job.ctx, job.params);
    let col = Collated::open(job.collate_dir)?;
    let dir =
        ModelSource::in_pipeline(&p.model, ctx.pipeline_dir).resolve(&HubOptions::from_env())?;
    let (config, model) = load_model::<B>(&dir, device)?;
    let (h, w) = col.image_size();
    let (h, w) = (h as usize, w as usize);
    let expected = config.vision_config.image_size;
    if h != expected || w != expected {
        return Err(FeaturesError::Invalid {
            path: job.collate_dir.join("collate.json"),
            message: format!(
                "images are {w}×{h}, the model's vision encoder takes {expected}×{expected}; \
                 collate with this model's preprocessor"
            ),
        }
        .into());
    }

    let mut writer = FeatureWriter::create(ctx.out_dir, p.dtype)?;
    let indices: Vec<usize> = (0..col.len()).collect();
    ctx.progress
        .begin_items("encoding", indices.len() as u64, "images");
    let mut shape = None;
    for chunk in indices.chunks(p.batch_size) {
        let mut pixels = vec![0f32; chunk.len() * 3 * h * w];
        for (&i, out) in chunk.iter().zip(pixels.chunks_mut(3 * h * w)) {
            col.pixels_into(i, out)?;
        }
        let pixels =
            Tensor::<B, 4>::from_data(TensorData::new(pixels, [chunk.len(), 3, h, w]), device);
        let embeds = model.encode_images(pixels); // [b, N, E]
        let [_, n, e] = embeds.dims();
        shape = Some((n, e));
        let values = embeds
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| FeaturesError::Invalid {
                path: ctx.out_dir.to_path_buf(),
                message: format!("cannot read the encoder output: {e:?}"),
            })
            .map_err(EncodeError::from)?;
        writer.push(&values)?;
        ctx.progress.advance(chunk.len() as u64);
    }
    writer.finish()?;
    let (tokens, width) = shape.unwrap_or((0, 0));

    let meta = FeaturesMeta {
        format: FORMAT,
        dtype: p.dtype,
        images: col.len(),
        tokens,
        width,
        vision: vision_fingerprint(&model.vision_model),
        collate: collate_fingerprint(job.collate_dir)?,
        model: p.model.clone(),
    };
    meta.write(ctx.out_dir)?;
    tracing::info!(images = meta.images, tokens, width, dtype = ?p.dtype, "encoded");

    let mut outcome = Outcome::default();
    outcome.metrics.insert("images".into(), meta.images.into());
    outcome.metrics.insert("tokens".into(), tokens.into());
    outcome.metrics.insert("width".into(), width.into());
    Ok(outcome)
}
