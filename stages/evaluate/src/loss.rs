//! The test loss: teacher-forced next-token cross entropy over the caption tokens, as
//! transformers' BlipForConditionalGeneration computes it from `labels` (-100 ignored: the
//! `[DEC]` start, a prompt, padding), summed over a batch so that the split's loss is the mean
//! over all its caption tokens.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use pipe_blip::Blip;
use pipe_data::collate::{Batch, IGNORE_INDEX};

/// The mean loss of `batch` and the number of tokens it is the mean over.
///
/// `image_embeds` holds one row per caption of `batch` (`[batch.batch, N, E]`).
pub fn masked_caption_loss<B: Backend>(
    model: &Blip<B>,
    image_embeds: Tensor<B, 3>,
    batch: &Batch,
    device: &B::Device,
) -> (f64, usize) {
    let shape = [batch.batch, batch.seq_len];
    let int =
        |v: &[i64]| Tensor::<B, 2, Int>::from_data(TensorData::new(v.to_vec(), shape), device);
    let input_ids = int(&batch.input_ids);
    let attention_mask = int(&batch.attention_mask);
    // pipe-blip's loss keeps targets where its mask is 1 (from position 1 on): the labels'
    // non-ignored positions, which excludes padding and the prompt as transformers does.
    let keep: Vec<i64> = batch
        .labels
        .iter()
        .map(|&l| i64::from(l != IGNORE_INDEX))
        .collect();
    let tokens = keep
        .chunks(batch.seq_len.max(1))
        .map(|row| row.iter().skip(1).filter(|&&k| k == 1).count())
        .sum();
    if tokens == 0 || batch.seq_len < 2 {
        return (0.0, 0);
    }
    let logits = model.teacher_forced_logits(image_embeds, input_ids.clone(), Some(attention_mask));
    let loss = pipe_blip::loss::caption_loss(logits, input_ids, int(&keep), 0.0);
    let mean: f64 = loss.into_scalar().elem();
    (mean, tokens)
}

/// Token-weighted running mean of batch losses.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LossSum {
    sum: f64,
    tokens: usize,
}

impl LossSum {
    pub fn add(&mut self, (mean, tokens): (f64, usize)) {
        self.sum += mean * tokens as f64;
        self.tokens += tokens;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.sum / self.tokens as f64)
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }
}
