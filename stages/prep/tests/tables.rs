//! `jsonl`, `csv` (and Hugging Face imagefolder metadata) and `karpathy` datasets on small
//! generated fixtures.

mod common;

use std::collections::HashSet;

use common::{counts, png, prep, summary};
use pipe_data::prep::{PrepArtifact, Split};

fn disjoint(out: &std::path::Path) -> bool {
    let art = PrepArtifact::open(out, out.parent().expect("project")).expect("open");
    let sets: Vec<HashSet<String>> = Split::ALL
        .iter()
        .map(|s| art.split(*s).map(|r| r.id.clone()).collect())
        .collect();
    sets[0].is_disjoint(&sets[1]) && sets[0].is_disjoint(&sets[2]) && sets[1].is_disjoint(&sets[2])
}

#[test]
fn jsonl_with_split_column_and_caption_lists() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("ds");
    let mut rows = String::new();
    for i in 0..12 {
        png(&d.join(format!("img/{i}.png")), 8, 6, i);
        let split = ["train", "validation", "test"][i as usize % 3];
        rows.push_str(&format!("{{\"image\": \"img/{i}.png\", \"text\": \"a  picture   {i} \", \"split\": \"{split}\"}}\n"));
        rows.push_str(&format!("{{\"image\": \"./img/{i}.png\", \"text\": [\"second {i}\", \"   \"], \"split\": \"{split}\"}}\n"));
    }
    std::fs::write(d.join("captions.jsonl"), rows).expect("write");
    let params = "dataset = 'jsonl'\nfile = 'ds/captions.jsonl'\nimage_column = 'image'\ncaption_column = 'text'\nsplit_column = 'split'";
    let (out, r) = prep(params, tmp.path(), tmp.path());
    r.expect("prep");
    let s = summary(&out);
    assert_eq!(counts(&s, "train"), (4, 8));
    assert_eq!(counts(&s, "val"), (4, 8));
    assert_eq!(counts(&s, "test"), (4, 8));
    assert_eq!(s["empty_captions_dropped"], 12);
    let art = PrepArtifact::open(&out, out.parent().expect("project")).expect("open");
    let r0 = art
        .images
        .iter()
        .find(|r| r.id == "img/0.png")
        .expect("img/0");
    assert_eq!(
        r0.captions,
        vec!["a picture 0".to_string(), "second 0".to_string()]
    );
    assert_eq!((r0.width, r0.height), (8, 6));
    assert_eq!(
        r0.hash,
        blake3::hash(&std::fs::read(d.join("img/0.png")).expect("read"))
            .to_hex()
            .to_string()
    );
    assert!(disjoint(&out));
}

#[test]
fn imagefolder_metadata_jsonl_and_csv_split_by_hash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("folder");
    let mut jsonl = String::new();
    let mut csv = String::from("file_name,caption\n");
    for i in 0..60 {
        png(&d.join(format!("{i:03}.png")), 4, 4, i);
        jsonl.push_str(&format!(
            "{{\"file_name\": \"{i:03}.png\", \"caption\": \"shape {i}\"}}\n"
        ));
        csv.push_str(&format!(
            "{i:03}.png,\"shape, number {i}\"\n{i:03}.png,another {i}\n"
        ));
    }
    std::fs::write(d.join("metadata.jsonl"), jsonl).expect("write");
    std::fs::write(d.join("metadata.csv"), csv).expect("write");

    let (out, r) = prep(
        "dataset = 'jsonl'\nfile = 'folder'\nseed = 3",
        tmp.path(),
        tmp.path(),
    );
    r.expect("jsonl imagefolder");
    let s = summary(&out);
    let total: u64 = ["train", "val", "test"]
        .iter()
        .map(|x| counts(&s, x).0)
        .sum();
    assert_eq!(total, 60);
    assert!(disjoint(&out));

    let params = "dataset = 'csv'\nfile = 'folder'\nseed = 3\nsplit = { train = 0.6, val = 0.2, test = 0.2 }";
    let (out2, r) = prep(params, tmp.path(), tmp.path());
    r.expect("csv imagefolder");
    let s2 = summary(&out2);
    let caps: u64 = ["train", "val", "test"]
        .iter()
        .map(|x| counts(&s2, x).1)
        .sum();
    assert_eq!(caps, 120);
    let art = PrepArtifact::open(&out2, out2.parent().expect("project")).expect("open");
    assert_eq!(art.images[0].captions[0], "shape, number 0");
    assert!(disjoint(&out2));
}

#[test]
fn karpathy_json() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("k");
    let mut images = Vec::new();
    for i in 0..9u32 {
        let (dir, split) = match i % 4 {
            0 => ("val2014", "val"),
            1 => ("val2014", "test"),
            2 => ("train2014", "restval"),
            _ => ("train2014", "train"),
        };
        png(&d.join(dir).join(format!("{i}.jpg.png")), 5, 5, i);
        images.push(serde_json::json!({
            "filepath": dir, "filename": format!("{i}.jpg.png"), "split": split, "imgid": i,
            "sentences": [{"raw": format!("A thing number {i}."), "tokens": ["a"]}, {"raw": "Another one."}]
        }));
    }
    images.push(
        serde_json::json!({"filename": "x.png", "split": "holdout", "sentences": [{"raw": "x"}]}),
    );
    std::fs::write(
        d.join("dataset_coco.json"),
        serde_json::json!({"images": images, "dataset": "coco"}).to_string(),
    )
    .expect("write");
    let (out, r) = prep(
        "dataset = 'karpathy'\nfile = 'k/dataset_coco.json'",
        tmp.path(),
        tmp.path(),
    );
    r.expect("prep karpathy");
    let s = summary(&out);
    assert_eq!(counts(&s, "train"), (4, 8), "train + restval");
    assert_eq!(counts(&s, "val"), (3, 6));
    assert_eq!(counts(&s, "test"), (2, 4));
    let rows = s["rejected_rows"].as_array().expect("rows");
    assert!(
        rows[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("unknown split `holdout`"),
        "{rows:?}"
    );
    let art = PrepArtifact::open(&out, out.parent().expect("project")).expect("open");
    assert!(art.images.iter().any(|r| r.id == "val2014/0.jpg.png"));
}
