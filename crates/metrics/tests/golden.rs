//! Golden tests: pycocoevalcap's own outputs (see golden/make_golden.py).

use std::collections::BTreeMap;
use std::path::PathBuf;

use pipe_metrics::meteor::{APPROX_MAX_ABS_ERROR, find_jar};
use pipe_metrics::tokenize::tokenize_stream;
use pipe_metrics::{MeteorMode, MeteorOptions, Report, ScoreOptions, Scores, score};
use serde_json::Value;

const TOL: f64 = 1e-6;

fn golden(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("golden file readable");
    serde_json::from_str(&text).expect("golden file is JSON")
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
        .collect()
}

fn list_map(v: &Value) -> BTreeMap<String, Vec<String>> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| {
            let l = v
                .as_array()
                .expect("array")
                .iter()
                .map(|s| s.as_str().expect("string").to_string())
                .collect();
            (k.clone(), l)
        })
        .collect()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("golden has {key}"))
}

fn assert_close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: got {got}, pycocoevalcap {want} (diff {})",
        got - want
    );
}

fn assert_scores(set: &str, proto: &str, got: &Scores, want: &Value) {
    for k in 0..4 {
        assert_close(
            &format!("{set} {proto} BLEU-{}", k + 1),
            got.bleu[k],
            num(want, &format!("BLEU-{}", k + 1)),
        );
    }
    assert_close(
        &format!("{set} {proto} ROUGE-L"),
        got.rouge_l,
        num(want, "ROUGE-L"),
    );
    assert_close(
        &format!("{set} {proto} CIDEr"),
        got.cider,
        num(want, "CIDEr"),
    );
}

#[test]
fn tokenizer_matches_ptbtokenizer() {
    let g = golden("tokenizer.json");
    let input: Vec<&str> = g["input"]
        .as_array()
        .expect("input")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    let want: Vec<&str> = g["tokenized"]
        .as_array()
        .expect("tokenized")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    let got = tokenize_stream(&input).expect("tokenizes");
    let bad: Vec<String> = input
        .iter()
        .zip(&got)
        .zip(&want)
        .filter(|((_, g), w)| g != w)
        .map(|((i, g), w)| format!("input {i:?}\n  got  {g:?}\n  java {w:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        input.len(),
        bad.join("\n")
    );
}

fn check_set(name: &str) -> (Value, Report) {
    let g = golden(&format!("set_{name}.json"));
    let preds = str_map(&g["predictions"]);
    let refs = list_map(&g["references"]);

    // Tokenization, as the two pycocoevalcap batches see it.
    let ids: Vec<&String> = refs.keys().collect();
    let pred_raw: Vec<&str> = ids.iter().map(|k| preds[*k].as_str()).collect();
    let ref_raw: Vec<&str> = ids
        .iter()
        .flat_map(|k| refs[*k].iter().map(String::as_str))
        .collect();
    let want_pred = str_map(&g["tokenized"]["predictions"]);
    let want_refs = list_map(&g["tokenized"]["references"]);
    let got_pred = tokenize_stream(&pred_raw).expect("tokenizes");
    let got_refs = tokenize_stream(&ref_raw).expect("tokenizes");
    let want_refs_flat: Vec<&String> = ids.iter().flat_map(|k| want_refs[*k].iter()).collect();
    for (k, got) in ids.iter().zip(&got_pred) {
        assert_eq!(got, &want_pred[*k], "{name}: tokenized prediction of {k}");
    }
    for (got, want) in got_refs.iter().zip(&want_refs_flat) {
        assert_eq!(got, *want, "{name}: tokenized reference");
    }

    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: None,
            mode: MeteorMode::Approximate,
        },
        single_ref: true,
    };
    let report = score(&preds, &refs, &opts).expect("scores");
    assert_scores(name, "multi-ref", &report.multi_ref, &g["multi_ref"]);
    let single = report.single_ref.as_ref().expect("single-ref requested");
    assert_scores(name, "single-ref", single, &g["single_ref"]);
    let per = g["multi_ref"]["per_image_cider"]
        .as_object()
        .expect("per-image");
    for (id, want) in per {
        let got = report.image_cider(id).expect("image scored");
        assert_close(
            &format!("{name} CIDEr of {id}"),
            got,
            want.as_f64().expect("number"),
        );
    }
    (g, report)
}

#[test]
fn odd_set_matches_pycocoevalcap() {
    check_set("odd");
}

#[test]
fn fuzz_set_matches_pycocoevalcap() {
    check_set("fuzz");
}

#[test]
fn realistic_set_matches_pycocoevalcap_and_meteor_approx_is_close() {
    let (g, report) = check_set("realistic");
    let single = report.single_ref.as_ref().expect("single-ref");
    for (proto, got, want) in [
        (
            "multi-ref",
            report.multi_ref.meteor,
            num(&g["multi_ref"], "METEOR"),
        ),
        ("single-ref", single.meteor, num(&g["single_ref"], "METEOR")),
    ] {
        let got = got.expect("approximate METEOR computed");
        println!(
            "METEOR {proto}: approximation {got:.4}, official {want:.4}, diff {:+.4}",
            got - want
        );
        assert!(
            (got - want).abs() <= APPROX_MAX_ABS_ERROR,
            "METEOR~approx {proto} {got} is more than {APPROX_MAX_ABS_ERROR} from the official {want}"
        );
    }
}

#[test]
fn official_meteor_matches_when_jar_available() {
    let opts = MeteorOptions::default();
    let Some(jar) = find_jar(&opts) else {
        println!(
            "NOTE: java or meteor-1.5.jar not available; official METEOR golden check skipped"
        );
        return;
    };
    let g = golden("set_odd.json");
    let preds = str_map(&g["predictions"]);
    let refs = list_map(&g["references"]);
    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: Some(jar),
            mode: MeteorMode::Official,
        },
        single_ref: true,
    };
    let report = score(&preds, &refs, &opts).expect("scores with the jar");
    assert_eq!(report.to_json()["METEOR"].as_f64(), report.multi_ref.meteor);
    let got = report.multi_ref.meteor.expect("official METEOR");
    assert_close(
        "official METEOR multi-ref",
        got,
        num(&g["multi_ref"], "METEOR"),
    );
    let single = report
        .single_ref
        .as_ref()
        .and_then(|s| s.meteor)
        .expect("single");
    assert_close(
        "official METEOR single-ref",
        single,
        num(&g["single_ref"], "METEOR"),
    );
}
