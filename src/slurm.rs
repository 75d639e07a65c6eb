//! Stages as Slurm jobs. `pipe run` plans as always; a stage that must execute is written as a
//! [`Job`] into a job directory beside its scratch directory, submitted with `sbatch
//! --parsable` as a job that runs `pipe exec-stage JOB` (the same binary), and watched with
//! `scontrol show job` until it ends. The job builds the artifact in the scratch directory and
//! publishes it by atomic rename, exactly as a local run does; the submitter holds the key's
//! execution lock all the while, so two submitters never run one key twice. The cache must be
//! on a filesystem the nodes share.
//!
//! Slurm is driven through its commands (sbatch, scontrol, scancel), as its users do: no
//! accounting database is assumed. A SIGINT or SIGTERM to `pipe run` cancels every job it has
//! in flight before the process exits.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use crate::spec::{Executor, Resources};

/// How often a job's state is asked for.
const POLL: Duration = Duration::from_millis(1000);
/// The longest one Slurm command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed state queries in a row after which the job is given up (and cancelled).
const MAX_QUERY_FAILURES: u32 = 60;
/// How much of a failed job's stderr a message shows.
const TAIL_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "`{command}` is not on PATH: the Slurm executor submits stages with sbatch and watches them \
         with scontrol (install Slurm's client commands here, or run with `--executor local`)"
    )]
    NotInstalled { command: &'static str },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not answer within {secs} s")]
    Timeout { command: String, secs: u64 },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sbatch printed `{0}`, not a job id")]
    NoJobId(String),
    #[error("Slurm job {id} {what}{tail}")]
    Ended { id: u64, what: String, tail: String },
    #[error("cannot write the job description {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A job's state, as `scontrol show job` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`…
    pub state: String,
    pub reason: String,
    /// `N:S`: the exit code and the signal that ended it.
    pub exit_code: String,
    pub nodes: String,
}

impl JobInfo {
    /// Parse one job from `scontrol show job -o ID` (one `Key=Value` line).
    pub fn parse(line: &str) -> Option<Self> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_default()
                .to_string()
        };
        let state = field("JobState");
        (!state.is_empty()).then(|| Self {
            state,
            reason: field("Reason"),
            exit_code: field("ExitCode"),
            nodes: field("NodeList"),
        })
    }

    /// Whether the job can change no more.
    pub fn ended(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "CONFIGURING"
                | "RUNNING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "STOPPED"
        )
    }

    /// Ended through no fault of the stage: worth submitting again.
    pub fn retryable(&self) -> bool {
        matches!(self.state.as_str(), "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL")
    }

    /// What the progress display says while the job is queued or running.
    pub fn shown(&self, id: u64) -> String {
        match self.state.as_str() {
            "PENDING" if !self.reason.is_empty() && self.reason != "None" => {
                format!("slurm job {id}: pending ({})", self.reason)
            }
            "RUNNING" if !self.nodes.is_empty() => {
                format!("slurm job {id}: running on {}", self.nodes)
            }
            other => format!("slurm job {id}: {}", other.to_lowercase()),
        }
    }

    /// How an ended job that published nothing ended, in words.
    pub fn why(&self, resources: &Resources) -> String {
        let code = self.exit_code.split(':').next().unwrap_or("?");
        match self.state.as_str() {
            "FAILED" => format!("failed (exit code {code})"),
            "CANCELLED" => "was cancelled (scancel, or an administrator)".to_string(),
            "TIMEOUT" => format!(
                "hit its time limit{}",
                resources
                    .time
                    .as_ref()
                    .map_or(String::new(), |t| format!(" (resources.time = \"{t}\")"))
            ),
            "OUT_OF_MEMORY" => format!(
                "ran out of memory{}",
                resources
                    .mem
                    .as_ref()
                    .map_or(String::new(), |m| format!(" (resources.mem = \"{m}\")"))
            ),
            "PREEMPTED" => "was preempted".to_string(),
            "NODE_FAIL" => format!("lost its node ({})", self.nodes),
            "BOOT_FAIL" => "could not start: its node failed to boot".to_string(),
            "DEADLINE" => "missed its deadline".to_string(),
            "COMPLETED" => "completed but published no artifact".to_string(),
            other => format!("ended {}", other.to_lowercase()),
        }
    }
}

/// What one submission asks sbatch for.
pub struct Submission<'a> {
    pub executor: &'a Executor,
    pub resources: &'a Resources,
    /// GPUs when `resources.gpus` is unset.
    pub default_gpus: u32,
    pub job_name: &'a str,
    /// Where the job starts (the pipeline's directory).
    pub chdir: &'a Path,
    /// The job directory: `job.sh`, `slurm.out`, `slurm.err`.
    pub dir: &'a Path,
}

