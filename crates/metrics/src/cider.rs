//! CIDEr-D exactly as pycocoevalcap's `Cider` / `CiderScorer` computes it:
//! n = 1..4, TF-IDF weights with document frequencies from the references of
//! the scored set, clipped cosine similarity, Gaussian length penalty
//! (sigma 6, on the *bigram* counts as the reference code does), mean over
//! n and references, times 10.

use crate::ngrams::{FxMap, Ngram, count_ngrams, order};

const N: usize = 4;
const SIGMA: f64 = 6.0;

struct Vector {
    /// (n-gram, tf-idf weight), sorted by n-gram.
    vec: Vec<(Ngram, f64)>,
    norm: [f64; N],
    /// pycocoevalcap's "length": the number of bigrams.
    length: f64,
}

fn counts2vec(counts: &[(Ngram, u32)], df: &FxMap<Ngram, f64>, ref_len: f64) -> Vector {
    let mut vec = Vec::with_capacity(counts.len());
    let mut norm = [0.0f64; N];
    let mut length = 0u64;
    for (g, tf) in counts {
        let d = df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
        let n = order(g) - 1;
        let v = f64::from(*tf) * (ref_len - d);
        vec.push((*g, v));
        norm[n] += v.powi(2);
        if n == 1 {
            length += u64::from(*tf);
        }
    }
    for x in &mut norm {
        *x = x.sqrt();
    }
    Vector {
        vec,
        norm,
        length: length as f64,
    }
}

fn sim(hyp: &Vector, r: &Vector) -> [f64; N] {
    let delta = hyp.length - r.length;
    let mut val = [0.0f64; N];
    // Both vectors are sorted by n-gram: merge.
    let mut j = 0;
    for (g, vh) in &hyp.vec {
        while j < r.vec.len() && r.vec[j].0 < *g {
            j += 1;
        }
        if j < r.vec.len() && r.vec[j].0 == *g {
            let vr = r.vec[j].1;
            val[order(g) - 1] += vh.min(vr) * vr;
        }
    }
    let penalty = std::f64::consts::E.powf(-(delta.powi(2)) / (2.0 * SIGMA.powi(2)));
    for (n, v) in val.iter_mut().enumerate() {
        if hyp.norm[n] != 0.0 && r.norm[n] != 0.0 {
            *v /= hyp.norm[n] * r.norm[n];
        }
        *v *= penalty;
    }
    val
}

/// Corpus CIDEr-D and per-image scores for (hypothesis, references) word-id
/// sequences, one entry per image.
pub(crate) fn cider(pairs: &[(Vec<u32>, Vec<Vec<u32>>)]) -> (f64, Vec<f64>) {
    if pairs.is_empty() {
        return (0.0, Vec::new());
    }
    let crefs: Vec<Vec<Vec<(Ngram, u32)>>> = pairs
        .iter()
        .map(|(_, refs)| refs.iter().map(|r| count_ngrams(r, N)).collect())
        .collect();
    let mut df: FxMap<Ngram, f64> = FxMap::default();
    let mut seen: Vec<Ngram> = Vec::new();
    for refs in &crefs {
        seen.clear();
        seen.extend(refs.iter().flatten().map(|(g, _)| *g));
        seen.sort_unstable();
        seen.dedup();
        for g in &seen {
            *df.entry(*g).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = (pairs.len() as f64).ln();
    let mut scores = Vec::with_capacity(pairs.len());
    for ((hyp, _), refs) in pairs.iter().zip(&crefs) {
        let v = counts2vec(&count_ngrams(hyp, N), &df, ref_len);
        let mut score = [0.0f64; N];
        for r in refs {
            let vr = counts2vec(r, &df, ref_len);
            let s = sim(&v, &vr);
            for n in 0..N {
                score[n] += s[n];
            }
        }
        let mut avg = score.iter().sum::<f64>() / N as f64;
        avg /= refs.len() as f64;
        avg *= 10.0;
        scores.push(avg);
    }
    (mean(&scores), scores)
}

/// numpy's `mean` (pairwise summation is within 1e-15 of this).
pub(crate) fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}
