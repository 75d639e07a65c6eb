//! Integration tests: the real `pipe` binary on pipelines of command stages in temp dirs.

mod cache;
mod concurrency;
mod data;
mod encode;
mod errors;
mod experiments;
mod hub;
mod inspect;
mod model;
mod parse_props;
mod quickstart;
mod remote;
mod score;
mod slurm;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::cargo::CommandCargoExt;
/// `../shared/fixtures/blip-tiny` (a BLIP checkpoint made by transformers), or `None` with a
/// note: tests that need it then skip.
pub use pipe_test_support::fixture;

/// A temp project with a pipeline.toml, run through the real binary.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pipeline.toml"), pipeline).expect("write pipeline");
        Self { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::cargo_bin("pipe").expect("pipe binary");
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("RUST_LOG")
            // Tests never touch the network (Hub ids resolve from the cache only).
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("PIPE_PIPELINE")
            .env_remove("PIPE_CACHE_DIR");
        cmd
    }

    pub fn pipe(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run pipe")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.pipe(args))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).expect("valid JSON")
    }

    /// stage → action of a `pipe run --json`.
    pub fn run_actions(&self, extra: &[&str]) -> Vec<(String, String)> {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        stage_column(&self.json(&args), "action")
    }

    /// stage → status of `pipe status --json`.
    pub fn statuses(&self) -> Vec<(String, String)> {
        stage_column(&self.json(&["status"]), "status")
    }

    /// Lines appended to `runs.log` by stages (each stage logs its name when it executes).
    pub fn executions(&self) -> Vec<String> {
        self.read("runs.log").lines().map(str::to_string).collect()
    }
}

/// `(stage, field)` for each entry of a `{"stages": [...]}` JSON answer.
fn stage_column(v: &serde_json::Value, field: &str) -> Vec<(String, String)> {
    let stages = v["stages"].as_array().expect("stages");
    let get = |s: &serde_json::Value, k: &str| s[k].as_str().unwrap_or("").to_string();
    stages
        .iter()
        .map(|s| (get(s, "stage"), get(s, field)))
        .collect()
}

/// The stdout of `pipe ARGS`, which must have succeeded.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "pipe {args:?} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A three-stage chain whose stages record each execution in runs.log.
pub const CHAIN: &str = r#"
[pipeline]
name = "chain"

[stages.prep]
kind = "command"
inputs = ["data"]
cmd = "echo prep >> runs.log; cat data/*.txt > $PIPE_OUT/all.txt"

[stages.train]
kind = "command"
deps = ["prep"]
params = { lr = 0.001, note = "x" }
cmd = "echo train >> runs.log; echo lr=$PIPE_PARAM_LR > $PIPE_OUT/model.txt; cat $PIPE_DEP_PREP/all.txt >> $PIPE_OUT/model.txt"

[stages.evaluate]
kind = "command"
deps = ["train"]
cmd = "echo evaluate >> runs.log; wc -l < $PIPE_DEP_TRAIN/model.txt > $PIPE_OUT/metrics.txt"
"#;

pub fn chain() -> Project {
    let p = Project::new(CHAIN);
    p.write("data/a.txt", "alpha\n");
    p.write("data/b.txt", "beta\n");
    p
}

pub fn artifact_dirs(p: &Project) -> Vec<PathBuf> {
    let dir = p.path("cache/v1/artifacts");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
