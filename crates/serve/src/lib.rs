//! `pipe serve`: a BLIP captioner behind a web page and a JSON API, safe to leave running.
//!
//! - [`serve`] blocks until Ctrl-C / SIGTERM; [`Server::start`] runs in the background and
//!   tells its address (port 0 picks a free one), for tests and benchmarks.
//! - The model is loaded once and owned by one worker thread that captions queued requests in
//!   micro-batches ([`worker`]).
//! - The API ([`api`]): `POST /api/caption` (multipart field `image`, or the image as the raw
//!   body; `num_beams`, `max_new_tokens` as query parameters or form fields) →
//!   `{"caption", "tokens", "ms", …}`; `GET /api/health`; `GET /api/info`; errors as
//!   `{"error": TEXT}`: 400 malformed, 404 unknown path, 413 body or image too large, 415 not
//!   an image, 429 too many requests in flight, 503 model worker gone, 504 timed out.
//! - Limits ([`limits`], [`ServeOptions`]): body size, image pixels read from the header
//!   before decoding, format sniffed from the bytes, per-request timeout, bounded admission;
//!   connections ([`connections`]) bounded in number, cut when their headers are slow or they
//!   sit idle, and a shutdown that waits a bounded time.
//! - The page ([`page`]): HTML/JS/CSS compiled in; example images only from an explicit list
//!   read at start-up. Binds 127.0.0.1 by default; CORS only when enabled.

pub mod api;
pub mod connections;
pub mod error;
pub mod limits;
pub mod options;
pub mod page;
mod server;
pub mod worker;

pub use api::{CaptionResponse, Health};
pub use error::{ApiError, ServeError};
pub use options::{ServeOptions, ServerInfo};
pub use server::{Server, serve, start_until_signal};
pub use worker::StatsSnapshot;
