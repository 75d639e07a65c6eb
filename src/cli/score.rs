//! `pipe score`: the COCO caption metrics on a predictions file and a references file.

use std::path::PathBuf;

use pipe_metrics::{MeteorMode, MeteorOptions, ScoreOptions};

use super::{CliError, Exit};

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// JSONL, one `{"image": ID, "caption": TEXT}` per line.
    #[arg(long)]
    predictions: PathBuf,
    /// JSONL, one `{"image": ID, "captions": [TEXT, …]}` per line.
    #[arg(long)]
    references: PathBuf,
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
    /// One JSON object: BLEU-1..4, METEOR (or METEOR~approx), ROUGE-L, CIDEr.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Meteor {
    Auto,
    Official,
    Approx,
    Skip,
}

pub fn run(args: &ScoreArgs) -> Result<Exit, CliError> {
    let mode = match args.meteor {
        Meteor::Auto => MeteorMode::Auto,
        Meteor::Official => MeteorMode::Official,
        Meteor::Approx => MeteorMode::Approximate,
        Meteor::Skip => MeteorMode::Skip,
    };
    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: args.meteor_jar.clone(),
            mode,
        },
        single_ref: !args.no_single_ref,
    };
    let report = pipe_metrics::score_files(&args.predictions, &args.references, &opts)?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        );
    } else {
        out!("{}", report.to_text());
    }
    Ok(Exit::Ok)
}
