//! The embedded synthetic dataset through prep and collate.

mod common;

use std::collections::HashSet;

use common::{counts, prep, summary, table, tiny_model};
use pipe_data::collate::Collated;
use pipe_data::prep::{PrepArtifact, Split};

#[test]
fn synthetic_prep_is_deterministic_split_by_image_and_collates() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, r) = prep(
        "dataset = 'synthetic'\nimages = 120\nseed = 5",
        tmp.path(),
        tmp.path(),
    );
    r.expect("prep");
    let (b, r) = prep(
        "dataset = 'synthetic'\nimages = 120\nseed = 5",
        tmp.path(),
        tmp.path(),
    );
    r.expect("prep again");
    assert_eq!(
        std::fs::read(a.join("images.jsonl")).expect("a"),
        std::fs::read(b.join("images.jsonl")).expect("b")
    );
    assert_eq!(
        std::fs::read(a.join("images/000007.png")).expect("a"),
        std::fs::read(b.join("images/000007.png")).expect("b")
    );

    let s = summary(&a);
    let (tr, va, te) = (counts(&s, "train"), counts(&s, "val"), counts(&s, "test"));
    assert_eq!(tr.0 + va.0 + te.0, 120);
    assert_eq!(tr.1 + va.1 + te.1, 600, "five captions per image");
    assert!(va.0 > 0 && te.0 > 0 && tr.0 > 70, "{tr:?} {va:?} {te:?}");
    assert_eq!(s["skipped"].as_array().expect("skipped").len(), 0);

    let art = PrepArtifact::open(&a, a.parent().expect("project")).expect("open");
    let ids: Vec<HashSet<&str>> = Split::ALL
        .iter()
        .map(|sp| art.split(*sp).map(|r| r.id.as_str()).collect())
        .collect();
    assert!(
        ids[0].is_disjoint(&ids[1]) && ids[0].is_disjoint(&ids[2]) && ids[1].is_disjoint(&ids[2])
    );
    assert!(art.image_path(&art.images[0]).is_file());
    assert!(
        art.images
            .iter()
            .all(|r| r.width == 64 && r.height == 64 && r.captions.len() == 5)
    );

    // A different seed, a different dataset; a larger N keeps the first images.
    let (c, r) = prep("images = 130\nseed = 5", tmp.path(), tmp.path());
    r.expect("prep default dataset");
    assert_eq!(
        std::fs::read(a.join("images/000042.png")).expect("a"),
        std::fs::read(c.join("images/000042.png")).expect("c")
    );

    // Collate against a tiny hand-made model.
    let model = tiny_model(&tmp.path().join("model"));
    let out = tempfile::tempdir_in(tmp.path()).expect("out");
    let params = table(&format!(
        "model = '{}'\nmax_length = 12\nprompt = 'a picture of '",
        model.display()
    ));
    pipe_collate::run(&params, tmp.path(), &a, out.path()).expect("collate");
    let col = Collated::open(out.path()).expect("open collated");
    assert_eq!(col.len(), 120);
    assert_eq!(col.image_size(), (32, 32));
    let special = col.special();
    let mut truncated = 0;
    for i in 0..col.len() {
        assert_eq!(col.captions(i).len(), 5);
        for c in col.captions(i) {
            assert_eq!(c.ids[0], special.bos);
            assert_eq!(*c.ids.last().expect("ids"), special.sep);
            assert!(c.ids.len() <= 12);
            assert_eq!(c.prompt_len, 4, "[DEC] a picture of");
            assert!(!c.ids.contains(&1), "no [UNK] in {:?}: {:?}", c.text, c.ids);
            truncated += usize::from(c.ids.len() == 12);
        }
        let px = col.pixels(i).expect("pixels");
        assert_eq!(px.len(), 3 * 32 * 32);
        assert!(px.iter().all(|v| (-2.0..2.7).contains(v)));
    }
    assert!(truncated > 0, "max_length 12 cuts some captions");
    let c = &col.captions(0)[0];
    let batch = col.batch(&[c], Some(16));
    assert_eq!(batch.seq_len, 16);
    assert_eq!(&batch.labels[..4], &[-100; 4]);
    assert_eq!(batch.labels[4], i64::from(c.ids[4]));
    assert_eq!(batch.labels[15], -100);
    assert_eq!(batch.attention_mask[15], 0);
    let sum: serde_json::Value = summary(out.path());
    assert_eq!(sum["images"], 120);
    assert_eq!(sum["captions"], 600);
}
