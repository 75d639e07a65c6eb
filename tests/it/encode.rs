//! The encode stage through the binary on the shared blip-tiny fixture: train and evaluate read
//! its features and get what running the vision encoder gives; an lr change reruns train (and
//! what follows it) only; training the vision encoder against cached features is refused.

use super::*;

/// prep → collate → encode → train (features) and, beside it, train_pixels (vision encoder
/// run every step), both LoRA without dropout so the two must agree.
fn pipeline(model: &Path) -> String {
    let m = model.display();
    format!(
        r#"
[pipeline]
name = "encode-test"

[stages.prep]
kind = "prep"
dataset = "synthetic"
images = 40
size = 64
split = {{ train = 0.7, val = 0.15, test = 0.15 }}

[stages.collate]
kind = "collate"
deps = ["prep"]
model = "{m}"
max_length = 24

[stages.encode]
kind = "encode"
deps = ["collate"]
model = "{m}"

[stages.train]
kind = "train"
deps = ["collate", "encode"]
model = "{m}"
epochs = 2
lr = 1e-3
lora = {{ r = 4, alpha = 8, dropout = 0.0 }}

[stages.evaluate]
kind = "evaluate"
deps = ["collate", "train", "encode"]
num_beams = 1
meteor = "skip"

[stages.evaluate_pixels]
kind = "evaluate"
deps = ["collate", "train"]
num_beams = 1
meteor = "skip"

[stages.train_pixels]
kind = "train"
deps = ["collate"]
model = "{m}"
epochs = 2
lr = 1e-3
lora = {{ r = 4, alpha = 8, dropout = 0.0 }}
"#
    )
}

fn best_val(p: &Project, stage: &str, extra: &[&str]) -> f64 {
    let mut args = vec!["show", stage];
    args.extend_from_slice(extra);
    let v = p.json(&args);
    let dir = PathBuf::from(v["path"].as_str().expect("path"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
            .expect("json");
    summary["best_val_loss"].as_f64().expect("best_val_loss")
}

#[test]
fn train_reads_encode_features_and_an_lr_change_reruns_only_train() {
    let Some(model) = fixture() else { return };
    let p = Project::new(&pipeline(&model));
    let actions = p.run_actions(&[]);
    assert!(
        actions.iter().all(|(_, a)| a == "ran"),
        "first run: {actions:?}"
    );

    // Same model, same data, same seed: reading the features equals running the encoder.
    let with = best_val(&p, "train", &[]);
    let without = best_val(&p, "train_pixels", &[]);
    assert!(
        (with - without).abs() < 1e-4,
        "val loss with encode {with} vs without {without}"
    );

    // evaluate reads the features (its log says so) and scores exactly as running the encoder.
    let metrics = |stage: &str| -> serde_json::Value {
        serde_json::from_str(&p.read(&format!("results/{stage}/metrics.json"))).expect("metrics")
    };
    let (a, b) = (metrics("evaluate"), metrics("evaluate_pixels"));
    let (la, lb) = (
        a["test_loss"].as_f64().expect("loss"),
        b["test_loss"].as_f64().expect("loss"),
    );
    assert!((la - lb).abs() < 1e-5, "test loss {la} vs {lb}");
    assert_eq!(a["BLEU-4"], b["BLEU-4"]);
    let out = p.pipe(&["run", "evaluate", "--force", "-v"]);
    assert!(
        text(&out.stderr).contains("reading vision features from encode"),
        "{}",
        text(&out.stderr)
    );

    let actions = p.run_actions(&["--set", "train.lr=2e-3"]);
    let expected = pairs(&[
        ("prep", "cached"),
        ("collate", "cached"),
        ("encode", "cached"),
        ("train", "ran"),
        ("evaluate", "ran"),
        ("evaluate_pixels", "ran"),
        ("train_pixels", "cached"),
    ]);
    assert_eq!(actions, expected);
    let actions = p.run_actions(&["--set", "train.lora.r=8"]);
    assert_eq!(actions, expected, "a LoRA-rank change reruns train only");
}

#[test]
fn training_the_vision_encoder_on_cached_features_is_refused() {
    let Some(model) = fixture() else { return };
    let p = Project::new(&pipeline(&model));
    let out = p.pipe(&[
        "run",
        "--set",
        "train.method=\"full\"",
        "--set",
        "train.freeze_vision=false",
        "--set",
        "prep.images=20",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stdout) + &text(&out.stderr);
    assert!(err.contains("freeze_vision = true"), "{err}");
    assert!(err.contains("features.json"), "{err}");
}
