//! `pipe.lock`, beside pipeline.toml and meant to be committed: each stage's current key and
//! output content hash, as the last run of the file's own config left them. A fresh clone
//! then knows which artifacts belong to the committed config, and `pipe pull` fetches them
//! even on a machine that lacks a stage's inputs.
//!
//! ```toml
//! [pipeline]
//! scheme = 1
//! name = "quickstart"
//!
//! [stages.prep]
//! key = "9f3c…"
//! content = "41ab…"
//! ```
//! Sorted, one table per stage, rewritten only when it changes: diffs stay small.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::{Artifact, SCHEME, write_atomic};
use crate::spec::Spec;

pub const FILE: &str = "pipe.lock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub pipeline: LockedPipeline,
    #[serde(default)]
    pub stages: BTreeMap<String, LockedStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPipeline {
    /// The key scheme the keys were computed with.
    pub scheme: u32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedStage {
    pub key: String,
    /// The blake3 digest of the stage's `out/`: what its dependents' keys are built from.
    pub content: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a pipe.lock pipe can read: {message} (delete it: `pipe run` writes it anew)"
    )]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The most a lock may weigh: it holds two hashes per stage.
const MAX_BYTES: u64 = 16 << 20;

pub fn path(spec: &Spec) -> PathBuf {
    spec.dir.join(FILE)
}

/// The pipeline's lock; `None` when it has none.
pub fn read(spec: &Spec) -> Result<Option<LockFile>, LockError> {
    read_at(&path(spec))
}

fn read_at(path: &Path) -> Result<Option<LockFile>, LockError> {
    let read = |source| LockError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let invalid = |message: String| LockError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if meta.len() > MAX_BYTES {
        return Err(invalid(format!(
            "{} bytes (at most {MAX_BYTES})",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let lock: LockFile = toml::from_str(&text).map_err(|e| invalid(e.message().to_string()))?;
    if lock.pipeline.scheme != SCHEME {
        return Err(invalid(format!(
            "key scheme {} (this pipe computes scheme {SCHEME})",
            lock.pipeline.scheme
        )));
    }
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some((stage, _)) = lock
        .stages
        .iter()
        .find(|(_, s)| !hex(&s.key) || !hex(&s.content))
    {
        return Err(invalid(format!(
            "stage `{stage}`: key and content must be blake3 hashes"
        )));
    }
    Ok(Some(lock))
}

/// The lock for these fresh stages of the file's config.
pub fn of(spec: &Spec, fresh: &[(&str, &Artifact)]) -> LockFile {
    LockFile {
        pipeline: LockedPipeline {
            scheme: SCHEME,
            name: spec.name.clone(),
        },
        stages: fresh
            .iter()
            .map(|(name, a)| {
                (
                    name.to_string(),
                    LockedStage {
                        key: a.manifest.key.clone(),
                        content: a.manifest.content.clone(),
                    },
                )
            })
            .collect(),
    }
}

const HEADER: &str = "# pipe.lock: each stage's key and output hash for this pipeline.toml, written by \
`pipe run`.\n# Commit it: `pipe pull` fetches these artifacts from the remote cache, even without \
the inputs.\n\n";

/// Write `lock` unless the file already says the same; returns whether it wrote.
pub fn write(spec: &Spec, lock: &LockFile) -> Result<bool, LockError> {
    let path = path(spec);
    if read_at(&path).ok().flatten().as_ref() == Some(lock) {
        return Ok(false);
    }
    let body = toml::to_string(lock).map_err(|e| LockError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&path, format!("{HEADER}{body}").as_bytes()).map_err(|source| {
        LockError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> LockFile {
        LockFile {
            pipeline: LockedPipeline {
                scheme: SCHEME,
                name: "p".into(),
            },
            stages: [("train", "a"), ("prep", "b")]
                .into_iter()
                .map(|(n, c)| {
                    (
                        n.to_string(),
                        LockedStage {
                            key: c.repeat(64),
                            content: "c".repeat(64),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_lock_reads_back_sorted_one_table_per_stage() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(FILE);
        let body = toml::to_string(&lock()).expect("toml");
        std::fs::write(&path, format!("{HEADER}{body}")).expect("write");
        assert_eq!(read_at(&path).expect("reads"), Some(lock()));
        let text = std::fs::read_to_string(&path).expect("text");
        let prep = text.find("[stages.prep]").expect("prep table");
        let train = text.find("[stages.train]").expect("train table");
        assert!(prep < train, "{text}");
    }

    #[test]
    fn a_damaged_lock_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(FILE);
        for (text, says) in [
            ("[pipeline]\nscheme = 1\n", "missing field `name`"),
            ("[pipeline]\nscheme = 9\nname = \"p\"\n", "key scheme 9"),
            (
                "[pipeline]\nscheme = 1\nname = \"p\"\n[stages.a]\nkey = \"../x\"\ncontent = \"y\"\n",
                "blake3 hashes",
            ),
            ("garbage = [", "pipe.lock"),
        ] {
            std::fs::write(&path, text).expect("write");
            let err = read_at(&path).expect_err(text).to_string();
            assert!(err.contains(says) && err.contains("pipe.lock"), "{err}");
        }
    }
}