impl Submission<'_> {
    /// sbatch's arguments: pipe's own, then `[executor]`'s, the resources, the extra arguments.
    pub fn args(&self) -> Vec<String> {
        let e = self.executor;
        let r = self.resources;
        let mut args = vec![
            "--parsable".to_string(),
            "--no-requeue".to_string(),
            format!("--job-name={}", self.job_name),
            format!("--chdir={}", self.chdir.display()),
            format!("--output={}", self.dir.join("slurm.out").display()),
            format!("--error={}", self.dir.join("slurm.err").display()),
        ];
        let named = [
            ("partition", &e.partition),
            ("account", &e.account),
            ("qos", &e.qos),
            ("mem", &r.mem),
            ("time", &r.time),
        ];
        args.extend(
            named
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("--{k}={v}"))),
        );
        if let Some(cpus) = r.cpus {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        let gpus = r.gpus.unwrap_or(self.default_gpus);
        if gpus > 0 {
            args.push(format!("--gpus={gpus}"));
        }
        args.extend(e.sbatch_args.iter().cloned());
        args.push(self.dir.join("job.sh").display().to_string());
        args
    }
}

/// Write `job.sh` (runs `pipe -v exec-stage JOB_FILE`) into the job directory.
pub fn write_script(dir: &Path, job_file: &Path) -> Result<(), SlurmError> {
    let exe = std::env::current_exe().map_err(|source| SlurmError::Write {
        path: dir.join("job.sh"),
        source,
    })?;
    let script = format!(
        "#!/bin/sh\n# Written by `pipe run`: produce one stage key, as a local run would.\nexec {} -v exec-stage {}\n",
        sh_quote(&exe.display().to_string()),
        sh_quote(&job_file.display().to_string())
    );
    let path = dir.join("job.sh");
    std::fs::write(&path, script).map_err(|source| SlurmError::Write { path, source })
}

/// `s` as one POSIX shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Submit; the job id.
pub fn submit(sub: &Submission) -> Result<u64, SlurmError> {
    let out = run("sbatch", &sub.args())?;
    // --parsable: `ID` or `ID;CLUSTER`.
    let first = out.lines().next().unwrap_or_default().trim();
    let id = first.split(';').next().unwrap_or_default();
    let id = id.parse().map_err(|_| SlurmError::NoJobId(first.into()))?;
    in_flight().insert(id);
    cancel_on_signal();
    Ok(id)
}

/// The job's state; `None` once Slurm has forgotten it (`MinJobAge` after it ended).
pub fn query(id: u64) -> Result<Option<JobInfo>, SlurmError> {
    match run(
        "scontrol",
        &["show".into(), "job".into(), "-o".into(), id.to_string()],
    ) {
        Ok(out) => Ok(JobInfo::parse(&out)),
        Err(SlurmError::Command { stderr, .. }) if stderr.contains("Invalid job id") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Watch job `id` until it ends, telling `shown` of each change; its final state (`None`
/// when Slurm forgot it before a poll saw it end).
pub fn wait(id: u64, shown: &dyn Fn(&str)) -> Result<Option<JobInfo>, SlurmError> {
    let mut failures = 0;
    let mut last = String::new();
    let result = loop {
        std::thread::sleep(POLL);
        match query(id) {
            Ok(Some(info)) => {
                failures = 0;
                if info.ended() {
                    break Ok(Some(info));
                }
                let now = info.shown(id);
                if now != last {
                    shown(&now);
                    last = now;
                }
            }
            Ok(None) => break Ok(None),
            Err(e) => {
                failures += 1;
                tracing::debug!("slurm job {id}: {e}");
                if failures >= MAX_QUERY_FAILURES {
                    cancel(&[id]);
                    break Err(e);
                }
            }
        }
    };
    in_flight().remove(&id);
    result
}

/// `scancel` these jobs (best effort: a job that already ended is fine).
pub fn cancel(ids: &[u64]) {
    if ids.is_empty() {
        return;
    }
    let args: Vec<String> = ids.iter().map(u64::to_string).collect();
    if let Err(e) = run("scancel", &args) {
        tracing::warn!("cannot cancel Slurm jobs {}: {e}", args.join(", "));
    }
}

/// The end of the job's stderr, for a failure message (`: …` or nothing).
pub fn stderr_tail(dir: &Path) -> String {
    let path = dir.join("slurm.err");
    let Ok(mut file) = std::fs::File::open(&path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.take(TAIL_BYTES).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; its stderr ({}) ends:\n{text}", path.display())
    }
}

/// The jobs this process has submitted and not yet seen end.
fn in_flight() -> std::sync::MutexGuard<'static, BTreeSet<u64>> {
    static JOBS: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
    JOBS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// On the first SIGINT or SIGTERM: cancel every job in flight, then exit as the signal would
/// (128 + its number). Installed with the first submission, so local runs keep the default.
fn cancel_on_signal() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot catch Ctrl-C (Slurm jobs would outlive pipe): {e}");
                return;
            }
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let ids: Vec<u64> = in_flight().iter().copied().collect();
                if !ids.is_empty() {
                    let shown: Vec<String> = ids.iter().map(u64::to_string).collect();
                    tracing::warn!("interrupted: cancelling Slurm jobs {}", shown.join(", "));
                    cancel(&ids);
                }
                std::process::exit(128 + signal);
            }
        });
    });
}

