//! Report shape: JSON keys, approximation labelling, text table.

use std::collections::BTreeMap;

use pipe_metrics::{MeteorMode, MeteorOptions, MeteorSource, ScoreOptions, score};

fn data() -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let preds = BTreeMap::from([
        ("1".to_string(), "a dog runs on the grass".to_string()),
        ("2".to_string(), "a man rides a bike".to_string()),
    ]);
    let refs = BTreeMap::from([
        (
            "1".to_string(),
            vec![
                "a dog running in the grass".to_string(),
                "the dog runs".to_string(),
            ],
        ),
        (
            "2".to_string(),
            vec!["a man riding a bicycle down the street".to_string()],
        ),
    ]);
    (preds, refs)
}

#[test]
fn approximation_is_never_plain_meteor() {
    let (p, r) = data();
    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: None,
            mode: MeteorMode::Approximate,
        },
        single_ref: true,
    };
    let rep = score(&p, &r, &opts).expect("scores");
    assert_eq!(rep.meteor_source, MeteorSource::Approximation);
    let j = rep.to_json();
    let keys: Vec<&str> = j
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "BLEU-1",
        "BLEU-2",
        "BLEU-3",
        "BLEU-4",
        "METEOR~approx",
        "ROUGE-L",
        "CIDEr",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert!(!keys.contains(&"METEOR"), "{keys:?}");
    assert!(j["single_ref"]["METEOR~approx"].is_f64());
    assert!(j["single_ref"].get("METEOR").is_none());
    let text = rep.to_text();
    assert!(
        text.contains("METEOR (approximation, not the official jar)"),
        "{text}"
    );
    assert!(
        text.contains("Single-ref") && text.contains("Multi-ref"),
        "{text}"
    );
    assert!(text.contains("is what papers report"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("METEOR ") && !l.contains("approximation"))
    );
    // Fractions, CIDEr on its own scale.
    let b1 = j["BLEU-1"].as_f64().expect("number");
    assert!((0.0..=1.0).contains(&b1));
    assert_eq!(j["images"], 2);
    assert_eq!(j["references"], 3);
    assert_eq!(rep.per_image_cider().len(), 2);
}

#[test]
fn skipped_meteor_has_no_key() {
    let (p, r) = data();
    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: None,
            mode: MeteorMode::Skip,
        },
        single_ref: false,
    };
    let rep = score(&p, &r, &opts).expect("scores");
    let j = rep.to_json();
    assert!(j.get("METEOR").is_none() && j.get("METEOR~approx").is_none());
    assert!(j.get("single_ref").is_none());
    assert!(!rep.to_text().contains("METEOR"));
}

#[test]
fn official_mode_without_jar_is_an_error() {
    let (p, r) = data();
    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: Some("/nonexistent/meteor-1.5.jar".into()),
            mode: MeteorMode::Official,
        },
        single_ref: false,
    };
    let err = score(&p, &r, &opts).expect_err("no jar");
    assert!(err.to_string().contains("meteor-1.5.jar"), "{err}");
}

#[test]
fn auto_mode_falls_back_to_the_labelled_approximation() {
    let (p, r) = data();
    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: Some("/nonexistent/meteor-1.5.jar".into()),
            mode: MeteorMode::Auto,
        },
        single_ref: false,
    };
    let rep = score(&p, &r, &opts).expect("scores");
    assert_eq!(rep.meteor_source, MeteorSource::Approximation);
    assert!(rep.to_json().get("METEOR~approx").is_some());
    assert!(rep.to_json().get("METEOR").is_none());
}
