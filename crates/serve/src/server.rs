//! Starting and stopping: the model worker, the router with its limits and headers, the
//! listener, and a runtime of its own on a background thread.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{get, post};
use pipe_data::collate::PreprocessorConfig;
use pipe_hub::{HubOptions, ModelSource};
use pipe_stage_api::BackendChoice;
use tokio::sync::{Semaphore, oneshot};
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::{self, AppState, RequestLimits};
use crate::connections::{self, ConnectionLimits};
use crate::error::ServeError;
use crate::options::ServeOptions;
use crate::page::{self, Example};
use crate::worker::{self, Batching, ModelFacts, Stats, StatsSnapshot};

/// A running server. Dropping it (or [`Server::shutdown`]) stops it gracefully.
pub struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// Load the model, bind, and serve on a background thread; returns once the server
    /// accepts connections. With `port: 0` the OS picks a port: see [`Server::addr`].
    pub fn start(
        model_dir: &Path,
        backend: BackendChoice,
        opts: ServeOptions,
    ) -> Result<Self, ServeError> {
        start(model_dir, backend, opts, false)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/`, the page.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The model worker's counters (model calls, images, largest batch).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Stop accepting, finish the requests in progress, and return.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop()
    }

    /// Block until the server stops (on Ctrl-C / SIGTERM when started by [`serve`]).
    pub fn wait(mut self) -> Result<(), ServeError> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ServeError::Panicked)?,
            None => Ok(()),
        }
    }

    fn stop(&mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ServeError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!("stopping the server: {e}");
        }
    }
}

/// Serve `model_dir` until Ctrl-C or SIGTERM: the entry point of `pipe serve`. Loads the model
/// once, logs the URL (tracing, level info) and blocks.
pub fn serve(
    model_dir: &Path,
    backend: BackendChoice,
    opts: ServeOptions,
) -> Result<(), ServeError> {
    let server = start(model_dir, backend, opts, true)?;
    tracing::info!("serving the captioner on {}", server.url());
    server.wait()
}

/// Start a server that also stops on Ctrl-C / SIGTERM (what [`serve`] does, for a caller that
/// wants the address before blocking in [`Server::wait`]).
pub fn start_until_signal(
    model_dir: &Path,
    backend: BackendChoice,
    opts: ServeOptions,
) -> Result<Server, ServeError> {
    start(model_dir, backend, opts, true)
}

fn check(opts: &ServeOptions) -> Result<(), ServeError> {
    let bad = |m: &str| Err(ServeError::Options(m.to_string()));
    if opts.max_batch == 0 {
        return bad("max_batch must be at least 1");
    }
    if opts.queue_capacity == 0 {
        return bad("queue_capacity must be at least 1");
    }
    if opts.max_body_bytes == 0 || opts.max_pixels == 0 {
        return bad("max_body_bytes and max_pixels must be positive");
    }
    if opts.request_timeout.is_zero() || opts.header_timeout.is_zero() {
        return bad("request_timeout and header_timeout must be positive");
    }
    if opts.max_connections == 0 {
        return bad("max_connections must be at least 1");
    }
    if opts.max_beams == 0 || opts.decode.num_beams == 0 {
        return bad("num_beams must be at least 1");
    }
    if opts.decode.num_beams > opts.max_beams {
        return bad("the default num_beams is above max_beams");
    }
    Ok(())
}

fn start(
    model_dir: &Path,
    backend: BackendChoice,
    opts: ServeOptions,
    until_signal: bool,
) -> Result<Server, ServeError> {
    check(&opts)?;
    let hub = HubOptions::from_env();
    let dir = ModelSource::parse(&model_dir.to_string_lossy(), &hub)
        .and_then(|source| source.resolve(&hub))
        .map_err(|e| ServeError::Load(e.into()))?;
    let preprocessor = PreprocessorConfig::from_model_dir(&dir.dir)?;
    let examples = page::load_examples(&opts.examples, opts.max_examples, opts.max_body_bytes)?;
    let resolved = pipe_backend::resolve(backend)?;
    tracing::info!(model = %dir.dir.display(), backend = %resolved, "loading the model");
    let worker = worker::spawn(
        dir.dir.clone(),
        resolved,
        Batching {
            max_batch: opts.max_batch,
            window: opts.batch_window,
            queue_capacity: opts.queue_capacity,
            debug_delay: opts.debug_model_delay,
        },
    )?;
    let facts = worker.facts.clone();
    let size = preprocessor.size;
    if size.width as usize != facts.image_size || size.height as usize != facts.image_size {
        return Err(ServeError::SizeMismatch {
            model: facts.image_size,
            width: size.width,
            height: size.height,
        });
    }
    // [DEC] + new - 1 positions are used (see GenerationConfig::validate): no prompt here.
    let token_cap = opts.max_new_tokens_limit.min(facts.max_positions);
    if opts.decode.max_new_tokens == 0 || opts.decode.max_new_tokens > token_cap {
        return Err(ServeError::Options(format!(
            "the default max_new_tokens must be between 1 and {token_cap} for this model"
        )));
    }
    opts.decode
        .check()
        .map_err(|e| ServeError::Options(format!("decoding option `{}`: {}", e.key, e.message)))?;

    let info = info_json(&dir.dir, &opts, &facts, token_cap, &examples);
    let decoders = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stats = Arc::clone(&worker.stats);
    let state = Arc::new(AppState {
        queue: worker.queue,
        admitted: Arc::new(Semaphore::new(opts.queue_capacity)),
        decoders: Arc::new(Semaphore::new(decoders)),
        preprocessor: Arc::new(preprocessor),
        limits: RequestLimits {
            max_body_bytes: opts.max_body_bytes,
            max_pixels: opts.max_pixels,
            timeout: opts.request_timeout,
            queue_capacity: opts.queue_capacity,
            max_beams: opts.max_beams,
            max_new_tokens: token_cap,
            generation: opts.decode.generation(),
        },
        stats: Arc::clone(&stats),
        worker: Arc::new(worker.thread),
        info,
        examples,
    });
    let app = router(state, opts.max_body_bytes, opts.cors);
    listen(app, &opts, until_signal, stats)
}

/// What `GET /api/info` answers: the model, the defaults, the limits and the examples.
fn info_json(
    dir: &Path,
    opts: &ServeOptions,
    facts: &ModelFacts,
    token_cap: usize,
    examples: &[Example],
) -> serde_json::Value {
    serde_json::json!({
        "model": {
            "dir": std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).display().to_string(),
            "source": opts.info.source,
            "stage": opts.info.stage,
            "stage_key": opts.info.stage_key,
            "metrics": opts.info.metrics,
            "backend": facts.backend,
            "image_size": facts.image_size,
        },
        "defaults": {
            "num_beams": opts.decode.num_beams,
            "max_new_tokens": opts.decode.max_new_tokens,
        },
        "limits": {
            "max_beams": opts.max_beams,
            "max_new_tokens": token_cap,
            "max_body_bytes": opts.max_body_bytes,
            "max_pixels": opts.max_pixels,
            "timeout_ms": opts.request_timeout.as_millis() as u64,
            "queue_capacity": opts.queue_capacity,
            "max_connections": opts.max_connections,
            "header_timeout_ms": opts.header_timeout.as_millis() as u64,
        },
        "batching": {
            "max_batch": opts.max_batch,
            "window_ms": opts.batch_window.as_secs_f64() * 1000.0,
        },
        "examples": examples.iter().enumerate().map(|(i, e)| serde_json::json!({
            "name": e.name,
            "url": format!("/api/examples/{i}"),
        })).collect::<Vec<_>>(),
    })
}

/// Bind, and serve `app` on a runtime of its own on a background thread; returns once the
/// listener accepts connections.
fn listen(
    app: Router,
    opts: &ServeOptions,
    until_signal: bool,
    stats: Arc<Stats>,
) -> Result<Server, ServeError> {
    let limits = ConnectionLimits {
        max_connections: opts.max_connections,
        header_timeout: opts.header_timeout,
        shutdown_grace: opts.shutdown_grace,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("pipe-serve-http")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let addr = SocketAddr::new(opts.host, opts.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("pipe-serve".into())
        .spawn(move || {
            runtime.block_on(async move {
                let stop = async move {
                    if until_signal {
                        tokio::select! {
                            _ = shutdown_rx => {}
                            _ = signal() => tracing::info!("stopping on signal"),
                        }
                    } else {
                        let _ = shutdown_rx.await;
                    }
                };
                // A second signal stops waiting for the requests in progress.
                let force = async move {
                    if until_signal {
                        signal().await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                connections::serve(listener, app, limits, stop, force).await;
            });
            // Handlers may still be decoding on blocking threads: do not wait on them.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            Ok(())
        })
        .map_err(ServeError::Runtime)?;
    tracing::info!(%addr, "listening");
    Ok(Server {
        addr,
        stats,
        shutdown: Some(shutdown_tx),
        thread: Some(thread),
    })
}

/// Ctrl-C, or SIGTERM on Unix.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn router(state: Arc<AppState>, max_body: usize, cors: bool) -> Router {
    let header_layer = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    let app = Router::new()
        .route("/", get(page::index))
        .route("/assets/app.js", get(page::script))
        .route("/assets/style.css", get(page::style))
        .route("/assets/icon.svg", get(page::icon))
        .route("/api/caption", post(api::caption))
        .route("/api/health", get(api::health))
        .route("/api/info", get(api::info))
        .route("/api/examples/{index}", get(api::example))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(header_layer(header::CONTENT_SECURITY_POLICY, page::CSP))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::REFERRER_POLICY, "no-referrer"))
        .with_state(state);
    if cors {
        app.layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers(Any),
        )
    } else {
        app
    }
}
