//! Multinomial sampling (transformers' `_sample` with `do_sample=True`): the logits processors,
//! then transformers' warpers in its order (temperature, top-k, top-p), then one draw from the
//! softmax per row, from one seeded generator for the batch (the same images in the same order
//! with the same seed give the same captions).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Sampling options, named and defaulted as transformers' (`top_k` 50, `top_p` 1.0,
/// `temperature` 1.0), with the seed transformers takes from torch's global generator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Logits are divided by this before the softmax (below 1: sharper).
    pub temperature: f32,
    /// Only the `top_k` most likely tokens can be drawn (0: all).
    pub top_k: usize,
    /// Only the most likely tokens whose probabilities sum to `top_p` can be drawn (1.0: all).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl Sampling {
    /// The option at fault and why, if one cannot work.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Some((
                "temperature",
                format!("must be positive, got {}", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Some(("top_p", format!("must be in (0, 1], got {}", self.top_p)));
        }
        None
    }

    pub(crate) fn rng(&self) -> StdRng {
        StdRng::seed_from_u64(self.seed)
    }
}

/// Temperature, then top-k (ties with the k-th score are kept, as `torch.topk`'s threshold
/// keeps them), then top-p (the least likely tokens whose cumulative probability is at most
/// `1 - top_p` are removed; the most likely one always stays): removed tokens get -inf.
pub(crate) fn warp(scores: &mut [f32], s: &Sampling) {
    if s.temperature != 1.0 {
        for x in scores.iter_mut() {
            *x /= s.temperature;
        }
    }
    if s.top_k > 0 && s.top_k < scores.len() {
        let mut sorted: Vec<f32> = scores.to_vec();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let kth = sorted[s.top_k - 1];
        for x in scores.iter_mut() {
            if *x < kth {
                *x = f32::NEG_INFINITY;
            }
        }
    }
    if s.top_p < 1.0 {
        let probs = softmax(scores);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Ascending, as transformers sorts before its cumulative sum.
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let mut cumulative = 0.0f64;
        let last = order.len() - 1;
        for (rank, &i) in order.iter().enumerate() {
            cumulative += probs[i];
            if rank < last && cumulative <= f64::from(1.0 - s.top_p) {
                scores[i] = f32::NEG_INFINITY;
            }
        }
    }
}

/// One token drawn from the softmax of `scores`.
pub(crate) fn draw(scores: &[f32], rng: &mut StdRng) -> u32 {
    let probs = softmax(scores);
    let u: f64 = rng.random();
    let mut cumulative = 0.0;
    let mut last = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > 0.0 {
            last = i;
            cumulative += p;
            if u < cumulative {
                return i as u32;
            }
        }
    }
    // Rounding left the sum just under u: the last drawable token.
    last as u32
}

fn softmax(scores: &[f32]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = scores.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    fn kept(scores: &[f32]) -> Vec<usize> {
        (0..scores.len())
            .filter(|&i| scores[i] > f32::NEG_INFINITY)
            .collect()
    }

    #[test]
    fn top_k_keeps_the_k_largest_and_their_ties() {
        let s = Sampling {
            top_k: 2,
            ..Sampling::default()
        };
        let mut scores = vec![0.1, 3.0, 2.0, 2.0, -1.0];
        warp(&mut scores, &s);
        assert_eq!(kept(&scores), [1, 2, 3]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_it() {
        let nucleus = |top_p| {
            let mut scores = logits(&[0.3, 0.1, 0.4, 0.2]);
            let s = Sampling {
                top_k: 0,
                top_p,
                ..Sampling::default()
            };
            warp(&mut scores, &s);
            kept(&scores)
        };
        // Ascending probabilities 0.1, 0.2, 0.3, 0.4: cumulative 0.1, 0.3, 0.6, 1.0; with
        // top_p 0.5 those at most 0.5 go (0.1 and 0.2).
        assert_eq!(nucleus(0.5), [0, 2]);
        // However small top_p is, the most likely token stays.
        assert_eq!(nucleus(1e-6), [2]);
    }

    #[test]
    fn temperature_divides_the_logits() {
        let s = Sampling {
            temperature: 0.5,
            top_k: 0,
            ..Sampling::default()
        };
        let mut scores = vec![1.0, -2.0];
        warp(&mut scores, &s);
        assert_eq!(scores, [2.0, -4.0]);
    }

    #[test]
    fn draws_follow_the_softmax_and_the_seed() {
        let probs = [0.2f32, 0.3, 0.5];
        let scores = logits(&probs);
        let mut rng = Sampling::default().rng();
        let n = 20_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[draw(&scores, &mut rng) as usize] += 1;
        }
        for (c, p) in counts.iter().zip(probs) {
            // Binomial standard deviation at n = 20,000 is at most 0.0036: 5 of them.
            assert!((*c as f32 / n as f32 - p).abs() < 0.018, "{counts:?}");
        }
        let seq = |seed| {
            let mut rng = Sampling {
                seed,
                ..Sampling::default()
            }
            .rng();
            (0..50).map(|_| draw(&scores, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(seq(7), seq(7));
        assert_ne!(seq(7), seq(8));
    }

    #[test]
    fn a_removed_token_is_never_drawn() {
        let s = Sampling {
            top_k: 1,
            ..Sampling::default()
        };
        let mut rng = s.rng();
        for _ in 0..1000 {
            let mut scores = logits(&[0.34, 0.33, 0.33]);
            warp(&mut scores, &s);
            assert_eq!(draw(&scores, &mut rng), 0);
        }
    }
}
