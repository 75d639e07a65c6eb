//! `config.json` of a BlipForConditionalGeneration checkpoint, as typed structs.
//!
//! Every size is required: a missing one is an error naming it, never a silent default (the
//! published base checkpoint has 12 text heads where `BlipTextConfig`'s default is 8). Numerical
//! details that checkpoints often omit (epsilons, activation, token ids) default to the values
//! of transformers' config classes, so a config transformers accepts is read the same way here.

use std::path::Path;

use serde::Deserialize;

/// The whole `config.json` (only the parts BLIP captioning uses; other keys are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct BlipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
}

/// `text_config`: the BERT-style text decoder.
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of the image tokens the cross-attention reads (the vision hidden size).
    pub encoder_hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_text_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub hidden_act: Activation,
    /// `[DEC]`: every caption starts with it.
    #[serde(default = "default_bos")]
    pub bos_token_id: u32,
    /// `[SEP]`: generation stops at it (not at `eos_token_id`, which BLIP ignores).
    #[serde(default = "default_sep")]
    pub sep_token_id: u32,
    /// `[PAD]`: pads finished sequences in a batch.
    #[serde(default)]
    pub pad_token_id: u32,
}

/// `vision_config`: the ViT image encoder.
#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_vision_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub hidden_act: Activation,
}

/// The activation functions transformers names in `hidden_act` that BLIP checkpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Activation {
    /// Exact GELU, `x·Φ(x)` with the error function (PyTorch's `nn.GELU()`).
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
    /// `x·sigmoid(1.702x)` (CLIP).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
}

fn default_text_eps() -> f64 {
    1e-12
}
fn default_vision_eps() -> f64 {
    1e-5
}
fn default_bos() -> u32 {
    30522
}
fn default_sep() -> u32 {
    102
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a BLIP config")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

impl BlipConfig {
    /// Read and validate `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config: BlipConfig =
            serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
                path: shown.clone(),
                source,
            })?;
        config
            .validate()
            .map_err(|what| ConfigError::Invalid { path: shown, what })?;
        Ok(config)
    }

    /// Check the sizes fit together (head counts divide widths, the image tiles into patches).
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.text_config;
        let v = &self.vision_config;
        if t.num_attention_heads == 0 || !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(format!(
                "text_config.hidden_size {} is not a multiple of num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if v.num_attention_heads == 0 || !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(format!(
                "vision_config.hidden_size {} is not a multiple of num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        if t.encoder_hidden_size != v.hidden_size {
            return Err(format!(
                "text_config.encoder_hidden_size {} differs from vision_config.hidden_size {}",
                t.encoder_hidden_size, v.hidden_size
            ));
        }
        for (name, id) in [
            ("bos", t.bos_token_id),
            ("sep", t.sep_token_id),
            ("pad", t.pad_token_id),
        ] {
            if id as usize >= t.vocab_size {
                return Err(format!(
                    "text_config.{name}_token_id {id} is outside the vocabulary"
                ));
            }
        }
        Ok(())
    }
}

impl VisionConfig {
    /// Image tokens per image: one class token plus one per patch (577 at 384/16).
    pub fn num_positions(&self) -> usize {
        let side = self.image_size / self.patch_size;
        side * side + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_json() -> serde_json::Value {
        serde_json::json!({
            "text_config": {
                "vocab_size": 30524, "hidden_size": 768, "encoder_hidden_size": 768,
                "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                "max_position_embeddings": 512
            },
            "vision_config": {
                "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                "num_attention_heads": 12, "image_size": 384, "patch_size": 16
            }
        })
    }

    #[test]
    fn base_sizes_and_defaults() {
        let c: BlipConfig = serde_json::from_value(base_json()).expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.vision_config.num_positions(), 577);
        assert_eq!(c.text_config.bos_token_id, 30522);
        assert_eq!(c.text_config.sep_token_id, 102);
        assert_eq!(c.text_config.hidden_act, Activation::Gelu);
    }

    #[test]
    fn missing_size_is_named() {
        let mut j = base_json();
        j["text_config"]
            .as_object_mut()
            .expect("object")
            .remove("num_attention_heads");
        let e = serde_json::from_value::<BlipConfig>(j).expect_err("missing heads");
        assert!(e.to_string().contains("num_attention_heads"), "{e}");
    }

    #[test]
    fn indivisible_heads_rejected() {
        let mut j = base_json();
        j["text_config"]["num_attention_heads"] = 7.into();
        let c: BlipConfig = serde_json::from_value(j).expect("parses");
        assert!(
            c.validate()
                .expect_err("7 heads")
                .contains("num_attention_heads")
        );
    }

    #[test]
    fn unknown_activation_rejected() {
        let mut j = base_json();
        j["text_config"]["hidden_act"] = "swishy".into();
        let e = serde_json::from_value::<BlipConfig>(j).expect_err("bad act");
        assert!(e.to_string().contains("swishy"), "{e}");
    }
}
