//! The `command` stage kind: run a shell command that writes its outputs into `$PIPE_OUT`.
//!
//! ```toml
//! [stages.fetch]
//! kind = "command"
//! deps = ["prep"]              # $PIPE_DEP_PREP is prep's artifact dir
//! inputs = ["data/urls.txt"]   # files or dirs, relative to pipeline.toml; content-hashed
//! params = { retries = 3 }     # hashed; exported as $PIPE_PARAM_RETRIES
//! cmd = "…"                    # sh -c in pipeline.toml's dir
//! ```
//! The command also sees `$PIPE_STAGE`, `$PIPE_SEED` and `$PIPE_WORK` (a directory that
//! survives failed runs of the same stage key, for resumable work). A command reports metrics
//! by writing a flat JSON object of numbers to `$PIPE_OUT/metrics.json` (`{"accuracy": 0.93}`):
//! they are the stage's metrics in `pipe show` and `pipe exp show`.
//!
//! The command runs in a process group of its own with a watchdog beside it: when the command
//! exits, whatever it left running in the background is killed, and if `pipe` itself dies
//! (`kill -9`, the OOM killer) the watchdog kills the whole group, so no stage outlives its
//! run. (A process that leaves the group on purpose, with `setsid`, is not followed.) Its
//! output is read as bytes (invalid UTF-8 is shown as `\u{FFFD}`), `\r` redraws a line as a
//! terminal does, and a line longer than [`MAX_LINE`] bytes is cut, so memory stays bounded
//! whatever it prints.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};

use pipe_stage_api::{
    Outcome, ParamError, StageContext, StageError, StageKind, env_name, parse_params,
};
use serde::{Deserialize, Serialize};

/// The file a command reports its metrics in, inside `$PIPE_OUT`.
pub const METRICS_FILE: &str = "metrics.json";

/// The largest `metrics.json` read (it is a handful of numbers).
pub const MAX_METRICS_BYTES: u64 = 1 << 20;

/// How many trailing lines of stderr a failure shows.
const TAIL_LINES: usize = 40;

/// Longer output lines are cut to this many bytes (logged and kept with a mark).
pub const MAX_LINE: usize = 2048;

/// The watchdog: it reads its stdin, a pipe whose only writer is this process, and kills its
/// process group (the command's) when that pipe closes, i.e. when the command has exited and
/// the stage closes it, or when `pipe` dies.
const WATCHDOG: &str = "read _; kill -KILL 0";

pub struct Command;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    cmd: String,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    params: toml::Table,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start `sh -c {cmd:?}`")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("command exited with status {code}{}", tail(.stderr))]
    Failed { code: i32, stderr: Vec<String> },
    #[error("command was killed by signal {signal}{}", tail(.stderr))]
    Killed { signal: i32, stderr: Vec<String> },
    #[error("cannot wait for the command")]
    Wait(#[source] std::io::Error),
    #[error("cannot start the command's watchdog (`sh -c {WATCHDOG:?}`)")]
    Watchdog(#[source] std::io::Error),
    #[error(
        "$PIPE_OUT/{METRICS_FILE}: {0} (a command reports metrics as a flat JSON object of \
         numbers, e.g. {{\"accuracy\": 0.93}})"
    )]
    Metrics(String),
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n    {}", lines.join("\n    "))
    }
}

fn params(table: &toml::Table) -> Result<Params, ParamError> {
    let p: Params = parse_params(table)?;
    if p.cmd.trim().is_empty() {
        return Err(ParamError::new(["cmd"], "must not be empty"));
    }
    for (k, _) in &p.params {
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ParamError::new(
                ["params", k.as_str()],
                "parameter names may use only letters, digits, `_` and `-` (they become $PIPE_PARAM_<NAME>)",
            ));
        }
    }
    for input in &p.inputs {
        if input.trim().is_empty() {
            return Err(ParamError::new(["inputs"], "input paths must not be empty"));
        }
    }
    Ok(p)
}

