//! Kills, concurrent runs and parallel stages.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;

fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sigkill_mid_stage_leaves_nothing_that_looks_complete() {
    let p = Project::new(
        r#"
[stages.slow]
kind = "command"
cmd = "echo started > $PIPE_OUT/partial; echo slow >> runs.log; if [ -f hang ]; then touch hanging; sleep 60; fi; echo done > $PIPE_OUT/result"
"#,
    );
    p.write("hang", "");
    let mut child = p
        .command(&["run"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(
        wait_for(&p.path("hanging"), Duration::from_secs(30)),
        "stage started"
    );
    // Kill pipe and the stage's shell with it, as a crash or OOM kill would.
    let pgid = child.id() as i32;
    // SAFETY: sending SIGKILL to the process group we just created.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();

    assert!(artifact_dirs(&p).is_empty(), "no artifact after a kill");
    assert_eq!(p.statuses(), pairs(&[("slow", "missing")]));
    std::fs::remove_file(p.path("hang")).expect("rm");
    // The next run completes (the dead run's lock is gone with it) and cleans its scratch.
    let actions = p.run_actions(&[]);
    assert_eq!(actions, pairs(&[("slow", "ran")]));
    assert_eq!(p.read("results/slow/result").trim(), "done");
    let leftovers = std::fs::read_dir(p.path("cache/v1/tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "the killed run's scratch dir was cleaned");
}

#[test]
fn a_stage_dies_with_a_killed_pipe() {
    // `kill -9` of pipe alone (not its process group), as the OOM killer does: before, the
    // stage's processes ran on under PID 1 and the next run started a second copy.
    let p = Project::new(
        r#"
[stages.long]
kind = "command"
cmd = "sleep 77 & echo $! > sleeper.pid; wait"
"#,
    );
    let mut child = p
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(
        wait_for(&p.path("sleeper.pid"), Duration::from_secs(30)),
        "stage started"
    );
    std::thread::sleep(Duration::from_millis(100));
    child.kill().expect("SIGKILL pipe");
    let _ = child.wait();
    let pid = p.read("sleeper.pid");
    assert!(
        !pipe_test_support::still_runs(&pid, Duration::from_secs(10)),
        "the stage's `sleep 77` ({}) outlived pipe",
        pid.trim()
    );
}

#[test]
fn a_closed_stdout_stops_the_output_not_the_run() {
    // `pipe run | head -1`: before, the second line panicked on EPIPE (exit 101) and the
    // remaining stages never ran.
    let p = Project::new(
        r#"
[stages.a]
kind = "command"
cmd = "echo a > $PIPE_OUT/x"
[stages.b]
kind = "command"
deps = ["a"]
cmd = "sleep 0.5; echo b > $PIPE_OUT/x"
[stages.c]
kind = "command"
deps = ["b"]
cmd = "echo c > $PIPE_OUT/x"
"#,
    );
    let mut child = p
        .command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("some output");
    drop(stdout);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert_eq!(p.read("results/c/x").trim(), "c");
    assert_eq!(
        p.statuses(),
        pairs(&[("a", "fresh"), ("b", "fresh"), ("c", "fresh")])
    );
}

#[test]
fn two_concurrent_runs_share_the_work_and_both_finish() {
    let p = Project::new(
        r#"
[stages.a]
kind = "command"
cmd = "echo a >> runs.log; sleep 1; echo a > $PIPE_OUT/a"
[stages.b]
kind = "command"
deps = ["a"]
cmd = "echo b >> runs.log; cat $PIPE_DEP_A/a > $PIPE_OUT/b"
"#,
    );
    let spawn = || {
        p.command(&["run", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (one, two) = (spawn(), spawn());
    let (one, two) = (
        one.wait_with_output().expect("wait"),
        two.wait_with_output().expect("wait"),
    );
    assert!(
        one.status.success() && two.status.success(),
        "{}\n{}",
        text(&one.stderr),
        text(&two.stderr)
    );
    // Each stage executed exactly once: the second run waited on the key's lock and reused it.
    let mut runs = p.executions();
    runs.sort();
    assert_eq!(runs, ["a", "b"]);
    assert_eq!(
        p.json(&["verify"])["problems"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(p.statuses(), pairs(&[("a", "fresh"), ("b", "fresh")]));
}

#[test]
fn independent_stages_run_in_parallel_with_jobs() {
    // Each stage waits (up to 20 s) for the other to have started: only a parallel run passes.
    let wait = |me: &str, other: &str| {
        format!(
            "touch {me}.started; i=0; while [ ! -f {other}.started ]; do i=$((i+1)); [ $i -gt 400 ] && exit 9; sleep 0.05; done; echo ok > $PIPE_OUT/{me}"
        )
    };
    let p = Project::new(&format!(
        "[stages.left]\nkind = \"command\"\ncmd = \"{}\"\n[stages.right]\nkind = \"command\"\ncmd = \"{}\"\n",
        wait("left", "right"),
        wait("right", "left")
    ));
    let actions = p.run_actions(&["--jobs", "2"]);
    assert_eq!(actions, pairs(&[("left", "ran"), ("right", "ran")]));
}
