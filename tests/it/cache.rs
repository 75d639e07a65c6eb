//! What reruns, what does not, and why.

use super::*;

#[test]
fn first_run_executes_everything_second_nothing() {
    let p = chain();
    let actions = p.run_actions(&[]);
    assert_eq!(
        actions,
        pairs(&[("prep", "ran"), ("train", "ran"), ("evaluate", "ran")])
    );
    assert_eq!(p.executions(), ["prep", "train", "evaluate"]);
    let actions = p.run_actions(&[]);
    assert_eq!(
        actions,
        pairs(&[
            ("prep", "cached"),
            ("train", "cached"),
            ("evaluate", "cached")
        ])
    );
    assert_eq!(p.executions().len(), 3, "a second run executes nothing");
    assert_eq!(p.read("results/evaluate/metrics.txt").trim(), "3");
}

#[test]
fn a_param_change_reruns_that_stage_and_descendants_and_status_names_it() {
    let p = chain();
    p.ok(&["run"]);
    let edited = CHAIN.replace("lr = 0.001", "lr = 0.01");
    p.write("pipeline.toml", &edited);
    let status = p.json(&["status"]);
    let train = &status["stages"][1];
    assert_eq!(train["status"], "stale");
    let reasons = train["reasons"].to_string();
    assert!(reasons.contains("params.lr: 0.001 → 0.01"), "{reasons}");
    // The same, for scripts: what changed, beside the sentence.
    assert_eq!(
        train["reasons"][0],
        serde_json::json!({
            "kind": "param",
            "key": "params.lr",
            "old": 0.001,
            "new": 0.01,
            "text": "param params.lr: 0.001 → 0.01",
        })
    );
    assert_eq!(status["stages"][0]["status"], "fresh");
    assert_eq!(status["stages"][2]["status"], "blocked");
    assert_eq!(status["stages"][2]["reasons"][0]["kind"], "upstream");
    assert_eq!(status["stages"][2]["reasons"][0]["stage"], "train");

    let actions = p.run_actions(&[]);
    assert_eq!(
        actions,
        pairs(&[("prep", "cached"), ("train", "ran"), ("evaluate", "ran")])
    );
    assert_eq!(
        p.executions(),
        ["prep", "train", "evaluate", "train", "evaluate"]
    );
    assert!(p.read("results/train/model.txt").starts_with("lr=0.01"));
}

#[test]
fn switching_a_param_back_restores_without_executing() {
    let p = chain();
    p.ok(&["run"]);
    p.ok(&["run", "--set", "train.params.lr=0.5"]);
    assert!(
        p.read("results/tries/lr=0.5/train/model.txt")
            .starts_with("lr=0.5")
    );
    let before = p.executions().len();
    let actions = p.run_actions(&[]);
    assert_eq!(
        actions,
        pairs(&[
            ("prep", "cached"),
            ("train", "restored"),
            ("evaluate", "restored")
        ])
    );
    assert_eq!(p.executions().len(), before, "restoring executes nothing");
    assert!(
        p.read("results/train/model.txt").starts_with("lr=0.001"),
        "results/ shows the restored artifact"
    );
}

#[test]
fn early_cutoff_keeps_downstream_fresh_when_output_is_unchanged() {
    let p = chain();
    p.ok(&["run"]);
    // `note` is hashed but does not change train's output bytes.
    let actions = p.run_actions(&["--set", "train.params.note=\"y\""]);
    assert_eq!(
        actions,
        pairs(&[("prep", "cached"), ("train", "ran"), ("evaluate", "cached")])
    );
    assert_eq!(p.executions(), ["prep", "train", "evaluate", "train"]);
}

#[test]
fn an_input_change_is_explained_by_file() {
    let p = chain();
    p.ok(&["run"]);
    p.write("data/b.txt", "BETA\n");
    p.write("data/c.txt", "gamma\n");
    let status = p.json(&["status"]);
    assert_eq!(status["stages"][0]["status"], "stale");
    let reasons = status["stages"][0]["reasons"].to_string();
    assert!(
        reasons.contains("input data changed: 1 file changed (b.txt), 1 file added (c.txt)"),
        "{reasons}"
    );
    let reason = &status["stages"][0]["reasons"][0];
    assert_eq!(
        (&reason["kind"], &reason["path"]),
        (&"input".into(), &"data".into())
    );
    let actions = p.run_actions(&[]);
    assert_eq!(
        actions,
        pairs(&[("prep", "ran"), ("train", "ran"), ("evaluate", "ran")])
    );
}

#[test]
fn dry_run_executes_nothing_and_says_why() {
    let p = chain();
    let v = p.json(&["run", "--dry-run"]);
    assert_eq!(v["stages"][0]["action"], "would-run");
    assert!(p.executions().is_empty());
    assert!(artifact_dirs(&p).is_empty());
}

#[test]
fn force_reruns_only_the_named_stage_and_what_changed_below() {
    let p = chain();
    p.ok(&["run"]);
    let actions = p.run_actions(&["train", "--force"]);
    assert_eq!(actions, pairs(&[("prep", "cached"), ("train", "ran")]));
}

