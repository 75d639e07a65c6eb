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
//! survives failed runs of the same stage key, for resumable work).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use pipe_stage_api::{
    Outcome, ParamError, StageContext, StageError, StageKind, env_name, parse_params,
};
use serde::Deserialize;

/// How many trailing lines of stderr a failure shows.
const TAIL_LINES: usize = 40;

pub struct Command;

#[derive(Debug, Deserialize)]
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
        let mut process = Process::new("sh");
        process
            .arg("-c")
            .arg(&p.cmd)
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
        let mut child = process.spawn().map_err(|source| CommandError::Spawn {
            cmd: p.cmd.clone(),
            source,
        })?;
        let stage = ctx.stage.to_string();
        let stdout = child.stdout.take().map(|out| {
            let stage = stage.clone();
            std::thread::spawn(move || forward(out, &stage, usize::MAX))
        });
        let stderr = child
            .stderr
            .take()
            .map(|err| std::thread::spawn(move || forward(err, &stage, TAIL_LINES)));
        let status = child.wait().map_err(CommandError::Wait)?;
        if let Some(t) = stdout {
            let _ = t.join();
        }
        let stderr: Vec<String> = stderr
            .and_then(|t| t.join().ok())
            .map(Vec::from)
            .unwrap_or_default();
        if status.success() {
            return Ok(Outcome::default());
        }
        use std::os::unix::process::ExitStatusExt;
        Err(match (status.code(), status.signal()) {
            (Some(code), _) => CommandError::Failed { code, stderr }.into(),
            (None, Some(signal)) => CommandError::Killed { signal, stderr }.into(),
            (None, None) => CommandError::Failed { code: -1, stderr }.into(),
        })
    }
}

/// Log each line of a child's stream (shown with `-v`) and keep the last `keep` lines.
fn forward(stream: impl Read, stage: &str, keep: usize) -> VecDeque<String> {
    let mut last = VecDeque::new();
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        tracing::info!(target: "pipe::stage", "[{stage}] {line}");
        if keep != usize::MAX {
            if last.len() == keep {
                last.pop_front();
            }
            last.push_back(line);
        }
    }
    last
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
}
