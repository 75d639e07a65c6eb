//! The test loss: teacher-forced next-token cross entropy over the caption tokens,
//! [`pipe_blip::loss::summed_loss`] (the function train's validation loss comes from) on the
//! collate artifact's `labels` (-100 ignored: the `[DEC]` start, a prompt, padding), summed over
//! a batch so that the split's loss is the mean over all its caption tokens.
//!
//! Without label smoothing: the test loss is the plain cross entropy transformers reports with
//! its default `label_smoothing = 0`, whatever the model was trained with (train's validation
//! loss uses the training run's `label_smoothing`).

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use pipe_blip::Blip;
use pipe_data::collate::Batch;

/// The summed loss of `batch` and the number of tokens it is summed over.
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
    let tokens: usize = batch
        .labels
        .chunks(batch.seq_len.max(1))
        .map(|row| row.iter().skip(1).filter(|&&l| l >= 0).count())
        .sum();
    if tokens == 0 || batch.seq_len < 2 {
        return (0.0, 0);
    }
    let input_ids = int(&batch.input_ids);
    let attention_mask = int(&batch.attention_mask);
    let logits = model.teacher_forced_logits(image_embeds, input_ids, Some(attention_mask));
    let (sum, _count) = pipe_blip::loss::summed_loss(logits, int(&batch.labels), 0.0);
    let sum: f64 = sum.into_scalar().elem();
    (sum, tokens)
}

/// Token-weighted running mean of batch losses.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LossSum {
    sum: f64,
    tokens: usize,
}

impl LossSum {
    pub fn add(&mut self, (sum, tokens): (f64, usize)) {
        self.sum += sum;
        self.tokens += tokens;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.sum / self.tokens as f64)
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }
}
