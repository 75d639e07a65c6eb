//! The `infer` stage kind: caption every image of a folder or glob with a BLIP model, from an
//! upstream stage's artifact (e.g. `train`) or a model source (a directory or a Hub id, from
//! the Hugging Face cache or downloaded).
//!
//! ```toml
//! [stages.infer]
//! kind = "infer"
//! model = "models/blip-image-captioning-base"   # or: deps = ["train"]
//! images = "photos"                             # a folder, or a glob such as "photos/*.jpg"
//! num_beams = 3
//! max_new_tokens = 20
//! ```
//!
//! Outputs: `captions.jsonl` (`{"image", "caption"}` per line), `captions.csv`, and
//! `gallery.html` showing the first `gallery` images (copied under `gallery/`) with their
//! captions. Images are decoded and preprocessed exactly as the collate stage does it
//! (`pipe_data::collate`), so a corrupt or unsupported image fails with the same message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use pipe_data::collate::{CollateError, PreprocessorConfig, preprocess_file};
use pipe_data::images::has_image_extension;
use pipe_stage_api::{
    BackendChoice, Outcome, ParamError, Progress, StageContext, StageError, StageKind, html_escape,
    parse_params_split,
};
use serde::{Deserialize, Serialize};

use pipe_backend::{BackendError, OnBackend, ResolvedBackend, resolve, resolve_on};
use pipe_blip::LoadError;
use pipe_blip::caption::{Caption, CaptionError, Captioner};
use pipe_blip::decode::{DecodeParams, GenerationConfig};
use pipe_hub::{HubError, HubOptions, ModelDir, ModelSource};

/// The `infer` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Infer;

/// `[stages.<name>]` of kind `infer`: these keys and the decoding options ([`DecodeParams`]),
/// side by side in the one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// A model directory or Hub id; absent when the model comes from the stage's one dep.
    model: Option<String>,
    /// A folder (its images, sorted by name) or a glob pattern, relative to pipeline.toml.
    images: String,
    #[serde(default = "default_batch")]
    batch_size: usize,
    /// Images shown in gallery.html (each is copied into the artifact).
    #[serde(default = "default_gallery")]
    gallery: usize,
    /// Text every caption starts with, e.g. "a picture of" (kept in the caption, as in
    /// transformers).
    prompt: Option<String>,
    /// `num_beams`, `max_new_tokens`, ...: the table's other keys.
    #[serde(skip)]
    decode: DecodeParams,
}

fn default_batch() -> usize {
    8
}
fn default_gallery() -> usize {
    100
}

impl Params {
    fn parse(table: &toml::Table) -> Result<Self, ParamError> {
        let (mut p, decode): (Params, DecodeParams) = parse_params_split(table)?;
        p.decode = decode;
        Ok(p)
    }
}

/// Why an infer run failed.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("images = {pattern:?} matches no image")]
    NoImages { pattern: String },
    #[error("bad glob {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
    #[error("cannot list {path}")]
    List {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "no model: set `model = \"DIR or ORG/NAME\"` or give the stage one dep whose artifact holds \
         a model (config.json, model.safetensors, tokenizer.json)"
    )]
    NoModel,
    #[error("give either `model` or one dep with a model, not {0}")]
    AmbiguousModel(String),
    #[error(
        "the artifact of dep {dep:?} ({dir}) holds no model (config.json) in model/ or at its top"
    )]
    DepWithoutModel { dep: String, dir: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Caption(#[from] CaptionError),
    #[error("{path}: the preprocessor config is not usable by BLIP: {what}")]
    Preprocessor { path: String, what: String },
    #[error(transparent)]
    Image(#[from] CollateError),
    #[error("cannot write {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl StageKind for Infer {
    fn name(&self) -> &'static str {
        "infer"
    }

    fn version(&self) -> u32 {
        1
    }

    fn about(&self) -> &'static str {
        "caption a folder or glob of images with a BLIP model (captions.jsonl, .csv, gallery.html)"
    }

    fn template(&self) -> Option<String> {
        let required = toml::from_str("images = \"IMAGES\"").ok()?;
        let own = pipe_stage_api::params_template::<Params>(&required).ok()?;
        let decoding = pipe_stage_api::params_template::<DecodeParams>(&toml::Table::new()).ok()?;
        Some(own + &decoding)
    }

    fn check(&self, params: &toml::Table) -> Result<(), ParamError> {
        let p = Params::parse(params)?;
        if p.images.trim().is_empty() {
            return Err(ParamError::new(["images"], "must name a folder or a glob"));
        }
        if p.batch_size == 0 || p.batch_size > pipe_blip::decode::MAX_BATCH {
            return Err(ParamError::new(
                ["batch_size"],
                format!("must be between 1 and {}", pipe_blip::decode::MAX_BATCH),
            ));
        }
        // Limits that need the model (positions, vocabulary) are checked when it is loaded.
        p.decode
            .check()
            .map_err(|e| ParamError::new([e.key], e.message))
    }

    fn inputs(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
    ) -> Result<Vec<PathBuf>, ParamError> {
        let p = Params::parse(params)?;
        let mut inputs = image_inputs(&p.images, pipeline_dir)
            .map_err(|e| ParamError::new(["images"], e.to_string()))?;
        if let Some(model) = &p.model {
            // Not local yet: `pipe run` fetches it first, and the stage says how to get it.
            if let Some(dir) = ModelSource::in_pipeline(model, pipeline_dir).find() {
                inputs.push(dir.dir);
            }
        }
        Ok(inputs)
    }

    fn fetch(&self, params: &toml::Table, pipeline_dir: &Path) -> Result<(), StageError> {
        let p = Params::parse(params)?;
        if let Some(model) = &p.model {
            ModelSource::in_pipeline(model, pipeline_dir).fetch()?;
        }
        Ok(())
    }

    fn uses_accelerator(&self) -> bool {
        true
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        Ok(run(ctx)?)
    }
}

