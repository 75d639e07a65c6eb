//! The `evaluate` stage kind: which deps are which, the run, the files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pipe_backend::resolve_on;
use pipe_data::collate::Collated;
use pipe_data::prep::{PrepArtifact, Split};
use pipe_features::Features;
use pipe_hub::{HubOptions, ModelDir, ModelSource};
use pipe_stage_api::{
    Outcome, ParamError, StageContext, StageError, StageKind, dep_names, pick_dep,
};

use crate::decode::{Decoded, EvaluateJob};
use crate::error::EvaluateError;
use crate::metrics_md::{PROTOCOLS, metric_rows, metrics_markdown};
use crate::params::Params;
use crate::plot::{LossHistory, draw_loss_plot, loss_plot_svg};
use crate::report_html::{Row, Summary, write_report};

/// The `evaluate` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evaluate;

const LOSS_HISTORY: &str = "loss_history.json";
const PLOT: &str = "train_vs_val_loss.png";

impl StageKind for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }

    fn version(&self) -> u32 {
        1
    }

    fn about(&self) -> &'static str {
        "test loss, beam-search captions and caption metrics on a held-out split (metrics.md, \
         report.html)"
    }

    fn template(&self) -> Option<String> {
        let own = pipe_stage_api::params_template::<Params>(&toml::Table::new()).ok()?;
        let decoding =
            pipe_stage_api::params_template::<pipe_blip::DecodeParams>(&toml::Table::new()).ok()?;
        Some(own + &decoding)
    }

    fn headline(&self) -> &'static [&'static str] {
        &[
            "test_loss",
            "BLEU-4",
            "METEOR",
            "METEOR~approx",
            "ROUGE-L",
            "CIDEr",
        ]
    }

    fn check(&self, params: &toml::Table) -> Result<(), ParamError> {
        Params::parse(params).map(|_| ())
    }

    fn inputs(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
    ) -> Result<Vec<PathBuf>, ParamError> {
        let p = Params::parse(params)?;
        let mut inputs = Vec::new();
        if let Some(model) = &p.model {
            // Not local yet: `pipe run` fetches it first, and the stage says how to get it.
            if let Some(dir) = ModelSource::in_pipeline(model, pipeline_dir).find() {
                inputs.push(dir.dir);
            }
        }
        if let Some(jar) = &p.meteor_jar {
            inputs.push(pipeline_dir.join(jar));
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

/// Where the model and (when it comes from a dep) the loss history are.
struct EvaluatedModel {
    dir: PathBuf,
    /// How the model is named in the outputs.
    label: String,
    loss_history: Option<PathBuf>,
}

fn model_source(p: &Params, ctx: &StageContext<'_>) -> Result<EvaluatedModel, EvaluateError> {
    if let Some(model) = &p.model {
        let dir =
            ModelSource::in_pipeline(model, ctx.pipeline_dir).resolve(&HubOptions::from_env())?;
        return Ok(EvaluatedModel {
            dir: dir.dir,
            label: model.clone(),
            loss_history: None,
        });
    }
    let (name, dep) =
        pick_dep(ctx.deps, "train", p.train.as_deref(), &["train"])?.ok_or_else(|| {
            ParamError::new(
                ["model"],
                format!(
                    "no model: set `model = \"DIR\"` or add a train dep (deps: {})",
                    dep_names(ctx.deps)
                ),
            )
        })?;
    let dir = ModelDir::in_artifact(dep)?.dir;
    let history = [dep.join(LOSS_HISTORY), dir.join(LOSS_HISTORY)]
        .into_iter()
        .find(|h| h.is_file());
    Ok(EvaluatedModel {
        dir,
        label: format!("dep {name}"),
        loss_history: history,
    })
}

/// Every original caption of each evaluated image: from a prep artifact when one is a dep
/// (or named by `prep`), else the collate artifact's copy (it keeps each caption's text as prep
/// wrote it, before tokenization and truncation).
fn references(
    p: &Params,
    ctx: &StageContext<'_>,
    collated: &Collated,
    indices: &[usize],
) -> Result<Vec<Vec<String>>, EvaluateError> {
    let prep = pick_dep(ctx.deps, "prep", p.prep.as_deref(), &["prep"])?;
    let refs: Vec<Vec<String>> = match prep {
        Some((_, dir)) => {
            let prep = PrepArtifact::open(dir, ctx.pipeline_dir)?;
            let by_id: BTreeMap<&str, &Vec<String>> = prep
                .images
                .iter()
                .map(|r| (r.id.as_str(), &r.captions))
                .collect();
            indices
                .iter()
                .map(|&i| {
                    let id = &collated.images[i].id;
                    by_id.get(id.as_str()).map(|c| (*c).clone()).ok_or_else(|| {
                        EvaluateError::MissingReference {
                            id: id.clone(),
                            dir: dir.display().to_string(),
                        }
                    })
                })
                .collect::<Result<_, _>>()?
        }
        None => indices
            .iter()
            .map(|&i| {
                collated
                    .captions(i)
                    .iter()
                    .map(|c| c.text.clone())
                    .collect()
            })
            .collect(),
    };
    for (&i, r) in indices.iter().zip(&refs) {
        if r.is_empty() {
            return Err(EvaluateError::NoReferences {
                id: collated.images[i].id.clone(),
            });
        }
    }
    Ok(refs)
}

/// What an evaluation reads: its params, the collate artifact and the split's images in it,
/// their references, the model and (when a dep holds them) the encoded features.
struct Inputs<'a> {
    p: Params,
    split: Split,
    collate_dir: &'a Path,
    collated: Collated,
    features: Option<Features>,
    indices: Vec<usize>,
    refs: Vec<Vec<String>>,
    model: EvaluatedModel,
}

impl<'a> Inputs<'a> {
    fn gather(ctx: &StageContext<'a>) -> Result<Self, EvaluateError> {
        let p = Params::parse(ctx.params)?;
        let split = p.split()?;
        let (_, collate_dir) = pick_dep(ctx.deps, "collate", p.collate.as_deref(), &["collate"])?
            .ok_or_else(|| {
            ParamError::new(
                ["collate"],
                format!(
                    "evaluate needs a collate dep (deps: {})",
                    dep_names(ctx.deps)
                ),
            )
        })?;
        let model = model_source(&p, ctx)?;
        let collated = Collated::open(collate_dir)?;
        let features = pick_dep(ctx.deps, "encode", p.encode.as_deref(), &["encode"])?
            .map(|(_, dir)| Features::open(dir))
            .transpose()?;
        let indices = collated.split_indices(split);
        if indices.is_empty() {
            return Err(EvaluateError::EmptySplit {
                split: split.to_string(),
                dir: collate_dir.display().to_string(),
            });
        }
        let refs = references(&p, ctx, &collated, &indices)?;
        Ok(Self {
            p,
            split,
            collate_dir,
            collated,
            features,
            indices,
            refs,
            model,
        })
    }

    /// The evaluated images' ids, in the split's order.
    fn ids(&self) -> Vec<&str> {
        self.indices
            .iter()
            .map(|&i| self.collated.images[i].id.as_str())
            .collect()
    }
}

fn run(ctx: &StageContext<'_>) -> Result<Outcome, EvaluateError> {
    let inputs = Inputs::gather(ctx)?;
    let backend = resolve_on(ctx.backend, ctx.device())?;
    tracing::info!(
        images = inputs.indices.len(),
        split = %inputs.split,
        model = %inputs.model.dir.display(),
        backend = %backend,
        "evaluating"
    );
    let start = std::time::Instant::now();
    let decoded = backend.run(EvaluateJob {
        model_dir: &inputs.model.dir,
        collated: &inputs.collated,
        indices: &inputs.indices,
        generation: inputs.p.generation(),
        batch_size: inputs.p.batch_size,
        progress: ctx.progress,
        features: inputs.features.as_ref(),
        collate_dir: inputs.collate_dir,
    })?;
    let seconds = start.elapsed().as_secs_f64();

    let ids = inputs.ids();
    write_predictions(ctx.out_dir, &ids, &decoded.captions, &inputs.refs)?;
    ctx.progress.begin("scoring", None);
    let report = score(
        &ids,
        &decoded.captions,
        &inputs.refs,
        &inputs.p.score_options(ctx.pipeline_dir),
    )?;
    let json = metrics_json(&inputs, &report, &decoded, &backend.describe(), seconds);
    let mut text =
        serde_json::to_string_pretty(&serde_json::Value::Object(json.clone())).unwrap_or_default();
    text.push('\n');
    write(ctx.out_dir, "metrics.json", &text)?;
    let test_loss = decoded.loss.mean();
    let md = metrics_markdown(
        &report,
        test_loss,
        inputs.split.as_str(),
        &inputs.model.label,
    );
    write(ctx.out_dir, "metrics.md", &md)?;

    let mut results: Vec<PathBuf> = vec![
        "metrics.md".into(),
        "metrics.json".into(),
        "predictions.jsonl".into(),
        "references.jsonl".into(),
    ];
    // The loss plot, when the model came with a history: a PNG, and SVG for the report.
    let mut loss_svg = None;
    if let Some(h) = &inputs.model.loss_history {
        let history = LossHistory::read(h)?;
        if draw_loss_plot(&history, &ctx.out_dir.join(PLOT))? {
            results.push(PLOT.into());
        }
        loss_svg = loss_plot_svg(&history)?;
    }
    let page = Page {
        collated: &inputs.collated,
        indices: &inputs.indices,
        ids: &ids,
        captions: &decoded.captions,
        refs: &inputs.refs,
    };
    write_html_report(
        ctx.out_dir,
        &page,
        &report,
        test_loss,
        &inputs,
        loss_svg.as_deref(),
    )?;
    results.push("report.html".into());
    results.push("report".into());

    tracing::info!(
        test_loss = ?test_loss,
        bleu4 = report.multi_ref.bleu[3],
        cider = report.multi_ref.cider,
        "evaluated"
    );
    Ok(outcome(results, &json, test_loss, inputs.indices.len()))
}

/// `metrics.json`: every score, the test loss, and what was evaluated how.
fn metrics_json(
    inputs: &Inputs<'_>,
    report: &pipe_metrics::Report,
    decoded: &Decoded,
    backend: &str,
    seconds: f64,
) -> serde_json::Map<String, serde_json::Value> {
    let mut json = match report.to_json() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    json.insert("test_loss".into(), decoded.loss.mean().into());
    json.insert("test_loss_tokens".into(), decoded.loss.tokens().into());
    json.insert("split".into(), inputs.split.as_str().into());
    json.insert("model".into(), inputs.model.label.clone().into());
    json.insert("decoding".into(), inputs.p.decoding_json());
    json.insert("prompt".into(), inputs.collated.meta.prompt.clone().into());
    json.insert("backend".into(), backend.into());
    json.insert("seconds".into(), seconds.into());
    json
}

/// What the manifest records: the headline scores, the test loss and the image count.
fn outcome(
    results: Vec<PathBuf>,
    json: &serde_json::Map<String, serde_json::Value>,
    test_loss: Option<f64>,
    images: usize,
) -> Outcome {
    let mut outcome = Outcome {
        results,
        ..Outcome::default()
    };
    let m = &mut outcome.metrics;
    m.insert("test_loss".into(), test_loss.into());
    for key in ["BLEU-4", "METEOR", "METEOR~approx", "ROUGE-L", "CIDEr"] {
        if let Some(v) = json.get(key) {
            m.insert(key.into(), v.clone());
        }
    }
    m.insert("images".into(), images.into());
    outcome
}

/// `predictions.jsonl` and `references.jsonl`, in the split's order.
fn write_predictions(
    out_dir: &Path,
    ids: &[&str],
    captions: &[String],
    refs: &[Vec<String>],
) -> Result<(), EvaluateError> {
    let mut preds_jsonl = String::new();
    let mut refs_jsonl = String::new();
    for ((id, caption), r) in ids.iter().zip(captions).zip(refs) {
        let _ = writeln!(
            preds_jsonl,
            "{}",
            serde_json::json!({ "image": id, "caption": caption })
        );
        let _ = writeln!(
            refs_jsonl,
            "{}",
            serde_json::json!({ "image": id, "captions": r })
        );
    }
    write(out_dir, "predictions.jsonl", &preds_jsonl)?;
    write(out_dir, "references.jsonl", &refs_jsonl)
}

/// Every caption metric of the predictions against their references.
fn score(
    ids: &[&str],
    captions: &[String],
    refs: &[Vec<String>],
    options: &pipe_metrics::ScoreOptions,
) -> Result<pipe_metrics::Report, EvaluateError> {
    let pred_map: BTreeMap<String, String> = ids
        .iter()
        .map(|s| s.to_string())
        .zip(captions.iter().cloned())
        .collect();
    let ref_map: BTreeMap<String, Vec<String>> = ids
        .iter()
        .map(|s| s.to_string())
        .zip(refs.iter().cloned())
        .collect();
    Ok(pipe_metrics::score(&pred_map, &ref_map, options)?)
}

/// The evaluated images with their captions, for the HTML report.
struct Page<'a> {
    collated: &'a Collated,
    indices: &'a [usize],
    ids: &'a [&'a str],
    captions: &'a [String],
    refs: &'a [Vec<String>],
}

