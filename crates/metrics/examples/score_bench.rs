//! Scores a prediction/reference JSONL pair and prints the report and the
//! wall time (used by bench/metrics/run.sh).
//!
//!     cargo run --release -p pipe-metrics --example score_bench -- \
//!         PREDS.jsonl REFS.jsonl [--meteor auto|official|approx|skip] [--json] [--no-single]
use std::path::PathBuf;
use std::time::Instant;

use pipe_metrics::{MeteorMode, MeteorOptions, ScoreOptions, score_files};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut files = Vec::new();
    let mut mode = MeteorMode::Skip;
    let mut json = false;
    let mut single_ref = true;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--meteor" => {
                i += 1;
                mode = match args.get(i).map(String::as_str) {
                    Some("auto") => MeteorMode::Auto,
                    Some("official") => MeteorMode::Official,
                    Some("approx") => MeteorMode::Approximate,
                    Some("skip") => MeteorMode::Skip,
                    other => return Err(format!("bad --meteor {other:?}").into()),
                };
            }
            "--json" => json = true,
            "--no-single" => single_ref = false,
            f => files.push(PathBuf::from(f)),
        }
        i += 1;
    }
    let [preds, refs] = files.as_slice() else {
        return Err("usage: score_bench PREDS REFS [--meteor MODE] [--json] [--no-single]".into());
    };
    let opts = ScoreOptions {
        meteor: MeteorOptions { jar: None, mode },
        single_ref,
    };
    let t = Instant::now();
    let report = score_files(preds, refs, &opts)?;
    let secs = t.elapsed().as_secs_f64();
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    eprintln!("pipe-metrics: scored in {secs:.3} s");
    Ok(())
}
