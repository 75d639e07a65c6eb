//! Bad input gives precise, typed errors naming the file and line.

use std::io::Write;
use std::path::PathBuf;

use pipe_metrics::{MetricsError, ScoreOptions, read_predictions, read_references, score_files};
use tempfile::TempDir;

fn file(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    let mut f = std::fs::File::create(&p).expect("create");
    f.write_all(text.as_bytes()).expect("write");
    p
}

fn expect_malformed(err: MetricsError, path: &PathBuf, line: usize, needle: &str) {
    let msg = err.to_string();
    match err {
        MetricsError::MalformedLine {
            path: p, line: l, ..
        } => {
            assert_eq!(&p, path);
            assert_eq!(l, line, "{msg}");
        }
        other => panic!("expected MalformedLine, got {other:?}"),
    }
    assert!(
        msg.starts_with(&format!("{}:{line}: ", path.display())),
        "{msg}"
    );
    assert!(msg.contains(needle), "{msg} should mention {needle}");
}

#[test]
fn malformed_prediction_lines() {
    let d = TempDir::new().expect("tempdir");
    let cases = [
        (
            "{\"image\": \"a\", \"caption\": \"x\"}\nnot json\n",
            2,
            "invalid JSON",
        ),
        (
            "{\"image\": \"a\", \"caption\": \"x\"}\n\n[1, 2]\n",
            3,
            "expected a JSON object",
        ),
        ("{\"caption\": \"x\"}\n", 1, "missing \"image\""),
        ("{\"image\": \"a\"}\n", 1, "missing \"caption\""),
        (
            "{\"image\": \"a\", \"caption\": 3}\n",
            1,
            "\"caption\" must be a string",
        ),
        (
            "{\"image\": [1], \"caption\": \"x\"}\n",
            1,
            "\"image\" must be a string or an integer",
        ),
    ];
    for (i, (text, line, needle)) in cases.iter().enumerate() {
        let p = file(&d, &format!("p{i}.jsonl"), text);
        let err = read_predictions(&p).expect_err("malformed");
        expect_malformed(err, &p, *line, needle);
    }
}

#[test]
fn malformed_reference_lines() {
    let d = TempDir::new().expect("tempdir");
    let cases = [
        (
            "{\"image\": \"a\", \"captions\": [\"x\"]}\n{\"image\": \"b\", \"captions\": \"x\"}\n",
            2,
            "must be an array",
        ),
        (
            "{\"image\": \"a\", \"captions\": []}\n",
            1,
            "\"captions\" is empty",
        ),
        (
            "{\"image\": \"a\", \"captions\": [\"x\", 5]}\n",
            1,
            "\"captions\"[1] must be a string",
        ),
        ("{\"image\": \"a\"}\n", 1, "missing \"captions\""),
        (
            "{\"image\": \"a\", \"captions\": [\"x\"]\n",
            1,
            "invalid JSON",
        ),
    ];
    for (i, (text, line, needle)) in cases.iter().enumerate() {
        let p = file(&d, &format!("r{i}.jsonl"), text);
        let err = read_references(&p).expect_err("malformed");
        expect_malformed(err, &p, *line, needle);
    }
}

#[test]
fn integer_ids_are_accepted() {
    let d = TempDir::new().expect("tempdir");
    let p = file(&d, "p.jsonl", "{\"image\": 42, \"caption\": \"a dog\"}\n");
    let preds = read_predictions(&p).expect("reads");
    assert_eq!(preds.get("42").map(String::as_str), Some("a dog"));
}

