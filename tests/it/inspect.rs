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
