//! Connections: accepted up to a bound, each with a header and idle timeout, and a graceful
//! shutdown that waits a bounded time (or not at all after a second signal).
//!
//! Written on hyper's connection builder rather than `axum::serve`, which sets no timer (so
//! hyper's header timeout never runs), accepts without bound and waits forever for a client
//! that holds a half-sent request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers, and longest a connection may
    /// sit idle waiting for its next request.
    pub header_timeout: Duration,
    /// Longest a graceful shutdown waits for open connections before closing them.
    pub shutdown_grace: Duration,
}

/// What a connection over the limit is told before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\ncontent-length: 32\r\n\r\n{\"error\":\"too many connections\"}";

/// How long to wait before accepting again after `accept` fails (out of file descriptors,
/// say): the open connections go on being served meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serve `app` on `listener` until `stop` resolves; then stop accepting, let open connections
/// finish their requests for at most `shutdown_grace` (or until `force` resolves) and close
/// the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) {
    let (closing_tx, closing) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut open = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        let app = app.clone();
                        let closing = closing.clone();
                        open.spawn(async move {
                            connection(stream, app, limits.header_timeout, closing).await;
                            drop(permit);
                        });
                    }
                    Err(_) => refuse(&stream),
                },
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = open.join_next(), if !open.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    if open.is_empty() {
        return;
    }
    tracing::info!(
        "stopping: waiting up to {:?} for {} open connection(s)",
        limits.shutdown_grace,
        open.len()
    );
    let drained = async {
        while open.join_next().await.is_some() {}
        true
    };
    let done = tokio::select! {
        done = drained => done,
        () = tokio::time::sleep(limits.shutdown_grace) => false,
        () = force => false,
    };
    if !done {
        tracing::warn!("closing {} connection(s) still open", open.len());
        open.abort_all();
    }
}

/// One connection, until the client closes it, a timeout cuts it, or shutdown ends it after
/// its request in progress.
async fn connection(
    stream: TcpStream,
    app: Router,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => log_end(result),
        () = closed(&mut closing) => {
            conn.as_mut().graceful_shutdown();
            log_end(conn.await);
        }
    }
}

/// Resolves once shutdown begins (or the server is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!("connection closed: {e}");
    }
}

/// Tell a connection over the limit why, without waiting on it, and close it.
fn refuse(stream: &TcpStream) {
    tracing::warn!("refusing a connection: too many open");
    // A fresh socket's send buffer takes these few bytes at once; if not, the close says it.
    let _ = stream.try_write(TOO_MANY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(TOO_MANY).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"], "too many connections");
    }
}
