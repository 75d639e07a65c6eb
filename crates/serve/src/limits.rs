//! Turning untrusted bytes into `pixel_values`, refusing early: the format is sniffed from the
//! bytes (the Content-Type is not trusted), the size is read from the header and checked
//! before anything is allocated (a decompression bomb → 413), and decoding runs under
//! allocation limits. Decoding and preprocessing are exactly the collate stage's.

use std::io::Cursor;

use image::{ImageFormat, ImageReader};
use pipe_data::collate::{PreprocessorConfig, preprocess_rgb8};
use pipe_data::images::{DecodeLimits, decode_rgb8};

use crate::error::ApiError;

/// The formats this build decodes.
pub const FORMATS: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
    ImageFormat::WebP,
];

const FORMAT_NAMES: &str = "JPEG, PNG, GIF, BMP, TIFF or WebP";

/// The format of `bytes`, from their magic number: not an image → 415.
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty image: send the file as multipart field `image` or as the request body",
        ));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        ApiError::unsupported(format!(
            "not an image: the data is not a {FORMAT_NAMES} file"
        ))
    })?;
    if !FORMATS.contains(&format) {
        return Err(ApiError::unsupported(format!(
            "unsupported image format {}: send a {FORMAT_NAMES} file",
            format_name(format)
        )));
    }
    Ok(format)
}

/// Width and height from the header only: nothing is decoded.
pub fn dimensions(bytes: &[u8], format: ImageFormat) -> Result<(u32, u32), ApiError> {
    ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| {
            ApiError::bad_request(format!(
                "corrupt {} file: cannot read its header ({e})",
                format_name(format)
            ))
        })
}

/// Check the size, decode and preprocess: `3 × H × W` f32, as the model takes it.
pub fn pixel_values(
    bytes: &[u8],
    max_pixels: u64,
    pre: &PreprocessorConfig,
) -> Result<Vec<f32>, ApiError> {
    let format = sniff(bytes)?;
    let (w, h) = dimensions(bytes, format)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(ApiError::too_large(format!(
            "image too large: {w}x{h} = {pixels} pixels, the limit is {max_pixels}"
        )));
    }
    if pixels == 0 {
        return Err(ApiError::bad_request("image has zero width or height"));
    }
    // Enough for the declared size at 16 bits × 4 channels, and not a byte more: a header
    // that lies about its size cannot make the decoder allocate past this.
    let limits = DecodeLimits {
        max_side: w.max(h),
        max_pixels: pixels,
        max_alloc: pixels.saturating_mul(8).saturating_add(16 << 20),
    };
    let rgb = decode_rgb8(bytes, &limits).map_err(|issue| {
        let text = issue.0;
        if text.starts_with("refused") {
            ApiError::too_large(text)
        } else if text.starts_with("unsupported") || text.starts_with("not an image") {
            ApiError::unsupported(text)
        } else {
            ApiError::bad_request(text)
        }
    })?;
    Ok(preprocess_rgb8(&rgb, pre))
}

fn format_name(format: ImageFormat) -> String {
    format!("{format:?}").to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("encode: {e}"));
        out
    }

    #[test]
    fn text_is_415() {
        let e = sniff(b"hello, this is text").unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.message.contains("not an image"), "{e}");
    }

    #[test]
    fn empty_is_400() {
        assert_eq!(sniff(b"").unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn header_is_read_without_decoding() {
        let bytes = png(7, 5);
        assert_eq!(dimensions(&bytes, ImageFormat::Png).unwrap(), (7, 5));
    }

    #[test]
    fn too_many_pixels_is_413() {
        let bytes = png(20, 20);
        let pre: PreprocessorConfig = serde_json::from_value(serde_json::json!({
            "size": {"height": 8, "width": 8},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5]
        }))
        .unwrap();
        let e = pixel_values(&bytes, 399, &pre).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
        assert_eq!(pixel_values(&bytes, 400, &pre).unwrap().len(), 3 * 8 * 8);
    }
}
