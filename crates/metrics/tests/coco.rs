//! The COCO layouts (results array, annotations object), told from JSONL by content, score
//! exactly as the equivalent JSONL; `keep_common` and the pycocoevalcap key names.

use std::path::{Path, PathBuf};

use pipe_metrics::{
    Format, Keys, MeteorMode, MeteorOptions, MetricsError, ScoreOptions, detect_format,
    keep_common, read_predictions, read_references, score, score_files,
};
use serde_json::json;
use tempfile::TempDir;

fn file(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn opts() -> ScoreOptions {
    ScoreOptions {
        meteor: MeteorOptions {
            jar: None,
            mode: MeteorMode::Approximate,
        },
        single_ref: true,
    }
}

type Predictions = Vec<(serde_json::Value, &'static str)>;
type References = Vec<(serde_json::Value, Vec<&'static str>)>;

/// Three images (integer and string ids), two to three references each.
fn sets() -> (Predictions, References) {
    let preds = vec![
        (json!(42), "a dog runs on the grass"),
        (json!(7), "a man rides a bike down a street"),
        (json!("x.jpg"), "two cats sleeping on a couch"),
    ];
    let refs = vec![
        (
            json!(42),
            vec![
                "a dog running in the grass",
                "the brown dog runs",
                "a dog on a lawn",
            ],
        ),
        (
            json!(7),
            vec![
                "a man riding a bicycle down the street",
                "a cyclist on a road",
            ],
        ),
        (
            json!("x.jpg"),
            vec![
                "two cats asleep on a sofa",
                "cats sleeping together on a couch",
            ],
        ),
    ];
    (preds, refs)
}

fn jsonl(rows: impl Iterator<Item = serde_json::Value>) -> String {
    rows.map(|r| format!("{r}\n")).collect()
}

/// The same captions in the four files: JSONL and COCO, predictions and references.
fn write_all(d: &TempDir) -> [PathBuf; 4] {
    let (preds, refs) = sets();
    let p_jsonl = jsonl(
        preds
            .iter()
            .map(|(id, c)| json!({"image": id, "caption": c})),
    );
    let r_jsonl = jsonl(
        refs.iter()
            .map(|(id, cs)| json!({"image": id, "captions": cs})),
    );
    // Results in another order than the JSONL, pretty-printed over many lines.
    let results: Vec<_> = preds
        .iter()
        .rev()
        .map(|(id, c)| json!({"image_id": id, "caption": c}))
        .collect();
    // Annotations interleaved across images, with ids and the extra keys COCO has.
    let mut annotations = Vec::new();
    for k in 0..3 {
        for (id, cs) in &refs {
            if let Some(c) = cs.get(k) {
                annotations.push(json!({"image_id": id, "id": annotations.len(), "caption": c}));
            }
        }
    }
    let coco = json!({
        "info": {"description": "test"},
        "images": refs.iter().map(|(id, _)| json!({"id": id, "file_name": "f.jpg"})).collect::<Vec<_>>(),
        "annotations": annotations,
    });
    [
        file(d, "p.jsonl", &p_jsonl),
        file(d, "r.jsonl", &r_jsonl),
        file(
            d,
            "results.json",
            &serde_json::to_string_pretty(&results).expect("json"),
        ),
        // Minified, as json.dump writes it: one line.
        file(d, "captions_val.json", &coco.to_string()),
    ]
}

#[test]
fn coco_layouts_score_exactly_as_the_equivalent_jsonl() {
    let d = TempDir::new().expect("tempdir");
    let [p, r, results, annotations] = write_all(&d);
    let expected = score_files(&p, &r, &opts()).expect("JSONL scores");
    assert_eq!(expected.images, 3);
    assert_eq!(expected.references, 7);
    for (preds, refs) in [(&results, &annotations), (&results, &r), (&p, &annotations)] {
        let got = score_files(preds, refs, &opts()).expect("COCO scores");
        assert_eq!(got, expected, "{} + {}", preds.display(), refs.display());
    }
    // References keep the annotations' order within an image.
    let refs = read_references(&annotations).expect("annotations");
    assert_eq!(
        refs["42"],
        [
            "a dog running in the grass",
            "the brown dog runs",
            "a dog on a lawn"
        ]
    );
    assert_eq!(
        read_predictions(&results).expect("results")["7"],
        "a man rides a bike down a street"
    );
}

#[test]
fn the_layout_is_told_by_content() {
    let d = TempDir::new().expect("tempdir");
    let [p, r, results, annotations] = write_all(&d);
    assert_eq!(detect_format(&p).expect("p"), Format::Jsonl);
    assert_eq!(detect_format(&r).expect("r"), Format::Jsonl);
    assert_eq!(
        detect_format(&results).expect("results"),
        Format::CocoResults
    );
    assert_eq!(
        detect_format(&annotations).expect("ann"),
        Format::CocoAnnotations
    );
    // A one-line JSONL file is one JSON object too: without "annotations" it is JSONL.
    let one = file(&d, "one.json", "{\"image\": 1, \"caption\": \"a dog\"}");
    assert_eq!(detect_format(&one).expect("one"), Format::Jsonl);
    assert_eq!(read_predictions(&one).expect("one")["1"], "a dog");
    // Pretty-printed annotations, with a byte-order mark.
    let pretty = file(
        &d,
        "pretty.json",
        "\u{feff}{\n  \"annotations\": [\n    {\"image_id\": 1, \"caption\": \"a dog\"}\n  ]\n}\n",
    );
    assert_eq!(read_references(&pretty).expect("pretty")["1"], ["a dog"]);
}

fn expect_error(err: MetricsError, path: &Path, needles: &[&str]) -> MetricsError {
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:", path.display())),
        "{msg} should name {}",
        path.display()
    );
    for n in needles {
        assert!(msg.contains(n), "{msg} should mention {n}");
    }
    err
}

#[test]
fn files_in_no_layout_or_the_wrong_one_are_named() {
    let d = TempDir::new().expect("tempdir");
    let [_, _, results, annotations] = write_all(&d);
    // A pretty-printed object without "annotations": neither JSONL nor COCO.
    let obj = file(
        &d,
        "obj.json",
        "{\n  \"image\": 1,\n  \"caption\": \"x\"\n}\n",
    );
    for err in [
        read_predictions(&obj).expect_err("pretty object"),
        read_references(&obj).expect_err("pretty object"),
    ] {
        let err = expect_error(
            err,
            &obj,
            &["without \"annotations\"", "JSONL", "COCO results"],
        );
        assert!(matches!(err, MetricsError::UnknownFormat { .. }), "{err:?}");
    }
    let text = file(&d, "notes.txt", "image,caption\n1,a dog\n");
    let err = expect_error(
        read_predictions(&text).expect_err("csv"),
        &text,
        &["expected JSONL", "starts with \"i\""],
    );
    assert!(matches!(err, MetricsError::UnknownFormat { .. }), "{err:?}");
    expect_error(
        read_predictions(&annotations).expect_err("annotations as predictions"),
        &annotations,
        &[
            "COCO annotations",
            "predictions are JSONL or a COCO results array",
        ],
    );
    expect_error(
        read_references(&results).expect_err("results as references"),
        &results,
        &[
            "COCO results array",
            "references are JSONL or a COCO annotations",
        ],
    );
    // A JSON document broken on its third line: the parser's line.
    let broken = file(
        &d,
        "broken.json",
        "{\n  \"annotations\": [\n    {\"image_id\": 1,,}\n  ]\n}\n",
    );
    let err = read_references(&broken).expect_err("broken");
    assert!(
        matches!(err, MetricsError::MalformedLine { line: 3, .. }),
        "{err:?}"
    );
    expect_error(err, &broken, &["invalid JSON"]);
    let broken = file(
        &d,
        "broken_results.json",
        "[{\"image_id\": 1, \"caption\": \"x\"}",
    );
    expect_error(
        read_predictions(&broken).expect_err("unterminated"),
        &broken,
        &["invalid JSON"],
    );
}

#[test]
fn bad_entries_are_named_by_their_place() {
    let d = TempDir::new().expect("tempdir");
    let cases: [(&str, bool, &str, &[&str]); 7] = [
        (
            r#"[{"image_id": 1, "caption": "x"}, {"image_id": 2}]"#,
            true,
            "[1]",
            &["missing \"caption\""],
        ),
        (
            r#"[{"image_id": 1.5, "caption": "x"}]"#,
            true,
            "[0]",
            &["\"image_id\" must be a string or an integer, got a number"],
        ),
        (
            r#"[1, 2]"#,
            true,
            "[0]",
            &["expected a JSON object, got a number"],
        ),
        (
            r#"[{"image_id": 1, "caption": "x"}, {"image_id": 2, "caption": "y"}, {"image_id": 1, "caption": "z"}]"#,
            true,
            "[2]",
            &["duplicate image_id \"1\" (first seen at [0])"],
        ),
        (
            r#"{"annotations": [{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": 3}]}"#,
            false,
            "annotations[1]",
            &["\"caption\" must be a string, got a number"],
        ),
        (
            r#"{"annotations": [{"caption": "x"}]}"#,
            false,
            "annotations[0]",
            &["missing \"image_id\""],
        ),
        (
            r#"{"images": [], "annotations": {"image_id": 1}}"#,
            false,
            "annotations",
            &["must be an array, got an object"],
        ),
    ];
    for (i, (text, predictions, at, needles)) in cases.iter().enumerate() {
        let p = file(&d, &format!("c{i}.json"), text);
        let err = if *predictions {
            read_predictions(&p).expect_err(text)
        } else {
            read_references(&p).expect_err(text)
        };
        let err = expect_error(err, &p, needles);
        match err {
            MetricsError::MalformedEntry { entry, .. } => assert_eq!(&entry, at, "{text}"),
            other => panic!("{text}: expected MalformedEntry, got {other:?}"),
        }
    }
}

#[test]
fn keep_common_scores_the_intersection_and_says_what_it_left_out() {
    let d = TempDir::new().expect("tempdir");
    let [p, r, _, _] = write_all(&d);
    let mut preds = read_predictions(&p).expect("preds");
    let mut refs = read_references(&r).expect("refs");
    preds.remove("x.jpg");
    preds.insert("extra".into(), "a caption nobody wrote".into());
    // The default stays strict.
    assert!(matches!(
        score(&preds, &refs, &opts()),
        Err(MetricsError::UnknownImages { .. })
    ));
    let left_out = keep_common(&mut preds, &mut refs).expect("some in common");
    assert_eq!(left_out.unpredicted, ["x.jpg"]);
    assert_eq!(left_out.unreferenced, ["extra"]);
    assert_eq!(left_out.len(), 2);
    let got = score(&preds, &refs, &opts()).expect("the intersection scores");
    assert_eq!(got.images, 2);
    assert_eq!(
        got.per_image.keys().collect::<Vec<_>>(),
        ["42", "7"],
        "only the images on both sides"
    );
    // The same as scoring files that held only those two images.
    let p2 = file(
        &d,
        "p2.jsonl",
        &std::fs::read_to_string(&p)
            .expect("p")
            .lines()
            .filter(|l| !l.contains("x.jpg"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let r2 = file(
        &d,
        "r2.jsonl",
        &std::fs::read_to_string(&r)
            .expect("r")
            .lines()
            .filter(|l| !l.contains("x.jpg"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    assert_eq!(got, score_files(&p2, &r2, &opts()).expect("two images"));

    let mut same_p = read_predictions(&p).expect("preds");
    let mut same_r = read_references(&r).expect("refs");
    assert!(
        keep_common(&mut same_p, &mut same_r)
            .expect("all")
            .is_empty()
    );
    assert_eq!(same_p.len(), 3);

    let mut none_p = std::collections::BTreeMap::from([("a".to_string(), "x".to_string())]);
    let err = keep_common(&mut none_p, &mut same_r).expect_err("nothing in common");
    assert!(
        matches!(
            err,
            MetricsError::NothingInCommon {
                predictions: 1,
                references: 3
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no image has both"), "{err}");
}

#[test]
fn coco_keys_name_the_metrics_as_pycocoevalcap() {
    let d = TempDir::new().expect("tempdir");
    let [p, r, _, _] = write_all(&d);
    let report = score_files(&p, &r, &opts()).expect("scores");
    let pipe = report.to_json_keys(Keys::Pipe);
    assert_eq!(pipe, report.to_json(), "Pipe is the default");
    let coco = report.to_json_keys(Keys::Coco);
    let pairs = [
        ("BLEU-1", "Bleu_1"),
        ("BLEU-2", "Bleu_2"),
        ("BLEU-3", "Bleu_3"),
        ("BLEU-4", "Bleu_4"),
        ("METEOR~approx", "METEOR~approx"),
        ("ROUGE-L", "ROUGE_L"),
        ("CIDEr", "CIDEr"),
    ];
    for (ours, theirs) in pairs {
        assert!(coco[theirs].is_f64(), "{theirs} in {coco}");
        assert_eq!(coco[theirs], pipe[ours], "{theirs}");
        assert_eq!(
            coco["single_ref"][theirs], pipe["single_ref"][ours],
            "{theirs}"
        );
    }
    for ours in ["BLEU-1", "BLEU-4", "ROUGE-L"] {
        assert!(coco.get(ours).is_none(), "{ours} in {coco}");
        assert!(coco["single_ref"].get(ours).is_none(), "{ours}");
    }
    assert_eq!(coco["images"], 3);
    let text = report.to_text_keys(Keys::Coco);
    for label in [
        "Bleu_1",
        "Bleu_4",
        "ROUGE_L",
        "CIDEr",
        "METEOR (approximation",
    ] {
        assert!(text.contains(label), "{label} in\n{text}");
    }
    assert!(
        !text.contains("BLEU-1") && !text.contains("ROUGE-L"),
        "{text}"
    );

    // With the official number absent, METEOR is simply not a key, in either naming.
    let skip = ScoreOptions {
        meteor: MeteorOptions {
            jar: None,
            mode: MeteorMode::Skip,
        },
        single_ref: false,
    };
    let coco = score_files(&p, &r, &skip)
        .expect("scores")
        .to_json_keys(Keys::Coco);
    assert!(coco.get("METEOR").is_none() && coco.get("METEOR~approx").is_none());
    assert!(coco.get("single_ref").is_none());
}
