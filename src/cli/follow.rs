//! `pipe show STAGE --follow`: watch a stage that a run (in another terminal, or a Slurm job)
//! is producing, from the numbers it streams to its work dir's `metrics.jsonl`, until its
//! artifact is published.

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use pipe::cache::{Cache, Taken, short};
use pipe::plan::StageStatus;
use pipe_train::watch::{METRICS_FILE, sig};

use super::{CliError, Exit};

/// How often the stream is read.
const POLL: Duration = Duration::from_millis(500);
/// How long to wait for a run to begin producing the key before giving up.
const START_GRACE: Duration = Duration::from_secs(15);

pub fn follow(cache: &Cache, status: &StageStatus) -> Result<Exit, CliError> {
    let Some(key) = status.key.clone() else {
        return Err(CliError::Usage(format!(
            "stage `{}` has no key yet (an upstream stage is not fresh): follow it once its \
             upstream stages are done",
            status.name
        )));
    };
    let stream = cache.root().join("work").join(&key).join(METRICS_FILE);
    let (mut offset, mut pending) = (0u64, String::new());
    let started = Instant::now();
    let mut seen_producer = false;
    loop {
        if let Ok(mut file) = std::fs::File::open(&stream)
            && file.seek(SeekFrom::Start(offset)).is_ok()
        {
            let mut more = String::new();
            if let Ok(n) = file.take(16 << 20).read_to_string(&mut more) {
                offset += n as u64;
                pending.push_str(&more);
            }
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                if let Some(shown) = shown(&line) {
                    outln!("{}: {shown}", status.name);
                }
            }
        }
        if let Some(artifact) = cache.artifact(&key) {
            outln!(
                "{}: done ({}, {})",
                status.name,
                short(&key),
                artifact.dir.display()
            );
            return Ok(Exit::Ok);
        }
        let producing = match cache.try_exec_lock(&key, "pipe show --follow") {
            Ok(Taken::Held(_)) => true,
            Ok(Taken::Mine(_released_at_once)) => false,
            Err(e) => return Err(e.into()),
        };
        seen_producer |= producing;
        if !producing && (seen_producer || started.elapsed() > START_GRACE) {
            // Published between the two looks, or the run ended without it.
            if cache.artifact(&key).is_some() {
                continue;
            }
            outln!(
                "{}: no run is producing {} (`pipe run {}` starts one)",
                status.name,
                short(&key),
                status.name
            );
            return Ok(Exit::Failed);
        }
        std::thread::sleep(POLL);
    }
}

/// One line of the stream as a person reads it: epochs and validations (steps are many).
fn shown(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let num = |k: &str| v[k].as_f64().map(sig);
    let best = match (num("best_val_loss"), v["best_epoch"].as_u64()) {
        (Some(b), Some(e)) => format!(" · best {b} @ep{e}"),
        _ => String::new(),
    };
    match v["event"].as_str()? {
        "epoch" => Some(format!(
            "epoch {}/{} · loss {} · val {}{best} · {:.1} s",
            v["epoch"],
            v["epochs"],
            num("train_loss")?,
            num("val_loss").unwrap_or_else(|| "-".into()),
            v["seconds"].as_f64().unwrap_or(f64::NAN),
        )),
        "validation" => Some(format!(
            "step {} (epoch {}) · val {}{best}",
            v["step"],
            v["epoch"],
            num("val_loss")?
        )),
        _ => None,
    }
}
