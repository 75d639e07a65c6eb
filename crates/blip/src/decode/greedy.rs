//! Greedy search and sampling (transformers' `_sample`, `do_sample` false or true): each row
//! takes the argmax of its processed logits, or a token drawn from them after the warpers
//! ([`super::sample`]); a row that produced `[SEP]` is finished and is fed `[PAD]` afterwards,
//! as transformers does, until every row is finished or `max_new_tokens` is reached.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{DecodeError, GenerationConfig, Processors, SpecialTokens, step_logits};
use crate::text::{KvCache, TextDecoder};

/// Greedy (or sampled, with [`GenerationConfig::sampling`]) captions for I images given their
/// embeddings `[I, N, E]`. Each returned sequence is
/// `[DEC] prompt… generated…`, ending with `[SEP]` when the caption finished.
pub fn greedy<B: Backend>(
    decoder: &TextDecoder<B>,
    image_embeds: Tensor<B, 3>,
    g: &GenerationConfig,
    special: SpecialTokens,
) -> Result<Vec<Vec<u32>>, DecodeError> {
    let device = image_embeds.device();
    let rows = image_embeds.dims()[0];
    let vocab = decoder.bert.embeddings.word_embeddings.weight.dims()[0];
    // Image keys/values once for all steps.
    let cross = decoder.cross_kv(image_embeds);
    let mut cache = KvCache::default();

    let prompt: Vec<u32> = std::iter::once(special.bos)
        .chain(g.prompt_ids.iter().copied())
        .collect();
    let processors = Processors::new(g, prompt.len(), special.eos);
    let mut rng = g.sampling.as_ref().map(super::Sampling::rng);
    let mut seqs: Vec<Vec<u32>> = vec![prompt.clone(); rows];
    let mut finished = vec![false; rows];
    // First call feeds the whole prompt; later calls one token per row.
    let mut feed: Vec<u32> = seqs.concat();

    for _ in 0..g.max_new_tokens {
        let logits = step_logits(decoder, &cross, 1, &mut cache, feed, rows, &device)?;
        feed = Vec::with_capacity(rows);
        for (r, scores) in logits.chunks_exact(vocab).enumerate() {
            if finished[r] {
                feed.push(special.pad);
                continue;
            }
            let mut scores = scores.to_vec();
            processors.apply(&seqs[r], &mut scores);
            let next = match (&g.sampling, rng.as_mut()) {
                (Some(s), Some(rng)) => {
                    super::sample::warp(&mut scores, s);
                    super::sample::draw(&scores, rng)
                }
                _ => argmax(&scores),
            };
            seqs[r].push(next);
            finished[r] = next == special.eos;
            feed.push(next);
        }
        if finished.iter().all(|&f| f) {
            break;
        }
    }
    Ok(seqs)
}

/// Index of the first maximum (torch.argmax's choice on ties).
pub(crate) fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}