/// What the cache key depends on: the folder itself, or every file the glob matches.
fn image_inputs(images: &str, pipeline_dir: &Path) -> Result<Vec<PathBuf>, InferError> {
    let folder = pipeline_dir.join(images);
    if folder.is_dir() {
        Ok(vec![folder])
    } else {
        list_images(images, pipeline_dir)
    }
}

/// The images to caption, sorted by path; none is an error.
fn list_images(images: &str, pipeline_dir: &Path) -> Result<Vec<PathBuf>, InferError> {
    let found = find_images(images, pipeline_dir)?;
    if found.is_empty() {
        return Err(InferError::NoImages {
            pattern: images.to_string(),
        });
    }
    Ok(found)
}

/// The images `pattern` names, relative to `base`: a folder's images (its files with an image
/// extension; not its subfolders), or else the files a glob pattern matches (any extension);
/// sorted by path, possibly none. What the infer stage's `images` and `pipe caption` take.
pub fn find_images(pattern: &str, base: &Path) -> Result<Vec<PathBuf>, InferError> {
    let folder = base.join(pattern);
    let mut found: Vec<PathBuf> = if folder.is_dir() {
        std::fs::read_dir(&folder)
            .map_err(|source| InferError::List {
                path: folder.display().to_string(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && has_image_extension(p))
            .collect()
    } else {
        let pattern_path = base.join(pattern).to_string_lossy().into_owned();
        glob::glob(&pattern_path)
            .map_err(|e| InferError::Glob {
                pattern: pattern.to_string(),
                message: e.to_string(),
            })?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect()
    };
    found.sort();
    Ok(found)
}

/// The model directory: `model`, or the one in the single dep's artifact.
fn model_dir(p: &Params, ctx: &StageContext<'_>) -> Result<ModelDir, InferError> {
    match (&p.model, ctx.deps.len()) {
        (Some(m), 0) => {
            Ok(ModelSource::in_pipeline(m, ctx.pipeline_dir).resolve(&HubOptions::from_env())?)
        }
        (None, 1) => {
            let (name, dep) = ctx.deps.iter().next().ok_or(InferError::NoModel)?;
            ModelDir::in_artifact(&dep.dir).map_err(|e| match e {
                HubError::NoModelInArtifact { dir } => InferError::DepWithoutModel {
                    dep: name.clone(),
                    dir,
                },
                other => other.into(),
            })
        }
        (None, 0) => Err(InferError::NoModel),
        (Some(_), n) => Err(InferError::AmbiguousModel(format!(
            "`model` and {n} dep(s)"
        ))),
        (None, n) => Err(InferError::AmbiguousModel(format!("{n} deps"))),
    }
}

fn run(ctx: &StageContext<'_>) -> Result<Outcome, InferError> {
    let p = Params::parse(ctx.params)?;
    let images = list_images(&p.images, ctx.pipeline_dir)?;
    let model = model_dir(&p, ctx)?;
    let backend = resolve_on(ctx.backend, ctx.device())?;
    tracing::info!(images = images.len(), model = %model.dir.display(), backend = %backend, "captioning");

    let start = Instant::now();
    ctx.progress
        .begin_items("captioning", images.len() as u64, "images");
    let captions: Vec<String> = caption_with(
        &backend,
        &model,
        &images,
        &CaptionSettings {
            generation: p.decode.generation(),
            prompt: p.prompt.clone(),
            batch_size: p.batch_size,
        },
        ctx.progress,
    )?
    .into_iter()
    .map(|c| c.text)
    .collect();
    let seconds = start.elapsed().as_secs_f64();

    let names: Vec<String> = images
        .iter()
        .map(|i| pipe_stage_api::project_relative(i, ctx.pipeline_dir))
        .collect();
    write_outputs(ctx.out_dir, &images, &names, &captions, p.gallery)?;

    let mut outcome = Outcome::default();
    let m = &mut outcome.metrics;
    m.insert("images".into(), images.len().into());
    m.insert("seconds".into(), seconds.into());
    m.insert(
        "captions_per_s".into(),
        (images.len() as f64 / seconds.max(1e-9)).into(),
    );
    m.insert("backend".into(), backend.describe().into());
    outcome.results = ["captions.jsonl", "captions.csv", "gallery.html", "gallery"]
        .iter()
        .map(PathBuf::from)
        .collect();
    Ok(outcome)
}

/// How to caption: decoding options, an optional prompt, images per model call.
#[derive(Debug, Clone)]
pub struct CaptionSettings {
    pub generation: GenerationConfig,
    /// Text every caption starts with (e.g. "a picture of"), kept in the caption.
    pub prompt: Option<String>,
    pub batch_size: usize,
}

/// Caption image files with a model on a backend: what the infer stage does. Images are decoded
/// and preprocessed exactly as the collate stage does it; the first that cannot be is an error.
pub fn caption_files(
    model: &ModelDir,
    images: &[PathBuf],
    settings: &CaptionSettings,
    backend: BackendChoice,
    progress: &dyn Progress,
) -> Result<Vec<Caption>, InferError> {
    caption_with(&resolve(backend)?, model, images, settings, progress)
}

/// An image [`caption_files_skipping`] left out: it could not be read or decoded.
pub type Skipped = CollateError;

/// Told of an image that is skipped, and why.
type OnSkip<'a> = &'a dyn Fn(&Path, &Skipped);

/// [`caption_files`] that skips, rather than fails on, an image that cannot be read or decoded
/// (what `pipe caption` does): `skipped` is told of each as it happens, progress advances past
/// it, and the batches are filled with the next images. The result holds each image's caption
/// or why it was skipped, in the order of `images`.
pub fn caption_files_skipping(
    model: &ModelDir,
    images: &[PathBuf],
    settings: &CaptionSettings,
    backend: BackendChoice,
    progress: &dyn Progress,
    skipped: &dyn Fn(&Path, &Skipped),
) -> Result<Vec<Result<Caption, Skipped>>, InferError> {
    run_job(
        &resolve(backend)?,
        model,
        images,
        settings,
        progress,
        Some(skipped),
    )
}

fn caption_with(
    backend: &ResolvedBackend,
    model: &ModelDir,
    images: &[PathBuf],
    settings: &CaptionSettings,
    progress: &dyn Progress,
) -> Result<Vec<Caption>, InferError> {
    // Without a `skipped`, the job stops at the first bad image: every entry is a caption.
    let results = run_job(backend, model, images, settings, progress, None)?;
    Ok(results.into_iter().collect::<Result<Vec<_>, _>>()?)
}

fn run_job(
    backend: &ResolvedBackend,
    model: &ModelDir,
    images: &[PathBuf],
    settings: &CaptionSettings,
    progress: &dyn Progress,
    skipped: Option<OnSkip<'_>>,
) -> Result<Vec<Result<Caption, Skipped>>, InferError> {
    let pre_path = model.dir.join("preprocessor_config.json");
    let pre = PreprocessorConfig::from_file(&pre_path)?;
    backend.run(CaptionJob {
        model,
        pre: &pre,
        pre_path: &pre_path,
        images,
        settings,
        progress,
        skipped,
    })
}

/// The part that runs on the chosen backend.
struct CaptionJob<'a> {
    model: &'a ModelDir,
    pre: &'a PreprocessorConfig,
    pre_path: &'a Path,
    images: &'a [PathBuf],
    settings: &'a CaptionSettings,
    progress: &'a dyn Progress,
    /// Told of an image that cannot be read, which is then skipped; `None`: it is an error.
    skipped: Option<OnSkip<'a>>,
}

impl OnBackend for CaptionJob<'_> {
    type Output = Result<Vec<Result<Caption, Skipped>>, InferError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let captioner = Captioner::<B>::load(&self.model.dir, &device)?;
        let side = captioner.image_size();
        let (h, w) = (self.pre.size.height as usize, self.pre.size.width as usize);
        if h != side || w != side {
            return Err(InferError::Preprocessor {
                path: self.pre_path.display().to_string(),
                what: format!("size {h}x{w}, but the model takes {side}x{side} images"),
            });
        }
        let mut g = self.settings.generation.clone();
        if let Some(prompt) = &self.settings.prompt {
            g.prompt_ids = captioner.prompt_ids(prompt)?;
        }
        let batch_size = self.settings.batch_size.max(1);
        let mut out: Vec<Option<Result<Caption, Skipped>>> = std::iter::repeat_with(|| None)
            .take(self.images.len())
            .collect();
        // The images of the batch being filled (their indices) and their pixels, [b, 3, S, S]:
        // each image decoded and preprocessed as the collate stage does it.
        let mut pending: Vec<usize> = Vec::with_capacity(batch_size);
        let mut pixels = Vec::new();
        let (mut batches, mut captioned) = (0usize, 0usize);
        for (i, path) in self.images.iter().enumerate() {
            match preprocess_file(path, self.pre) {
                Ok(p) => {
                    pixels.extend(p);
                    pending.push(i);
                }
                Err(e) => match self.skipped {
                    Some(tell) => {
                        tell(path, &e);
                        out[i] = Some(Err(e));
                        self.progress.advance(1);
                    }
                    None => return Err(e.into()),
                },
            }
            let last = i + 1 == self.images.len();
            if pending.len() == batch_size || (last && !pending.is_empty()) {
                let data = TensorData::new(std::mem::take(&mut pixels), [pending.len(), 3, h, w]);
                let captions = captioner.caption(Tensor::<B, 4>::from_data(data, &device), &g)?;
                self.progress.advance(pending.len() as u64);
                captioned += pending.len();
                for (j, caption) in pending.drain(..).zip(captions) {
                    out[j] = Some(Ok(caption));
                }
                tracing::info!(
                    done = captioned,
                    total = self.images.len(),
                    batch = batches,
                    "captioned"
                );
                batches += 1;
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

fn write_outputs(
    out: &Path,
    images: &[PathBuf],
    names: &[String],
    captions: &[String],
    gallery: usize,
) -> Result<(), InferError> {
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| InferError::Write {
            path: path.display().to_string(),
            source,
        })
    };
    let mut jsonl = String::new();
    let mut csv = String::from("image,caption\n");
    for (name, caption) in names.iter().zip(captions) {
        let line = serde_json::json!({ "image": name, "caption": caption });
        let _ = writeln!(jsonl, "{line}");
        let _ = writeln!(csv, "{},{}", csv_field(name), csv_field(caption));
    }
    write("captions.jsonl", &jsonl)?;
    write("captions.csv", &csv)?;

    // The gallery shows copies, so results/ never points outside the artifact.
    let dir = out.join("gallery");
    std::fs::create_dir_all(&dir).map_err(|source| InferError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let mut html = String::from(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>captions</title>\n<style>\
         body{font-family:sans-serif;margin:1em}figure{display:inline-block;width:320px;\
         margin:8px;vertical-align:top}img{display:block;width:320px;height:320px;\
         object-fit:contain;background:#f4f4f4}figcaption{font-size:15px;margin-top:4px}\
         </style>\n",
    );
    for (i, ((path, name), caption)) in images
        .iter()
        .zip(names)
        .zip(captions)
        .take(gallery)
        .enumerate()
    {
        let file = format!(
            "{i:05}.{}",
            path.extension()
                .and_then(|e| e.to_str())
                .unwrap_or("img")
                .to_ascii_lowercase()
        );
        let target = dir.join(&file);
        std::fs::copy(path, &target).map_err(|source| InferError::Write {
            path: target.display().to_string(),
            source,
        })?;
        let _ = writeln!(
            html,
            "<figure><img src=\"gallery/{file}\" alt=\"{a}\"><figcaption>{c}<br><small>{a}</small></figcaption></figure>",
            a = html_escape(name),
            c = html_escape(caption)
        );
    }
    if images.len() > gallery {
        let _ = writeln!(
            html,
            "<p>{} more in captions.jsonl</p>",
            images.len() - gallery
        );
    }
    write("gallery.html", &html)
}

/// RFC 4180: quote when needed, double inner quotes.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_images_lists_a_folder_s_images_or_a_glob_s_files_sorted() {
        let d = tempfile::tempdir().expect("tempdir");
        let photos = d.path().join("photos");
        std::fs::create_dir_all(photos.join("sub")).expect("mkdir");
        for f in ["b.png", "a.JPG", "notes.txt", "sub/c.png"] {
            std::fs::write(photos.join(f), "x").expect("write");
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| pipe_stage_api::project_relative(p, d.path()))
                .collect()
        };
        // A folder: its image files only, not its subfolders.
        let found = find_images("photos", d.path()).expect("folder");
        assert_eq!(names(found), ["photos/a.JPG", "photos/b.png"]);
        // A glob: whatever it matches that is a file.
        let found = find_images("photos/*.txt", d.path()).expect("glob");
        assert_eq!(names(found), ["photos/notes.txt"]);
        let found = find_images("photos/*/*.png", d.path()).expect("glob");
        assert_eq!(names(found), ["photos/sub/c.png"]);
        // Nothing: empty here, an error for the stage (which names its key).
        assert!(
            find_images("photos/*.gif", d.path())
                .expect("glob")
                .is_empty()
        );
        let e = list_images("photos/*.gif", d.path()).expect_err("no image");
        assert_eq!(e.to_string(), "images = \"photos/*.gif\" matches no image");
        assert!(matches!(
            find_images("photos/[", d.path()),
            Err(InferError::Glob { .. })
        ));
    }

    #[test]
    fn the_gallery_escapes_names_and_captions_and_stops_at_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images: Vec<PathBuf> = ["it's.png", "b.png"]
            .iter()
            .map(|n| {
                let p = dir.path().join(n);
                std::fs::write(&p, b"not read, only copied").expect("image");
                p
            })
            .collect();
        let names = vec!["it's.png".to_string(), "b.png".to_string()];
        let captions = vec![
            "a <b>dog</b> & a cat's \"toy\"".to_string(),
            "second".to_string(),
        ];
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("out");
        write_outputs(&out, &images, &names, &captions, 1).expect("writes");
        let html = std::fs::read_to_string(out.join("gallery.html")).expect("html");
        assert!(
            html.contains("alt=\"it&#39;s.png\""),
            "the name in the attribute: {html}"
        );
        assert!(
            html.contains("a &lt;b&gt;dog&lt;/b&gt; &amp; a cat&#39;s &quot;toy&quot;"),
            "{html}"
        );
        assert!(!html.contains("<b>") && !html.contains("it's"), "{html}");
        assert_eq!(html.matches("<figure>").count(), 1);
        assert!(html.contains("<p>1 more in captions.jsonl</p>"), "{html}");
        assert!(out.join("gallery/00000.png").is_file());
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a dog"), "a dog");
        assert_eq!(csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
    }

    #[test]
    fn params_reject_unknown_and_bad_values() {
        let t: toml::Table = toml::from_str("images = \"x\"\nnum_beam = 3").expect("toml");
        let e = Infer.check(&t).expect_err("typo");
        assert_eq!(e.path, vec!["num_beam".to_string()]);
        let t: toml::Table = toml::from_str("images = \"x\"\nnum_beams = 0").expect("toml");
        assert!(Infer.check(&t).is_err());
        assert_eq!(Infer.check(&t).expect_err("0 beams").path, ["num_beams"]);
        let e = Infer.check(&t).expect_err("0 beams");
        assert_eq!(e.message, "num_beams must be at least 1");
        let t: toml::Table =
            toml::from_str("images = \"x\"\nearly_stopping = \"never\"").expect("toml");
        assert!(Infer.check(&t).is_ok());
    }
}
