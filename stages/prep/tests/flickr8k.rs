//! The real Flickr8k text release (../shared/data/flickr8k_text) with generated stand-in
//! images, in the original layout and in Kaggle's; skipped when ../shared is absent.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use common::{counts, prep, shared, skip_reason, summary};
use pipe_data::prep::{PrepArtifact, Split};

const MISSING: &str = "2258277193_586949ec62.jpg";
const BOGUS: &str = "2258277193_586949ec62.jpg.1";

/// Ids of the token file in order of appearance, with their captions.
fn token_captions(text: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(text.join("Flickr8k.token.txt"))
        .expect("token file")
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, c)| (k.rsplit_once('#').expect("#").0.to_string(), c.to_string()))
        .collect()
}

fn assert_disjoint(out: &Path) {
    let art = PrepArtifact::open(out, out.parent().expect("project")).expect("open");
    let sets: Vec<HashSet<&str>> = Split::ALL
        .iter()
        .map(|s| art.split(*s).map(|r| r.id.as_str()).collect())
        .collect();
    assert!(
        sets[0].is_disjoint(&sets[1])
            && sets[0].is_disjoint(&sets[2])
            && sets[1].is_disjoint(&sets[2])
    );
}

#[test]
fn real_flickr8k_text_original_and_kaggle_layouts() {
    let Some(shared) = shared() else {
        eprintln!("note: ../shared is absent; Flickr8k test skipped");
        return;
    };
    let text = shared.join("data/flickr8k_text");
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("flickr8k");
    let images = root.join("Flicker8k_Dataset");
    std::fs::create_dir_all(root.join("Flickr8k_text")).expect("mkdir");
    for f in [
        "Flickr8k.token.txt",
        "Flickr_8k.trainImages.txt",
        "Flickr_8k.devImages.txt",
        "Flickr_8k.testImages.txt",
    ] {
        std::fs::copy(text.join(f), root.join("Flickr8k_text").join(f)).expect("copy");
    }
    // The 8,091 images of the release: every id but the bogus one and the missing one.
    let captions = token_captions(&text);
    let mut ids: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for (id, _) in &captions {
        if seen.insert(id.as_str()) && id != MISSING && id != BOGUS {
            ids.push(id);
        }
    }
    assert_eq!(ids.len(), 8091);
    std::fs::create_dir_all(&images).expect("mkdir");
    // One tiny JPEG per id, its index written in 4×4 black or white blocks (distinct content).
    for (i, id) in ids.iter().enumerate() {
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            let v = if (i >> ((y / 4) * 4 + x / 4)) & 1 == 1 {
                255
            } else {
                0
            };
            image::Rgb([v, v, v])
        });
        img.save(images.join(id)).expect("save");
    }

    // Original layout, auto-detected from `root`.
    let params = format!("dataset = 'flickr8k'\nroot = '{}'", root.display());
    let (out, r) = prep(&params, tmp.path(), tmp.path());
    r.expect("prep flickr8k");
    let s = summary(&out);
    assert_eq!(counts(&s, "train"), (6000, 30000));
    assert_eq!(counts(&s, "val"), (1000, 5000));
    assert_eq!(counts(&s, "test"), (1000, 5000));
    let bogus = skip_reason(&s, BOGUS).expect("bogus id reported");
    assert!(
        bogus.contains("malformed image id") && bogus.contains(MISSING),
        "{bogus}"
    );
    assert_eq!(
        skip_reason(&s, MISSING).as_deref(),
        Some("image file missing")
    );
    let skipped = s["skipped"].as_array().expect("skipped");
    let no_list = skipped
        .iter()
        .filter(|x| x["reason"] == "in no split list")
        .count();
    assert_eq!(skipped.len(), 93, "8,093 ids - 8,000 in the lists");
    assert_eq!(no_list, 91);
    assert_eq!(s["rejected_rows"].as_array().expect("rows").len(), 0);
    assert_eq!(s["split_source"], "official split lists");
    let dups = s["cross_split_duplicates"].as_array().expect("dups");
    assert!(dups.is_empty(), "{}", dups[0]);
    assert_disjoint(&out);
    // Images are referenced, not copied.
    assert!(!out.join("images").exists());
    let art = PrepArtifact::open(&out, out.parent().expect("project")).expect("open");
    assert_eq!(art.images_root(), images);
    // Stored relative to the project: the artifact does not depend on where it lives.
    assert_eq!(art.info.images_base, pipe_data::prep::ImagesBase::Project);
    assert!(
        art.info.images_root.is_relative(),
        "{:?}",
        art.info.images_root
    );
    let first = art
        .images
        .iter()
        .find(|r| r.id == "1000268201_693b08cb0e.jpg")
        .expect("first image");
    assert_eq!(
        first.captions[0],
        "A child in a pink dress is climbing up a set of stairs in an entry way ."
    );
    assert_eq!(first.split, Split::Train);

    // Kaggle's layout from the same captions: captions.txt (CSV) + Images/.
    let kaggle = tmp.path().join("kaggle");
    std::fs::create_dir_all(&kaggle).expect("mkdir");
    std::fs::rename(&images, kaggle.join("Images")).expect("move images");
    let mut w = csv::Writer::from_path(kaggle.join("captions.txt")).expect("csv");
    w.write_record(["image", "caption"]).expect("header");
    for (id, c) in &captions {
        w.write_record([id, c]).expect("row");
    }
    w.flush().expect("flush");
    let params = format!(
        "dataset = 'flickr8k'\nroot = '{}'\nseed = 1",
        kaggle.display()
    );
    let (out, r) = prep(&params, tmp.path(), tmp.path());
    r.expect("prep kaggle");
    let s = summary(&out);
    let all: Vec<(u64, u64)> = ["train", "val", "test"]
        .iter()
        .map(|x| counts(&s, x))
        .collect();
    assert_eq!(all.iter().map(|c| c.0).sum::<u64>(), 8091);
    assert_eq!(all.iter().map(|c| c.1).sum::<u64>(), 40455);
    assert!(
        (6200..6750).contains(&all[0].0) && (650..970).contains(&all[1].0),
        "{all:?}"
    );
    assert!(skip_reason(&s, BOGUS).is_some());
    assert_eq!(
        skip_reason(&s, MISSING).as_deref(),
        Some("image file missing")
    );
    assert!(
        s["split_source"]
            .as_str()
            .expect("source")
            .starts_with("hash of the image id")
    );
    assert_disjoint(&out);

    // Kaggle captions with the official lists given explicitly: the official split again.
    let params = format!(
        "dataset = 'flickr8k'\nroot = '{}'\nsplits = '{}'",
        kaggle.display(),
        text.display()
    );
    let (out, r) = prep(&params, tmp.path(), tmp.path());
    r.expect("prep kaggle + lists");
    let s = summary(&out);
    assert_eq!(counts(&s, "train"), (6000, 30000));
    assert_eq!(counts(&s, "test"), (1000, 5000));

    // Every caption of an image lands in that image's split (grouped, never split by row).
    let art = PrepArtifact::open(&out, out.parent().expect("project")).expect("open");
    let mut per_image: HashMap<&str, usize> = HashMap::new();
    for r in &art.images {
        *per_image.entry(r.id.as_str()).or_default() += 1;
    }
    assert!(per_image.values().all(|&n| n == 1));
}