/// The text a parameter is exported as: strings as they are, other values as TOML writes them.
fn env_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl StageKind for Command {
    fn name(&self) -> &'static str {
        pipe_stage_api::COMMAND_KIND
    }

    fn version(&self) -> u32 {
        1
    }

    fn about(&self) -> &'static str {
        "run a shell command (sh -c) that writes its outputs into $PIPE_OUT"
    }

    fn template(&self) -> Option<String> {
        let required = toml::from_str("cmd = \"CMD\"").ok()?;
        pipe_stage_api::params_template::<Params>(&required).ok()
    }

    fn check(&self, table: &toml::Table) -> Result<(), ParamError> {
        params(table).map(|_| ())
    }

    fn inputs(&self, table: &toml::Table, pipeline_dir: &Path) -> Result<Vec<PathBuf>, ParamError> {
        Ok(params(table)?
            .inputs
            .iter()
            .map(|i| pipeline_dir.join(i))
            .collect())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        let p = params(ctx.params)?;
        // The watchdog first: it leads the group, so the command is never without it.
        let mut watchdog = Process::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(CommandError::Watchdog)?;
        let mut process = Process::new("sh");
        process
            .arg("-c")
            .arg(&p.cmd)
            .process_group(watchdog.id() as i32)
            .current_dir(ctx.pipeline_dir)
            .env("PIPE_OUT", ctx.out_dir)
            .env("PIPE_WORK", ctx.work_dir)
            .env("PIPE_STAGE", ctx.stage)
            .env("PIPE_SEED", ctx.seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, dep) in ctx.deps {
            process.env(format!("PIPE_DEP_{}", env_name(name)), &dep.dir);
        }
        for (k, v) in &p.params {
            process.env(format!("PIPE_PARAM_{}", env_name(k)), env_value(v));
        }
        let child = match process.spawn() {
            Ok(child) => child,
            Err(source) => {
                stop_group(&mut watchdog);
                return Err(CommandError::Spawn {
                    cmd: p.cmd.clone(),
                    source,
                }
                .into());
            }
        };
        let (status, stderr) = wait_forwarding(child, &mut watchdog, ctx.stage)?;
        if status.success() {
            return Ok(Outcome {
                metrics: read_metrics(ctx.out_dir)?,
                results: Vec::new(),
            });
        }
        use std::os::unix::process::ExitStatusExt;
        Err(match (status.code(), status.signal()) {
            (Some(code), _) => CommandError::Failed { code, stderr }.into(),
            (None, Some(signal)) => CommandError::Killed { signal, stderr }.into(),
            (None, None) => CommandError::Failed { code: -1, stderr }.into(),
        })
    }
}