/// `report.html`: the metrics table, the loss plot, and each image with its prediction,
/// references and CIDEr-D.
fn write_html_report(
    out_dir: &Path,
    page: &Page<'_>,
    report: &pipe_metrics::Report,
    test_loss: Option<f64>,
    inputs: &Inputs<'_>,
    loss_svg: Option<&str>,
) -> Result<(), EvaluateError> {
    let (h, w) = page.collated.image_size();
    let cider = report.per_image_cider();
    let mut rows = Vec::with_capacity(page.indices.len());
    for (k, &i) in page.indices.iter().enumerate() {
        rows.push(Row {
            id: page.ids[k],
            prediction: &page.captions[k],
            references: &page.refs[k],
            cider: cider.get(page.ids[k]).copied().unwrap_or(0.0),
            rgb: page.collated.rgb8(i)?,
            width: w,
            height: h,
        });
    }
    let split = inputs.split.as_str();
    let title = format!("Evaluation on the {split} split");
    let about = format!(
        "Model: {}. {} images, {} reference captions.",
        inputs.model.label, report.images, report.references
    );
    let mut notes = vec![PROTOCOLS.to_string()];
    if !matches!(
        report.meteor_source,
        pipe_metrics::MeteorSource::NotComputed
    ) {
        notes.push(format!("METEOR: {}.", report.meteor_source.describe()));
    }
    let summary = Summary {
        title: &title,
        about: &about,
        metrics: &metric_rows(report, test_loss),
        notes: &notes,
        loss_svg,
    };
    write_report(out_dir, &rows, &summary)?;
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), EvaluateError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(EvaluateError::write(&path))
}
