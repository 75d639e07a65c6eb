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

/// What every image's search shares: the sizes, the limits and the logits processors.
struct Search<'a> {
    g: &'a GenerationConfig,
    /// Beams per image, and candidates kept per step (max(2, 1 + one eos token) · K).
    k: usize,
    keep: usize,
    vocab: usize,
    eos: u32,
    prompt_len: usize,
    max_length: usize,
    processors: Processors,
}

/// Where one step sends each new running beam: its source row, and the token it feeds next.
#[derive(Default)]
struct Moves {
    source_rows: Vec<i64>,
    next_feed: Vec<u32>,
}

impl ImageBeams {
    /// All K beams start as the prompt; only beam 0 may expand at the first step (the others
    /// score -1e9), so the first step does not pick the same token K times.
    fn new(prompt: &[u32], k: usize) -> Self {
        Self {
            running: vec![prompt.to_vec(); k],
            running_scores: (0..k).map(|b| if b == 0 { 0.0 } else { NEG }).collect(),
            finished: vec![prompt.to_vec(); k],
            finished_scores: vec![NEG; k],
            is_finished: vec![false; k],
            may_improve: true,
        }
    }

    /// One step for image `image` from its K rows of logits `block` (`[K · V]`, changed in
    /// place into candidate scores); records the beams' moves and returns whether every kept
    /// candidate stopped here.
    fn step(
        &mut self,
        search: &Search<'_>,
        image: usize,
        block: &mut [f32],
        cur_len: usize,
        moves: &mut Moves,
    ) -> bool {
        let (k, vocab) = (search.k, search.vocab);
        // Candidates: score[b·V + v] = running_score[b] + processed log p(v | beam b).
        for (b, row) in block.chunks_exact_mut(vocab).enumerate() {
            log_softmax_row(row);
            search.processors.apply(&self.running[b], row);
            let base = self.running_scores[b];
            row.iter_mut().for_each(|x| *x += base);
        }
        let top = top_k(block, search.keep); // [(flat index, score)], best first

        // Each candidate: its source beam, new sequence, and whether it stops here.
        let cands: Vec<Candidate> = top
            .iter()
            .map(|&(idx, score)| {
                let (beam, tok) = (idx / vocab, (idx % vocab) as u32);
                let mut seq = self.running[beam].clone();
                seq.push(tok);
                let stops = tok == search.eos || cur_len + 1 >= search.max_length;
                Candidate {
                    beam,
                    seq,
                    score,
                    stops,
                }
            })
            .collect();

        // Next running beams: the best K candidates that did not stop.
        let masked: Vec<f32> = cands
            .iter()
            .map(|c| if c.stops { c.score + NEG } else { c.score })
            .collect();
        let order = top_k(&masked, k);
        let new_running: Vec<Vec<u32>> = order.iter().map(|&(j, _)| cands[j].seq.clone()).collect();
        let new_scores: Vec<f32> = order.iter().map(|&(_, s)| s).collect();
        for &(j, _) in &order {
            moves.source_rows.push((image * k + cands[j].beam) as i64);
            moves.next_feed.push(cands[j].seq[cur_len]);
        }

        self.offer_finished(search, &cands, cur_len);
        self.running = new_running;
        self.running_scores = new_scores;
        cands.iter().all(|c| c.stops)
    }

    /// Finished hypotheses: only the top K candidates may finish (the rest are backups).
    fn offer_finished(&mut self, search: &Search<'_>, cands: &[Candidate], cur_len: usize) {
        let g = search.g;
        let lp = ((cur_len + 1 - search.prompt_len) as f32).powf(g.length_penalty);
        let full = self.is_finished.iter().all(|&f| f) && g.early_stopping == EarlyStopping::Done;
        let mut merged_scores = self.finished_scores.clone();
        let mut merged: Vec<(Vec<u32>, bool)> = self
            .finished
            .iter()
            .cloned()
            .zip(self.is_finished.iter().copied())
            .collect();
        for (j, c) in cands.iter().enumerate() {
            let just_finished = c.stops && j < search.k;
            let mut s = c.score / lp;
            if full {
                s += NEG;
            }
            if !self.may_improve {
                s += NEG;
            }
            if !just_finished {
                s += NEG;
            }
            merged_scores.push(s);
            merged.push((c.seq.clone(), just_finished));
        }
        let best = top_k(&merged_scores, search.k);
        self.finished = best.iter().map(|&(j, _)| merged[j].0.clone()).collect();
        self.is_finished = best.iter().map(|&(j, _)| merged[j].1).collect();
        self.finished_scores = best.iter().map(|&(_, s)| s).collect();
    }

    /// Can any running beam still beat the worst finished hypothesis? Once not, never again.
    fn update_may_improve(&mut self, search: &Search<'_>, cur_len: usize) {
        let g = search.g;
        let best_len = if g.early_stopping == EarlyStopping::Never && g.length_penalty > 0.0 {
            search.max_length - search.prompt_len
        } else {
            cur_len - search.prompt_len
        };
        let best_running = self.running_scores[0] / (best_len as f32).powf(g.length_penalty);
        let worst = self
            .finished_scores
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        let beatable = self
            .is_finished
            .iter()
            .any(|&f| best_running > if f { worst } else { NEG });
        self.may_improve &= beatable;
    }
}

/// One of the 2K candidates of a step.
struct Candidate {
    /// The running beam it extends, within its image.
    beam: usize,
    seq: Vec<u32>,
    score: f32,
    /// Ends in `[SEP]` or reaches the maximum length.
    stops: bool,
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
    let cross = decoder.cross_kv(image_embeds); // [I, H, N, d] per layer, shared by the K beams
    let mut cache = KvCache::default();

    let prompt: Vec<u32> = std::iter::once(special.bos)
        .chain(g.prompt_ids.iter().copied())
        .collect();
    let search = Search {
        g,
        k,
        keep: 2 * k,
        vocab: decoder.bert.embeddings.word_embeddings.weight.dims()[0],
        eos: special.eos,
        prompt_len: prompt.len(),
        max_length: prompt.len() + g.max_new_tokens,
        processors: Processors::new(g, prompt.len(), special.eos),
    };
    let mut state: Vec<ImageBeams> = (0..images).map(|_| ImageBeams::new(&prompt, k)).collect();
    let mut feed: Vec<u32> = vec![prompt.clone(); rows].concat();
    let mut cur_len = prompt.len();

    loop {
        let mut logits = step_logits(decoder, &cross, k, &mut cache, feed, rows, &device)?;
        let mut all_hit_stop = true;
        let mut moves = Moves::default();
        let blocks = logits.chunks_exact_mut(k * search.vocab);
        for (i, (st, block)) in state.iter_mut().zip(blocks).enumerate() {
            all_hit_stop &= st.step(&search, i, block, cur_len, &mut moves);
        }

        // Beams move: the cache rows follow their source beams.
        let n = moves.source_rows.len();
        cache.select_rows(Tensor::<B, 1, Int>::from_data(
            TensorData::new(moves.source_rows, [n]),
            &device,
        ));
        cur_len += 1;

        for st in &mut state {
            st.update_may_improve(&search, cur_len);
        }
        let improvement_possible = state.iter().any(|s| s.may_improve);
        let all_done = g.early_stopping == EarlyStopping::Done
            && state.iter().all(|s| s.is_finished.iter().all(|&f| f));
        if !improvement_possible || all_done || all_hit_stop {
            break;
        }
        feed = moves.next_feed;
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