/// The metrics the command wrote to `$PIPE_OUT/metrics.json`, if it wrote that file.
fn read_metrics(
    out_dir: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>, CommandError> {
    let path = out_dir.join(METRICS_FILE);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(CommandError::Metrics(format!("cannot read it: {e}"))),
    };
    if !meta.is_file() {
        return Err(CommandError::Metrics("is not a regular file".into()));
    }
    if meta.len() > MAX_METRICS_BYTES {
        return Err(CommandError::Metrics(format!(
            "is {} bytes, more than the {MAX_METRICS_BYTES} allowed",
            meta.len()
        )));
    }
    let bytes =
        std::fs::read(&path).map_err(|e| CommandError::Metrics(format!("cannot read it: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| CommandError::Metrics(format!("not JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(CommandError::Metrics("is not a JSON object".into()));
    };
    for (name, v) in &map {
        if !v.is_number() {
            return Err(CommandError::Metrics(format!(
                "metric {name:?} is {v}, not a number"
            )));
        }
    }
    Ok(map)
}

/// Wait for the command while its output is logged, then stop what it left running; its exit
/// status and the end of its stderr.
fn wait_forwarding(
    mut child: Child,
    watchdog: &mut Child,
    stage: &str,
) -> Result<(std::process::ExitStatus, Vec<String>), CommandError> {
    let stdout = child.stdout.take().map(|out| {
        let stage = stage.to_string();
        std::thread::spawn(move || forward(out, &stage, 0))
    });
    let stderr = child.stderr.take().map(|err| {
        let stage = stage.to_string();
        std::thread::spawn(move || forward(err, &stage, TAIL_LINES))
    });
    let status = child.wait();
    // Background processes may still hold the output pipes: they go with the group, and then
    // the readers see the end of their streams.
    stop_group(watchdog);
    if let Some(t) = stdout {
        let _ = t.join();
    }
    let tail = stderr
        .and_then(|t| t.join().ok())
        .map(Vec::from)
        .unwrap_or_default();
    Ok((status.map_err(CommandError::Wait)?, tail))
}

/// Close the watchdog's stdin: it kills the command's process group (itself included); then
/// reap it.
fn stop_group(watchdog: &mut Child) {
    drop(watchdog.stdin.take());
    if let Err(e) = watchdog.wait() {
        tracing::warn!("cannot wait for a command's watchdog: {e}");
    }
}

/// A child's output stream, line by line: each line logged (shown with `-v`), the last `keep`
/// kept. Bytes, not text: invalid UTF-8 is replaced, never a reason to stop reading (which
/// would kill the writer with SIGPIPE). `\r` starts the line over (a progress bar), and a
/// line is cut at [`MAX_LINE`] bytes, so memory is bounded by `keep` × [`MAX_LINE`].
fn forward(mut stream: impl Read, stage: &str, keep: usize) -> VecDeque<String> {
    let mut lines = Lines {
        stage,
        keep,
        tail: VecDeque::new(),
        line: Vec::with_capacity(256),
        cut: 0,
        after_cr: false,
    };
    let mut buf = [0u8; 16 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => buf[..n].iter().for_each(|&b| lines.push(b)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("[{stage}] cannot read the command's output: {e}");
                break;
            }
        }
    }
    if !lines.line.is_empty() || lines.cut > 0 {
        lines.end_line();
    }
    lines.tail
}

/// The line being read and the tail kept, for [`forward`].
struct Lines<'a> {
    stage: &'a str,
    keep: usize,
    tail: VecDeque<String>,
    line: Vec<u8>,
    /// Bytes of the current line dropped past [`MAX_LINE`].
    cut: u64,
    /// The previous byte was `\r`: a `\n` now ends the line (CRLF), anything else redraws it.
    after_cr: bool,
}

