//! The page: HTML, JS, CSS and an icon compiled into the binary (no CDN, no files on disk), and
//! the example images, read once at start-up from an explicit list.

use pipe_data::images::has_image_extension;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use image::ImageFormat;

use crate::error::ServeError;
use crate::limits;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// Content-Security-Policy of every response: only this server's own scripts, styles and
/// images (plus the `blob:` previews of files the user picked).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

pub async fn icon() -> impl IntoResponse {
    asset("image/svg+xml", ICON_SVG)
}

/// An example image held in memory.
#[derive(Debug, Clone)]
pub struct Example {
    /// Its file name, shown on the page.
    pub name: String,
    pub bytes: Bytes,
    pub content_type: &'static str,
}

/// Read the examples: each path is an image file, or a directory whose image files (by
/// extension, not recursive, sorted by name) are taken. Files that are not images this server
/// reads, or are over `max_bytes`, are skipped with a warning; at most `max` are kept.
pub fn load_examples(
    paths: &[PathBuf],
    max: usize,
    max_bytes: usize,
) -> Result<Vec<Example>, ServeError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| ServeError::Example {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| ServeError::Example {
                path: path.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut examples = Vec::new();
    for path in files {
        if examples.len() >= max {
            break;
        }
        let bytes = std::fs::read(&path).map_err(|source| ServeError::Example {
            path: path.clone(),
            source,
        })?;
        if bytes.len() > max_bytes {
            tracing::warn!(path = %path.display(), "example skipped: over the body limit");
            continue;
        }
        let format = match limits::sniff(&bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), "example skipped: {}", e.message);
                continue;
            }
        };
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        examples.push(Example {
            name,
            bytes: Bytes::from(bytes),
            content_type: content_type(format),
        });
    }
    Ok(examples)
}

fn content_type(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Png => "image/png",
        ImageFormat::Gif => "image/gif",
        ImageFormat::Bmp => "image/bmp",
        ImageFormat::Tiff => "image/tiff",
        ImageFormat::WebP => "image/webp",
        _ => "application/octet-stream",
    }
}
