//! Tries (`pipe run --set … [--name NAME]`) and `pipe exp show/diff/remove`.

use super::*;

/// train reports its lr as `loss`; evaluate scores `1 - lr`, each in `$PIPE_OUT/metrics.json`.
const EXP: &str = r#"
[pipeline]
name = "exp"

[stages.prep]
kind = "command"
cmd = "echo prep >> runs.log; echo data > $PIPE_OUT/data.txt"

[stages.train]
kind = "command"
deps = ["prep"]
params = { lr = 0.1, epochs = 2 }
cmd = '''echo train >> runs.log; echo lr=$PIPE_PARAM_LR > $PIPE_OUT/model.txt; printf '{"loss": %s}' $PIPE_PARAM_LR > $PIPE_OUT/metrics.json'''

[stages.evaluate]
kind = "command"
deps = ["train"]
cmd = '''echo evaluate >> runs.log; awk -F= '{ printf "{\"score\": %s}", 1 - $2 }' $PIPE_DEP_TRAIN/model.txt > $PIPE_OUT/metrics.json'''
"#;

fn score(p: &Project, rel: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(&p.read(rel)).expect(rel);
    v["score"].as_f64().expect("score")
}

fn names(show: &serde_json::Value) -> Vec<String> {
    show["tries"]
        .as_array()
        .expect("tries")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_set_try_leaves_results_and_status_on_the_file_config() {
    let p = Project::new(EXP);
    p.ok(&["run"]);
    assert_eq!(score(&p, "results/evaluate/metrics.json"), 0.9);

    let out = p.ok(&["run", "--set", "train.params.lr=0.3"]);
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("try lr=0.3: its results are in results/tries/lr=0.3/"),
        "{out}"
    );
    assert_eq!(
        score(&p, "results/evaluate/metrics.json"),
        0.9,
        "results/ untouched"
    );
    assert_eq!(score(&p, "results/tries/lr=0.3/evaluate/metrics.json"), 0.7);
    assert_eq!(
        p.statuses(),
        pairs(&[("prep", "fresh"), ("train", "fresh"), ("evaluate", "fresh")])
    );
    let show = p.json(&["show", "evaluate"]);
    assert_eq!(show["metrics"]["score"], 0.9, "{show}");

    // A try of one stage never deletes the workspace's results of the others.
    let run = p.json(&["run", "train", "--set", "train.params.lr=0.5"]);
    assert_eq!(run["try"], "lr=0.5");
    assert_eq!(score(&p, "results/evaluate/metrics.json"), 0.9);
    assert!(p.path("results/tries/lr=0.5/train/model.txt").exists());
    assert!(!p.path("results/tries/lr=0.5/evaluate").exists());
    let show = p.json(&["exp", "show"]);
    let half = &show["tries"][2];
    assert_eq!(half["name"], "lr=0.5");
    assert_eq!(half["status"], "incomplete");

    // The same overrides again are the same try (recorded anew), not a second one.
    p.ok(&["run", "--set", "train.params.lr=0.3"]);
    assert_eq!(
        names(&p.json(&["exp", "show"])),
        ["workspace", "lr=0.5", "lr=0.3"]
    );
}

