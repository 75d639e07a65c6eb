//! The quickstart's whole DAG through the binary, shrunk to a few seconds.

use super::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn quickstart_runs_end_to_end_and_an_lr_change_reruns_only_train_and_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let p = Project::new(&std::fs::read_to_string(src.join("pipeline.toml")).expect("pipeline"));
    copy_dir(&src.join("model"), &p.path("model"));
    copy_dir(&src.join("photos"), &p.path("photos"));
    let small = [
        "--set",
        "prep.images=60",
        "--set",
        "train.epochs=2",
        "--set",
        "evaluate.num_beams=1",
        "--set",
        "evaluate.meteor=\"skip\"",
        "--set",
        "infer.num_beams=1",
    ];
    let actions = p.run_actions(&small);
    let all_ran = pairs(&[
        ("prep", "ran"),
        ("collate", "ran"),
        ("train", "ran"),
        ("evaluate", "ran"),
        ("infer", "ran"),
    ]);
    assert_eq!(actions, all_ran);

    let metrics: serde_json::Value =
        serde_json::from_str(&p.read("results/evaluate/metrics.json")).expect("metrics.json");
    for key in ["BLEU-4", "CIDEr", "ROUGE-L", "test_loss"] {
        assert!(
            metrics[key].is_number(),
            "metrics.json has {key}: {metrics}"
        );
    }
    assert!(p.path("results/evaluate/train_vs_val_loss.png").is_file());
    assert!(p.path("results/evaluate/report.html").is_file());
    assert_eq!(p.read("results/infer/captions.jsonl").lines().count(), 4);
    let train = p.json(&[
        "show",
        "train",
        "--set",
        "prep.images=60",
        "--set",
        "train.epochs=2",
    ]);
    assert!(
        PathBuf::from(train["path"].as_str().expect("path"))
            .join("model/model.safetensors")
            .is_file()
    );

    let mut changed = small.to_vec();
    changed.extend(["--set", "train.lr=1e-3"]);
    let actions = p.run_actions(&changed);
    let expected = pairs(&[
        ("prep", "cached"),
        ("collate", "cached"),
        ("train", "ran"),
        ("evaluate", "ran"),
        ("infer", "ran"),
    ]);
    assert_eq!(actions, expected);
}
