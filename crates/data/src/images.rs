//! Reading one image the way every stage must: bounded by decode limits (a decompression bomb
//! is refused, not obeyed), EXIF orientation applied, and whatever the file holds — grayscale,
//! 16-bit, palette, CMYK, alpha (composited on white, as transformers' `convert_rgb` does) —
//! turned into RGB8. Failures come back as a one-line reason for `summary.json`.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

/// Largest accepted width and height, and the most a decoder may allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_side: u32,
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 16k × 16k and 1 GiB: every real photo passes, a bomb does not.
        Self {
            max_side: 16_384,
            max_alloc: 1 << 30,
        }
    }
}

/// Why an image cannot be used (the text goes into `summary.json`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImageIssue(pub String);

/// A file read and decoded: its bytes' blake3 hash and the upright RGB8 pixels.
pub struct LoadedImage {
    pub hash: String,
    pub rgb: RgbImage,
}

/// Read, hash and decode a file.
pub fn load_image(path: &Path, limits: &DecodeLimits) -> Result<LoadedImage, ImageIssue> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageIssue("image file missing".to_string()),
        _ => ImageIssue(format!("unreadable: {e}")),
    })?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let rgb = decode_rgb8(&bytes, limits)?;
    Ok(LoadedImage { hash, rgb })
}

/// Decode encoded bytes into upright RGB8.
pub fn decode_rgb8(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageIssue> {
    if bytes.is_empty() {
        return Err(ImageIssue("zero-byte file".to_string()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageIssue(format!("unreadable: {e}")))?;
    let format = reader
        .format()
        .ok_or_else(|| ImageIssue("not an image (unrecognised file format)".to_string()))?;
    if format == ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        // zune-jpeg fills a truncated scan with grey instead of failing: refuse it here.
        return Err(ImageIssue(
            "truncated JPEG (no end-of-image marker)".to_string(),
        ));
    }
    let mut l = Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let mut decoder = reader.into_decoder().map_err(|e| describe(format, e))?;
    let (w, h) = decoder.dimensions();
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| describe(format, e))?;
    if w == 0 || h == 0 {
        return Err(ImageIssue("image has zero width or height".to_string()));
    }
    img.apply_orientation(orientation);
    Ok(to_rgb8_on_white(img))
}

/// Any colour type → RGB8; transparent pixels are composited on white.
pub fn to_rgb8_on_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return match img {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.to_rgb8(),
        };
    }
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(p[3]);
        for c in 0..3 {
            // src·a + white·(1−a), rounded.
            o[c] = ((u32::from(p[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

fn has_jpeg_end(bytes: &[u8]) -> bool {
    // Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an
    // FF D9 near the end is the real end-of-image marker (trailing junk after it is allowed).
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn describe(format: ImageFormat, e: ImageError) -> ImageIssue {
    let name = format!("{format:?}").to_uppercase();
    ImageIssue(match e {
        ImageError::Limits(l) => format!("refused: exceeds decode limits ({l})"),
        ImageError::Unsupported(u) => format!("unsupported {name} image: {u}"),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("truncated {name} file")
        }
        ImageError::IoError(io) => format!("unreadable {name} file: {io}"),
        ImageError::Decoding(d) => format!("corrupt {name} file: {d}"),
        other => format!("cannot decode {name} file: {other}"),
    })
}

/// File extensions read as images (lower case; matched case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// Whether a path's extension names an image format we decode.
pub fn has_image_extension(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}
