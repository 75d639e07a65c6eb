//! Batches for training: a group of images, each with all its captions, so every image's
//! vision features are computed once per step and its cross-attention K/V shared by its rows.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use pipe_data::collate::{Collated, TokenizedCaption};

use crate::error::TrainError;
use pipe_features::Features;

/// A micro-batch's images: pixels for the vision encoder, or its output read from an
/// `encode` artifact (the encoder frozen, so it is never run twice for the same image).
#[derive(Debug, Clone)]
pub enum BatchImages<B: Backend> {
    /// `[I, 3, S, S]`, normalised.
    Pixels(Tensor<B, 4>),
    /// `[I, N, E]`, the vision encoder's output.
    Embeds(Tensor<B, 3>),
}

impl<B: Backend> BatchImages<B> {
    /// I.
    pub fn len(&self) -> usize {
        match self {
            Self::Pixels(t) => t.dims()[0],
            Self::Embeds(t) => t.dims()[0],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One micro-batch on a device.
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    pub images: BatchImages<B>,
    /// `[R, L]`, R = Σ captions per image, image-major.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[R, L]`, 1 for tokens, 0 for padding.
    pub attention_mask: Tensor<B, 2, Int>,
    /// `[R, L]`, -100 where no loss is taken (the model shifts).
    pub labels: Tensor<B, 2, Int>,
    /// Row r belongs to image `row_image[r]`.
    pub row_image: Vec<usize>,
}

impl<B: Backend> ImageBatch<B> {
    /// Captions per image when every image has the same number (the fast path), else `None`.
    pub fn rows_per_image(&self) -> Option<usize> {
        let images = self.images.len();
        let rows = self.row_image.len();
        if images == 0 || !rows.is_multiple_of(images) {
            return None;
        }
        let g = rows / images;
        self.row_image
            .iter()
            .enumerate()
            .all(|(r, &i)| i == r / g)
            .then_some(g)
    }
}

/// Build the batch of images `indices` (into `col`) on `device`: their pixels, or their
/// vision features when `features` holds them.
pub fn load_batch<B: Backend>(
    col: &Collated,
    features: Option<&Features>,
    indices: &[usize],
    device: &B::Device,
) -> Result<ImageBatch<B>, TrainError> {
    let images = match features {
        Some(f) => BatchImages::Embeds(f.embeds(indices, device)?),
        None => {
            let (h, w) = col.image_size();
            let (h, w) = (h as usize, w as usize);
            let mut pixels = vec![0f32; indices.len() * 3 * h * w];
            for (&i, out) in indices.iter().zip(pixels.chunks_mut(3 * h * w)) {
                col.pixels_into(i, out)?;
            }
            let shape = [indices.len(), 3, h, w];
            BatchImages::Pixels(Tensor::from_data(TensorData::new(pixels, shape), device))
        }
    };
    let mut captions: Vec<&TokenizedCaption> = Vec::new();
    let mut row_image = Vec::new();
    for (k, &i) in indices.iter().enumerate() {
        for c in col.captions(i) {
            captions.push(c);
            row_image.push(k);
        }
    }
    let b = col.batch(&captions, None);
    let shape = [b.batch, b.seq_len];
    Ok(ImageBatch {
        images,
        input_ids: Tensor::from_data(TensorData::new(b.input_ids, shape), device),
        attention_mask: Tensor::from_data(TensorData::new(b.attention_mask, shape), device),
        labels: Tensor::from_data(TensorData::new(b.labels, shape), device),
        row_image,
    })
}

/// How many tokens the loss scores over images `indices` with all their captions (what
/// [`pipe_blip::loss::summed_loss`] counts: labels ≥ 0 after the shift by one), counted on
/// the host: the divisor that makes peers' summed losses one mean.
pub fn scored_tokens(col: &Collated, indices: &[usize]) -> usize {
    indices
        .iter()
        .flat_map(|&i| col.captions(i))
        .map(|c| c.labels().iter().skip(1).filter(|&&l| l >= 0).count())
        .sum()
}
