//! The Slurm executor through the binary, against a real one-node Slurm (`.ci/slurm-up.sh`):
//! each stage its own job, with the keys and bytes of a local run.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use pipe_test_support::slurm;

use super::*;

/// A chain of command stages run on Slurm; each logs its job id, CPUs and memory.
fn slurm_chain(name: &str) -> Project {
    let text = format!(
        r#"
[pipeline]
name = "{name}"

[executor]
kind = "slurm"

[stages.prep]
kind = "command"
inputs = ["data"]
resources = {{ cpus = 1, mem = "100M", time = "5" }}
cmd = "echo prep $SLURM_JOB_ID cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_NODE $(scontrol show job -o $SLURM_JOB_ID | grep -o 'TimeLimit=[^ ]*') >> runs.log; cat data/*.txt > $PIPE_OUT/all.txt"

[stages.train]
kind = "command"
deps = ["prep"]
params = {{ lr = 0.001 }}
cmd = "echo train $SLURM_JOB_ID >> runs.log; echo lr=$PIPE_PARAM_LR > $PIPE_OUT/model.txt; cat $PIPE_DEP_PREP/all.txt >> $PIPE_OUT/model.txt"

[stages.evaluate]
kind = "command"
deps = ["train"]
cmd = "echo evaluate $SLURM_JOB_ID >> runs.log; wc -l < $PIPE_DEP_TRAIN/model.txt > $PIPE_OUT/metrics.txt"
"#
    );
    let p = Project::new(&text);
    p.write("data/a.txt", "alpha\n");
    p.write("data/b.txt", "beta\n");
    p
}

/// A one-stage pipeline on Slurm whose command is `cmd`.
fn slurm_one(name: &str, cmd: &str) -> Project {
    Project::new(&format!(
        "[pipeline]\nname = \"{name}\"\n\n[executor]\nkind = \"slurm\"\n\n[stages.slow]\nkind = \
         \"command\"\nresources = {{ time = \"5\" }}\ncmd = \"{cmd}\"\n"
    ))
}

