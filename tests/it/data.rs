//! prep and collate through the binary: what makes them stale, and what does not.

use super::*;

fn png(path: &Path, rgb: [u8; 3]) {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb(rgb));
    img.save(path).expect("save png");
}

/// A jsonl dataset of six images (two per split) with two captions each, collated for the
/// quickstart's tiny model, and a command stage standing in for training.
fn dataset() -> Project {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/model");
    let p = Project::new(&format!(
        r#"
[stages.prep]
dataset = "jsonl"
file = "data/captions.jsonl"
images = "data/images"
split_column = "split"

[stages.collate]
deps = ["prep"]
model = "{}"
max_length = 16

[stages.train]
kind = "command"
deps = ["collate"]
params = {{ lr = 0.001 }}
cmd = "echo train >> runs.log; echo $PIPE_PARAM_LR > $PIPE_OUT/lr"
"#,
        model.display()
    ));
    std::fs::create_dir_all(p.path("data/images")).expect("mkdir");
    let mut rows = String::new();
    for (i, split) in ["train", "train", "val", "val", "test", "test"]
        .iter()
        .enumerate()
    {
        png(
            &p.path(&format!("data/images/{i}.png")),
            [40 * i as u8, 100, 200],
        );
        for caption in ["a red circle", "a small square on the left"] {
            rows.push_str(&format!(
                "{{\"image\": \"{i}.png\", \"caption\": \"{caption}\", \"split\": \"{split}\"}}\n"
            ));
        }
    }
    p.write("data/captions.jsonl", &rows);
    p
}

fn reasons(p: &Project, stage: usize) -> String {
    p.json(&["status"])["stages"][stage]["reasons"].to_string()
}

#[test]
fn prep_summary_is_at_the_artifact_path() {
    let p = dataset();
    p.ok(&["run"]);
    let path = PathBuf::from(
        p.json(&["show", "prep"])["path"]
            .as_str()
            .expect("path")
            .to_string(),
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("summary.json")).expect("summary"))
            .expect("json");
    for split in ["train", "val", "test"] {
        assert_eq!(summary["splits"][split]["images"], 2, "{summary}");
        assert_eq!(summary["splits"][split]["captions"], 4, "{summary}");
    }
    assert!(p.path("results/prep/summary.json").is_file());
}

#[test]
fn editing_a_caption_file_makes_prep_stale_naming_the_file() {
    let p = dataset();
    p.ok(&["run"]);
    let edited = p
        .read("data/captions.jsonl")
        .replacen("a red circle", "a blue circle", 1);
    p.write("data/captions.jsonl", &edited);
    let r = reasons(&p, 0);
    assert!(r.contains("input data/captions.jsonl changed"), "{r}");
    assert_eq!(p.statuses()[0].1, "stale");
}

#[test]
fn replacing_one_image_makes_prep_stale_naming_the_image() {
    let p = dataset();
    p.ok(&["run"]);
    png(&p.path("data/images/3.png"), [1, 2, 3]);
    let r = reasons(&p, 0);
    assert!(
        r.contains("input data/images changed: 1 file changed (3.png)"),
        "{r}"
    );
    let actions = p.run_actions(&[]);
    assert_eq!(
        actions,
        pairs(&[("prep", "ran"), ("collate", "ran"), ("train", "ran")])
    );
}

#[test]
fn a_training_parameter_leaves_prep_and_collate_fresh() {
    let p = dataset();
    p.ok(&["run"]);
    let actions = p.run_actions(&["--set", "train.params.lr=0.5"]);
    assert_eq!(
        actions,
        pairs(&[("prep", "cached"), ("collate", "cached"), ("train", "ran")])
    );
}

#[test]
fn malformed_rows_are_reported_with_their_line_and_an_empty_split_is_an_error() {
    let p = dataset();
    let rows = p.read("data/captions.jsonl");
    p.write("data/captions.jsonl", &format!("{rows}not json\n"));
    p.ok(&["run"]);
    let summary: serde_json::Value =
        serde_json::from_str(&p.read("results/prep/summary.json")).expect("json");
    let rejected = &summary["rejected_rows"][0];
    assert!(
        rejected["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("captions.jsonl")),
        "{summary}"
    );
    assert_eq!(rejected["line"], 13, "{summary}");

    let only_train: String = rows
        .lines()
        .filter(|l| l.contains("train"))
        .map(|l| format!("{l}\n"))
        .collect();
    p.write("data/captions.jsonl", &only_train);
    let out = p.pipe(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("split `val` has no usable images"),
        "{stdout}"
    );
    assert_eq!(
        p.statuses()[0].1,
        "stale",
        "the failed run published nothing"
    );
}

/// A dangling link, a link loop and a FIFO under the images root, named by no row, neither
/// block nor hang prep: they are left out of the key and reported, the rest is used.
#[test]
fn unreadable_entries_under_an_images_root_are_skipped_and_reported() {
    let p = dataset();
    let images = p.path("data/images");
    std::os::unix::fs::symlink(images.join("gone.png"), images.join("dangling.png"))
        .expect("symlink");
    std::fs::create_dir(images.join("sub")).expect("mkdir");
    std::os::unix::fs::symlink("..", images.join("sub/up")).expect("symlink");
    let fifo = images.join("pipe.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let out = p.pipe(&["run"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    for (entry, why) in [
        ("dangling.png", "a dangling symlink"),
        ("sub/up", "a symlink loop"),
        ("pipe.fifo", "a FIFO"),
    ] {
        assert!(
            err.contains(&format!("data/images/{entry} is {why}")),
            "{entry}: {err}"
        );
    }
    // Not part of the key: removing them changes nothing.
    for entry in ["dangling.png", "sub/up", "pipe.fifo"] {
        std::fs::remove_file(images.join(entry)).expect("rm");
    }
    assert_eq!(p.statuses()[0], ("prep".to_string(), "fresh".to_string()));
}
