//! `ac/<key>.json`: what a stage key produced, as the remote keeps it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The remote layout's version: a record of another scheme is not read.
pub const SCHEME: u32 = 1;

/// The most a record may weigh (10,000 files take about 1.5 MB).
pub(crate) const MAX_RECORD_BYTES: u64 = 256 << 20;
/// The most files one artifact may hold.
const MAX_FILES: usize = 2_000_000;

/// One file of an artifact: where it goes (relative, `/`-separated) and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub blake3: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub scheme: u32,
    pub key: String,
    /// The artifact's metadata (the local cache's manifest, pre-image, input listing), opaque
    /// here.
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub files: Vec<FileEntry>,
}

impl Record {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Why this record cannot be trusted for `key`, if it cannot: another scheme or key, a hash
    /// that is not one, or a path that would land outside the artifact (absolute, `..`, empty
    /// components, backslashes, NUL) or twice.
    pub fn problem(&self, key: &str) -> Option<String> {
        if self.scheme != SCHEME {
            return Some(format!("scheme {} (this pipe reads {SCHEME})", self.scheme));
        }
        if self.key != key {
            return Some(format!("it is the record of key {}", self.key));
        }
        if self.files.len() > MAX_FILES {
            return Some(format!("{} files (at most {MAX_FILES})", self.files.len()));
        }
        let mut seen = BTreeSet::new();
        for f in &self.files {
            if !is_hash(&f.blake3) {
                return Some(format!("`{}` is not a blake3 hash", f.blake3));
            }
            if let Some(why) = path_problem(&f.path) {
                return Some(format!("path {:?} {why}", f.path));
            }
            if !seen.insert(f.path.as_str()) {
                return Some(format!("path {:?} is listed twice", f.path));
            }
        }
        None
    }
}

pub(crate) fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A key as a path segment: the local cache's keys are lowercase hex.
pub(crate) fn is_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("is empty");
    }
    if path.starts_with('/') {
        return Some("is absolute");
    }
    if path.contains('\\') || path.contains('\0') {
        return Some("holds a backslash or NUL");
    }
    for part in path.split('/') {
        match part {
            "" => return Some("has an empty component"),
            "." | ".." => return Some("leaves its directory"),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(paths: &[&str]) -> Record {
        Record {
            scheme: SCHEME,
            key: "k1".into(),
            meta: Default::default(),
            files: paths
                .iter()
                .map(|p| FileEntry {
                    path: p.to_string(),
                    blake3: "a".repeat(64),
                    size: 1,
                    executable: false,
                })
                .collect(),
        }
    }

    #[test]
    fn paths_that_leave_the_artifact_are_refused() {
        assert_eq!(record(&["out/a.txt", "log.txt"]).problem("k1"), None);
        for bad in [
            "../x",
            "out/../../x",
            "/etc/passwd",
            "out//a",
            "./a",
            "out\\..\\x",
            "",
            "a\0b",
        ] {
            let why = record(&[bad]).problem("k1");
            assert!(why.is_some(), "{bad:?} accepted");
        }
        assert!(record(&["a", "a"]).problem("k1").unwrap().contains("twice"));
    }

    #[test]
    fn a_record_is_for_its_own_key_scheme_and_real_hashes() {
        assert!(record(&[]).problem("k2").unwrap().contains("k1"));
        let mut r = record(&["a"]);
        r.scheme = 99;
        assert!(r.problem("k1").unwrap().contains("scheme 99"));
        let mut r = record(&["a"]);
        r.files[0].blake3 = "../../x".into();
        assert!(r.problem("k1").unwrap().contains("not a blake3 hash"));
    }
}
