//! The `collate` stage kind: prep's artifact → exactly what a model consumes, for one model
//! directory (Hugging Face layout: `tokenizer.json`, `preprocessor_config.json`,
//! `config.json`). Captions are tokenized ([`tokenize`]), images resized once into RGB8
//! shards ([`pixels`], [`shards`]) and kept grouped by image so training runs the vision
//! encoder once per image. The files: see [`pipe_data::collate::shards`].
//!
//! ```toml
//! [stages.collate]
//! kind = "collate"
//! deps = ["prep"]
//! model = "models/blip-image-captioning-base"
//! max_length = 40        # tokens per caption, [DEC] and [SEP] included
//! prompt = ""            # e.g. "a picture of ": prepended, excluded from the loss
//! # prep = "prep"        # which dep is the prep artifact (default: the only dep)
//! # shard_mb = 256       # pixel shard size
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use pipe_stage_api::{
    Outcome, ParamError, SizeEstimate, StageContext, StageError, StageKind, Upstream, dep_names,
    parse_params, pick_dep, upstream_images,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use pipe_data::collate::{
    CaptionTokenizer, CollateError, CollateMeta, CollatedImage, PreprocessorConfig,
    TokenizedCaption, pixels, shards,
};
use pipe_data::images::{DecodeLimits, decode_rgb8_with};
use pipe_data::prep::{ImageRecord, PrepArtifact, Split, SplitCounts};

/// The `collate` stage kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Collate;

/// An image's line in `images.jsonl` besides its pixels, for size estimates: 598 B measured
/// with five captions of up to 40 tokens (COCO-like, 120,000 images).
const LISTED_BYTES: u64 = 600;

/// The files of a model directory collate reads.
pub const MODEL_FILES: [&str; 3] = ["tokenizer.json", "preprocessor_config.json", "config.json"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollateParams {
    model: PathBuf,
    #[serde(default = "default_max_length")]
    max_length: usize,
    #[serde(default)]
    prompt: String,
    prep: Option<String>,
    #[serde(default = "default_shard_mb")]
    shard_mb: u64,
}

fn default_max_length() -> usize {
    40
}

fn default_shard_mb() -> u64 {
    256
}

fn parse(params: &toml::Table) -> Result<CollateParams, ParamError> {
    let p: CollateParams = parse_params(params)?;
    if !(3..=512).contains(&p.max_length) {
        return Err(ParamError::new(
            ["max_length"],
            format!("max_length must be within 3..=512, got {}", p.max_length),
        ));
    }
    if !(1..=4096).contains(&p.shard_mb) {
        return Err(ParamError::new(
            ["shard_mb"],
            format!("shard_mb must be within 1..=4096, got {}", p.shard_mb),
        ));
    }
    Ok(p)
}

impl StageKind for Collate {
    fn name(&self) -> &'static str {
        "collate"
    }

    fn version(&self) -> u32 {
        // 2: collate.json names the model as written, not by its absolute path.
        2
    }

    fn about(&self) -> &'static str {
        "tokenize captions and resize images exactly as the model's processor does"
    }

    fn template(&self) -> Option<String> {
        let required = toml::from_str("model = \"MODEL\"").ok()?;
        pipe_stage_api::params_template::<CollateParams>(&required).ok()
    }

    fn check(&self, params: &toml::Table) -> Result<(), ParamError> {
        parse(params).map(|_| ())
    }

    fn inputs(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
    ) -> Result<Vec<PathBuf>, ParamError> {
        let p = parse(params)?;
        let dir = pipeline_dir.join(&p.model);
        Ok(MODEL_FILES.iter().map(|f| dir.join(f)).collect())
    }

    fn estimate(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
        deps: &BTreeMap<String, Upstream>,
    ) -> Option<SizeEstimate> {
        let p = parse(params).ok()?;
        let images = upstream_images(deps, &["prep"])?;
        let cfg = PreprocessorConfig::from_model_dir(&pipeline_dir.join(&p.model)).ok()?;
        let (h, w) = (u64::from(cfg.size.height), u64::from(cfg.size.width));
        let what = format!("{w}x{h} RGB8 and the tokenized captions");
        Some(SizeEstimate::per_image(
            images,
            h * w * 3 + LISTED_BYTES,
            &what,
        ))
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        let p = parse(ctx.params)?;
        let (_, prep_dir) =
            pick_dep(ctx.deps, "prep", p.prep.as_deref(), &["prep"])?.ok_or_else(|| {
                ParamError::new(
                    ["prep"],
                    format!(
                        "collate needs a prep dep, or `prep = NAME` to pick one (deps: {})",
                        dep_names(ctx.deps)
                    ),
                )
            })?;
        Ok(run_with(
            ctx.params,
            ctx.pipeline_dir,
            prep_dir,
            ctx.out_dir,
            ctx.progress,
        )?)
    }
}

