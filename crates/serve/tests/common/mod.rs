//! Shared helpers: the fixture's location and a server on a free loopback port.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pipe_serve::{ServeOptions, Server};
use pipe_stage_api::BackendChoice;

/// A probe image of the fixture.
pub fn probe(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("reference/images/probe{i}.png"))
}

pub fn probe_bytes(dir: &Path, i: usize) -> Vec<u8> {
    std::fs::read(probe(dir, i)).expect("read probe image")
}

/// Options for a test server: a free port on 127.0.0.1.
pub fn options() -> ServeOptions {
    ServeOptions {
        port: 0,
        ..ServeOptions::default()
    }
}

/// Start a server on the CPU (from async code: the start blocks while the model loads).
pub async fn start(dir: &Path, opts: ServeOptions) -> Server {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || Server::start(&dir, BackendChoice::Cpu, opts))
        .await
        .expect("start task")
        .expect("server starts")
}

/// Stop a server from async code.
pub async fn stop(server: Server) {
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .expect("stop task")
        .expect("server stops cleanly");
}

/// `url` joined to the server's root.
pub fn url(server: &Server, path: &str) -> String {
    format!("http://{}{}", server.addr(), path)
}

/// A multipart form with the image (and optional decoding fields).
pub fn form(bytes: Vec<u8>, fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("image.png")
        .mime_str("image/png")
        .expect("mime");
    let mut form = reqwest::multipart::Form::new().part("image", part);
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form
}

/// The error text of a failed request, asserting its status and JSON shape.
pub async fn expect_error(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let body: serde_json::Value = resp.json().await.expect("json error body");
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text in {body}"))
        .to_string()
}
