//! `status`, `show` and `dag` output, snapshotted.

use super::*;

/// The temp dir varies by run; keys and times are replaced by insta's filters.
fn redact(p: &Project, out: &str) -> String {
    out.replace(&p.dir.path().display().to_string(), "[DIR]")
}

fn filters() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"[0-9a-f]{64}", "[KEY]");
    settings.add_filter(r"\b[0-9a-f]{12}\b", "[KEY12]");
    settings.add_filter(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(took [0-9.]+s\)",
        "[TIME]",
    );
    settings
}

#[test]
fn status_output() {
    let p = chain();
    let before = redact(&p, &p.ok(&["status"]));
    p.ok(&["run"]);
    p.write("data/b.txt", "changed\n");
    let after = redact(&p, &p.ok(&["status", "--set", "train.params.lr=0.5"]));
    filters().bind(|| {
        insta::assert_snapshot!(
            "status",
            format!(
                "--- before any run\n{before}--- after a run, an input edit and --set\n{after}"
            )
        )
    });
}

#[test]
fn show_output() {
    let p = chain();
    p.ok(&["run"]);
    let human = redact(&p, &p.ok(&["show", "train"]));
    filters().bind(|| insta::assert_snapshot!("show", human));
    let v = p.json(&["show", "train"]);
    for key in ["stage", "key", "path", "status"] {
        assert!(!v[key].is_null(), "show --json has {key}");
    }
    let path = PathBuf::from(v["path"].as_str().expect("path"));
    assert!(
        path.is_absolute() && path.join("model.txt").is_file(),
        "path holds what the stage wrote"
    );
    assert_eq!(v["key"].as_str().map(str::len), Some(64));
}

#[test]
fn dag_formats() {
    let p = chain();
    let all = ["text", "mermaid", "dot"]
        .map(|f| format!("--- {f}\n{}", p.ok(&["dag", "--format", f])))
        .join("");
    insta::assert_snapshot!("dag", all);
}

