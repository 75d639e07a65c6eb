//! Beam search with the semantics of transformers 5's vectorised `_beam_search`.
//!
//! Per image and step: add each running beam's score to its next-token log-probabilities,
//! take the top 2K of the K × V candidates; candidates ending in `[SEP]` (or reaching the
//! maximum length) are offered to the K finished hypotheses (scored with the length penalty),
//! the best K others keep running. The self-attention cache follows the beams by a row
//! gather; the image keys/values are never copied per beam (see `text.rs`).
//!
//! Rows are image-major: row `i·K + k` is beam k of image i.

use std::cmp::Ordering;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::{
    DecodeError, EarlyStopping, GenerationConfig, Processors, SpecialTokens, log_softmax_row,
    step_logits,
};
use crate::text::{KvCache, TextDecoder};

/// transformers marks impossible candidates by adding this (not -inf: sums stay ordered).
const NEG: f32 = -1.0e9;

/// One image's search state.
struct ImageBeams {
    /// K running sequences and their summed log-probabilities (sorted best first).
    running: Vec<Vec<u32>>,
    running_scores: Vec<f32>,
    /// K finished slots: sequence, length-penalised score, and whether the slot is real.
    finished: Vec<Vec<u32>>,
    finished_scores: Vec<f32>,
    is_finished: Vec<bool>,
    /// transformers' `is_early_stop_heuristic_unsatisfied`: false once nothing can improve.
    may_improve: bool,
}

