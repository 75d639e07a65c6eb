//! The work on the chosen backend: per batch of images, one vision forward (or its output read
//! from an encode artifact) that feeds the teacher-forced loss over all their reference
//! captions and beam search.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use pipe_backend::OnBackend;
use pipe_blip::{Captioner, GenerationConfig};
use pipe_data::collate::Collated;
use pipe_features::Features;
use pipe_stage_api::Progress;

use crate::error::EvaluateError;
use crate::loss::{LossSum, masked_caption_loss};

/// What the backend run returns.
pub(crate) struct Decoded {
    /// One caption per image of `indices`, in that order.
    pub captions: Vec<String>,
    pub loss: LossSum,
}

/// Caption and score the images `indices` of a collate artifact.
pub(crate) struct EvaluateJob<'a> {
    pub model_dir: &'a Path,
    pub collated: &'a Collated,
    pub indices: &'a [usize],
    pub generation: GenerationConfig,
    pub batch_size: usize,
    pub progress: &'a dyn Progress,
    /// The encode stage's features of the collate artifact's images, if a dep holds them.
    pub features: Option<&'a Features>,
    pub collate_dir: &'a Path,
}

impl OnBackend for EvaluateJob<'_> {
    type Output = Result<Decoded, EvaluateError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let captioner = Captioner::<B>::load(self.model_dir, &device)?;
        let side = captioner.image_size();
        let (h, w) = self.collated.image_size();
        if h as usize != side || w as usize != side {
            return Err(EvaluateError::ImageSize {
                collate: h,
                collate_w: w,
                model: side,
            });
        }
        let mut g = self.generation;
        let prompt = self.collated.meta.prompt.trim();
        if !prompt.is_empty() {
            g.prompt_ids = captioner.prompt_ids(prompt)?;
        }
        let t = &captioner.config.text_config;
        g.validate(captioner.model.text_decoder.max_positions(), t.vocab_size)
            .map_err(pipe_blip::decode::DecodeError::from)
            .map_err(pipe_blip::CaptionError::from)?;

        // Features read from encode stand in for the vision encoder only when it computed them.
        let features = match self.features {
            Some(f)
                if f.mismatch(
                    &captioner.model.vision_model,
                    self.collate_dir,
                    self.collated.len(),
                )?
                .is_none() =>
            {
                tracing::info!("reading vision features from encode");
                Some(f)
            }
            Some(_) => {
                tracing::info!(
                    "encode's features come from another vision encoder or collate artifact; \
                     running the vision encoder"
                );
                None
            }
            None => None,
        };
        let (h, w) = (h as usize, w as usize);
        let image_len = 3 * h * w;
        let mut captions = Vec::with_capacity(self.indices.len());
        let mut loss = LossSum::default();
        self.progress.begin_items(
            "evaluating (loss + beam search)",
            self.indices.len() as u64,
            "images",
        );
        for chunk in self.indices.chunks(self.batch_size.max(1)) {
            let embeds = match features {
                Some(f) => f.embeds::<B>(chunk, &device)?,
                None => {
                    let mut pixels = vec![0f32; chunk.len() * image_len];
                    for (&i, out) in chunk.iter().zip(pixels.chunks_mut(image_len)) {
                        self.collated.pixels_into(i, out)?;
                    }
                    let shape = [chunk.len(), 3, h, w];
                    let pixels = Tensor::<B, 4>::from_data(TensorData::new(pixels, shape), &device);
                    captioner.model.encode_images(pixels) // [b, N, E]
                }
            };

            // Loss: every caption of these images, each row with its image's embeddings.
            let mut rows = Vec::new();
            let mut owner = Vec::new();
            for (row, &i) in chunk.iter().enumerate() {
                for c in self.collated.captions(i) {
                    rows.push(c);
                    owner.push(row as i64);
                }
            }
            if !rows.is_empty() {
                let batch = self.collated.batch(&rows, None);
                let n = owner.len();
                let index = Tensor::<B, 1, Int>::from_data(TensorData::new(owner, [n]), &device);
                let per_caption = embeds.clone().select(0, index);
                loss.add(masked_caption_loss(
                    &captioner.model,
                    per_caption,
                    &batch,
                    &device,
                ));
            }

            for tokens in captioner.generate(embeds, &g)? {
                let text = captioner.decode(&tokens)?;
                captions.push(strip_prompt(&text, prompt));
            }
            self.progress.advance(chunk.len() as u64);
            tracing::debug!(
                done = captions.len(),
                total = self.indices.len(),
                "evaluated"
            );
        }
        Ok(Decoded { captions, loss })
    }
}

/// The generated caption without the prompt it was forced to start with (BLIP's evaluation
/// scores the caption after the prompt).
pub(crate) fn strip_prompt(text: &str, prompt: &str) -> String {
    let prompt = prompt.trim();
    if prompt.is_empty() {
        return text.trim().to_string();
    }
    let lower = text.to_lowercase();
    let p = prompt.to_lowercase();
    if lower.starts_with(&p) && text.is_char_boundary(p.len()) && lower.len() == text.len() {
        text[p.len()..].trim().to_string()
    } else {
        text.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::strip_prompt;

    #[test]
    fn prompt_is_stripped_case_insensitively() {
        assert_eq!(strip_prompt("a picture of a dog", "A picture of "), "a dog");
        assert_eq!(strip_prompt("a dog", ""), "a dog");
        assert_eq!(strip_prompt("the dog", "a picture of"), "the dog");
    }
}
