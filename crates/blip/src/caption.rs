//! The captioning entry point: a loaded model, its config and tokenizer.

use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use tokenizers::Tokenizer;

use crate::config::BlipConfig;
use crate::decode::{DecodeError, GenerationConfig, SpecialTokens, beam, greedy};
use crate::model::Blip;
use crate::weights::{LoadError, load_model};
use pipe_hub::ModelDir;

/// One image's caption.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Caption {
    /// Decoded as transformers' `batch_decode(skip_special_tokens=True)`.
    pub text: String,
    /// `[DEC]`, the prompt, the generated tokens (ending with `[SEP]` if the caption finished).
    pub tokens: Vec<u32>,
}

/// Why captioning failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptionError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Hub(#[from] pipe_hub::HubError),
    #[error("cannot read the tokenizer {path}: {message}")]
    Tokenizer { path: String, message: String },
    #[error("cannot decode token ids: {0}")]
    Decode(String),
    #[error("cannot encode the prompt {prompt:?}: {message}")]
    Prompt { prompt: String, message: String },
    #[error("pixel_values must be [batch, 3, {size}, {size}], got {found:?}")]
    PixelShape { size: usize, found: [usize; 4] },
    #[error(transparent)]
    Generate(#[from] DecodeError),
}

/// A BLIP captioner on backend `B`.
#[derive(Debug)]
pub struct Captioner<B: Backend> {
    pub model: Blip<B>,
    pub config: BlipConfig,
    tokenizer: Tokenizer,
}

impl<B: Backend> Captioner<B> {
    /// Load a checkpoint directory (a Hub id is `pipe_hub::ModelSource`'s to find) with its
    /// `tokenizer.json`.
    pub fn load(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self, CaptionError> {
        let dir = ModelDir::open(dir.as_ref())?;
        let tokenizer_path = dir.tokenizer_path();
        let tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| CaptionError::Tokenizer {
                path: tokenizer_path.display().to_string(),
                message: e.to_string(),
            })?;
        let (config, model) = load_model(&dir, device)?;
        tracing::info!(model = %dir.dir.display(), "loaded BLIP");
        Ok(Self {
            model,
            config,
            tokenizer,
        })
    }

    /// Assemble from parts (e.g. a fine-tuned model held in memory).
    pub fn from_parts(model: Blip<B>, config: BlipConfig, tokenizer: Tokenizer) -> Self {
        Self {
            model,
            config,
            tokenizer,
        }
    }

    /// Side of the square images the model takes (`vision_config.image_size`).
    pub fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    /// The token ids decoding uses, from the config.
    pub fn special_tokens(&self) -> SpecialTokens {
        let t = &self.config.text_config;
        SpecialTokens {
            bos: t.bos_token_id,
            eos: t.sep_token_id,
            pad: t.pad_token_id,
        }
    }

    /// Caption a batch of preprocessed images `[B, 3, S, S]`, one caption per image.
    pub fn caption(
        &self,
        pixel_values: Tensor<B, 4>,
        g: &GenerationConfig,
    ) -> Result<Vec<Caption>, CaptionError> {
        let dims = pixel_values.dims();
        let size = self.image_size();
        if dims[1] != 3 || dims[2] != size || dims[3] != size {
            return Err(CaptionError::PixelShape { size, found: dims });
        }
        let t = &self.config.text_config;
        g.validate(self.model.text_decoder.max_positions(), t.vocab_size)
            .map_err(DecodeError::from)?;
        let image_embeds = self.model.encode_images(pixel_values); // [B, N, E]
        let tokens = self.generate(image_embeds, g)?;
        tokens
            .into_iter()
            .map(|tokens| {
                Ok(Caption {
                    text: self.decode(&tokens)?,
                    tokens,
                })
            })
            .collect()
    }

    /// Token ids for images already encoded (`[B, N, E]`, e.g. from an `encode` stage).
    pub fn generate(
        &self,
        image_embeds: Tensor<B, 3>,
        g: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>, CaptionError> {
        let decoder = &self.model.text_decoder;
        let special = self.special_tokens();
        let out = if g.num_beams == 1 {
            greedy::greedy(decoder, image_embeds, g, special)?
        } else {
            beam::beam_search(decoder, image_embeds, g, special)?
        };
        Ok(out)
    }

    /// Token ids → text, skipping special tokens.
    pub fn decode(&self, tokens: &[u32]) -> Result<String, CaptionError> {
        self.tokenizer
            .decode(tokens, true)
            .map_err(|e| CaptionError::Decode(e.to_string()))
    }

    /// A text prompt ("a picture of") → the ids that follow `[DEC]`, as transformers' BLIP does
    /// with `input_ids`: tokenized with special tokens, the leading `[CLS]` becomes `[DEC]` and
    /// the trailing `[SEP]` is dropped.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>, CaptionError> {
        let enc = self
            .tokenizer
            .encode(prompt, true)
            .map_err(|e| CaptionError::Prompt {
                prompt: prompt.to_string(),
                message: e.to_string(),
            })?;
        let ids = enc.get_ids();
        // [CLS] w1 … wn [SEP] → w1 … wn
        Ok(ids
            .get(1..ids.len().saturating_sub(1))
            .unwrap_or_default()
            .to_vec())
    }
}
