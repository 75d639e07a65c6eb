//! The shared remote cache through the binary: `pipe push/pull`, `run --pull/--push`,
//! `status --remote`, against a real S3 server (SeaweedFS, see `pipe_test_support::seaweedfs`).

use std::process::Output;
use std::time::{Duration, Instant};

use pipe_test_support::files_under;
use pipe_test_support::seaweedfs::{self, SECRET_KEY, Seaweed};

use super::*;

/// [`CHAIN`] with `[remotes.team]` on the server, under `prefix`, as the default remote.
fn remote_chain(server: &Seaweed, prefix: &str) -> Project {
    let text = CHAIN.replace(
        "name = \"chain\"",
        &format!(
            "name = \"chain\"\nremote = \"team\"\n\n[remotes.team]\nurl = \"s3://{}/{prefix}\"\nendpoint = \"{}\"",
            seaweedfs::BUCKET,
            server.endpoint
        ),
    );
    let p = Project::new(&text);
    p.write("data/a.txt", "alpha\n");
    p.write("data/b.txt", "beta\n");
    p
}

/// A second machine: the same pipeline file and inputs, nothing cached.
fn clone_of(p: &Project) -> Project {
    let q = Project::new(&p.read("pipeline.toml"));
    for (rel, bytes) in files_under(&p.path("data")) {
        q.write(
            &format!("data/{}", rel.display()),
            &String::from_utf8_lossy(&bytes),
        );
    }
    q
}

fn with_env(p: &Project, server: &Seaweed, args: &[&str]) -> Output {
    p.command(args)
        .envs(server.env())
        .output()
        .expect("run pipe")
}

fn ok_env(p: &Project, server: &Seaweed, args: &[&str]) -> String {
    succeeded(args, with_env(p, server, args))
}

fn json_env(p: &Project, server: &Seaweed, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok_env(p, server, &all)).expect("valid JSON")
}

