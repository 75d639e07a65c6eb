//! `pipe score` through the binary: the COCO layouts, `--allow-missing`, `--keys coco`.

use super::*;

fn project() -> Project {
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    p.write(
        "p.jsonl",
        concat!(
            "{\"image\": 1, \"caption\": \"a dog runs on the grass\"}\n",
            "{\"image\": 2, \"caption\": \"a man rides a bike\"}\n",
            "{\"image\": 3, \"caption\": \"two cats on a couch\"}\n",
        ),
    );
    p.write(
        "r.jsonl",
        concat!(
            "{\"image\": 1, \"captions\": [\"a dog running in the grass\", \"the dog runs\"]}\n",
            "{\"image\": 2, \"captions\": [\"a man riding a bicycle\", \"a cyclist\"]}\n",
            "{\"image\": 3, \"captions\": [\"two cats asleep on a sofa\"]}\n",
        ),
    );
    // The same captions as COCO results and annotations.
    p.write(
        "results.json",
        r#"[
  {"image_id": 3, "caption": "two cats on a couch"},
  {"image_id": 1, "caption": "a dog runs on the grass"},
  {"image_id": 2, "caption": "a man rides a bike"}
]"#,
    );
    p.write(
        "captions.json",
        r#"{"images": [{"id": 1}, {"id": 2}, {"id": 3}], "annotations": [
  {"image_id": 1, "id": 10, "caption": "a dog running in the grass"},
  {"image_id": 2, "id": 11, "caption": "a man riding a bicycle"},
  {"image_id": 3, "id": 12, "caption": "two cats asleep on a sofa"},
  {"image_id": 1, "id": 13, "caption": "the dog runs"},
  {"image_id": 2, "id": 14, "caption": "a cyclist"}
]}"#,
    );
    p
}

fn score(p: &Project, preds: &str, refs: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "score",
        "--predictions",
        preds,
        "--references",
        refs,
        "--meteor",
        "approx",
    ];
    args.extend_from_slice(extra);
    p.json(&args)
}

#[test]
fn score_reads_the_coco_layouts_and_gives_the_jsonl_scores() {
    let p = project();
    let expected = score(&p, "p.jsonl", "r.jsonl", &[]);
    assert_eq!(expected["images"], 3);
    assert_eq!(expected["references"], 5);
    assert!(expected["CIDEr"].as_f64().expect("CIDEr") > 0.0);
    for (preds, refs) in [
        ("results.json", "captions.json"),
        ("results.json", "r.jsonl"),
        ("p.jsonl", "captions.json"),
    ] {
        assert_eq!(score(&p, preds, refs, &[]), expected, "{preds} + {refs}");
    }
    // The text table too.
    let args = |preds, refs| {
        [
            "score",
            "--predictions",
            preds,
            "--references",
            refs,
            "--meteor",
            "skip",
        ]
    };
    assert_eq!(
        p.ok(&args("results.json", "captions.json")),
        p.ok(&args("p.jsonl", "r.jsonl"))
    );
}

#[test]
fn score_names_a_file_in_no_layout() {
    let p = project();
    p.write(
        "pretty.json",
        "{\n  \"image\": 1,\n  \"caption\": \"x\"\n}\n",
    );
    p.write(
        "bad.json",
        "[{\"image_id\": 1, \"caption\": \"x\"}, {\"image_id\": 2}]",
    );
    for (preds, refs, needles) in [
        (
            "pretty.json",
            "r.jsonl",
            vec!["pretty.json: ", "without \"annotations\""],
        ),
        (
            "bad.json",
            "r.jsonl",
            vec!["bad.json: [1]: missing \"caption\""],
        ),
        (
            "captions.json",
            "r.jsonl",
            vec![
                "captions.json: ",
                "predictions are JSONL or a COCO results array",
            ],
        ),
        (
            "p.jsonl",
            "results.json",
            vec![
                "results.json: ",
                "references are JSONL or a COCO annotations",
            ],
        ),
    ] {
        let out = p.pipe(&["score", "--predictions", preds, "--references", refs]);
        assert_eq!(out.status.code(), Some(2), "{preds} {refs}");
        let err = text(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{n} in {err}");
        }
    }
}