#[test]
fn a_failing_stage_discards_its_output_and_skips_descendants() {
    let p = Project::new(
        r#"
[stages.a]
kind = "command"
cmd = "echo partial > $PIPE_OUT/x; echo 'it broke' >&2; exit 7"
[stages.b]
kind = "command"
deps = ["a"]
cmd = "true"
[stages.c]
kind = "command"
cmd = "echo c > $PIPE_OUT/c"
"#,
    );
    let out = p.pipe(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("status 7") && stdout.contains("it broke"),
        "{stdout}"
    );
    assert!(
        stdout.contains("b ") && stdout.contains("skipped"),
        "{stdout}"
    );
    assert!(
        artifact_dirs(&p).is_empty(),
        "nothing published: {:?}",
        artifact_dirs(&p)
    );
    assert!(
        std::fs::read_dir(p.path("cache/v1/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "scratch removed"
    );
    // --keep-going runs the independent stage.
    let out = p.pipe(&["run", "--keep-going", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let c = v["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == "c")
        .cloned()
        .unwrap_or_default();
    assert_eq!(c["action"], "ran");
}

#[test]
fn gc_never_deletes_what_status_calls_fresh() {
    let p = chain();
    p.ok(&["run"]);
    // Edits of the file, not tries (`--set`), which gc keeps until they are removed.
    for lr in ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6"] {
        p.write(
            "pipeline.toml",
            &CHAIN.replace("lr = 0.001", &format!("lr = {lr}")),
        );
        p.ok(&["run"]);
    }
    p.write("pipeline.toml", CHAIN);
    p.ok(&["run"]);
    let before = artifact_dirs(&p).len();
    assert_eq!(before, 1 + 7 * 2);
    let dry = p.json(&["gc", "--dry-run"]);
    assert_eq!(artifact_dirs(&p).len(), before, "dry run deletes nothing");
    let removed = p.json(&["gc"])["removed"]
        .as_array()
        .expect("removed")
        .len();
    assert_eq!(dry["removed"].as_array().map(Vec::len), Some(removed));
    assert!(
        removed >= 2,
        "the oldest run's artifacts are no longer rooted: removed {removed}"
    );
    assert_eq!(
        p.statuses(),
        pairs(&[("prep", "fresh"), ("train", "fresh"), ("evaluate", "fresh")])
    );
    assert_eq!(
        p.run_actions(&[]),
        pairs(&[
            ("prep", "cached"),
            ("train", "cached"),
            ("evaluate", "cached")
        ])
    );
}

#[test]
fn verify_finds_a_flipped_byte_and_the_next_run_repairs_it() {
    let p = chain();
    p.ok(&["run"]);
    assert_eq!(
        p.json(&["verify"])["problems"].as_array().map(Vec::len),
        Some(0)
    );
    let show = p.json(&["show", "train"]);
    let file = PathBuf::from(show["path"].as_str().expect("path")).join("model.txt");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[0] ^= 0x01;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&file, bytes).expect("write");
    let out = p.pipe(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("[train]: content changed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(p.statuses()[1].1, "stale");
    assert_eq!(
        p.run_actions(&[]),
        pairs(&[("prep", "cached"), ("train", "ran"), ("evaluate", "cached")])
    );
}

/// An artifact whose key lock is held (a `run --force` replacing it) is skipped by `verify`
/// and `gc`, never judged or evicted half-replaced; once the lock is free, verify checks it.
#[test]
fn verify_and_gc_leave_an_artifact_being_produced_alone() {
    let p = chain();
    p.ok(&["run"]);
    let show = p.json(&["show", "train"]);
    let key = show["key"].as_str().expect("key").to_string();
    let file = PathBuf::from(show["path"].as_str().expect("path")).join("model.txt");
    // What a replacing run looks like from outside: a changed tree, and the key's lock held.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&file, "half-written").expect("write");
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(p.path(&format!("cache/v1/locks/{key}.lock")))
        .expect("the run left its lock file");
    lock.try_lock().expect("nobody holds it now");
    let report = p.json(&["verify"]);
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(report["in_use"][0]["key"], key.as_str(), "{report}");
    assert_eq!(report["checked"], 2, "prep and evaluate only: {report}");
    // The lock was the only reason: free, the change is found.
    lock.unlock().expect("unlock");
    let out = p.pipe(&["verify", "--dry-run", "--json"]);
    assert_ne!(out.status.code(), Some(0), "a problem found is a failure");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["problems"][0]["stage"], "train", "{report}");

    // No longer a root (another config, no run record, ref or pipe.lock names it) but in use:
    // gc keeps it; free, gc removes it.
    lock.try_lock().expect("lock again");
    p.write("pipeline.toml", &CHAIN.replace("lr = 0.001", "lr = 0.002"));
    for dir in ["cache/v1/runs", "cache/v1/refs"] {
        std::fs::remove_dir_all(p.path(dir)).expect("forget the roots");
    }
    std::fs::remove_file(p.path("pipe.lock")).expect("forget the lock");
    p.ok(&["gc"]);
    assert!(file.exists(), "gc removed an artifact whose lock was held");
    lock.unlock().expect("unlock");
    p.ok(&["gc"]);
    assert!(
        !file.exists(),
        "gc kept an unrooted artifact once its lock was free"
    );
}

#[test]
fn results_folder_matches_status() {
    let p = chain();
    p.ok(&["run"]);
    assert!(p.path("results/evaluate/metrics.txt").exists());
    // Only run up to train with a changed lr: evaluate is no longer fresh, its folder goes.
    p.write("pipeline.toml", &CHAIN.replace("lr = 0.001", "lr = 9"));
    p.ok(&["run", "train"]);
    assert!(!p.path("results/evaluate").exists());
    assert!(p.read("results/train/model.txt").starts_with("lr=9"));
    // A folder the user made is never touched.
    p.write("results/notes/mine.txt", "keep");
    p.ok(&["run"]);
    assert_eq!(p.read("results/notes/mine.txt"), "keep");
}
