//! A mock Hugging Face Hub on 127.0.0.1 for tests: one repo (any name, any revision) served
//! the way huggingface.co serves it (`/ORG/NAME/resolve/REV/FILE`, ranged GETs answered with
//! `Content-Range`, `ETag` and `X-Repo-Commit`). Shared by pipe-hub's tests and the binary's.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pipe_hub::HubOptions;

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

/// A mock Hub: one repo (any name, any revision) holding `files`.
pub struct Mock {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    /// `fail_body`: a file whose metadata is served but whose download fails (HTTP 500).
    pub fn start(files: HashMap<String, Vec<u8>>, fail_body: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let files = Arc::new(files);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (files, log) = (files.clone(), log.clone());
                std::thread::spawn(move || handle(stream, &files, fail_body, &log));
            }
        });
        Self { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn options(&self, cache: &Path) -> HubOptions {
        HubOptions {
            endpoint: self.url.clone(),
            cache_dir: Some(cache.to_path_buf()),
            offline: false,
            token: None,
        }
    }
}

fn handle(
    stream: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    fail_body: Option<&str>,
    log: &Mutex<Vec<Seen>>,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let range = headers.get("range").cloned();
    log.lock().expect("lock").push(Seen {
        path: path.clone(),
        range: range.clone(),
        authorization: headers.get("authorization").cloned(),
    });

    // `/ORG/NAME/resolve/REV/FILE`
    let file = path
        .split_once("/resolve/")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, file)| file.to_string());
    let mut out = stream;
    let Some(body) = file.as_deref().and_then(|f| files.get(f)) else {
        let _ = out.write_all(
            b"HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\n\
              Connection: close\r\n\r\n",
        );
        return;
    };
    let is_metadata = range.as_deref() == Some("bytes=0-0");
    if fail_body.is_some() && fail_body == file.as_deref() && !is_metadata {
        let _ = out.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let size = body.len();
    // `bytes=A-` or `bytes=A-B`
    let (start, end) = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().expect("range start");
            let b = if b.is_empty() {
                size - 1
            } else {
                b.parse().expect("range end")
            };
            (a, b.min(size - 1))
        })
        .unwrap_or((0, size - 1));
    let part = &body[start..=end];
    let etag = format!("{:x}-{size}", fnv(body));
    let mut head = if range.is_some() {
        format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{size}\r\n")
    } else {
        "HTTP/1.1 200 OK\r\n".to_string()
    };
    head += &format!(
        "Content-Length: {}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        part.len()
    );
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(part);
    let _ = out.flush();
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// The files of the model directory `dir` (the shared blip-tiny fixture), by name, or `None`
/// (the test then skips).
pub fn fixture_files(dir: &Path) -> Option<(PathBuf, HashMap<String, Vec<u8>>)> {
    let dir = dir.to_path_buf();
    if !dir.join("model.safetensors").is_file() {
        eprintln!("skipping: {} is absent", dir.display());
        return None;
    }
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(&dir).expect("read fixture") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            files.insert(name, std::fs::read(&path).expect("read"));
        }
    }
    Some((dir, files))
}