#[test]
fn duplicate_ids_name_both_lines() {
    let d = TempDir::new().expect("tempdir");
    let p = file(
        &d,
        "p.jsonl",
        "{\"image\": \"a\", \"caption\": \"x\"}\n{\"image\": \"b\", \"caption\": \"y\"}\n{\"image\": \"a\", \"caption\": \"z\"}\n",
    );
    let err = read_predictions(&p).expect_err("duplicate");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            MetricsError::DuplicateId {
                line: 3,
                first_line: 1,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!("{}:3: duplicate image id \"a\"", p.display())),
        "{msg}"
    );
    assert!(msg.contains("line 1"), "{msg}");

    let r = file(
        &d,
        "r.jsonl",
        "{\"image\": \"a\", \"captions\": [\"x\"]}\n{\"image\": \"a\", \"captions\": [\"y\"]}\n",
    );
    let err = read_references(&r).expect_err("duplicate");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2: duplicate", r.display())),
        "{err}"
    );
}

#[test]
fn unknown_images_are_listed() {
    let d = TempDir::new().expect("tempdir");
    let p = file(
        &d,
        "p.jsonl",
        "{\"image\": \"a\", \"caption\": \"x\"}\n{\"image\": \"zz\", \"caption\": \"y\"}\n{\"image\": \"yy\", \"caption\": \"y\"}\n",
    );
    let r = file(&d, "r.jsonl", "{\"image\": \"a\", \"captions\": [\"x\"]}\n");
    let err = score_files(&p, &r, &ScoreOptions::default()).expect_err("unknown");
    let msg = err.to_string();
    assert!(
        matches!(&err, MetricsError::UnknownImages { ids } if ids == &["yy", "zz"]),
        "{msg}"
    );
    assert!(
        msg.contains("2 prediction(s) for images without references: \"yy\", \"zz\""),
        "{msg}"
    );
}

#[test]
fn missing_predictions_are_listed_first_ten_and_count() {
    let d = TempDir::new().expect("tempdir");
    let p = file(&d, "p.jsonl", "{\"image\": \"i00\", \"caption\": \"x\"}\n");
    let refs: String = (0..25)
        .map(|i| format!("{{\"image\": \"i{i:02}\", \"captions\": [\"x\"]}}\n"))
        .collect();
    let r = file(&d, "r.jsonl", &refs);
    let err = score_files(&p, &r, &ScoreOptions::default()).expect_err("missing");
    let msg = err.to_string();
    assert!(
        matches!(&err, MetricsError::MissingPredictions { ids } if ids.len() == 24),
        "{msg}"
    );
    assert!(
        msg.starts_with("24 image(s) have references but no prediction: \"i01\", \"i02\""),
        "{msg}"
    );
    assert!(msg.contains("\"i10\" … and 14 more"), "{msg}");
    assert!(!msg.contains("\"i11\""), "{msg}");
}

#[test]
fn unreadable_file_names_the_path() {
    let err = read_predictions("/nonexistent/preds.jsonl".as_ref()).expect_err("io");
    assert!(matches!(err, MetricsError::Io { .. }));
    assert!(
        err.to_string().contains("/nonexistent/preds.jsonl"),
        "{err}"
    );
}

#[test]
fn a_byte_order_mark_is_skipped_and_non_utf8_is_located() {
    let d = TempDir::new().expect("tempdir");
    let p = d.path().join("bom.jsonl");
    std::fs::write(
        &p,
        b"\xEF\xBB\xBF{\"image\": \"a\", \"caption\": \"x\"}\r\n{\"image\": \"b\", \"caption\": \"y\"}\r\n",
    )
    .expect("write");
    let preds = read_predictions(&p).expect("a BOM and CRLF are fine");
    assert_eq!(preds.len(), 2);
    assert_eq!(preds["a"], "x");

    let p = d.path().join("latin1.jsonl");
    std::fs::write(
        &p,
        b"{\"image\": \"a\", \"caption\": \"x\"}\n{\"image\": \"b\", \"caption\": \"caf\xE9\"}\n",
    )
    .expect("write");
    let err = read_predictions(&p).expect_err("not UTF-8");
    expect_malformed(err, &p, 2, "not valid UTF-8 (byte 31 of the line)");
}
