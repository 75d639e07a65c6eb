//! `pipe score`: the COCO caption metrics on a predictions file and a references file.

use std::path::PathBuf;

use pipe_metrics::{Keys, LeftOut, MeteorMode, MeteorOptions, ScoreOptions};

use super::{CliError, Exit};

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// JSONL, one `{"image": ID, "caption": TEXT}` per line (what `pipe caption --jsonl`
    /// writes), or the COCO results format, one JSON array `[{"image_id": ID, "caption": TEXT}]`.
    /// Told by content.
    #[arg(long)]
    predictions: PathBuf,
    /// JSONL, one `{"image": ID, "captions": [TEXT, …]}` per line, or the COCO annotations
    /// format, `{"images": [...], "annotations": [{"image_id": ID, "caption": TEXT}, …]}`
    /// (an image's references are its annotations). Told by content.
    #[arg(long)]
    references: PathBuf,
    /// Score only the images that have both a prediction and references, with one warning
    /// saying how many were left out (default: any image on one side only is an error).
    #[arg(long)]
    allow_missing: bool,
    /// Metric names in the JSON keys and the table: pipe's (BLEU-4, ROUGE-L) or pycocoevalcap's
    /// (Bleu_4, ROUGE_L). The METEOR approximation is METEOR~approx in both.
    #[arg(long, value_enum, default_value = "pipe")]
    keys: KeyNames,
    /// METEOR: the official jar if found (auto), only the jar (official), the labelled native
    /// approximation (approx), or none (skip).
    #[arg(long, value_enum, default_value = "auto")]
    meteor: Meteor,
    /// Path of meteor-1.5.jar (default: the one in an installed pycocoevalcap, if any).
    #[arg(long)]
    meteor_jar: Option<PathBuf>,
    /// Skip the single-reference table.
    #[arg(long)]
    no_single_ref: bool,
    /// One JSON object: BLEU-1..4, METEOR (or METEOR~approx), ROUGE-L, CIDEr (named as --keys
    /// says), and with --allow-missing `left_out`: how many images had no prediction
    /// (`no_prediction`) or no references (`no_references`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Meteor {
    /// The official jar if found, else the approximation, labelled METEOR~approx.
    Auto,
    /// The official jar, or an error.
    Official,
    /// The native approximation, labelled METEOR~approx.
    Approx,
    /// No METEOR.
    Skip,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KeyNames {
    /// BLEU-1..BLEU-4, METEOR, ROUGE-L, CIDEr.
    Pipe,
    /// Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr, as pycocoevalcap's COCOEvalCap.
    Coco,
}

/// First few ids of a list, for the warning.
fn some_ids(ids: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = pipe_metrics::quoted_ids(ids, SHOWN);
    if ids.len() > SHOWN {
        s.push_str(", …");
    }
    s
}

/// The one warning of `--allow-missing` when it left images out.
fn warn_left_out(left_out: &LeftOut, scored: usize) {
    let mut parts = Vec::new();
    if !left_out.unpredicted.is_empty() {
        parts.push(format!(
            "{} with references but no prediction ({})",
            left_out.unpredicted.len(),
            some_ids(&left_out.unpredicted)
        ));
    }
    if !left_out.unreferenced.is_empty() {
        parts.push(format!(
            "{} with a prediction but no references ({})",
            left_out.unreferenced.len(),
            some_ids(&left_out.unreferenced)
        ));
    }
    tracing::warn!(
        "--allow-missing: scored the {scored} image(s) with both; left out {}: {}",
        left_out.len(),
        parts.join("; ")
    );
}

pub fn run(args: &ScoreArgs) -> Result<Exit, CliError> {
    let mode = match args.meteor {
        Meteor::Auto => MeteorMode::Auto,
        Meteor::Official => MeteorMode::Official,
        Meteor::Approx => MeteorMode::Approximate,
        Meteor::Skip => MeteorMode::Skip,
    };
    let keys = match args.keys {
        KeyNames::Pipe => Keys::Pipe,
        KeyNames::Coco => Keys::Coco,
    };
    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: args.meteor_jar.clone(),
            mode,
        },
        single_ref: !args.no_single_ref,
    };
    let mut preds = pipe_metrics::read_predictions(&args.predictions)?;
    let mut refs = pipe_metrics::read_references(&args.references)?;
    let left_out = if args.allow_missing {
        let left_out = pipe_metrics::keep_common(&mut preds, &mut refs)?;
        if !left_out.is_empty() {
            warn_left_out(&left_out, preds.len());
        }
        Some(left_out)
    } else {
        None
    };
    let report = pipe_metrics::score(&preds, &refs, &opts)?;
    if args.json {
        let mut json = report.to_json_keys(keys);
        if let (Some(left_out), Some(m)) = (&left_out, json.as_object_mut()) {
            m.insert(
                "left_out".into(),
                serde_json::json!({
                    "no_prediction": left_out.unpredicted.len(),
                    "no_references": left_out.unreferenced.len(),
                }),
            );
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        out!("{}", report.to_text_keys(keys));
    }
    Ok(Exit::Ok)
}
