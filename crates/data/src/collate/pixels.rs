//! Pixels as the model was pretrained on them: resized to the processor's size ([`super::resize`],
//! no crop), then rescaled (×1/255) and normalised with the processor's mean and std, as f32 CHW.

use std::path::Path;

use image::{DynamicImage, RgbImage};

use super::config::PreprocessorConfig;
use super::error::CollateError;
use super::resize::{Filter, resize_rgb8};
use crate::images::{DecodeLimits, decode_rgb8_with, to_rgb8_on_white};

/// Resize to the processor's size (a no-op when the image already has it).
pub fn resize_for(rgb: &RgbImage, cfg: &PreprocessorConfig) -> RgbImage {
    let filter = Filter::from_pil(cfg.resample).unwrap_or(Filter::Bicubic);
    resize_rgb8(rgb, cfg.size.width, cfg.size.height, filter)
}

/// Maps a stored RGB8 value to its normalised f32, per channel (a 3 × 256 lookup table).
#[derive(Debug, Clone)]
pub struct Normalizer {
    lut: Vec<f32>,
}

impl Normalizer {
    pub fn new(cfg: &PreprocessorConfig) -> Self {
        Self::from_parts(
            cfg.do_rescale,
            cfg.rescale_factor,
            cfg.do_normalize,
            cfg.image_mean,
            cfg.image_std,
        )
    }

    pub fn from_parts(
        do_rescale: bool,
        rescale_factor: f64,
        do_normalize: bool,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Self {
        let mut lut = vec![0f32; 3 * 256];
        for c in 0..3 {
            for v in 0..256 {
                let mut x = v as f32;
                if do_rescale {
                    x *= rescale_factor as f32;
                }
                if do_normalize {
                    x = (x - mean[c]) / std[c];
                }
                lut[c * 256 + v] = x;
            }
        }
        Self { lut }
    }

    /// HWC RGB8 → normalised CHW f32, written into `out` (`3 × h × w` values).
    pub fn to_chw_into(&self, hwc: &[u8], out: &mut [f32]) {
        let plane = hwc.len() / 3;
        for (i, px) in hwc.chunks_exact(3).enumerate() {
            out[i] = self.lut[usize::from(px[0])];
            out[plane + i] = self.lut[256 + usize::from(px[1])];
            out[2 * plane + i] = self.lut[512 + usize::from(px[2])];
        }
    }

    /// HWC RGB8 → normalised CHW f32.
    pub fn to_chw(&self, hwc: &[u8]) -> Vec<f32> {
        let mut out = vec![0f32; hwc.len()];
        self.to_chw_into(hwc, &mut out);
        out
    }
}

/// Upright RGB8 → the model's `pixel_values` for one image (f32, CHW, `3 × height × width`).
pub fn preprocess_rgb8(rgb: &RgbImage, cfg: &PreprocessorConfig) -> Vec<f32> {
    Normalizer::new(cfg).to_chw(resize_for(rgb, cfg).as_raw())
}

/// Any decoded image → `pixel_values` (alpha composited on white, as transformers does).
pub fn preprocess_image(img: &DynamicImage, cfg: &PreprocessorConfig) -> Vec<f32> {
    preprocess_rgb8(&to_rgb8_on_white(img.clone()), cfg)
}

/// An image file → `pixel_values`, decoded as prep decodes (limits, EXIF orientation).
pub fn preprocess_file(path: &Path, cfg: &PreprocessorConfig) -> Result<Vec<f32>, CollateError> {
    let bytes = std::fs::read(path).map_err(|source| CollateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_rgb8_with(&bytes, &DecodeLimits::default(), |rgb| {
        preprocess_rgb8(rgb, cfg)
    })
    .map_err(|i| CollateError::Image {
        path: path.to_path_buf(),
        reason: i.0,
    })
}
