//! ROUGE-L exactly as pycocoevalcap's `Rouge` computes it: LCS over tokens
//! split on single spaces, precision and recall each maxed over the
//! references, F-measure with beta 1.2, averaged over images.

const BETA: f64 = 1.2;

/// LCS length of two token sequences.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let (long, short) = if a.len() < b.len() { (b, a) } else { (a, b) };
    let mut prev = vec![0usize; short.len() + 1];
    let mut cur = vec![0usize; short.len() + 1];
    for x in long {
        for (j, y) in short.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[short.len()]
}

/// ROUGE-L of one candidate against its references (`Rouge.calc_score`).
/// Tokens are `str.split(" ")`, so an empty string is one empty token.
pub(crate) fn rouge_l(candidate: &str, refs: &[String]) -> f64 {
    let c: Vec<&str> = candidate.split(' ').collect();
    let mut prec_max = f64::NEG_INFINITY;
    let mut rec_max = f64::NEG_INFINITY;
    for r in refs {
        let r: Vec<&str> = r.split(' ').collect();
        let l = lcs(&r, &c) as f64;
        prec_max = prec_max.max(l / c.len() as f64);
        rec_max = rec_max.max(l / r.len() as f64);
    }
    if !refs.is_empty() && prec_max != 0.0 && rec_max != 0.0 {
        let b2 = BETA.powi(2);
        ((1.0 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max)
    } else {
        0.0
    }
}
