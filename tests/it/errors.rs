//! Every validation error, with its location, as the user sees it.

use super::*;

/// stderr of a failing `pipe status`, with its exit code checked.
fn error_of(pipeline: &str, extra: &[&str]) -> String {
    let p = Project::new(pipeline);
    let mut args = vec!["status"];
    args.extend_from_slice(extra);
    let out = p.pipe(&args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "invalid pipelines exit with 2: {}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
    text(&out.stderr)
}

const OK_STAGE: &str = "[stages.prep]\nkind = \"command\"\ncmd = \"true\"\n";

#[test]
fn validation_errors_name_file_line_and_key() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("toml syntax", "[stages.prep\nkind = 1\n".into(), vec![]),
        ("unknown top-level key", format!("[pipelin]\nname = \"x\"\n{OK_STAGE}"), vec![]),
        ("unknown pipeline key", format!("[pipeline]\nseeed = 1\n{OK_STAGE}"), vec![]),
        ("bad backend", format!("[pipeline]\nbackend = \"gpu\"\n{OK_STAGE}"), vec![]),
        ("negative seed", format!("[pipeline]\nseed = -1\n{OK_STAGE}"), vec![]),
        ("no stages", "[pipeline]\nname = \"x\"\n".into(), vec![]),
        ("unknown kind", "[stages.prep]\nkind = \"comand\"\ncmd = \"true\"\n".into(), vec![]),
        ("kind defaults to the stage name", "[stages.train]\ncmd = \"true\"\n".into(), vec![]),
        ("unknown kind from the stage name", "[stages.trian]\ncmd = \"true\"\n".into(), vec![]),
        ("unknown param", "[stages.prep]\nkind = \"command\"\ncmd = \"true\"\ninptus = []\n".into(), vec![]),
        ("missing cmd", "[stages.prep]\nkind = \"command\"\n".into(), vec![]),
        ("missing dep", format!("{OK_STAGE}[stages.train]\nkind = \"command\"\ndeps = [\"prpe\"]\ncmd = \"true\"\n"), vec![]),
        (
            "cycle",
            "[stages.a]\nkind = \"command\"\ndeps = [\"c\"]\ncmd = \"true\"\n[stages.b]\nkind = \"command\"\ndeps = [\"a\"]\ncmd = \"true\"\n[stages.c]\nkind = \"command\"\ndeps = [\"b\"]\ncmd = \"true\"\n".into(),
            vec![],
        ),
        ("self dependency", "[stages.a]\nkind = \"command\"\ndeps = [\"a\"]\ncmd = \"true\"\n".into(), vec![]),
        (
            "duplicate output path",
            "[stages.a]\nkind = \"command\"\ncmd = \"true\"\nresults = \"results/shared\"\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\nresults = \"results/shared\"\n".into(),
            vec![],
        ),
        ("bad stage name", "[stages.\"1st\"]\nkind = \"command\"\ncmd = \"true\"\n".into(), vec![]),
        ("--set unknown stage", OK_STAGE.into(), vec!["--set", "perp.cmd=x"]),
        ("--set bad param", OK_STAGE.into(), vec!["--set", "prep.cmdd=x"]),
        ("several problems at once", "[pipeline]\nbackend = 3\n[stages.a]\nkind = \"command\"\ndeps = [\"zz\"]\n".into(), vec![]),
    ];
    let mut all = String::new();
    for (name, pipeline, extra) in cases {
        all.push_str(&format!("--- {name}\n{}", error_of(&pipeline, &extra)));
    }
    insta::assert_snapshot!("validation_errors", all);
}

#[test]
fn missing_pipeline_file_and_unknown_stage_are_clear() {
    let p = Project::new(OK_STAGE);
    let out = p.pipe(&["status", "-p", "nope.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read pipeline file nope.toml"),
        "{}",
        text(&out.stderr)
    );
    let out = p.pipe(&["run", "prepp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no stage named `prepp`")
            && text(&out.stderr).contains("did you mean `prep`?")
    );
}

#[test]
fn a_missing_input_fails_the_stage_naming_the_path() {
    let p = Project::new(
        "[stages.prep]\nkind = \"command\"\ninputs = [\"data/urls.txt\"]\ncmd = \"true\"\n",
    );
    let out = p.pipe(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("input data/urls.txt does not exist"),
        "{}",
        text(&out.stdout)
    );
}