/// Beam-search captions for I images given their embeddings `[I, N, E]`; returns the best
/// hypothesis per image, `[DEC] prompt… generated…`.
pub fn beam_search<B: Backend>(
    decoder: &TextDecoder<B>,
    image_embeds: Tensor<B, 3>,
    g: &GenerationConfig,
    special: SpecialTokens,
) -> Result<Vec<Vec<u32>>, DecodeError> {
    let device = image_embeds.device();
    let images = image_embeds.dims()[0];
    let k = g.num_beams;
    let rows = images * k;
    let vocab = decoder.bert.embeddings.word_embeddings.weight.dims()[0];
    let keep = 2 * k; // max(2, 1 + one eos token) · K candidates per step
    let cross = decoder.cross_kv(image_embeds); // [I, H, N, d] per layer, shared by the K beams
    let mut cache = KvCache::default();

    let prompt: Vec<u32> = std::iter::once(special.bos)
        .chain(g.prompt_ids.iter().copied())
        .collect();
    let prompt_len = prompt.len();
    let max_length = prompt_len + g.max_new_tokens;
    let processors = Processors::new(g, prompt_len, special.eos);

    // All K beams start as the prompt; only beam 0 may expand at the first step (the others
    // score -1e9), so the first step does not pick the same token K times.
    let mut state: Vec<ImageBeams> = (0..images)
        .map(|_| ImageBeams {
            running: vec![prompt.clone(); k],
            running_scores: (0..k).map(|b| if b == 0 { 0.0 } else { NEG }).collect(),
            finished: vec![prompt.clone(); k],
            finished_scores: vec![NEG; k],
            is_finished: vec![false; k],
            may_improve: true,
        })
        .collect();
    let mut feed: Vec<u32> = vec![prompt.clone(); rows].concat();
    let mut cur_len = prompt_len;

    loop {
        let mut logits = step_logits(decoder, &cross, k, &mut cache, feed, rows, &device)?;
        let mut all_hit_stop = true;
        let mut source_rows: Vec<i64> = Vec::with_capacity(rows);
        let mut next_feed: Vec<u32> = Vec::with_capacity(rows);

        for (i, st) in state.iter_mut().enumerate() {
            // Candidates: score[b·V + v] = running_score[b] + processed log p(v | beam b).
            let block = &mut logits[i * k * vocab..(i + 1) * k * vocab];
            for (b, row) in block.chunks_exact_mut(vocab).enumerate() {
                log_softmax_row(row);
                processors.apply(&st.running[b], row);
                let base = st.running_scores[b];
                row.iter_mut().for_each(|x| *x += base);
            }
            let top = top_k(block, keep); // [(flat index, score)], best first

            // Each candidate: its source beam, new sequence, and whether it stops here.
            let cands: Vec<(usize, Vec<u32>, f32, bool)> = top
                .iter()
                .map(|&(idx, score)| {
                    let (b, tok) = (idx / vocab, (idx % vocab) as u32);
                    let mut seq = st.running[b].clone();
                    seq.push(tok);
                    let stops = tok == special.eos || cur_len + 1 >= max_length;
                    (b, seq, score, stops)
                })
                .collect();
            all_hit_stop &= cands.iter().all(|c| c.3);

            // Next running beams: the best K candidates that did not stop.
            let masked: Vec<f32> = cands
                .iter()
                .map(|c| if c.3 { c.2 + NEG } else { c.2 })
                .collect();
            let order = top_k(&masked, k);
            let new_running: Vec<Vec<u32>> =
                order.iter().map(|&(j, _)| cands[j].1.clone()).collect();
            let new_scores: Vec<f32> = order.iter().map(|&(_, s)| s).collect();
            for &(j, _) in &order {
                source_rows.push((i * k + cands[j].0) as i64);
                next_feed.push(cands[j].1[cur_len]);
            }

            // Finished hypotheses: only the top K candidates may finish (the rest are backups).
            let lp = ((cur_len + 1 - prompt_len) as f32).powf(g.length_penalty);
            let full = st.is_finished.iter().all(|&f| f) && g.early_stopping == EarlyStopping::Done;
            let mut merged_scores = st.finished_scores.clone();
            let mut merged: Vec<(Vec<u32>, bool)> = st
                .finished
                .iter()
                .cloned()
                .zip(st.is_finished.iter().copied())
                .collect();
            for (j, c) in cands.iter().enumerate() {
                let just_finished = c.3 && j < k;
                let mut s = c.2 / lp;
                if full {
                    s += NEG;
                }
                if !st.may_improve {
                    s += NEG;
                }
                if !just_finished {
                    s += NEG;
                }
                merged_scores.push(s);
                merged.push((c.1.clone(), just_finished));
            }
            let best = top_k(&merged_scores, k);
            st.finished = best.iter().map(|&(j, _)| merged[j].0.clone()).collect();
            st.is_finished = best.iter().map(|&(j, _)| merged[j].1).collect();
            st.finished_scores = best.iter().map(|&(_, s)| s).collect();
            st.running = new_running;
            st.running_scores = new_scores;
        }

        // Beams move: the cache rows follow their source beams.
        let n = source_rows.len();
        cache.select_rows(Tensor::<B, 1, Int>::from_data(
            TensorData::new(source_rows, [n]),
            &device,
        ));
        cur_len += 1;

        // Can any running beam still beat the worst finished hypothesis?
        for st in &mut state {
            let best_len = if g.early_stopping == EarlyStopping::Never && g.length_penalty > 0.0 {
                max_length - prompt_len
            } else {
                cur_len - prompt_len
            };
            let best_running = st.running_scores[0] / (best_len as f32).powf(g.length_penalty);
            let worst = st
                .finished_scores
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min);
            let beatable = st
                .is_finished
                .iter()
                .any(|&f| best_running > if f { worst } else { NEG });
            st.may_improve &= beatable;
        }
        let improvement_possible = state.iter().any(|s| s.may_improve);
        let all_done = g.early_stopping == EarlyStopping::Done
            && state.iter().all(|s| s.is_finished.iter().all(|&f| f));
        if !improvement_possible || all_done || all_hit_stop {
            break;
        }
        feed = next_feed;
    }
    Ok(state
        .into_iter()
        .map(|mut s| s.finished.swap_remove(0))
        .collect())
}

/// The `n` largest values with their indices, best first; ties go to the lower index.
fn top_k(values: &[f32], n: usize) -> Vec<(usize, f32)> {
    let by_score = |a: &(usize, f32), b: &(usize, f32)| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(Ordering::Equal)
            .then(a.0.cmp(&b.0))
    };
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(n + 1);
    for (i, &v) in values.iter().enumerate() {
        if best.len() == n {
            // Cheap reject: not better than the current n-th.
            if let Some(last) = best.last()
                && by_score(&(i, v), last) != Ordering::Less
            {
                continue;
            }
        }
        let pos = best.partition_point(|x| by_score(x, &(i, v)) == Ordering::Less);
        best.insert(pos, (i, v));
        best.truncate(n);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_orders_and_breaks_ties_low() {
        let v = [1.0, 5.0, 3.0, 5.0, -1.0, 4.0];
        assert_eq!(top_k(&v, 3), vec![(1, 5.0), (3, 5.0), (5, 4.0)]);
        assert_eq!(top_k(&v, 10).len(), 6);
    }
}
