//! Connections that never finish their request: idle sockets, headers sent a line at a time,
//! more connections than allowed, and a shutdown while a client holds a half-sent request.

mod common;

use std::time::{Duration, Instant};

use common::{options, start, url};
use pipe_serve::Server;
use pipe_test_support::model_fixture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends until it closes the connection, and how long that took; `None`
/// if it was still open after `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut got)).await {
        Ok(_) => Some((String::from_utf8_lossy(&got).into_owned(), t0.elapsed())),
        Err(_) => None,
    }
}

async fn health_is_ok(server: &Server) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    match client.get(url(server, "/api/health")).send().await {
        Ok(r) => r.status().as_u16() == 200,
        Err(_) => false,
    }
}

#[tokio::test]
async fn idle_connections_and_slow_headers_are_cut_off() {
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.header_timeout = Duration::from_millis(500);
    let server = start(&dir, opts).await;

    // A connection that sends nothing.
    let mut idle = TcpStream::connect(server.addr()).await.expect("connect");
    let (_, after) = until_closed(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle connection is closed");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");

    // A request whose headers arrive a line every 100 ms, forever.
    let mut slow = TcpStream::connect(server.addr()).await.expect("connect");
    slow.write_all(b"GET /api/health HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let (mut reader, mut writer) = slow.into_split();
    let drip = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer
                .write_all(format!("x-drip-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let t0 = Instant::now();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "a dripping request is not cut off");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        t0.elapsed()
    );
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
    drip.abort();

    // A keep-alive connection that answered a request and then sits idle is closed too.
    let mut kept = TcpStream::connect(server.addr()).await.expect("connect");
    kept.write_all(b"GET /api/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let (text, _) = until_closed(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    assert!(health_is_ok(&server).await);
    common::stop(server).await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_answered_503_and_closed() {
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.max_connections = 2;
    opts.header_timeout = Duration::from_secs(60);
    let server = start(&dir, opts).await;

    let held = [
        TcpStream::connect(server.addr()).await.expect("connect"),
        TcpStream::connect(server.addr()).await.expect("connect"),
    ];
    let mut third = TcpStream::connect(server.addr()).await.expect("connect");
    let (text, _) = until_closed(&mut third, Duration::from_secs(5))
        .await
        .expect("the connection over the limit is closed");
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too many connections"), "{text}");

    // Once one of them goes, the server answers again.
    drop(held);
    let t0 = Instant::now();
    while !health_is_ok(&server).await {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the limit never freed up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::stop(server).await;
}

#[tokio::test]
async fn a_shutdown_does_not_wait_forever_for_a_half_sent_request() {
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.header_timeout = Duration::from_secs(60);
    opts.request_timeout = Duration::from_secs(60);
    opts.shutdown_grace = Duration::from_millis(500);
    let server = start(&dir, opts).await;

    // One client stops halfway through its headers, another halfway through its body.
    let mut headers = TcpStream::connect(server.addr()).await.expect("connect");
    headers
        .write_all(b"POST /api/caption HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let mut body = TcpStream::connect(server.addr()).await.expect("connect");
    body.write_all(
        b"POST /api/caption HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t0 = Instant::now();
    let stopped = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || server.shutdown()),
    )
    .await;
    let stopped = stopped.expect("the shutdown waited on the half-sent requests");
    stopped.expect("stop task").expect("server stops cleanly");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    for mut s in [headers, body] {
        assert!(
            until_closed(&mut s, Duration::from_secs(5)).await.is_some(),
            "a connection outlived the server"
        );
    }
}