impl Lines<'_> {
    fn push(&mut self, b: u8) {
        if self.after_cr {
            self.after_cr = false;
            if b != b'\n' {
                self.line.clear();
                self.cut = 0;
            }
        }
        match b {
            b'\n' => self.end_line(),
            b'\r' => self.after_cr = true,
            _ if self.line.len() < MAX_LINE => self.line.push(b),
            _ => self.cut += 1,
        }
    }

    fn end_line(&mut self) {
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        if self.cut > 0 {
            text.push_str(&format!(" … ({} more bytes)", self.cut));
        }
        tracing::info!(target: "pipe::stage", "[{}] {text}", self.stage);
        if self.keep > 0 {
            if self.tail.len() == self.keep {
                self.tail.pop_front();
            }
            self.tail.push_back(text);
        }
        self.line.clear();
        self.cut = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run(cmd: &str, params: &str) -> (Result<Outcome, StageError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        let mut table: toml::Table = toml::from_str(params).expect("toml");
        table.insert("cmd".into(), cmd.into());
        let deps = BTreeMap::from([(
            "up-stream".to_string(),
            pipe_stage_api::Dep::new("prep", dir.path()),
        )]);
        let ctx = StageContext {
            stage: "s",
            pipeline_dir: dir.path(),
            out_dir: &out,
            work_dir: dir.path(),
            deps: &deps,
            params: &table,
            seed: 7,
            backend: Default::default(),
            devices: &[],
            progress: &pipe_stage_api::Silent,
        };
        (Command.run(&ctx), dir)
    }

    #[test]
    fn exports_params_deps_and_out() {
        let (r, dir) = run(
            r#"echo "$PIPE_PARAM_RETRIES $PIPE_PARAM_NAME $PIPE_SEED $PIPE_DEP_UP_STREAM" > "$PIPE_OUT/x""#,
            "params = { retries = 3, name = \"a b\" }",
        );
        r.expect("command succeeds");
        let text = std::fs::read_to_string(dir.path().join("out/x")).expect("output");
        assert_eq!(text.trim(), format!("3 a b 7 {}", dir.path().display()));
    }

    #[test]
    fn failure_shows_exit_code_and_stderr_tail() {
        let (r, _dir) = run("echo first >&2; echo boom >&2; exit 3", "");
        let e = r.expect_err("fails").to_string();
        assert!(e.contains("status 3") && e.contains("boom"), "{e}");
    }

    #[test]
    fn rejects_bad_params() {
        let t: toml::Table = toml::from_str("cmd = \"\"").expect("toml");
        assert_eq!(Command.check(&t).expect_err("empty").path, ["cmd"]);
        let t: toml::Table = toml::from_str("cmd = \"x\"\ncmdd = 1").expect("toml");
        assert_eq!(Command.check(&t).expect_err("unknown").path, ["cmdd"]);
        let t: toml::Table = toml::from_str("inputs = []").expect("toml");
        assert!(
            Command
                .check(&t)
                .expect_err("missing cmd")
                .message
                .contains("cmd")
        );
    }

    #[test]
    fn invalid_utf8_output_neither_stops_the_reader_nor_kills_the_command() {
        // Before: the reader stopped at the bad byte and the next write died of SIGPIPE.
        let (r, dir) = run(
            r"printf 'caf\351\n'; printf 'caf\351\n' >&2; sleep 0.2; echo ok; echo ok >&2; echo done > $PIPE_OUT/x",
            "",
        );
        r.expect("command succeeds");
        assert!(dir.path().join("out/x").is_file());
        let (r, _dir) = run(r"printf 'caf\351 bad\n' >&2; exit 3", "");
        let e = r.expect_err("fails").to_string();
        assert!(e.contains("caf\u{FFFD} bad"), "{e}");
    }

    #[test]
    fn the_stderr_tail_is_bounded_whatever_the_command_prints() {
        // 8 MB without a newline, then a carriage-return progress bar.
        let (r, _dir) = run(
            "head -c 8000000 /dev/zero | tr '\\0' x >&2; echo >&2; \
             i=0; while [ $i -lt 3000 ]; do i=$((i+1)); printf '\\r%d%%' $i >&2; done; exit 1",
            "",
        );
        let e = r.expect_err("fails").to_string();
        assert!(e.len() < TAIL_LINES * (MAX_LINE + 64), "{} bytes", e.len());
        assert!(
            e.contains(&format!("({} more bytes)", 8_000_000 - MAX_LINE)),
            "{}",
            &e[..200]
        );
        // A redrawn line shows what a terminal would: its last state.
        assert!(
            e.ends_with("3000%"),
            "{}",
            &e[e.len().saturating_sub(200)..]
        );
    }

    #[test]
    fn background_processes_do_not_outlive_the_command() {
        // Neither one that lets go of the pipes (it would run on) nor one that holds them (the
        // stage would wait for it).
        let (r, dir) = run(
            "sleep 30 >/dev/null 2>&1 & echo $! > $PIPE_OUT/detached; \
             sleep 30 & echo $! > $PIPE_OUT/holding",
            "",
        );
        r.expect("command succeeds");
        for f in ["detached", "holding"] {
            let pid = std::fs::read_to_string(dir.path().join("out").join(f)).expect("pid");
            assert!(
                !pipe_test_support::still_runs(&pid, std::time::Duration::from_secs(5)),
                "`{f}` background process {} still runs",
                pid.trim()
            );
        }
    }
}