fn on_remote(p: &Project, server: &Seaweed) -> Vec<(String, bool)> {
    let v = json_env(p, server, &["status", "--remote"]);
    v["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap_or("").to_string(),
                s["on_remote"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Every artifact's `out/`, by key: what two machines must agree on byte for byte.
pub(super) fn outputs(p: &Project) -> Vec<(String, std::collections::BTreeMap<PathBuf, Vec<u8>>)> {
    artifact_dirs(p)
        .iter()
        .map(|d| {
            let key = d.file_name().map(|n| n.to_string_lossy().into_owned());
            (key.unwrap_or_default(), files_under(&d.join("out")))
        })
        .collect()
}

#[test]
fn push_then_pull_on_a_fresh_machine_restores_everything_and_nothing_runs() {
    let Some(server) = seaweedfs::server() else {
        return;
    };
    let a = remote_chain(server, "push-pull");
    a.ok(&["run"]);
    let first = json_env(&a, server, &["push"]);
    assert_eq!(first["artifacts"], 3, "{first}");
    assert!(first["bytes_uploaded"].as_u64() > Some(0), "{first}");
    let files = first["files_uploaded"].as_u64().unwrap_or(0);
    let skipped = first["files_skipped"].as_u64().unwrap_or(0);
    assert!(files >= 1);

    // A second push uploads nothing.
    let second = json_env(&a, server, &["push"]);
    assert_eq!(
        (
            &second["artifacts"],
            &second["files_uploaded"],
            &second["bytes_uploaded"]
        ),
        (&0.into(), &0.into(), &0.into()),
        "{second}"
    );
    assert_eq!(second["files_skipped"].as_u64(), Some(files + skipped));

    let b = clone_of(&a);
    assert_eq!(
        on_remote(&b, server),
        [
            ("prep".to_string(), true),
            ("train".into(), false),
            ("evaluate".into(), false)
        ],
        "without prep locally only prep's key is known"
    );
    let pulled = json_env(&b, server, &["pull"]);
    assert_eq!(pulled["artifacts"], 3, "{pulled}");
    assert_eq!(pulled["not_fresh"], serde_json::json!([]));
    assert_eq!(
        b.statuses(),
        pairs(&[("prep", "fresh"), ("train", "fresh"), ("evaluate", "fresh")])
    );
    assert_eq!(
        b.run_actions(&[]),
        pairs(&[
            ("prep", "cached"),
            ("train", "cached"),
            ("evaluate", "cached")
        ])
    );
    assert!(b.executions().is_empty(), "{:?}", b.executions());
    assert_eq!(outputs(&a), outputs(&b), "the same keys, the same bytes");
    assert_eq!(
        b.read("results/train/model.txt"),
        a.read("results/train/model.txt")
    );
    assert!(on_remote(&b, server).iter().all(|(_, on)| *on));
}

#[test]
fn run_pull_fetches_what_the_remote_has_and_run_push_sends_each_stage() {
    let Some(server) = seaweedfs::server() else {
        return;
    };
    let a = remote_chain(server, "run-pull-push");
    ok_env(&a, server, &["run", "--push"]);
    assert!(on_remote(&a, server).iter().all(|(_, on)| *on));

    let b = clone_of(&a);
    let run = json_env(&b, server, &["run", "--pull"]);
    assert_eq!(
        stage_column(&run, "action"),
        pairs(&[
            ("prep", "pulled"),
            ("train", "pulled"),
            ("evaluate", "pulled")
        ]),
        "{run}"
    );
    assert!(b.executions().is_empty());

    // A new try on one machine, pushed as it runs; the other pulls what changed.
    ok_env(
        &a,
        server,
        &["run", "--push", "--set", "train.params.lr=0.5"],
    );
    let run = json_env(
        &b,
        server,
        &["run", "--pull", "--set", "train.params.lr=0.5"],
    );
    assert_eq!(
        stage_column(&run, "action"),
        pairs(&[
            ("prep", "cached"),
            ("train", "pulled"),
            ("evaluate", "pulled")
        ]),
        "{run}"
    );
    assert!(b.executions().is_empty());
    assert_eq!(outputs(&a), outputs(&b));
}

#[test]
fn a_corrupted_remote_blob_is_refused_and_nothing_of_it_becomes_fresh() {
    let Some(server) = seaweedfs::server() else {
        return;
    };
    let a = remote_chain(server, "corrupt");
    a.ok(&["run"]);
    ok_env(&a, server, &["push"]);
    let blobs = server.list("corrupt/cas");
    assert!(!blobs.is_empty());
    for blob in &blobs {
        server.overwrite(&format!("corrupt/cas/{blob}"), b"tampered");
    }
    let b = clone_of(&a);
    let out = with_env(&b, server, &["pull"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("is corrupt") && err.contains("corrupt/cas/") && err.contains("refused"),
        "{err}"
    );
    assert_eq!(b.statuses()[0], ("prep".to_string(), "missing".to_string()));
    assert!(artifact_dirs(&b).is_empty());
    let scratch = std::fs::read_dir(b.path("cache/v1/tmp")).map_or(0, |d| d.count());
    assert_eq!(scratch, 0, "no half-pulled artifact is left");

    // run --pull refuses it too, and runs the stage here instead.
    let out = with_env(&b, server, &["run", "--pull"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is corrupt"));
    assert_eq!(b.executions(), ["prep", "train", "evaluate"]);
}

/// A stage big enough that a push takes a while: 120 files of 256 KiB, all different.
const BIG: &str = r#"
[pipeline]
name = "big"
remote = "team"

[remotes.team]
url = "s3://BUCKET/killed"
endpoint = "ENDPOINT"

[stages.make]
kind = "command"
cmd = "for i in $(seq 1 120); do head -c 262144 /dev/urandom > $PIPE_OUT/f$i; done"
"#;

#[test]
fn a_killed_push_leaves_no_record_and_a_later_push_completes() {
    let Some(server) = seaweedfs::server() else {
        return;
    };
    let text_of = BIG
        .replace("BUCKET", seaweedfs::BUCKET)
        .replace("ENDPOINT", &server.endpoint);
    let a = Project::new(&text_of);
    a.ok(&["run"]);
    // One file at a time, so the kill lands mid-upload.
    let mut push = a
        .command(&["push", "-j", "1"])
        .envs(server.env())
        .spawn()
        .expect("start push");
    let started = Instant::now();
    while server.list("killed/cas").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no blob uploaded"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let finished_early = push.try_wait().ok().flatten();
    push.kill().expect("SIGKILL");
    let _ = push.wait();
    assert!(
        finished_early.is_none(),
        "the push finished before it could be killed"
    );
    let uploaded = server.list("killed/cas").len();
    assert!(
        uploaded < 120,
        "{uploaded} blobs: the push was not cut short"
    );
    assert!(server.list("killed/ac").is_empty(), "a record after a kill");
    assert_eq!(on_remote(&a, server), [("make".to_string(), false)]);

    let done = json_env(&a, server, &["push"]);
    assert_eq!(done["artifacts"], 1, "{done}");
    assert!(
        done["files_skipped"].as_u64() >= Some(1),
        "the blobs sent before the kill are reused: {done}"
    );
    assert_eq!(server.list("killed/cas").len(), 120);
    let b = Project::new(&text_of);
    json_env(&b, server, &["pull"]);
    assert_eq!(outputs(&a), outputs(&b));
}

#[test]
fn an_unreachable_endpoint_fails_within_seconds_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let endpoint = format!("http://127.0.0.1:{port}");
    let text_of = CHAIN.replace(
        "name = \"chain\"",
        &format!(
            "name = \"chain\"\nremote = \"team\"\n\n[remotes.team]\nurl = \"s3://b/p\"\nendpoint = \"{endpoint}\""
        ),
    );
    let p = Project::new(&text_of);
    p.write("data/a.txt", "alpha\n");
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
    ];
    p.ok(&["run"]);
    let started = Instant::now();
    let out = p.command(&["push"]).envs(env).output().expect("push");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");

    // run --pull: one warning, then the run goes on locally.
    p.write("data/b.txt", "beta\n");
    let out = p
        .command(&["run", "--pull"])
        .envs(env)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.matches("running locally").count(), 1, "{err}");
    assert!(err.contains(&endpoint), "{err}");
    assert!(!err.contains(SECRET_KEY) && !text(&out.stdout).contains(SECRET_KEY));
}

#[test]
fn credentials_never_appear_in_any_output() {
    let Some(server) = seaweedfs::server() else {
        return;
    };
    let a = remote_chain(server, "secrets");
    let b = clone_of(&a);
    let mut outputs = vec![
        with_env(&a, server, &["-vv", "run", "--push"]),
        with_env(&a, server, &["-vvv", "push"]),
        with_env(&a, server, &["-vv", "status", "--remote"]),
        with_env(&b, server, &["-vvv", "pull"]),
        with_env(&b, server, &["-vv", "run", "--pull"]),
    ];
    // A wrong secret: refused by the server, and still not shown.
    let wrong = "pipe-wrong-secret-5d2b8c41";
    let out = a
        .command(&["-vv", "push"])
        .envs(server.env())
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .output()
        .expect("push");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    outputs.push(out);
    for out in &outputs {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!all.is_empty());
        assert!(!all.contains(SECRET_KEY), "{all}");
        assert!(!all.contains(wrong), "{all}");
    }
    assert_eq!(b.executions(), Vec::<String>::new());
}

#[test]
fn remotes_are_checked_like_the_rest_of_the_file() {
    let p = Project::new(
        "[pipeline]\nremote = \"teem\"\n\n[remotes.team]\nurl = \"s3://b/p\"\nsecret_access_key = \"x\"\n\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n",
    );
    let out = p.pipe(&["push"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("pipeline.toml:6:1"), "{err}");
    assert!(
        err.contains("credentials never go in pipeline.toml"),
        "{err}"
    );
    assert!(
        err.contains("no remote `teem`") && err.contains("team"),
        "{err}"
    );

    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    let out = p.pipe(&["push"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no remote is configured"));
    let p = Project::new(
        "[remotes.team]\nurl = \"ftp://x/y\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n",
    );
    let out = p.pipe(&["pull", "--remote", "team"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`ftp://` is not a remote"));
}

#[test]
fn pipe_lock_lets_a_machine_without_the_inputs_pull_the_committed_artifacts() {
    let Some(server) = seaweedfs::server() else {
        return;
    };
    let a = remote_chain(server, "lock");
    a.ok(&["run"]);
    let lock = a.read("pipe.lock");
    for stage in ["prep", "train", "evaluate"] {
        assert!(lock.contains(&format!("[stages.{stage}]")), "{lock}");
    }
    ok_env(&a, server, &["push"]);

    // Tries and unchanged reruns leave the lock alone; a change to the file's config does not.
    let written = std::fs::metadata(a.path("pipe.lock")).and_then(|m| m.modified());
    a.ok(&["run"]);
    a.ok(&["run", "--set", "train.params.lr=0.5"]);
    assert_eq!(a.read("pipe.lock"), lock);
    assert_eq!(
        std::fs::metadata(a.path("pipe.lock"))
            .and_then(|m| m.modified())
            .ok(),
        written.ok()
    );
    let toml = a.read("pipeline.toml").replace("lr = 0.001", "lr = 0.002");
    a.write("pipeline.toml", &toml);
    let status = a.ok(&["status"]);
    assert!(
        status.contains("pipe.lock: `train` is locked at")
            && status.contains("the workspace is at"),
        "{status}"
    );
    a.write("pipeline.toml", &toml.replace("lr = 0.002", "lr = 0.001"));

    // A teammate with the pipeline and its lock, but not the data.
    let b = Project::new(&a.read("pipeline.toml"));
    b.write("pipe.lock", &lock);
    let status = b.ok(&["status"]);
    assert!(
        status.contains("pipe.lock: locks prep, train, evaluate at keys not computed here"),
        "{status}"
    );
    let pulled = json_env(&b, server, &["pull"]);
    assert_eq!(pulled["artifacts"], 3, "{pulled}");
    assert_eq!(pulled["not_fresh"], serde_json::json!([]), "{pulled}");
    assert!(b.executions().is_empty());
    assert_eq!(
        b.read("results/train/model.txt"),
        a.read("results/train/model.txt")
    );
    // The locked artifacts, byte for byte (a also holds its try's).
    let (ours, theirs) = (outputs(&a), outputs(&b));
    assert_eq!(theirs.len(), 3);
    assert!(theirs.iter().all(|o| ours.contains(o)), "{theirs:?}");
    assert_eq!(b.read("pipe.lock"), lock, "pull never rewrites the lock");

    // A lock that is not one is a warning naming it, never a crash.
    b.write("pipe.lock", "[pipeline]\nscheme = 1\n");
    let out = b.pipe(&["status"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("pipe.lock is not a pipe.lock"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn gc_keeps_what_pipe_lock_names() {
    let p = chain();
    p.ok(&["run"]);
    let lock = p.read("pipe.lock");
    let locked_train = artifact_dirs(&p).len();
    assert_eq!(locked_train, 3);
    let text_of = p.read("pipeline.toml");
    // Enough other configs that the first run is no longer among the last five runs.
    for lr in ["0.01", "0.02", "0.03", "0.04", "0.05", "0.06"] {
        p.write(
            "pipeline.toml",
            &text_of.replace("lr = 0.001", &format!("lr = {lr}")),
        );
        p.ok(&["run"]);
    }
    let key_of = |lock: &str| {
        let at = lock.find("[stages.train]").expect("train table");
        lock[at..].split('"').nth(1).unwrap_or_default().to_string()
    };
    let first = key_of(&lock);
    assert_ne!(
        first,
        key_of(&p.read("pipe.lock")),
        "the lock follows the file"
    );
    p.write("pipe.lock", &lock);
    p.ok(&["gc"]);
    assert!(
        p.path(&format!("cache/v1/artifacts/{first}")).exists(),
        "locked key collected"
    );
    p.write("pipe.lock", "");
    std::fs::remove_file(p.path("pipe.lock")).expect("rm lock");
    p.ok(&["gc"]);
    assert!(
        !p.path(&format!("cache/v1/artifacts/{first}")).exists(),
        "unrooted key kept"
    );
}

#[test]
fn gc_remote_keeps_what_the_lock_and_runs_name_and_removes_the_rest() {
    let Some(server) = seaweedfs::server() else {
        return;
    };
    let a = remote_chain(server, "gc");
    a.ok(&["run"]);
    ok_env(&a, server, &["push"]);
    let old_config = a.read("pipeline.toml");
    let new_config = old_config.replace("lr = 0.001", "lr = 0.002");
    a.write("pipeline.toml", &new_config);
    a.ok(&["run"]);
    ok_env(&a, server, &["push"]);

    // Everything on the remote is seconds old: the default grace period spares it all.
    let spared = json_env(&a, server, &["gc", "--remote"]);
    assert_eq!(spared["records_removed"], serde_json::json!([]), "{spared}");
    // This machine's recent runs name both configs' keys: nothing is unused.
    let here = json_env(&a, server, &["gc", "--remote", "--older-than", "0s"]);
    assert_eq!(here["records_removed"], serde_json::json!([]), "{here}");
    assert_eq!(
        here["records_kept"], 5,
        "prep once, train and evaluate twice"
    );

    // A teammate with the committed config and its lock, no cache, no data.
    let b = Project::new(&new_config);
    b.write("pipe.lock", &a.read("pipe.lock"));
    let dry = json_env(
        &b,
        server,
        &["gc", "--remote", "--older-than", "0s", "--dry-run"],
    );
    let removed = dry["records_removed"].as_array().map_or(0, Vec::len);
    assert_eq!(removed, 2, "the old train and evaluate: {dry}");
    assert!(dry["bytes_removed"].as_u64() > Some(0), "{dry}");
    assert_eq!(
        json_env(&b, server, &["gc", "--remote", "--older-than", "0s"]),
        {
            let mut done = dry.clone();
            done["dry_run"] = false.into();
            done
        }
    );
    let again = json_env(&b, server, &["gc", "--remote", "--older-than", "0s"]);
    assert_eq!(
        (&again["records_removed"], &again["blobs_removed"]),
        (&serde_json::json!([]), &0.into()),
        "{again}"
    );

    // The locked artifacts still pull whole; the old config's train is gone.
    let pulled = json_env(&b, server, &["pull"]);
    assert_eq!(pulled["artifacts"], 3, "{pulled}");
    assert_eq!(pulled["not_fresh"], serde_json::json!([]), "{pulled}");
    assert_eq!(
        b.read("results/train/model.txt"),
        a.read("results/train/model.txt")
    );
    let c = clone_of(&a);
    c.write("pipeline.toml", &old_config);
    let pulled = json_env(&c, server, &["pull"]);
    assert_eq!(
        pulled["not_fresh"],
        serde_json::json!(["train", "evaluate"])
    );

    // --older-than says how old, and only with --remote.
    let out = a.pipe(&["gc", "--older-than", "1h"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = with_env(&a, server, &["gc", "--remote", "--older-than", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("soon"), "{}", text(&out.stderr));
}

#[test]
fn a_teammate_without_the_model_files_captions_with_the_pulled_locked_model() {
    let Some(server) = seaweedfs::server() else {
        return;
    };
    // The quickstart, shrunk in the file itself (the lock follows the file, not `--set`).
    let a = super::quickstart::quickstart();
    let text = a
        .read("pipeline.toml")
        .replace("images = 500", "images = 60")
        .replace("epochs = 20", "epochs = 2")
        .replace(
            "name = \"quickstart\"",
            "name = \"quickstart\"\nremote = \"team\"",
        )
        + &format!(
            "\n[remotes.team]\nurl = \"s3://{}/caption-lock\"\nendpoint = \"{}\"\n",
            seaweedfs::BUCKET,
            server.endpoint
        );
    a.write("pipeline.toml", &text);
    a.ok(&["run", "train"]);
    ok_env(&a, server, &["push", "train"]);
    let image = "photos/unseen-0.png";
    let caption = a.ok(&["caption", "--stage", "train", image, "--json"]);

    // The pipeline, its lock and an image; not the tokenizer and config collate reads.
    let b = Project::new(&text);
    b.write("pipe.lock", &a.read("pipe.lock"));
    std::fs::create_dir_all(b.path("photos")).expect("mkdir");
    std::fs::copy(a.path(image), b.path(image)).expect("copy image");
    let status = b.ok(&["status"]);
    assert!(status.contains("not computed here"), "{status}");
    let pulled = json_env(&b, server, &["pull", "train"]);
    assert_eq!(pulled["not_fresh"], serde_json::json!([]), "{pulled}");
    assert_eq!(
        b.ok(&["caption", "--stage", "train", image, "--json"]),
        caption,
        "the locked model, pulled, captions as it did where it was trained"
    );
}
