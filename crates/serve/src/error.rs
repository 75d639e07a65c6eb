//! The two kinds of failure: the server cannot start ([`ServeError`]), and one request cannot
//! be served ([`ApiError`], answered as `{"error": TEXT}` with its HTTP status).

use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Backend(#[from] pipe_backend::BackendError),
    #[error("cannot load the model")]
    Load(#[from] pipe_blip::CaptionError),
    #[error(transparent)]
    Preprocessor(#[from] pipe_data::collate::CollateError),
    #[error("invalid option: {0}")]
    Options(String),
    #[error("the model takes {model}x{model} images but the preprocessor makes {width}x{height}")]
    SizeMismatch {
        model: usize,
        width: u32,
        height: u32,
    },
    #[error("cannot read example image {path}")]
    Example {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the model worker stopped before it was ready")]
    WorkerGone,
    #[error("a server thread panicked")]
    Panicked,
}

/// Why one request failed: an HTTP status and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 413: the body or the image is too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    /// 415: not an image this server can read.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }
    /// 500: the model failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

/// The JSON body of every error.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response()
    }
}
