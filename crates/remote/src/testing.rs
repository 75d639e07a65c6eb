//! Helpers for the unit tests: an in-memory remote, files and records.

use std::path::Path;

use crate::{FileEntry, Record, Remote, RemoteConfig, SCHEME};

pub(crate) fn memory() -> Remote {
    Remote::open(&RemoteConfig {
        name: "mem".into(),
        url: "memory:///".into(),
        endpoint: None,
    })
    .expect("in-memory store")
}

/// `bytes` written at `root/path`, and its entry.
pub(crate) fn entry(root: &Path, path: &str, bytes: &[u8]) -> FileEntry {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, bytes).expect("write");
    FileEntry {
        path: path.into(),
        blake3: blake3::hash(bytes).to_hex().to_string(),
        size: bytes.len() as u64,
        executable: false,
    }
}

pub(crate) fn record(key: &str, files: Vec<FileEntry>) -> Record {
    Record {
        scheme: SCHEME,
        key: key.into(),
        meta: serde_json::json!({"manifest": {"key": key}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        files,
    }
}
