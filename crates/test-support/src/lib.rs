//! Helpers for the workspace's tests (a dev-dependency only): where the shared blip-tiny
//! fixture is, PNG bytes with a chosen header, and a mock Hugging Face Hub.
//!
//! The fixture (`../shared/fixtures/blip-tiny` from the project root: a BLIP checkpoint and
//! transformers' reference outputs, made by `bench/`) is not in the repository: a test that
//! needs it gets `None` with a printed reason and returns early, so a checkout without it
//! still passes.

#[cfg(feature = "browser")]
pub mod browser;
pub mod mock_hub;
pub mod png;
pub mod seaweedfs;
pub mod slurm;

use std::path::{Path, PathBuf};

/// `../shared/fixtures/blip-tiny` from the project root, whether or not it exists.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/blip-tiny")
}

/// The fixture directory if it exists, else `None` after printing why (the test then skips).
pub fn fixture() -> Option<PathBuf> {
    let dir = fixture_dir();
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.display());
        None
    }
}

/// The fixture directory if it holds `model.safetensors`, else `None` after printing why.
pub fn model_fixture() -> Option<PathBuf> {
    fixture_holding("model.safetensors")
}

/// The fixture directory if it holds transformers' outputs
/// (`reference/reference.safetensors`, what the parity tests compare with), else `None` after
/// printing why.
pub fn reference_fixture() -> Option<PathBuf> {
    fixture_holding("reference/reference.safetensors")
}

fn fixture_holding(file: &str) -> Option<PathBuf> {
    let dir = fixture_dir();
    if dir.join(file).is_file() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.join(file).display());
        None
    }
}

/// Whether process `pid` still runs after waiting up to `limit` for it to end (a zombie has
/// ended: only its parent has not reaped it yet). For tests that a kill took effect.
pub fn still_runs(pid: &str, limit: std::time::Duration) -> bool {
    let stat = std::path::Path::new("/proc").join(pid.trim()).join("stat");
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        match std::fs::read_to_string(&stat) {
            Err(_) => return false,
            // The state follows the command name's closing parenthesis.
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return false;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    true
}

/// Every file under `dir`, by path relative to it, with its bytes: for asserting that two
/// outputs are byte-identical.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("inside").to_path_buf();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}
