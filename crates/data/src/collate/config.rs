//! The two model files collate obeys: `preprocessor_config.json` (how pixels are made) and
//! the token ids in `config.json` (`text_config.{bos,sep,pad}_token_id`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{CollateError, read_json};

/// The fields of a Hugging Face image processor config that BLIP uses (others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessorConfig {
    #[serde(default = "yes")]
    pub do_resize: bool,
    pub size: ImageSize,
    /// PIL's filter number: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming.
    #[serde(default = "bicubic")]
    pub resample: u32,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "one_255th")]
    pub rescale_factor: f64,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    #[serde(default = "yes")]
    pub do_convert_rgb: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    pub height: u32,
    pub width: u32,
}

fn yes() -> bool {
    true
}
fn bicubic() -> u32 {
    3
}
fn one_255th() -> f64 {
    1.0 / 255.0
}

impl PreprocessorConfig {
    /// Read `preprocessor_config.json` (or a `processor_config.json` holding `image_processor`).
    pub fn from_file(path: &Path) -> Result<Self, CollateError> {
        let value: serde_json::Value = read_json(path)?;
        let value = value.get("image_processor").cloned().unwrap_or(value);
        let config: Self = serde_json::from_value(value).map_err(|e| CollateError::Config {
            path: path.to_path_buf(),
            message: format!(
                "not a supported image processor config: {e} (size must be {{height, width}})"
            ),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// `preprocessor_config.json` in a model directory.
    pub fn from_model_dir(dir: &Path) -> Result<Self, CollateError> {
        Self::from_file(&dir.join("preprocessor_config.json"))
    }

    fn validate(&self, path: &Path) -> Result<(), CollateError> {
        let bad = |message: String| CollateError::Config {
            path: path.to_path_buf(),
            message,
        };
        if self.size.height == 0
            || self.size.width == 0
            || self.size.height > 4096
            || self.size.width > 4096
        {
            return Err(bad(format!(
                "size {}x{} out of range",
                self.size.width, self.size.height
            )));
        }
        if !self.do_resize {
            return Err(bad(
                "do_resize = false is not supported: images of mixed sizes cannot be batched"
                    .into(),
            ));
        }
        if super::resize::Filter::from_pil(self.resample).is_none() {
            return Err(bad(format!(
                "resample {} is not supported (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)",
                self.resample
            )));
        }
        if self.image_std.iter().any(|s| *s <= 0.0) {
            return Err(bad("image_std must be positive".into()));
        }
        Ok(())
    }
}

/// The special token ids a caption is framed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Starts every caption (BLIP: `[DEC]` = 30522, `text_config.bos_token_id`).
    pub bos: u32,
    /// Ends every caption (`[SEP]` = 102, `text_config.sep_token_id`).
    pub sep: u32,
    /// Fills a padded batch (`[PAD]` = 0, `text_config.pad_token_id`).
    pub pad: u32,
}

impl SpecialTokens {
    /// Read `text_config.{bos,sep,pad}_token_id` from `config.json` (top-level keys for a
    /// text-only config).
    pub fn from_config(path: &Path) -> Result<Self, CollateError> {
        let value: serde_json::Value = read_json(path)?;
        let text = value.get("text_config").unwrap_or(&value);
        let id = |key: &str| -> Result<u32, CollateError> {
            text.get(key)
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| CollateError::Config {
                    path: path.to_path_buf(),
                    message: format!("`text_config.{key}` is missing or not a token id"),
                })
        };
        Ok(Self {
            bos: id("bos_token_id")?,
            sep: id("sep_token_id")?,
            pad: id("pad_token_id")?,
        })
    }
}