/// `pipe kinds KIND` is a table to paste: all seven pasted into one file make a valid pipeline.
#[test]
fn each_kind_prints_a_table_that_pastes_into_a_pipeline() {
    let p = Project::new("");
    let mut pipeline = String::new();
    for kind in [
        "prep", "collate", "encode", "train", "evaluate", "infer", "command",
    ] {
        let table = p.ok(&["kinds", kind]);
        assert!(
            table.contains(&format!("[stages.{kind}]\nkind = \"{kind}\"\n")),
            "{table}"
        );
        pipeline.push_str(&table);
        pipeline.push('\n');
    }
    let line = |key: &str| {
        pipeline
            .lines()
            .find(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
            .unwrap_or_else(|| panic!("no {key} in\n{pipeline}"))
            .to_string()
    };
    assert!(
        line("lr").contains("= 0.0001  # a number"),
        "{}",
        line("lr")
    );
    assert!(line("num_beams").contains("= 3  # a whole number"));
    assert!(
        pipeline.contains("\n# max_steps "),
        "optional keys are commented out"
    );
    p.write("pipeline.toml", &pipeline);
    let out = p.pipe(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(p.statuses().len(), 7);

    let out = p.pipe(&["kinds", "trian"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no stage kind `trian`; this build has prep, collate"),
        "{}",
        text(&out.stderr)
    );
}

/// The help a user reads first, snapshotted: the top level (commands, global options apart,
/// examples) and `run`, the command with the most flags.
#[test]
fn help_snapshots() {
    let p = Project::new("");
    insta::assert_snapshot!("help", p.ok(&["--help"]));
    insta::assert_snapshot!("run_help", p.ok(&["run", "--help"]));
}

#[test]
fn dag_and_kinds_speak_json() {
    let p = chain();
    let dag = p.json(&["dag"]);
    assert_eq!(
        dag["stages"][1],
        serde_json::json!({ "name": "train", "kind": "command", "deps": ["prep"] })
    );
    assert_eq!(dag["stages"].as_array().map(Vec::len), Some(3));
    let kinds = p.json(&["kinds"]);
    let names: Vec<&str> = kinds
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    for kind in [
        "prep", "collate", "encode", "train", "evaluate", "infer", "command",
    ] {
        assert!(names.contains(&kind), "{kind}: {kinds}");
    }
    assert!(kinds[0]["about"].as_str().is_some_and(|a| !a.is_empty()));
}

/// `pipe doctor` finds what a run would find, here: the CPU backend, the project's cache,
/// and says whether a Hugging Face token is set without ever printing it.
#[test]
fn doctor_reports_backends_caches_and_never_a_token() {
    let p = chain();
    p.ok(&["run"]);
    let found = p
        .command(&["doctor", "--json"])
        .env("HF_TOKEN", "hf_secretsecret")
        .output()
        .expect("doctor");
    let text = succeeded(&["doctor"], found);
    assert!(!text.contains("hf_secretsecret"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let topic = |t: &str| {
        v.as_array()
            .and_then(|a| a.iter().find(|f| f["topic"] == t))
            .unwrap_or_else(|| panic!("no {t} in {v}"))
            .clone()
    };
    assert!(
        topic("backend auto")["found"]
            .as_str()
            .is_some_and(|f| f.starts_with("cpu"))
    );
    assert!(
        topic("hugging face")["found"]
            .as_str()
            .is_some_and(|f| f.contains("token set"))
    );
    let cache = topic("cache")["found"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        cache.contains("cache") && cache.contains("files") && cache.contains("free"),
        "{cache}"
    );
    assert!(topic("pipeline")["ok"].as_bool().unwrap_or(false));
    // A broken pipeline file is a finding, not a crash.
    p.write("pipeline.toml", "[stages.x\n");
    let broken = p.ok(&["doctor"]);
    assert!(broken.contains("! pipeline"), "{broken}");
}

#[test]
fn read_only_commands_create_nothing() {
    // Before: `pipe status` created cache/v1 and CACHEDIR.TAG, so it failed (exit 3) on a
    // read-only checkout that had never run.
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"echo x > $PIPE_OUT/x\"\n");
    let listing = |p: &Project| {
        let mut names: Vec<String> = std::fs::read_dir(p.dir.path())
            .expect("read project")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(&p);
    assert_eq!(p.statuses(), pairs(&[("a", "missing")]));
    p.ok(&["show", "a"]);
    p.ok(&["dag"]);
    assert_eq!(listing(&p), before, "status, show and dag wrote nothing");
}

#[test]
fn status_check_exits_1_until_everything_is_fresh() {
    let p = chain();
    let out = p.pipe(&["status", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("prep"),
        "the table is still shown"
    );
    let quiet = p.pipe(&["-q", "status", "--check"]);
    assert_eq!(quiet.status.code(), Some(1));
    assert_eq!(text(&quiet.stdout), "", "-q prints nothing");
    p.ok(&["run"]);
    assert_eq!(p.pipe(&["status", "--check"]).status.code(), Some(0));
    let json = p.pipe(&["status", "--check", "--json"]);
    assert_eq!(json.status.code(), Some(0));
    p.write("data/a.txt", "changed\n");
    assert_eq!(p.pipe(&["-q", "status", "--check"]).status.code(), Some(1));
    // Without --check, stale is not a failure.
    assert_eq!(p.pipe(&["status"]).status.code(), Some(0));
}

#[test]
fn version_names_the_backends_this_build_has() {
    let p = chain();
    let v = p.ok(&["--version"]);
    assert!(
        v.starts_with(&format!("pipe {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let gpus: Vec<&str> = [
        ("cuda", cfg!(feature = "cuda")),
        ("wgpu", cfg!(feature = "wgpu")),
    ]
    .iter()
    .filter_map(|(name, on)| on.then_some(*name))
    .collect();
    let want = if gpus.is_empty() {
        "(backends: cpu; build with --features cuda or wgpu".to_string()
    } else {
        format!("(backends: cpu, {})", gpus.join(", "))
    };
    assert!(v.contains(&want), "{want}: {v}");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    let p = chain();
    let bash = p.ok(&["completions", "bash"]);
    assert!(
        bash.contains("_pipe()") && bash.contains("--older-than"),
        "bash"
    );
    let zsh = p.ok(&["completions", "zsh"]);
    assert!(
        zsh.starts_with("#compdef pipe"),
        "{}",
        &zsh[..zsh.len().min(80)]
    );
    let man = p.ok(&["man"]);
    assert!(
        man.contains(".TH pipe") && man.contains("exp"),
        "{}",
        &man[..man.len().min(200)]
    );
    // The man page does not advertise the hidden command a Slurm job runs (clap_complete's
    // static scripts list hidden subcommands too).
    assert!(!man.contains("exec-stage"));
    let out = p.pipe(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}
