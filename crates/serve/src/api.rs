//! The JSON API: `POST /api/caption`, `GET /api/health`, `GET /api/info` and the example
//! images (`GET /api/examples/{index}`), every error as `{"error": TEXT}`.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use pipe_blip::GenerationConfig;
use pipe_data::collate::PreprocessorConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};

use crate::error::ApiError;
use crate::limits;
use crate::page::Example;
use crate::worker::{CaptionRequest, Stats, StatsSnapshot};

/// What every handler shares.
pub struct AppState {
    pub queue: SyncSender<CaptionRequest>,
    /// One permit per admitted request: none left → 429.
    pub admitted: Arc<Semaphore>,
    /// Concurrent decodes (memory: each holds a full-size image).
    pub decoders: Arc<Semaphore>,
    pub preprocessor: Arc<PreprocessorConfig>,
    pub limits: RequestLimits,
    pub stats: Arc<Stats>,
    pub worker: Arc<std::thread::JoinHandle<()>>,
    /// The body of `GET /api/info`.
    pub info: serde_json::Value,
    pub examples: Vec<Example>,
}

/// The per-request limits and defaults.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_pixels: u64,
    pub timeout: Duration,
    pub queue_capacity: usize,
    pub max_beams: usize,
    pub max_new_tokens: usize,
    pub generation: GenerationConfig,
}

/// Decoding options a request may set (query string or multipart fields), over the server's
/// defaults ([`crate::ServeOptions::decode`]).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionQuery {
    pub num_beams: Option<usize>,
    pub max_new_tokens: Option<usize>,
}

/// The answer of `POST /api/caption`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptionResponse {
    pub caption: String,
    /// The token ids: `[DEC]`, the caption, `[SEP]` if it finished.
    pub tokens: Vec<u32>,
    /// Time from receiving the request to answering it (ms).
    pub ms: f64,
    /// Time of the model call that made it (ms), shared by the batch.
    pub model_ms: f64,
    /// How many images shared that model call.
    pub batch_size: usize,
    pub num_beams: usize,
    pub max_new_tokens: usize,
}

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or `down` when the model worker has stopped (status 503).
    pub status: String,
    /// Requests being served now, and how many may be.
    pub in_flight: usize,
    pub capacity: usize,
    pub stats: StatsSnapshot,
}

pub async fn health(State(s): State<Arc<AppState>>) -> Response {
    let down = s.worker.is_finished();
    let capacity = s.limits.queue_capacity;
    let body = Health {
        status: if down { "down" } else { "ok" }.to_string(),
        in_flight: capacity.saturating_sub(s.admitted.available_permits()),
        capacity,
        stats: s.stats.snapshot(),
    };
    let status = if down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

pub async fn info(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(s.info.clone())
}

pub async fn example(
    State(s): State<Arc<AppState>>,
    Path(index): Path<String>,
) -> Result<Response, ApiError> {
    let found = index.parse::<usize>().ok().and_then(|i| s.examples.get(i));
    let Some(ex) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no example {index:?}"),
        ));
    };
    Ok((
        [
            (header::CONTENT_TYPE, ex.content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        ex.bytes.clone(),
    )
        .into_response())
}

/// Unknown paths: 404 as JSON.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("not found: {}", uri.path()))
}

/// A known path with the wrong method: 405 as JSON.
pub async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed on {}", uri.path()),
    )
}

/// `POST /api/caption`: the image as multipart field `image` or as the raw body.
pub async fn caption(
    State(s): State<Arc<AppState>>,
    query: Result<Query<CaptionQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Ok(_permit) = Arc::clone(&s.admitted).try_acquire_owned() else {
        tracing::warn!("429: {} requests in flight", s.limits.queue_capacity);
        let busy = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "server busy: {} requests are being served; try again shortly",
                s.limits.queue_capacity
            ),
        );
        return Ok(([(header::RETRY_AFTER, "1")], busy).into_response());
    };
    let timeout = s.limits.timeout;
    let result = match tokio::time::timeout(timeout, serve_caption(&s, params, request)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("timed out after {} ms", timeout.as_millis()),
        )),
    };
    let ms = (start.elapsed().as_secs_f64() * 1e4).round() / 10.0;
    match result {
        Ok(mut r) => {
            r.ms = ms;
            tracing::info!(ms, batch = r.batch_size, caption = %r.caption, "200 caption");
            Ok(Json(r).into_response())
        }
        Err(e) => {
            tracing::info!(ms, status = e.status.as_u16(), error = %e.message, "caption refused");
            Err(e)
        }
    }
}