/// Run a Slurm command, bounded by [`COMMAND_TIMEOUT`]; its stdout.
fn run(command: &'static str, args: &[String]) -> Result<String, SlurmError> {
    let shown = || format!("{command} {}", args.join(" "));
    let mut child = match Command::new(command)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SlurmError::NotInstalled { command });
        }
        Err(source) => {
            return Err(SlurmError::Spawn {
                command: shown(),
                source,
            });
        }
    };
    // Read both pipes on their own threads so a chatty command cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(1 << 20).read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SlurmError::Timeout {
                    command: shown(),
                    secs: COMMAND_TIMEOUT.as_secs(),
                });
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(SlurmError::Command {
            command: shown(),
            status: status.to_string(),
            stderr: stderr.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scontrol_lines_parse_and_states_map_to_words() {
        let line = "JobId=7 JobName=pipe-train UserId=root(0) JobState=TIMEOUT Reason=TimeLimit \
                    Dependency=(null) ExitCode=0:15 RunTime=00:01:08 NodeList=vm";
        let info = JobInfo::parse(line).expect("parses");
        assert_eq!(
            (
                info.state.as_str(),
                info.reason.as_str(),
                info.nodes.as_str()
            ),
            ("TIMEOUT", "TimeLimit", "vm")
        );
        assert!(info.ended() && !info.retryable());
        let r = Resources {
            time: Some("10:00".into()),
            ..Resources::default()
        };
        assert_eq!(
            info.why(&r),
            "hit its time limit (resources.time = \"10:00\")"
        );
        let failed =
            JobInfo::parse("JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0").expect("parses");
        assert_eq!(failed.why(&r), "failed (exit code 3)");
        let pending = JobInfo::parse("JobId=9 JobState=PENDING Reason=Resources").expect("p");
        assert!(!pending.ended());
        assert_eq!(pending.shown(9), "slurm job 9: pending (Resources)");
        assert!(JobInfo::parse("JobState=PREEMPTED").expect("p").retryable());
        assert_eq!(JobInfo::parse("slurm_load_jobs error"), None);
    }

    #[test]
    fn sbatch_gets_the_executor_options_resources_and_extra_arguments() {
        let executor = Executor {
            partition: Some("gpu".into()),
            qos: Some("high".into()),
            sbatch_args: vec!["--constraint=a100".into()],
            ..Executor::default()
        };
        let resources = Resources {
            cpus: Some(8),
            mem: Some("32G".into()),
            gpus: None,
            time: Some("12:00:00".into()),
        };
        let dir = Path::new("/c/tmp/k.1.0.job");
        let sub = Submission {
            executor: &executor,
            resources: &resources,
            default_gpus: 1,
            job_name: "pipe-train",
            chdir: Path::new("/p"),
            dir,
        };
        let args = sub.args();
        for want in [
            "--parsable",
            "--job-name=pipe-train",
            "--chdir=/p",
            "--output=/c/tmp/k.1.0.job/slurm.out",
            "--error=/c/tmp/k.1.0.job/slurm.err",
            "--partition=gpu",
            "--qos=high",
            "--mem=32G",
            "--time=12:00:00",
            "--cpus-per-task=8",
            "--gpus=1",
            "--constraint=a100",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--account")));
        assert_eq!(
            args.last().map(String::as_str),
            Some("/c/tmp/k.1.0.job/job.sh")
        );
        let none = Resources {
            gpus: Some(0),
            ..Resources::default()
        };
        let sub = Submission {
            resources: &none,
            ..sub
        };
        assert!(!sub.args().iter().any(|a| a.starts_with("--gpus")));
        assert_eq!(sh_quote("a'b c"), r"'a'\''b c'");
    }
}