#[test]
fn allow_missing_scores_the_intersection_with_one_warning() {
    let p = project();
    // Image 3 has no prediction; image 9 has no references.
    p.write(
        "partial.jsonl",
        concat!(
            "{\"image\": 1, \"caption\": \"a dog runs on the grass\"}\n",
            "{\"image\": 2, \"caption\": \"a man rides a bike\"}\n",
            "{\"image\": 9, \"caption\": \"a boat\"}\n",
        ),
    );
    // The default stays an error naming the images.
    let out = p.pipe(&[
        "score",
        "--predictions",
        "partial.jsonl",
        "--references",
        "r.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("prediction(s) for images without references: \"9\""),
        "{}",
        text(&out.stderr)
    );

    let args = [
        "score",
        "--predictions",
        "partial.jsonl",
        "--references",
        "r.jsonl",
        "--meteor",
        "approx",
        "--allow-missing",
        "--json",
    ];
    let out = p.pipe(&args);
    let json: serde_json::Value =
        serde_json::from_str(&succeeded(&args, out.clone())).expect("json");
    let stderr = text(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    let left: Vec<&&str> = warnings.iter().filter(|l| l.contains("left out")).collect();
    assert_eq!(left.len(), 1, "{stderr}");
    assert!(
        left[0].contains("scored the 2 image(s) with both; left out 2: 1 with references but no prediction (\"3\"); 1 with a prediction but no references (\"9\")"),
        "{stderr}"
    );
    assert_eq!(json["images"], 2);
    assert_eq!(json["left_out"]["no_prediction"], 1);
    assert_eq!(json["left_out"]["no_references"], 1);

    // The scores are those of the two images alone.
    p.write(
        "two_p.jsonl",
        concat!(
            "{\"image\": 1, \"caption\": \"a dog runs on the grass\"}\n",
            "{\"image\": 2, \"caption\": \"a man rides a bike\"}\n",
        ),
    );
    p.write(
        "two_r.jsonl",
        concat!(
            "{\"image\": 1, \"captions\": [\"a dog running in the grass\", \"the dog runs\"]}\n",
            "{\"image\": 2, \"captions\": [\"a man riding a bicycle\", \"a cyclist\"]}\n",
        ),
    );
    let mut alone = score(&p, "two_p.jsonl", "two_r.jsonl", &["--allow-missing"]);
    assert_eq!(alone["left_out"]["no_prediction"], 0, "nothing left out");
    alone["left_out"] = json["left_out"].clone();
    assert_eq!(json, alone);

    // Nothing in common: an error, not an empty report.
    p.write("other.jsonl", "{\"image\": 7, \"caption\": \"x\"}\n");
    let out = p.pipe(&[
        "score",
        "--predictions",
        "other.jsonl",
        "--references",
        "r.jsonl",
        "--allow-missing",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no image has both a prediction and references"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn keys_coco_names_the_metrics_as_pycocoevalcap() {
    let p = project();
    let ours = score(&p, "p.jsonl", "r.jsonl", &[]);
    let coco = score(&p, "p.jsonl", "r.jsonl", &["--keys", "coco"]);
    for (a, b) in [
        ("BLEU-1", "Bleu_1"),
        ("BLEU-2", "Bleu_2"),
        ("BLEU-3", "Bleu_3"),
        ("BLEU-4", "Bleu_4"),
        ("METEOR~approx", "METEOR~approx"),
        ("ROUGE-L", "ROUGE_L"),
        ("CIDEr", "CIDEr"),
    ] {
        assert!(coco[b].is_f64(), "{b} in {coco}");
        assert_eq!(coco[b], ours[a], "{b}");
        assert_eq!(
            coco["single_ref"][b], ours["single_ref"][a],
            "single_ref {b}"
        );
    }
    assert!(
        coco.get("BLEU-4").is_none() && coco.get("ROUGE-L").is_none(),
        "{coco}"
    );
    let table = p.ok(&[
        "score",
        "--predictions",
        "p.jsonl",
        "--references",
        "r.jsonl",
        "--meteor",
        "skip",
        "--keys",
        "coco",
    ]);
    assert!(
        table.contains("Bleu_4 ") && table.contains("ROUGE_L "),
        "{table}"
    );
    assert!(!table.contains("BLEU-4"), "{table}");
}
