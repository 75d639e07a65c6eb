//! The teacher-forced logits a training batch is scored on; the loss over them is
//! [`pipe_blip::loss::summed_loss`], the one evaluate's test loss uses too.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use pipe_blip::Blip;
use pipe_blip::text::KvCache;

use crate::data::{BatchImages, ImageBatch};

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
