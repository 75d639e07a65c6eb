//! BLEU-1..4 exactly as pycocoevalcap's `BleuScorer` computes it
//! (corpus level, `option="closest"` effective reference length).

use crate::ngrams::{FxMap, Ngram, count_ngrams, order};

const N: usize = 4;
const SMALL: f64 = 1e-9;
const TINY: f64 = 1e-15;

/// Sufficient statistics of one (hypothesis, references) pair (`cook_test`).
#[derive(Debug, Clone)]
struct Cooked {
    testlen: usize,
    reflens: Vec<usize>,
    guess: [usize; N],
    correct: [usize; N],
}

fn cook(hyp: &[u32], refs: &[Vec<u32>]) -> Cooked {
    let mut maxcounts: FxMap<Ngram, u32> = FxMap::default();
    for r in refs {
        for (g, c) in count_ngrams(r, N) {
            let e = maxcounts.entry(g).or_insert(0);
            *e = (*e).max(c);
        }
    }
    let testlen = hyp.len();
    let mut guess = [0usize; N];
    for (k, g) in guess.iter_mut().enumerate() {
        *g = (testlen + 1).saturating_sub(k + 1);
    }
    let mut correct = [0usize; N];
    for (g, c) in count_ngrams(hyp, N) {
        let m = maxcounts.get(&g).copied().unwrap_or(0);
        correct[order(&g) - 1] += c.min(m) as usize;
    }
    Cooked {
        testlen,
        reflens: refs.iter().map(Vec::len).collect(),
        guess,
        correct,
    }
}

/// `min((abs(l - testlen), l) for l in reflens)[1]`: the closest reference
/// length, the shorter one on ties.
fn closest(reflens: &[usize], testlen: usize) -> usize {
    reflens
        .iter()
        .map(|&l| (l.abs_diff(testlen), l))
        .min()
        .map_or(0, |(_, l)| l)
}

/// Corpus BLEU-1..4 and the per-image scores, as `Bleu(4).compute_score`.
/// `pairs` are word-id sequences: (hypothesis, references) per image.
pub(crate) fn bleu(pairs: &[(Vec<u32>, Vec<Vec<u32>>)]) -> ([f64; N], Vec<[f64; N]>) {
    let cooked: Vec<Cooked> = pairs.iter().map(|(h, r)| cook(h, r)).collect();
    let mut total_test = 0usize;
    let mut total_ref = 0usize;
    let mut guess = [0usize; N];
    let mut correct = [0usize; N];
    let mut per_image = Vec::with_capacity(cooked.len());
    for c in &cooked {
        let reflen = closest(&c.reflens, c.testlen);
        total_test += c.testlen;
        total_ref += reflen;
        for k in 0..N {
            guess[k] += c.guess[k];
            correct[k] += c.correct[k];
        }
        per_image.push(combine(c.correct, c.guess, c.testlen, reflen));
    }
    (combine(correct, guess, total_test, total_ref), per_image)
}

fn combine(correct: [usize; N], guess: [usize; N], testlen: usize, reflen: usize) -> [f64; N] {
    let mut out = [0.0; N];
    let mut b = 1.0f64;
    for k in 0..N {
        b *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        out[k] = b.powf(1.0 / (k as f64 + 1.0));
    }
    let ratio = (testlen as f64 + TINY) / (reflen as f64 + SMALL);
    if ratio < 1.0 {
        for o in &mut out {
            *o *= (1.0 - 1.0 / ratio).exp();
        }
    }
    out
}
