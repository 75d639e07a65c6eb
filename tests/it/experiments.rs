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
fn exp_apply_writes_the_try_into_the_file_keeping_comments_then_nothing_runs() {
    // The file as a user keeps it: comments on and between the lines.
    let file = EXP.replace(
        "params = { lr = 0.1, epochs = 2 }",
        "# tuned by hand\nparams = { lr = 0.1, epochs = 2 }   # the grid's centre",
    );
    let p = Project::new(&file);
    p.ok(&[
        "run",
        "--set",
        "train.params.lr=0.3",
        "--set",
        "train.params.epochs=4",
        "--name",
        "best",
    ]);
    // Since the try, the file gained a value the try does not have: apply removes it.
    let edited = file.replace("epochs = 2 }", "epochs = 2, warmup = 1 }");
    p.write("pipeline.toml", &edited);
    p.ok(&["run"]);
    let runs_before = p.executions().len();

    for bad in [
        &["exp", "apply", "nope"][..],
        &["exp", "apply", "workspace"],
    ] {
        let out = p.pipe(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
    let dry = p.ok(&["exp", "apply", "best", "--dry-run"]);
    assert!(dry.contains("train.params.lr  0.1 → 0.3"), "{dry}");
    assert!(dry.contains("train.params.warmup  1 → (removed)"), "{dry}");
    assert_eq!(p.read("pipeline.toml"), edited, "a dry run writes nothing");

    let out = p.ok(&["exp", "apply", "best"]);
    assert!(out.contains("nothing to execute"), "{out}");
    assert_eq!(
        p.read("pipeline.toml"),
        file.replace("lr = 0.1, epochs = 2 }", "lr = 0.3, epochs = 4 }"),
        "only the values changed: comments, order and spacing are the file's"
    );
    p.ok(&["run"]);
    assert_eq!(
        p.executions().len(),
        runs_before,
        "the try came from the cache"
    );
    assert_eq!(score(&p, "results/evaluate/metrics.json"), 0.7);
    assert!(
        p.ok(&["exp", "apply", "best"])
            .contains("already has try best's parameters")
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

/// [`EXP`] with a 2 × 2 grid: train's lr and epochs.
fn with_sweep(grid: &str) -> String {
    format!("{EXP}\n[sweeps.grid]\n{grid}")
}

const GRID: &str = "\"train.params.lr\" = [0.2, 0.4]\n\"train.params.epochs\" = [1, 3]\n";

fn count(runs: &[String], stage: &str) -> usize {
    runs.iter().filter(|r| *r == stage).count()
}

#[test]
fn a_sweep_runs_each_point_once_and_shares_what_points_share() {
    let p = Project::new(&with_sweep(GRID));
    let out = p.ok(&["run", "--sweep", "grid", "-j", "2"]);
    assert!(
        out.contains("sweep grid: 4 points: 4 ok; compare with `pipe exp show`"),
        "{out}"
    );
    let runs = p.executions();
    assert_eq!(
        count(&runs, "prep"),
        1,
        "prep is shared by all four: {runs:?}"
    );
    assert_eq!(count(&runs, "train"), 4, "{runs:?}");
    // epochs does not change train's output, so evaluate's key is shared per lr.
    assert_eq!(count(&runs, "evaluate"), 2, "{runs:?}");

    let show = p.json(&["exp", "show"]);
    let mut got: Vec<(String, f64)> = show["tries"]
        .as_array()
        .expect("tries")
        .iter()
        .skip(1)
        .map(|t| {
            assert_eq!(t["status"], "ok", "{t}");
            let name = t["name"].as_str().unwrap_or_default().to_string();
            (
                name,
                t["metrics"]["evaluate.score"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("grid-lr=0.2_epochs=1".to_string(), 0.8),
            ("grid-lr=0.2_epochs=3".to_string(), 0.8),
            ("grid-lr=0.4_epochs=1".to_string(), 0.6),
            ("grid-lr=0.4_epochs=3".to_string(), 0.6),
        ]
    );
    assert!(
        p.path("results/tries/grid-lr=0.4_epochs=3/evaluate/metrics.json")
            .exists()
    );
    assert!(
        !p.path("results/evaluate").exists(),
        "results/ is the file's config's"
    );

    // A rerun executes nothing; sweep tries are named, so kept until removed.
    let again = p.json(&["run", "--sweep", "grid"]);
    assert_eq!(p.executions().len(), runs.len(), "nothing ran again");
    let points = again["points"].as_array().expect("points");
    assert_eq!(points.len(), 4);
    assert!(points.iter().all(|pt| pt["status"] == "ok"), "{again}");
    assert_eq!(
        points[0]["try"], "grid-lr=0.2_epochs=1",
        "the last axis varies fastest"
    );
    assert_eq!(
        points[0]["overrides"],
        serde_json::json!(["train.params.lr=0.2", "train.params.epochs=1"])
    );
    let actions: Vec<&str> = points[3]["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["action"].as_str())
        .collect();
    assert!(actions.iter().all(|a| *a != "ran"), "{actions:?}");
}

#[test]
fn a_sweep_combines_with_set_and_refuses_to_set_what_it_sweeps() {
    let p = Project::new(&with_sweep("\"train.params.lr\" = [0.2, 0.4]\n"));
    let out = p.json(&["run", "--sweep", "grid", "--set", "train.params.epochs=7"]);
    assert_eq!(
        out["points"][1]["overrides"],
        serde_json::json!(["train.params.epochs=7", "train.params.lr=0.4"])
    );
    let show = p.json(&["exp", "show"]);
    assert_eq!(
        show["tries"][1]["params"]["train.params.epochs"], 7,
        "{show}"
    );

    let clash = p.pipe(&["run", "--sweep", "grid", "--set", "train.params.lr=1"]);
    assert_eq!(clash.status.code(), Some(2));
    let err = text(&clash.stderr);
    assert!(
        err.contains("--set train.params.lr=1") && err.contains("swept by sweep grid"),
        "{err}"
    );

    let unknown = p.pipe(&["run", "--sweep", "gird"]);
    assert_eq!(unknown.status.code(), Some(2));
    let err = text(&unknown.stderr);
    assert!(
        err.contains("no such sweep") && err.contains("did you mean `grid`?"),
        "{err}"
    );
}

#[test]
fn bad_sweeps_are_located_errors_before_anything_runs() {
    let grid_line = EXP.lines().count() + 3;
    for (grid, at, says) in [
        (
            "\"trian.params.lr\" = [1]",
            1,
            "no stage named `trian` in the pipeline (did you mean `train`?)",
        ),
        ("\"train.params.lr\" = []", 1, "an empty list"),
        ("\"train.params.lr\" = 0.1", 1, "must be a list of values"),
        ("\"train.kind\" = [\"command\"]", 1, "cannot be swept"),
        ("\"train.cmd\" = [\"true\", 3]", 24, "expected a string"),
        ("\"train.nope\" = [1]", 17, "unknown field `nope`"),
        ("\"pipeline.seed\" = [1, -2]", 23, "non-negative integer"),
    ] {
        let p = Project::new(&with_sweep(grid));
        let out = p.pipe(&["run", "--sweep", "grid"]);
        assert_eq!(out.status.code(), Some(2), "{grid}");
        let err = text(&out.stderr);
        let location = format!("pipeline.toml:{grid_line}:{at}: ");
        assert!(
            err.contains(&location) && err.contains(says),
            "{grid}: want {location}…{says}: {err}"
        );
        assert!(p.executions().is_empty(), "{grid}: nothing ran");
    }
    // Too many points is refused, not enumerated.
    let huge: String = (0..4)
        .map(|i| format!("\"train.params.k{i}\" = [{}]\n", vec!["1"; 40].join(", ")))
        .collect();
    let p = Project::new(&with_sweep(&huge));
    let out = p.pipe(&["run", "--sweep", "grid"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("more than 1000 points"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_failed_point_stops_the_sweep_unless_keep_going() {
    // lr = "boom" makes train write metrics.json that is not JSON: the stage fails.
    let p = Project::new(&with_sweep("\"train.params.lr\" = [\"boom\", 0.2]\n"));
    let out = p.pipe(&["run", "--sweep", "grid"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("1 failed, 1 not run"), "{stdout}");
    assert_eq!(count(&p.executions(), "train"), 1);

    let out = p.pipe(&["run", "--sweep", "grid", "--keep-going"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("1 ok, 1 failed"),
        "{}",
        text(&out.stdout)
    );
    let show = p.json(&["exp", "show"]);
    let status: Vec<(&str, &str)> = show["tries"]
        .as_array()
        .expect("tries")
        .iter()
        .skip(1)
        .map(|t| {
            (
                t["name"].as_str().unwrap_or(""),
                t["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(status.contains(&("grid-lr=boom", "failed")), "{status:?}");
    assert!(status.contains(&("grid-lr=0.2", "ok")), "{status:?}");
}

/// Like [`EXP`], with train writing a `loss_history.json` (validation losses `lr × 10/epoch`)
/// and evaluate a `report.html`, as the built-in kinds do.
const CURVES: &str = r#"
[pipeline]
name = "curves"

[stages.train]
kind = "command"
params = { lr = 0.1 }
cmd = '''awk -v lr=$PIPE_PARAM_LR 'BEGIN { printf "{\"val\": [{\"epoch\": 1, \"loss\": %s}, {\"epoch\": 2, \"loss\": %s}]}", lr * 10, lr * 5 }' > $PIPE_OUT/loss_history.json; printf '{"loss": %s}' $PIPE_PARAM_LR > $PIPE_OUT/metrics.json'''

[stages.evaluate]
kind = "command"
deps = ["train"]
cmd = "echo '<p>report</p>' > $PIPE_OUT/report.html"
"#;

#[test]
fn the_experiments_page_overlays_every_try_and_links_its_report() {
    let p = Project::new(CURVES);
    p.ok(&["run"]);
    assert!(
        !p.path("results/experiments.html").exists(),
        "no page without a try"
    );
    let out = p.ok(&["run", "--set", "train.params.lr=0.3", "--name", "fast"]);
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.ends_with("or results/experiments.html")),
        "{out}"
    );
    let page = p.read("results/experiments.html");
    // The table: both rows, the parameter that differs, the best loss in bold.
    for needle in [
        ">workspace</td>",
        ">fast</td>",
        ">train.params.lr</th>",
        "<b>0.1</b>",
    ] {
        assert!(page.contains(needle), "no {needle} in the page:\n{page}");
    }
    // Each row links to the evaluate report results/ shows for it, and the link works.
    for link in ["evaluate/report.html", "tries/fast/evaluate/report.html"] {
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "{link}:\n{page}"
        );
        assert!(p.path("results").join(link).is_file(), "{link}");
    }
    // The overlay: inline SVG, a legend entry per try, a log axis, and the PNG beside it.
    let start = page.find("<svg").expect("an inline SVG");
    let end = page.find("</svg>").expect("the SVG's end");
    let svg = &page[start..end];
    assert!(
        svg.contains("\nworkspace\n") && svg.contains("\nfast\n"),
        "{svg}"
    );
    // Each row's line and legend sample in the colour of its table swatch.
    for colour in ["1f77b4", "ff7f0e"] {
        assert!(
            page.contains(&format!("background:#{colour}")),
            "swatch {colour}"
        );
        let stroke = format!("stroke=\"#{}\"", colour.to_uppercase());
        assert!(svg.matches(&stroke).count() >= 2, "line {colour}:\n{svg}");
    }
    assert!(svg.contains("validation loss (log)"));
    let png = image::open(p.path("results/experiments.png")).expect("a PNG");
    assert!(png.width() > 100 && png.height() > 100);

    // Removing the try updates the page; `exp show --html` writes it on demand.
    p.ok(&["exp", "remove", "fast"]);
    let page = p.read("results/experiments.html");
    assert!(!page.contains(">fast<"), "{page}");
    std::fs::remove_file(p.path("results/experiments.html")).expect("rm");
    let out = p.ok(&["exp", "show", "--html"]);
    assert_eq!(out.trim(), "results/experiments.html");
    assert!(
        p.read("results/experiments.html")
            .contains(">workspace</td>")
    );
    // The page's files are readable by others, like everything else under results/.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path("results/experiments.html"))
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    assert_eq!(mode & 0o044, 0o044, "mode {mode:o}");
}