/// The whole stage, callable without an orchestrator (tests, tools).
pub fn run(
    params: &toml::Table,
    pipeline_dir: &Path,
    prep_dir: &Path,
    out_dir: &Path,
) -> Result<Outcome, CollateError> {
    run_with(
        params,
        pipeline_dir,
        prep_dir,
        out_dir,
        &pipe_stage_api::Silent,
    )
}

/// [`run`], reporting progress.
pub fn run_with(
    params: &toml::Table,
    pipeline_dir: &Path,
    prep_dir: &Path,
    out_dir: &Path,
    progress: &dyn pipe_stage_api::Progress,
) -> Result<Outcome, CollateError> {
    let p = parse(params)?;
    let model = pipeline_dir.join(&p.model);
    let prep = PrepArtifact::open_lazy(prep_dir, pipeline_dir)?;
    let cfg = PreprocessorConfig::from_model_dir(&model)?;
    let tokenizer = CaptionTokenizer::from_model_dir(&model, p.max_length, &p.prompt)?;
    // For the progress bar: prep's summary says, else one pass over the list counts.
    let total = match prep.summary() {
        Ok(summary) => summary.splits.values().map(|c| c.images).sum(),
        Err(_) => prep.records()?.count(),
    };
    tracing::info!(images = total, model = %model.display(), "collating");

    let (h, w) = (cfg.size.height, cfg.size.width);
    let image_bytes = u64::from(h) * u64::from(w) * 3;
    let mut shards = shards::ShardWriter::new(out_dir, p.shard_mb * (1 << 20))?;
    let list_path = out_dir.join("images.jsonl");
    let mut list = ImageList::create(&list_path)?;
    progress.begin_items("resizing", total as u64, "images");
    // A chunk of images at a time, in parallel within it: memory holds one chunk's pixels,
    // whatever the dataset's size.
    let mut records = prep.records()?;
    loop {
        let chunk: Vec<ImageRecord> = records.by_ref().take(CHUNK).collect::<Result<_, _>>()?;
        if chunk.is_empty() {
            break;
        }
        let collated: Vec<(Vec<u8>, Vec<TokenizedCaption>, usize)> = chunk
            .par_iter()
            .map(|r| {
                let (captions, cut) = tokenize(r, &tokenizer, p.max_length)?;
                Ok((resized(&prep, r, &cfg)?, captions, cut))
            })
            .collect::<Result<_, CollateError>>()?;
        progress.advance(chunk.len() as u64);
        for (r, (pixels, captions, cut)) in chunk.into_iter().zip(collated) {
            let (shard, offset) = shards.push(&pixels)?;
            list.push(r, shard, offset, captions, cut)?;
        }
    }
    let shard_list = shards.finish()?;
    let (splits, truncated, max_tokens) = list.finish()?;

    let pixel_bytes: u64 = shard_list.iter().map(|s| s.bytes).sum();
    let meta = CollateMeta {
        format: shards::FORMAT,
        // As written in pipeline.toml, not resolved: no artifact depends on where the
        // project lives.
        model: p.model.to_string_lossy().into_owned(),
        height: h,
        width: w,
        image_bytes,
        preprocessor: cfg,
        special: tokenizer.special(),
        max_length: p.max_length,
        prompt: p.prompt.clone(),
        prompt_len: tokenizer.prompt_len(),
        shards: shard_list,
        splits: splits.clone(),
    };
    write_json(&out_dir.join("collate.json"), &meta)?;
    let images: usize = splits.values().map(|c| c.images).sum();
    let captions: usize = splits.values().map(|c| c.captions).sum();
    let summary = serde_json::json!({
        "splits": splits,
        "images": images,
        "captions": captions,
        "truncated_captions": truncated,
        "max_tokens": max_tokens,
        "pixel_bytes": pixel_bytes,
    });
    write_json(&out_dir.join("summary.json"), &summary)?;
    tracing::info!(images, captions, truncated, pixel_bytes, "collate done");

    let mut metrics = serde_json::Map::new();
    metrics.insert("images".into(), images.into());
    metrics.insert("captions".into(), captions.into());
    metrics.insert("truncated_captions".into(), truncated.into());
    metrics.insert("max_tokens".into(), max_tokens.into());
    metrics.insert("pixel_bytes".into(), pixel_bytes.into());
    Ok(Outcome {
        metrics,
        results: vec![PathBuf::from("summary.json")],
    })
}

