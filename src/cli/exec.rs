//! `pipe exec-stage JOB` (hidden): what a Slurm job runs. It produces exactly the key `pipe run`
//! planned, into the scratch directory named in the job description, and publishes it as a
//! local run would; the submitting `pipe run` holds the key's lock and watches the job.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pipe::cache::{Cache, Scratch, read_json};
use pipe::run::{Job, JobError};

use super::{CliError, Exit};

pub fn exec_stage(file: &Path) -> Result<Exit, CliError> {
    let bad = |why: String| JobError::Description {
        file: file.to_path_buf(),
        why,
    };
    let job: Job = read_json(file).map_err(|e| bad(e.to_string()))?;
    let kind = crate::REGISTRY
        .find(&job.kind)
        .ok_or_else(|| bad(format!("this build has no stage kind `{}`", job.kind)))?;
    let cache = Cache::for_reading(&job.cache_dir);
    // The scratch directory is removed when the stage fails: it must be one of the cache's,
    // made for this key, never anything else.
    let tmp = cache.root().join("tmp");
    let name = job.scratch.file_name().map(|n| n.to_string_lossy());
    let scratch_ok = job.scratch.parent() == Some(tmp.as_path())
        && name.is_some_and(|n| n.starts_with(&format!("{}.", job.key)))
        && job.scratch.is_dir();
    if !scratch_ok {
        return Err(bad(format!(
            "scratch directory {} is not one of {}'s for key {}",
            job.scratch.display(),
            tmp.display(),
            job.key
        ))
        .into());
    }
    let scratch = Scratch {
        out: job.scratch.join("out"),
        dir: job.scratch.clone(),
    };
    tracing::info!(
        "stage `{}` ({}): producing {}",
        job.stage,
        job.kind,
        job.key
    );
    // Slurm makes the job's GPUs the only visible ones: the stage may use all it was given.
    let devices: Vec<usize> = (0..(crate::REGISTRY.devices)(job.backend)).collect();
    let artifact = job.produce(&cache, kind, scratch, &devices, &LogProgress::default())?;
    tracing::info!(
        "stage `{}`: published {} ({} files)",
        job.stage,
        artifact.dir.display(),
        artifact.manifest.files
    );
    Ok(Exit::Ok)
}

/// Progress as log lines (a job's stderr): each phase, and where it stands every 30 s.
#[derive(Default)]
struct LogProgress {
    state: Mutex<Phase>,
}

#[derive(Default)]
struct Phase {
    name: String,
    total: Option<u64>,
    done: u64,
    logged: Option<Instant>,
}

const EVERY: Duration = Duration::from_secs(30);

impl pipe_stage_api::Progress for LogProgress {
    fn begin(&self, phase: &str, total: Option<u64>) {
        let mut p = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *p = Phase {
            name: phase.to_string(),
            total,
            done: 0,
            logged: Some(Instant::now()),
        };
        match total {
            Some(n) => tracing::info!("{phase}: 0/{n}"),
            None => tracing::info!("{phase}"),
        }
    }

    fn note(&self, line: &str) {
        tracing::info!("{line}");
    }

    fn advance(&self, n: u64) {
        let mut p = self.state.lock().unwrap_or_else(|e| e.into_inner());
        p.done += n;
        if p.logged.is_none_or(|t| t.elapsed() >= EVERY) {
            p.logged = Some(Instant::now());
            match p.total {
                Some(total) => tracing::info!("{}: {}/{total}", p.name, p.done),
                None => tracing::info!("{}: {}", p.name, p.done),
            }
        }
    }
}