async fn serve_caption(
    s: &AppState,
    mut params: CaptionQuery,
    request: Request,
) -> Result<CaptionResponse, ApiError> {
    let bytes = read_image(request, &mut params, s.limits.max_body_bytes).await?;
    let generation = generation_for(&params, &s.limits)?;

    let decode = Arc::clone(&s.decoders)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let pre = Arc::clone(&s.preprocessor);
    let max_pixels = s.limits.max_pixels;
    let pixels = tokio::task::spawn_blocking(move || {
        let _decode = decode;
        limits::pixel_values(&bytes, max_pixels, &pre)
    })
    .await
    .map_err(|e| ApiError::internal(format!("decoding failed: {e}")))??;

    let (reply, answer) = oneshot::channel();
    let job = CaptionRequest {
        pixels,
        generation: generation.clone(),
        reply,
    };
    s.queue.try_send(job).map_err(|e| match e {
        TrySendError::Full(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue full"),
        TrySendError::Disconnected(_) => worker_gone(),
    })?;
    let done = answer
        .await
        .map_err(|_| worker_gone())?
        .map_err(ApiError::internal)?;
    Ok(CaptionResponse {
        caption: done.caption.text,
        tokens: done.caption.tokens,
        ms: 0.0,
        model_ms: (done.model_ms * 10.0).round() / 10.0,
        batch_size: done.batch_size,
        num_beams: generation.num_beams,
        max_new_tokens: generation.max_new_tokens,
    })
}

fn worker_gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the model worker is not running",
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("multipart/"))
}

/// Read the whole body, at most `max_body` bytes. A larger body is refused with 413 only
/// after reading (and discarding) what is left of it, up to [`drain_cap`]: a client that is
/// still sending when the answer comes would otherwise see a reset instead of the 413.
async fn read_body(body: Body, max_body: usize) -> Result<Bytes, ApiError> {
    let cap = drain_cap(max_body);
    let mut body = body;
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= max_body {
            kept.extend_from_slice(&data);
        } else if seen > cap {
            break;
        }
    }
    if seen > max_body {
        return Err(body_too_large(max_body));
    }
    Ok(Bytes::from(kept))
}

/// How much of an oversized body is read before answering 413 (beyond it the connection is
/// closed): four times the limit, between 1 MiB and 64 MiB.
fn drain_cap(max_body: usize) -> usize {
    max_body.saturating_mul(4).clamp(1 << 20, 64 << 20)
}

fn body_too_large(max_body: usize) -> ApiError {
    ApiError::too_large(format!(
        "request body is over the limit of {max_body} bytes"
    ))
}

/// The image bytes, from multipart field `image` (other fields: decoding options) or the body.
async fn read_image(
    request: Request,
    params: &mut CaptionQuery,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    let (parts, body) = request.into_parts();
    if let Some(len) = content_length(&parts.headers)
        && len > drain_cap(max_body) as u64
    {
        return Err(body_too_large(max_body));
    }
    let bytes = read_body(body, max_body).await?;
    if !is_multipart(&parts.headers) {
        return Ok(bytes);
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let form_error = |e: MultipartError| ApiError::new(e.status(), e.body_text());
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut image = None;
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" => image = Some(field.bytes().await.map_err(form_error)?),
            "num_beams" | "max_new_tokens" => {
                let text = field.text().await.map_err(form_error)?;
                let value = parse_count(&name, &text)?;
                if name == "num_beams" {
                    params.num_beams = Some(value);
                } else {
                    params.max_new_tokens = Some(value);
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?}: expected `image`, `num_beams`, `max_new_tokens`"
                )));
            }
        }
    }
    image.ok_or_else(|| ApiError::bad_request("the form has no `image` field"))
}

fn parse_count(name: &str, text: &str) -> Result<usize, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number, got {text:?}")))
}

/// The request's decoding options, defaulted and bounded.
pub fn generation_for(
    params: &CaptionQuery,
    limits: &RequestLimits,
) -> Result<GenerationConfig, ApiError> {
    let mut g = limits.generation.clone();
    if let Some(beams) = params.num_beams {
        if beams == 0 || beams > limits.max_beams {
            return Err(ApiError::bad_request(format!(
                "num_beams must be between 1 and {}, got {beams}",
                limits.max_beams
            )));
        }
        g.num_beams = beams;
    }
    if let Some(tokens) = params.max_new_tokens {
        if tokens == 0 || tokens > limits.max_new_tokens {
            return Err(ApiError::bad_request(format!(
                "max_new_tokens must be between 1 and {}, got {tokens}",
                limits.max_new_tokens
            )));
        }
        g.max_new_tokens = tokens;
        g.min_new_tokens = g.min_new_tokens.min(tokens);
    }
    Ok(g)
}