#[test]
fn exp_show_tabulates_what_differs_and_every_metric() {
    let p = Project::new(EXP);
    p.ok(&["run"]);
    p.ok(&["run", "--set", "train.params.lr=0.3"]);
    p.ok(&["run", "--set", "train.params.lr=0.05", "--name", "small"]);

    let show = p.json(&["exp", "show"]);
    assert_eq!(names(&show), ["workspace", "lr=0.3", "small"]);
    let ws = &show["tries"][0];
    assert_eq!(ws["status"], "ok");
    assert_eq!(ws["params"]["train.params.lr"], 0.1);
    assert_eq!(ws["params"]["train.params.epochs"], 2);
    assert_eq!(ws["metrics"]["evaluate.score"], 0.9);
    assert_eq!(ws["metrics"]["train.loss"], 0.1);
    let small = &show["tries"][2];
    assert_eq!(small["params"]["train.params.lr"], 0.05);
    assert_eq!(small["metrics"]["evaluate.score"], 0.95);
    assert!(small["created"].as_f64().is_some());
    // prep is shared by every try; train is not.
    assert_eq!(ws["keys"]["prep"], small["keys"]["prep"]);
    assert_ne!(ws["keys"]["train"], small["keys"]["train"]);

    let table = p.ok(&["exp", "show"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "try",
            "status",
            "created",
            "train.params.lr",
            "evaluate.score",
            "train.loss"
        ],
        "only the parameters that differ, then every metric:\n{table}"
    );
    // The best of each metric is marked: the highest score, the lowest loss.
    let small_row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(small_row[0], "small", "{table}");
    assert_eq!(
        &small_row[small_row.len() - 2..],
        ["0.95*", "0.05*"],
        "{table}"
    );
    assert!(!lines[1].contains('*'), "{table}");

    let csv = p.ok(&["exp", "show", "--csv"]);
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "try",
            "status",
            "created",
            "train.params.lr",
            "evaluate.score",
            "train.loss"
        ]
    );
    assert_eq!(rows[1][0], "workspace");
    assert_eq!(rows[1][2], "", "the workspace has no creation time");
    assert_eq!(&rows[2][3..], ["0.3", "0.7", "0.3"]);
    assert_eq!(rows.len(), 4);

    let sorted = p.ok(&["exp", "show", "--sort", "evaluate.score"]);
    let order: Vec<&str> = sorted
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(order, ["workspace", "small", "lr=0.3"]);
    let md = p.ok(&["exp", "show", "--md", "--all-params"]);
    assert!(md.starts_with("| try | status | created |"), "{md}");
    assert!(
        md.contains("train.params.epochs"),
        "--all-params shows them all: {md}"
    );

    let bad = p.pipe(&["exp", "show", "--sort", "evaluate.bleu"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(
        err.contains("--sort evaluate.bleu") && err.contains("evaluate.score"),
        "{err}"
    );
}

#[test]
fn exp_diff_names_the_params_metrics_and_keys_that_differ() {
    let p = Project::new(EXP);
    p.ok(&["run"]);
    p.ok(&["run", "--set", "train.params.lr=0.05", "--name", "small"]);
    let d = p.json(&["exp", "diff", "workspace", "small"]);
    assert_eq!(
        d["params"],
        serde_json::json!([{ "key": "train.params.lr", "a": 0.1, "b": 0.05 }])
    );
    let metrics = d["metrics"].as_array().expect("metrics");
    let score = metrics
        .iter()
        .find(|m| m["key"] == "evaluate.score")
        .expect("score differs");
    assert_eq!(
        (score["a"].as_f64(), score["b"].as_f64()),
        (Some(0.9), Some(0.95))
    );
    let delta = score["delta"].as_f64().expect("delta");
    assert!((delta - 0.05).abs() < 1e-12, "{delta}");
    let stages: Vec<&str> = d["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["stage"].as_str())
        .collect();
    assert_eq!(stages, ["evaluate", "train"], "prep is shared");

    let text_diff = p.ok(&["exp", "diff", "workspace", "small"]);
    assert!(
        text_diff.contains("train.params.lr  0.1 → 0.05"),
        "{text_diff}"
    );
    assert!(
        text_diff.contains("evaluate.score  0.9 → 0.95  (+0.05)"),
        "{text_diff}"
    );
    assert!(
        p.ok(&["exp", "diff", "small", "small"])
            .contains("no differences")
    );

    let bad = p.pipe(&["exp", "diff", "workspace", "smal"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(
        err.contains("no try named \"smal\"") && err.contains("small"),
        "{err}"
    );
}

#[test]
fn tries_are_gc_roots_until_removed() {
    let p = Project::new(EXP);
    p.ok(&["run", "--set", "train.params.lr=0.3", "--name", "keep"]);
    let keys = p.json(&["exp", "show"])["tries"][1]["keys"].clone();
    let artifact = |stage: &str| {
        let key = keys[stage].as_str().expect("key");
        p.path(&format!("cache/v1/artifacts/{key}"))
    };
    // More runs of other configs than gc's recent-run roots hold.
    for lr in ["0.11", "0.12", "0.13", "0.14", "0.15", "0.16"] {
        p.write(
            "pipeline.toml",
            &EXP.replace("lr = 0.1,", &format!("lr = {lr},")),
        );
        p.ok(&["run"]);
    }
    p.ok(&["gc"]);
    assert!(
        artifact("train").exists() && artifact("evaluate").exists(),
        "kept by the try"
    );
    assert!(p.path("results/tries/keep/train/model.txt").exists());

    let bad = p.pipe(&["exp", "remove", "keep", "nope"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        p.path("results/tries/keep").exists(),
        "a typo removes nothing"
    );

    assert!(
        p.ok(&["exp", "remove", "keep"])
            .contains("removed try keep")
    );
    assert!(!p.path("results/tries/keep").exists());
    assert_eq!(names(&p.json(&["exp", "show"])), ["workspace"]);
    p.ok(&["gc"]);
    assert!(
        !artifact("train").exists() && !artifact("evaluate").exists(),
        "released"
    );
}

#[test]
fn a_bad_try_name_is_refused_before_anything_runs() {
    let p = Project::new(EXP);
    for (name, says) in [("workspace", "reserved"), ("../x", "try name \"../x\"")] {
        let out = p.pipe(&["run", "--name", name]);
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        assert!(err.contains(says), "{err}");
    }
    assert!(p.executions().is_empty(), "nothing ran");
}

#[test]
fn a_command_reports_metrics_in_metrics_json_and_a_bad_file_fails_the_stage() {
    let p = Project::new(EXP);
    p.ok(&["run"]);
    let show = p.json(&["show", "train"]);
    assert_eq!(show["metrics"]["loss"], 0.1, "{show}");

    for (content, says) in [
        (r#"{"a": "x"}"#, r#"metric "a" is "x", not a number"#),
        ("[1, 2]", "is not a JSON object"),
        ("{", "not JSON"),
    ] {
        let pipeline = format!(
            "[stages.m]\nkind = \"command\"\ncmd = '''printf '%s' '{content}' > $PIPE_OUT/metrics.json'''\n"
        );
        let q = Project::new(&pipeline);
        let out = q.pipe(&["run", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{content}");
        let run: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let error = run["stages"][0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("$PIPE_OUT/metrics.json") && error.contains(says),
            "{content}: {error}"
        );
        assert!(
            artifact_dirs(&q).is_empty(),
            "nothing published for {content}"
        );
    }
}
