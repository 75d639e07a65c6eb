//! Property: whatever the dataset (rows shuffled, the same image under `./` variants and
//! under copies, random fractions and seeds), train/val/test are disjoint by image and by
//! content, every caption of an image goes with it, and the split is reproducible.

mod common;

use std::collections::{HashMap, HashSet};

use common::{png, prep};
use pipe_data::prep::{PrepArtifact, PrepError};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn splits_are_disjoint_by_image_and_content_and_reproducible() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut checked = 0;
    for case in 0..16 {
        let d = tmp.path().join(format!("case{case}"));
        let n = 10 + rng.below(40) as u32;
        let mut rows = Vec::new();
        let mut expected_captions: HashMap<String, usize> = HashMap::new();
        for i in 0..n {
            let id = format!("d{}/img{i}.png", i % 3);
            png(&d.join(&id), 3, 3, case * 1000 + i);
            if rng.below(6) == 0 {
                // A copy under another name: same content.
                let copy = format!("copies/c{i}.png");
                std::fs::create_dir_all(d.join("copies")).expect("mkdir");
                std::fs::copy(d.join(&id), d.join(&copy)).expect("copy");
                rows.push(format!("{copy},copy of {i}"));
                *expected_captions.entry(copy).or_default() += 1;
            }
            for k in 0..1 + rng.below(5) {
                let written = if rng.below(2) == 0 {
                    format!("./{id}")
                } else {
                    id.clone()
                };
                rows.push(format!("{written},caption {k} of {i}"));
                *expected_captions.entry(id.clone()).or_default() += 1;
            }
        }
        // Shuffle the rows.
        for i in (1..rows.len()).rev() {
            rows.swap(i, rng.below(i as u64 + 1) as usize);
        }
        std::fs::write(
            d.join("metadata.csv"),
            format!("file_name,caption\n{}\n", rows.join("\n")),
        )
        .expect("write");
        let train = 0.3 + rng.below(50) as f64 / 100.0;
        let val = (1.0 - train) * rng.below(100) as f64 / 100.0;
        let params = format!(
            "dataset = 'csv'\nfile = 'case{case}'\nseed = {}\nsplit = {{ train = {train}, val = {val}, test = {} }}",
            rng.below(1000),
            1.0 - train - val
        );
        let (out, r) = prep(&params, tmp.path(), tmp.path());
        match r {
            Err(PrepError::EmptySplit { .. }) => continue, // small datasets may leave a split empty
            Err(e) => panic!("case {case}: {e}"),
            Ok(_) => {}
        }
        checked += 1;
        let art = PrepArtifact::open(&out, out.parent().expect("project")).expect("open");
        let mut split_of_id = HashMap::new();
        let mut split_of_hash: HashMap<&str, _> = HashMap::new();
        for r in &art.images {
            assert!(
                split_of_id.insert(r.id.as_str(), r.split).is_none(),
                "case {case}: {} twice",
                r.id
            );
            let s = *split_of_hash.entry(r.hash.as_str()).or_insert(r.split);
            assert_eq!(s, r.split, "case {case}: content of {} in two splits", r.id);
            assert_eq!(
                r.captions.len(),
                expected_captions[&r.id],
                "case {case}: captions of {}",
                r.id
            );
        }
        let skipped: HashSet<String> = art
            .summary()
            .expect("summary")
            .skipped
            .into_iter()
            .map(|s| s.image)
            .collect();
        let kept: HashSet<String> = art.images.iter().map(|r| r.id.clone()).collect();
        let all: HashSet<String> = expected_captions.keys().cloned().collect();
        assert_eq!(
            kept.union(&skipped).cloned().collect::<HashSet<_>>(),
            all,
            "case {case}"
        );

        let (again, r) = prep(&params, tmp.path(), tmp.path());
        r.expect("rerun");
        assert_eq!(
            std::fs::read(out.join("images.jsonl")).expect("a"),
            std::fs::read(again.join("images.jsonl")).expect("b"),
            "case {case}: not reproducible"
        );
    }
    assert!(
        checked >= 8,
        "only {checked} cases had three non-empty splits"
    );
}