/// Images collated at a time.
const CHUNK: usize = 256;

/// An image's captions as token ids, with how many of them were cut at `max_length`.
fn tokenize(
    r: &ImageRecord,
    tokenizer: &CaptionTokenizer,
    max_length: usize,
) -> Result<(Vec<TokenizedCaption>, usize), CollateError> {
    let mut cut = 0;
    let mut out = Vec::with_capacity(r.captions.len());
    for c in &r.captions {
        let t = tokenizer.encode(c)?;
        if t.ids.len() == max_length && tokenizer.truncates(c)? {
            cut += 1;
        }
        out.push(t);
    }
    Ok((out, cut))
}

/// An image decoded (checked against prep's hash) and resized for the model.
fn resized(
    prep: &PrepArtifact,
    r: &ImageRecord,
    cfg: &PreprocessorConfig,
) -> Result<Vec<u8>, CollateError> {
    // prep has bounded every image's pixels (its `max_megapixels`) and the hash check below
    // proves the file is the one prep read; the process-wide decode budget still applies.
    let limits = DecodeLimits {
        max_pixels: u64::MAX,
        ..DecodeLimits::default()
    };
    let path = prep.image_path(r);
    let bytes = std::fs::read(&path).map_err(|source| CollateError::Read {
        path: path.clone(),
        source,
    })?;
    if blake3::hash(&bytes).to_hex().as_str() != r.hash {
        return Err(CollateError::ImageChanged { path });
    }
    decode_rgb8_with(&bytes, &limits, |rgb| {
        pixels::resize_for(rgb, cfg).into_raw()
    })
    .map_err(|i| CollateError::Image { path, reason: i.0 })
}

/// `images.jsonl`, written a line per image (its split, pixel place and tokenized captions),
/// with what it counts.
struct ImageList {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    splits: BTreeMap<Split, SplitCounts>,
    truncated: usize,
    max_tokens: usize,
}

impl ImageList {
    fn create(path: &Path) -> Result<Self, CollateError> {
        let file = std::fs::File::create(path).map_err(|source| CollateError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file: std::io::BufWriter::new(file),
            splits: Split::ALL
                .iter()
                .map(|s| (*s, SplitCounts::default()))
                .collect(),
            truncated: 0,
            max_tokens: 0,
        })
    }

    fn push(
        &mut self,
        r: ImageRecord,
        shard: usize,
        offset: u64,
        captions: Vec<TokenizedCaption>,
        cut: usize,
    ) -> Result<(), CollateError> {
        let c = self.splits.entry(r.split).or_default();
        c.images += 1;
        c.captions += captions.len();
        self.truncated += cut;
        self.max_tokens = captions
            .iter()
            .map(|t| t.ids.len())
            .fold(self.max_tokens, usize::max);
        let im = CollatedImage {
            id: r.id,
            split: r.split,
            shard,
            offset,
            captions,
        };
        let line = serde_json::to_string(&im).map_err(|source| CollateError::Json {
            path: self.path.clone(),
            source,
        })?;
        writeln!(self.file, "{line}").map_err(|source| CollateError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Flush; the split counts, the captions cut and the longest caption in tokens.
    fn finish(mut self) -> Result<(BTreeMap<Split, SplitCounts>, usize, usize), CollateError> {
        self.file.flush().map_err(|source| CollateError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok((self.splits, self.truncated, self.max_tokens))
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), CollateError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| CollateError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| CollateError::Write {
        path: path.to_path_buf(),
        source,
    })
}
