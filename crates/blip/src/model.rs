//! BlipForConditionalGeneration: the vision encoder and the text decoder side by side, with the
//! module tree named after the checkpoint's tensors (`weights::RENAMES` lists the exceptions) (`vision_model.*`, `text_decoder.*`).

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::config::BlipConfig;
use crate::text::{KvCache, TextDecoder};
use crate::vision::VisionModel;

/// The captioning model. Build it with [`Blip::new`] (zero, lazily allocated parameters) and
/// fill it with [`crate::weights::load_weights`], or use [`crate::weights::load_model`].
#[derive(Module, Debug)]
pub struct Blip<B: Backend> {
    pub vision_model: VisionModel<B>,
    pub text_decoder: TextDecoder<B>,
}

impl<B: Backend> Blip<B> {
    pub fn new(config: &BlipConfig, device: &B::Device) -> Self {
        Self {
            vision_model: VisionModel::new(&config.vision_config, device),
            text_decoder: TextDecoder::new(&config.text_config, device),
        }
    }

    /// `[B, 3, S, S]` → image embeddings `[B, N, E]`.
    pub fn encode_images(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        self.vision_model.forward(pixel_values)
    }

    /// Teacher-forced logits `[B, L, V]` for captions `input_ids` `[B, L]` (starting with
    /// `[DEC]`) given their images' embeddings `[B, N, E]`; `attention_mask` `[B, L]` is 1 for
    /// real tokens and 0 for padding, as in transformers.
    pub fn teacher_forced_logits(
        &self,
        image_embeds: Tensor<B, 3>,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Tensor<B, 3> {
        let cross = self.text_decoder.cross_kv(image_embeds);
        let padding: Option<Tensor<B, 2, Bool>> = attention_mask.map(|m| m.equal_elem(0));
        let mut cache = KvCache::default();
        let hidden = self
            .text_decoder
            .forward(input_ids, &cross, 1, &mut cache, padding);
        self.text_decoder.logits(hidden)
    }
}
