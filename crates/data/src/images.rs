//! Reading one image the way every stage must: bounded by decode limits (a decompression bomb
//! is refused, not obeyed), EXIF orientation applied, and whatever the file holds — grayscale,
//! 16-bit, palette, CMYK, alpha (composited on white, as transformers' `convert_rgb` does) —
//! turned into RGB8. Failures come back as a one-line reason for `summary.json`.
//!
//! Memory is bounded twice: per image (`max_side`, `max_pixels`, `max_alloc`: a small file
//! that claims 16000×16000 is refused before a byte is decoded) and per process (every decode
//! first reserves its estimated peak from one [`DECODE_BUDGET_BYTES`] budget, so sixteen
//! threads decoding large photos wait their turn instead of adding up).

use std::io::Cursor;
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

/// Largest accepted width and height, pixel count, and the most a decoder may allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_side: u32,
    /// Width × height.
    pub max_pixels: u64,
    pub max_alloc: u64,
}

/// The default pixel bound, in megapixels (10⁶ pixels): a 48-megapixel phone photo passes, a
/// 0.75 MB all-zero 16000×16000 PNG (256 megapixels, 768 MB decoded) does not.
pub const DEFAULT_MAX_MEGAPIXELS: f64 = 64.0;

impl DecodeLimits {
    /// The default limits with another pixel bound.
    pub fn with_megapixels(megapixels: f64) -> Self {
        Self {
            // Saturating: the caller has checked `megapixels` is finite and positive.
            max_pixels: (megapixels * 1e6) as u64,
            ..Self::default()
        }
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 16k per side, 64 megapixels and 1 GiB: every real photo passes, a bomb does not.
        Self {
            max_side: 16_384,
            max_pixels: (DEFAULT_MAX_MEGAPIXELS * 1e6) as u64,
            max_alloc: 1 << 30,
        }
    }
}

/// The most bytes all threads of the process may be decoding at once (estimated peaks).
pub const DECODE_BUDGET_BYTES: u64 = 2 << 30;

/// Bytes reserved by decodes in flight, against [`DECODE_BUDGET_BYTES`].
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
}

static BUDGET: Budget = Budget {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

/// A reservation from [`BUDGET`], returned when dropped.
struct Share(u64);

impl Budget {
    /// Reserve `bytes` (at most the whole budget, so one huge image still runs — alone),
    /// waiting until that much is free.
    fn reserve(&'static self, bytes: u64) -> Share {
        let bytes = bytes.min(DECODE_BUDGET_BYTES);
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used > 0 && *used + bytes > DECODE_BUDGET_BYTES {
            used = self
                .freed
                .wait(used)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *used += bytes;
        Share(bytes)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut used = BUDGET.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used -= self.0;
        BUDGET.freed.notify_all();
    }
}

/// Why an image cannot be used (the text goes into `summary.json`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImageIssue(pub String);

/// A file read and checked to decode: its bytes' blake3 hash and its upright size.
pub struct LoadedImage {
    pub hash: String,
    pub width: u32,
    pub height: u32,
}

/// Read, hash and decode a file (the pixels are dropped once it is known to decode).
pub fn load_image(path: &Path, limits: &DecodeLimits) -> Result<LoadedImage, ImageIssue> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageIssue("image file missing".to_string()),
        _ => ImageIssue(format!("unreadable: {e}")),
    })?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let (width, height) = decode_rgb8_with(&bytes, limits, |rgb| rgb.dimensions())?;
    Ok(LoadedImage {
        hash,
        width,
        height,
    })
}

/// Decode encoded bytes into upright RGB8. The pixels outlive the decode's share of the
/// process budget: where many threads decode, prefer [`decode_rgb8_with`].
pub fn decode_rgb8(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageIssue> {
    decode_reserved(bytes, limits).map(|(rgb, _share)| rgb)
}

/// Decode encoded bytes into upright RGB8 and hand them to `use_it`, all within one share of
/// the process-wide decode budget (waiting for it when other threads hold it).
pub fn decode_rgb8_with<R>(
    bytes: &[u8],
    limits: &DecodeLimits,
    use_it: impl FnOnce(&RgbImage) -> R,
) -> Result<R, ImageIssue> {
    let (rgb, _share) = decode_reserved(bytes, limits)?;
    Ok(use_it(&rgb))
}

/// Decode into upright RGB8, with the share of the budget the decode reserved.
fn decode_reserved(bytes: &[u8], limits: &DecodeLimits) -> Result<(RgbImage, Share), ImageIssue> {
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
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(ImageIssue(format!(
            "refused: {w}×{h} is {:.1} megapixels, above max_megapixels = {}",
            pixels as f64 / 1e6,
            limits.max_pixels as f64 / 1e6
        )));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let share = BUDGET.reserve(peak_bytes(
        decoder.total_bytes(),
        pixels,
        decoder.color_type().has_alpha(),
        orientation != image::metadata::Orientation::NoTransforms,
    ));
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| describe(format, e))?;
    if w == 0 || h == 0 {
        return Err(ImageIssue("image has zero width or height".to_string()));
    }
    img.apply_orientation(orientation);
    Ok((to_rgb8_on_white(img), share))
}

/// The most memory one decode holds at once, estimated: the decoded buffer, a rotated copy
/// of it, an RGBA8 copy for alpha compositing, and the RGB8 result.
fn peak_bytes(decoded: u64, pixels: u64, alpha: bool, rotated: bool) -> u64 {
    let rotation = if rotated { decoded } else { 0 };
    let rgba = if alpha { pixels * 4 } else { 0 };
    decoded
        .saturating_add(rotation)
        .saturating_add(rgba)
        .saturating_add(pixels * 3)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_makes_a_reservation_wait_until_enough_is_freed() {
        let half = BUDGET.reserve(DECODE_BUDGET_BYTES / 2 + 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _second = BUDGET.reserve(DECODE_BUDGET_BYTES / 2 + 1);
            tx.send(()).ok();
        });
        // Two halves and a byte do not fit: the second waits for the first.
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the second reservation did not wait"
        );
        drop(half);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second reservation goes ahead once the first is freed");
        waiter.join().expect("waiter");
        // More than the whole budget is capped to it, so it still runs (alone).
        drop(BUDGET.reserve(u64::MAX));
        assert_eq!(*BUDGET.used.lock().expect("lock"), 0);
    }

    #[test]
    fn peak_bytes_counts_the_copies() {
        assert_eq!(peak_bytes(300, 100, false, false), 600);
        assert_eq!(peak_bytes(400, 100, true, true), 400 + 400 + 400 + 300);
        assert_eq!(peak_bytes(u64::MAX, 1, true, true), u64::MAX);
    }
}
