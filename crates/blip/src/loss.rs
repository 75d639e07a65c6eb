//! The captioning loss as transformers' `BlipForConditionalGeneration` computes it from
//! `labels`: the logits at position t score label t+1, -100 labels (the `[DEC]` start, a prompt,
//! padding) are ignored, optional label smoothing as
//! `torch.nn.CrossEntropyLoss(label_smoothing=ε)` (HF's default is 0, BLIP's original 0.1).
//!
//! One function for every caller (train's steps and validation, with pixels or encode
//! features, and evaluate's test loss), so that the numbers they report mean the same thing.
//! It returns the sum and the count rather than the mean so that a split's loss is the mean
//! over all its scored tokens, whatever the batching: `Σ sum / Σ count`.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Summed next-token loss over the scored tokens and their number: `(Σ loss [1], count [1])`
/// (differentiable on autodiff backends). The mean transformers reports is `sum / count`.
///
/// - `logits`: `[R, L, V]`, teacher-forced on the input ids.
/// - `labels`: `[R, L]`, the input ids with -100 (any negative label) where no loss is taken; position 0
///   is never a target.
/// - `label_smoothing`: ε of `CrossEntropyLoss(label_smoothing=ε)`: `(1-ε)·nll + ε·mean_v(-log p)`.
pub fn summed_loss<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    label_smoothing: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [r, l, _] = logits.dims();
    let logp = log_softmax(logits.narrow(1, 0, l - 1), 2); // [R, L-1, V]
    let targets = labels.narrow(1, 1, l - 1); // [R, L-1]
    let keep = targets.clone().greater_equal_elem(0).float(); // [R, L-1]
    let safe = targets.clamp_min(0);
    let nll = -logp
        .clone()
        .gather(2, safe.reshape([r, l - 1, 1]))
        .reshape([r, l - 1]);
    let per_token = if label_smoothing > 0.0 {
        let uniform = -logp.mean_dim(2).reshape([r, l - 1]);
        nll * (1.0 - label_smoothing) + uniform * label_smoothing
    } else {
        nll
    };
    ((per_token * keep.clone()).sum(), keep.sum())
}
