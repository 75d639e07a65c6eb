//! The captioning loss as transformers computes it from `labels`: logits at t score label t+1,
//! -100 labels (the [DEC] start, a prompt, padding) are ignored, optional label smoothing as
//! `torch.nn.CrossEntropyLoss(label_smoothing=ε)`.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use pipe_blip::Blip;
use pipe_blip::text::KvCache;

use crate::data::{BatchImages, ImageBatch};

/// Summed loss over the scored tokens and their number: `(Σ loss [1], count [1])`.
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

/// Teacher-forced logits `[R, L, V]` of a batch: the vision encoder once per image, the
/// cross-attention keys/values once per image, shared by its caption rows.
pub fn batch_logits<B: Backend>(model: &Blip<B>, batch: &ImageBatch<B>) -> Tensor<B, 3> {
    let embeds = match &batch.images {
        BatchImages::Pixels(p) => model.encode_images(p.clone()), // [I, N, E]
        BatchImages::Embeds(e) => e.clone(),
    };
    let (embeds, g) = match batch.rows_per_image() {
        Some(g) => (embeds, g),
        None => {
            // Uneven caption counts: one copy of the image features per row.
            let device = embeds.device();
            let rows: Vec<i64> = batch.row_image.iter().map(|&i| i as i64).collect();
            let idx = Tensor::<B, 1, Int>::from_data(rows.as_slice(), &device);
            (embeds.select(0, idx), 1)
        }
    };
    let cross = model.text_decoder.cross_kv(embeds);
    let padding = batch.attention_mask.clone().equal_elem(0);
    let mut cache = KvCache::default();
    let hidden = model.text_decoder.forward(
        batch.input_ids.clone(),
        &cross,
        g,
        &mut cache,
        Some(padding),
    );
    model.text_decoder.logits(hidden)
}