/// What a run printed: the stage lines (stdout), then the logs (stderr).
fn both(out: &std::process::Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// Every stage's key, from `pipe status --json`.
fn keys(p: &Project) -> Vec<(String, String)> {
    stage_column(&p.json(&["status"]), "key")
}

/// Start `pipe run` in the background.
fn spawn_run(p: &Project) -> Child {
    p.command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pipe run")
}

/// The id of the running job called `name`, waiting up to a minute for it to start.
fn running_job(name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(id) = slurm::jobs_named(name).into_iter().next() {
            return id;
        }
        assert!(Instant::now() < deadline, "job {name} never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait (up to `limit`) for `child` to exit; its output.
fn finish_within(child: Child, limit: Duration) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(limit);
        // Still running: kill it so the test fails instead of hanging.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output().expect("wait");
    drop(watchdog);
    (out, started.elapsed())
}

#[test]
fn each_stage_runs_as_its_own_job_with_the_keys_and_bytes_of_a_local_run() {
    if !slurm::cluster() {
        return;
    }
    let p = slurm_chain("slurm-chain");
    let out = p.pipe(&["run", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = p.executions();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let ids: Vec<u64> = runs
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("no job id in {l:?}"))
        })
        .collect();
    assert!(
        ids[0] < ids[1] && ids[1] < ids[2],
        "one job per stage: {ids:?}"
    );
    // resources reached sbatch.
    assert!(
        runs[0].contains("cpus=1 mem=100 TimeLimit=00:05:00"),
        "{}",
        runs[0]
    );

    // A local run of the same pipeline: the same keys and the same bytes.
    let local = Project::new(&p.read("pipeline.toml"));
    local.write("data/a.txt", "alpha\n");
    local.write("data/b.txt", "beta\n");
    local.ok(&["run", "--executor", "local"]);
    assert!(local.executions()[0].starts_with("prep cpus="), "not a job");
    assert_eq!(keys(&p), keys(&local));
    assert_eq!(super::remote::outputs(&p), super::remote::outputs(&local));

    // A rerun submits nothing.
    assert_eq!(
        p.run_actions(&[]),
        pairs(&[
            ("prep", "cached"),
            ("train", "cached"),
            ("evaluate", "cached")
        ])
    );
    assert_eq!(p.executions().len(), 3);
    let left = std::fs::read_dir(p.path("cache/v1/tmp")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "job and scratch directories are removed");
}

#[test]
fn a_failing_job_fails_its_stage_with_the_end_of_its_stderr() {
    if !slurm::cluster() {
        return;
    }
    let p = slurm_one("slurm-fails", "echo boom-from-the-job >&2; exit 3");
    let out = p.pipe(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = both(&out);
    assert!(
        err.contains("Slurm job") && err.contains("failed (exit code 1)"),
        "{err}"
    );
    assert!(err.contains("boom-from-the-job"), "the job's stderr: {err}");
    assert_eq!(p.statuses(), pairs(&[("slow", "missing")]));
    // The whole logs stay in the key's work directory.
    let work = std::fs::read_dir(p.path("cache/v1/work"))
        .expect("work")
        .flatten()
        .next()
        .expect("a work dir")
        .path();
    let kept = pipe_test_support::files_under(&work.join("slurm"));
    assert!(
        kept.iter().any(|(path, bytes)| path.ends_with("slurm.err")
            && String::from_utf8_lossy(bytes).contains("boom-from-the-job")),
        "{:?}",
        kept.keys().collect::<Vec<_>>()
    );
}

#[test]
fn scancel_fails_the_stage_within_seconds_and_nothing_is_fresh() {
    if !slurm::cluster() {
        return;
    }
    let p = slurm_one("slurm-scancel", "sleep 120; echo done > $PIPE_OUT/x");
    let child = spawn_run(&p);
    let id = running_job("pipe-slurm-scancel-slow");
    let cancelled = Instant::now();
    let status = std::process::Command::new("scancel")
        .arg(&id)
        .status()
        .expect("scancel");
    assert!(status.success());
    let (out, _) = finish_within(child, Duration::from_secs(60));
    let took = cancelled.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let err = both(&out);
    assert!(
        err.contains(&format!("Slurm job {id} was cancelled")),
        "{err}"
    );
    assert_eq!(p.statuses(), pairs(&[("slow", "missing")]));
}

#[test]
fn ctrl_c_on_pipe_run_cancels_its_jobs() {
    if !slurm::cluster() {
        return;
    }
    let p = slurm_one("slurm-sigint", "sleep 120; echo done > $PIPE_OUT/x");
    let child = spawn_run(&p);
    let id = running_job("pipe-slurm-sigint-slow");
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let (out, _) = finish_within(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("cancelling Slurm jobs {id}")),
        "{}",
        text(&out.stderr)
    );
    let state = slurm::job_state(&id);
    assert!(
        state
            .as_deref()
            .is_none_or(|s| s == "CANCELLED" || s == "COMPLETING"),
        "job {id}: {state:?}"
    );
    assert_eq!(p.statuses(), pairs(&[("slow", "missing")]));
}

#[test]
fn without_sbatch_a_slurm_stage_fails_naming_it() {
    // Needs no cluster: the point is the machine without one.
    let p = slurm_one("slurm-none", "true");
    let empty = tempfile::tempdir().expect("tmp");
    let out = p
        .command(&["run"])
        .env("PATH", empty.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = both(&out);
    assert!(
        err.contains("`sbatch` is not on PATH") && err.contains("--executor local"),
        "{err}"
    );
}

#[test]
fn executor_and_resources_are_checked_like_the_rest_of_the_file() {
    let p = Project::new(
        "[executor]\nkind = \"slurmm\"\nsbatch_args = [\"--output=x\"]\n\n[stages.a]\nkind = \
         \"command\"\ncmd = \"true\"\nresources = { cpus = 0, mem = \"lots\", gpu = 1 }\n",
    );
    let out = p.pipe(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for want in [
        "pipeline.toml:2:1: executor.kind",
        "unknown executor `slurmm`",
        "did you mean `slurm`",
        "pipe sets --output itself",
        "stages.a.resources.cpus",
        "expected a whole number from 1 to 4096",
        "stages.a.resources.mem",
        "did you mean `gpus`",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[test]
fn the_quickstart_on_slurm_has_every_key_of_a_local_run() {
    if !slurm::cluster() {
        return;
    }
    let small = super::quickstart::SMALL;
    let with = |first: &[&'static str]| -> Vec<&'static str> {
        first.iter().chain(small.iter()).copied().collect()
    };
    let local = super::quickstart::quickstart();
    let on_slurm = super::quickstart::quickstart();
    local.ok(&with(&["run"]));
    let actions = stage_column(
        &on_slurm.json(&with(&["run", "--executor", "slurm"])),
        "action",
    );
    assert!(actions.iter().all(|(_, a)| a == "ran"), "{actions:?}");
    let keys = |p: &Project| stage_column(&p.json(&with(&["status"])), "key");
    // Each key covers its dependencies' content digests: equal keys for all five stages mean
    // prep, collate, train and evaluate wrote the same bytes on Slurm as here.
    assert_eq!(keys(&on_slurm), keys(&local));
    assert_eq!(keys(&local).len(), 5);
}
