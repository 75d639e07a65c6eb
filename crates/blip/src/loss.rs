//! The captioning loss transformers' BlipForConditionalGeneration reports: next-token cross
//! entropy of `logits[:, :-1]` against `labels[:, 1:]`, mean over the non-ignored labels.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Mean next-token cross entropy, a scalar tensor `[1]` (differentiable on autodiff backends).
///
/// - `logits`: `[B, L, V]` teacher-forced on `input_ids`.
/// - `input_ids`: `[B, L]`; position 0 is the `[DEC]` start token and is never a target.
/// - `attention_mask`: `[B, L]`, 0 marks padding, which is not a target (transformers' -100).
/// - `label_smoothing`: as `torch.nn.CrossEntropyLoss(label_smoothing=…)`; HF's default is 0.
pub fn caption_loss<B: Backend>(
    logits: Tensor<B, 3>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2, Int>,
    label_smoothing: f64,
) -> Tensor<B, 1> {
    let [b, l, _] = logits.dims();
    // Prediction at position t scores the token at t+1.
    let logp = log_softmax(logits.narrow(1, 0, l - 1), 2); // [B, L-1, V]
    let targets = input_ids.narrow(1, 1, l - 1); // [B, L-1]
    let keep = attention_mask.narrow(1, 1, l - 1).float(); // [B, L-1]
    let nll = -logp
        .clone()
        .gather(2, targets.reshape([b, l - 1, 1]))
        .reshape([b, l - 1]);
    let per_token = if label_smoothing > 0.0 {
        // (1-ε)·nll + ε·mean over the vocabulary of -log p.
        let uniform = -logp.mean_dim(2).reshape([b, l - 1]);
        nll * (1.0 - label_smoothing) + uniform * label_smoothing
    } else {
        nll
    };
    (per_token * keep.clone()).sum() / keep.sum()
}
