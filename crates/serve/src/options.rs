//! What `pipe serve` can be told: where to listen, the limits, the batching, the decoding
//! defaults and what the page shows about the model.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use pipe_blip::DecodeParams;

/// Everything configurable about the server. [`Default`] is safe to leave running: loopback
/// only, no CORS, 10 MB bodies, a bounded queue.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (default `127.0.0.1`: reachable from this machine only).
    pub host: IpAddr,
    /// Port to bind (default 7860; 0 picks a free one, see [`crate::Server::addr`]).
    pub port: u16,
    /// Largest accepted request body in bytes (default 10 MB): larger → 413.
    pub max_body_bytes: usize,
    /// Largest accepted image in pixels (width × height, read from the header before any
    /// decoding; default 36 M): larger → 413, without allocating the image.
    pub max_pixels: u64,
    /// Longest a request may take, queueing included (default 30 s): → 504.
    pub request_timeout: Duration,
    /// Requests admitted at once (being decoded, queued or captioned; default 64): one more
    /// → 429.
    pub queue_capacity: usize,
    /// Open connections at once (default 256, well under the usual 1024 file descriptors):
    /// one more is answered 503 and closed.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers, and longest an open connection
    /// may sit idle between requests (default 10 s): then it is closed.
    pub header_timeout: Duration,
    /// Longest a shutdown (Ctrl-C, SIGTERM, [`crate::Server::shutdown`]) waits for the
    /// requests in progress before closing their connections (default 10 s; a second signal
    /// closes them at once).
    pub shutdown_grace: Duration,
    /// Most images captioned in one model call (default 8).
    pub max_batch: usize,
    /// How long the worker waits for more requests to fill a batch once it has one
    /// (default 5 ms; zero: only what is already queued).
    pub batch_window: Duration,
    /// Send `Access-Control-Allow-Origin: *` on the API (default off).
    pub cors: bool,
    /// Decoding defaults for requests that do not say (`num_beams`, `max_new_tokens`, …;
    /// default: greedy, 20 new tokens).
    pub decode: DecodeParams,
    /// Most beams a request may ask for (default 8).
    pub max_beams: usize,
    /// Most new tokens a request may ask for (default 64; also capped by the model's
    /// position table).
    pub max_new_tokens_limit: usize,
    /// Example images offered on the page: files, or directories whose image files (not
    /// recursive) are offered. Read once at start-up; nothing else on disk is ever served.
    pub examples: Vec<PathBuf>,
    /// Most example images kept (default 12).
    pub max_examples: usize,
    /// What the page and `/api/info` say about the model.
    pub info: ServerInfo,
    /// Test and benchmark hook: sleep this long before every model call (default zero).
    #[doc(hidden)]
    pub debug_model_delay: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 7860,
            max_body_bytes: 10 * 1000 * 1000,
            max_pixels: 36_000_000,
            request_timeout: Duration::from_secs(30),
            queue_capacity: 64,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_batch: 8,
            batch_window: Duration::from_millis(5),
            cors: false,
            decode: DecodeParams {
                num_beams: 1,
                ..DecodeParams::default()
            },
            max_beams: 8,
            max_new_tokens_limit: 64,
            examples: Vec::new(),
            max_examples: 12,
            info: ServerInfo::default(),
            debug_model_delay: Duration::ZERO,
        }
    }
}

/// What the server tells people about the model it serves (all optional; the model directory
/// and the backend are always shown).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServerInfo {
    /// Where the model came from, as the user named it (`--model SRC`, or the stage name).
    pub source: Option<String>,
    /// The pipeline stage that produced it (`--stage NAME`).
    pub stage: Option<String>,
    /// That stage's cache key.
    pub stage_key: Option<String>,
    /// Its metrics (e.g. the evaluate stage's `metrics.json`), shown as a table.
    pub metrics: Option<serde_json::Value>,
}
