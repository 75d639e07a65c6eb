//! Property tests: identities, invariances, robustness.

use std::collections::BTreeMap;

use pipe_metrics::tokenize::tokenize;
use pipe_metrics::{MeteorMode, MeteorOptions, ScoreOptions, score};
use proptest::prelude::*;

fn opts() -> ScoreOptions {
    ScoreOptions {
        meteor: MeteorOptions {
            jar: None,
            mode: MeteorMode::Approximate,
        },
        single_ref: true,
    }
}

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "dog", "man", "runs", "grass", "red", "ball", "beach", "water", "child", "plays", "jumps",
        "over", "near", "big", "small", "two", "white", "field", "street", "snow",
    ])
    .prop_map(str::to_string)
}

fn caption(min: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(word(), min..12).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn identical_captions_score_one(caps in prop::collection::vec(caption(4), 1..6)) {
        let preds: BTreeMap<String, String> =
            caps.iter().enumerate().map(|(i, c)| (format!("{i}"), c.clone())).collect();
        let refs: BTreeMap<String, Vec<String>> =
            caps.iter().enumerate().map(|(i, c)| (format!("{i}"), vec![c.clone()])).collect();
        let r = score(&preds, &refs, &opts()).expect("scores");
        prop_assert!((r.multi_ref.bleu[3] - 1.0).abs() < 1e-6, "BLEU-4 {}", r.multi_ref.bleu[3]);
        prop_assert!((r.multi_ref.rouge_l - 1.0).abs() < 1e-9, "ROUGE-L {}", r.multi_ref.rouge_l);
        let m = r.multi_ref.meteor.expect("approx");
        prop_assert!(m > 0.99, "METEOR~approx {m}");
    }

    #[test]
    fn image_order_does_not_matter(
        items in prop::collection::vec((caption(1), prop::collection::vec(caption(1), 1..4)), 2..6),
        rot in 0usize..5,
    ) {
        // Same captions under permuted image ids.
        let n = items.len();
        let mut p1 = BTreeMap::new();
        let mut r1 = BTreeMap::new();
        let mut p2 = BTreeMap::new();
        let mut r2 = BTreeMap::new();
        for (i, (p, rs)) in items.iter().enumerate() {
            p1.insert(format!("img{i}"), p.clone());
            r1.insert(format!("img{i}"), rs.clone());
            let j = (i + rot) % n;
            p2.insert(format!("img{j}"), p.clone());
            r2.insert(format!("img{j}"), rs.clone());
        }
        let a = score(&p1, &r1, &opts()).expect("scores");
        let b = score(&p2, &r2, &opts()).expect("scores");
        for k in 0..4 {
            prop_assert!((a.multi_ref.bleu[k] - b.multi_ref.bleu[k]).abs() < 1e-12);
        }
        prop_assert!((a.multi_ref.rouge_l - b.multi_ref.rouge_l).abs() < 1e-12);
        prop_assert!((a.multi_ref.cider - b.multi_ref.cider).abs() < 1e-9);
        prop_assert!((a.multi_ref.meteor.unwrap_or(0.0) - b.multi_ref.meteor.unwrap_or(0.0)).abs() < 1e-12);
        for (i, _) in items.iter().enumerate() {
            let j = (i + rot) % n;
            let ca = a.image_cider(&format!("img{i}")).expect("scored");
            let cb = b.image_cider(&format!("img{j}")).expect("scored");
            prop_assert!((ca - cb).abs() < 1e-9);
        }
    }

    #[test]
    fn arbitrary_utf8_never_panics(p in any::<String>(), rs in prop::collection::vec(any::<String>(), 1..4)) {
        let _ = tokenize(&p).expect("tokenizes");
        let preds = BTreeMap::from([("x".to_string(), p)]);
        let refs = BTreeMap::from([("x".to_string(), rs)]);
        let r = score(&preds, &refs, &opts()).expect("scores");
        for v in r.multi_ref.bleu {
            prop_assert!(v.is_finite());
        }
        prop_assert!(r.multi_ref.cider.is_finite() && r.multi_ref.rouge_l.is_finite());
        let _ = r.to_json();
        let _ = r.to_text();
    }
}
