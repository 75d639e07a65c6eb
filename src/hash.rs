//! Content hashing (blake3) of files and directory trees, with a stat fast path.
//!
//! A tree's digest is blake3 over its sorted listing `relpath \0 size \0 file-hash \n`, so two
//! trees with the same files hash the same wherever they live, and the listing itself can be
//! diffed to say which files changed.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Files at least this large are hashed with mmap + rayon.
const LARGE: u64 = 1 << 20;
/// A file modified less than this before it was hashed may change again within the same
/// mtime tick ("racy clean"): its cached hash is not trusted.
const RACY_NS: i64 = 2_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is a {what}: only regular files, directories and links to them can be hashed \
         (a stage's output and its inputs are files)"
    )]
    Special { path: PathBuf, what: &'static str },
    #[error("cannot walk {path}")]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HashError + '_ {
    move |source| HashError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the tree's root, `/`-separated; empty when the root is a file.
    pub path: String,
    pub size: u64,
    pub hash: String,
}

/// A hashed file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub digest: String,
    pub entries: Vec<Entry>,
    /// Under an input, what could not be read and so is not part of the digest (a dangling
    /// link, a link loop, a FIFO, a file without read permission): (path, why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<(String, String)>,
}

impl Tree {
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

pub fn hash_file(path: &Path) -> Result<String, HashError> {
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= LARGE {
        hasher.update_mmap_rayon(path).map_err(io_err(path))?;
    } else {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        hasher.update_reader(file).map_err(io_err(path))?;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Remembers `(size, mtime, ctime, inode) → hash` so unchanged files cost a `stat`, not a
/// read. The ctime (as git's index keeps it) catches an edit whose mtime was put back
/// (`touch -r`, `cp -p`, an editor or a build tool that restores it): nothing but the kernel
/// sets the ctime. A hash map (a `BTreeMap<PathBuf, _>` compares paths component by component,
/// which dominated a no-op status over 120,000 files), stored as MessagePack (see
/// [`crate::cache::Cache::save_statcache`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatCache {
    entries: HashMap<PathBuf, Stat>,
    #[serde(skip)]
    dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    hashed_ns: i64,
    hash: String,
}

impl StatCache {
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Add entries from another cache (e.g. the one on disk written by another process).
    pub fn merge_from(&mut self, other: StatCache) {
        for (path, stat) in other.entries {
            self.entries.entry(path).or_insert(stat);
        }
    }

    /// Keep at most `max` entries, dropping the oldest. Entries of deleted files are harmless
    /// (they never match a new stat), so this is the only cleanup.
    pub fn prune(&mut self, max: usize) {
        if self.entries.len() > max {
            let mut by_age: Vec<_> = self
                .entries
                .iter()
                .map(|(p, s)| (s.hashed_ns, p.clone()))
                .collect();
            by_age.sort();
            for (_, p) in by_age.into_iter().take(self.entries.len() - max) {
                self.entries.remove(&p);
            }
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A file's (size, mtime, ctime, inode), times in nanoseconds (saturating: i64 reaches 2262).
fn stat_of(meta: &std::fs::Metadata) -> (u64, i64, i64, u64) {
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    let mtime = ns(meta.mtime(), meta.mtime_nsec());
    let ctime = ns(meta.ctime(), meta.ctime_nsec());
    (meta.len(), mtime, ctime, meta.ino())
}

/// Hash an input, a file or a directory tree (following symlinks), using and updating
/// `cache`. What cannot be read under a directory (a dangling link, a link loop, a FIFO, a file
/// without read permission) is left out of the digest and listed in [`Tree::skipped`]: nothing
/// can use it, and it must not block the stages that read the rest.
pub fn hash_tree(root: &Path, cache: &RwLock<StatCache>) -> Result<Tree, HashError> {
    hash_with(root, cache, Unreadable::Skip)
}

/// Hash an artifact without any stat cache (publishing and `verify`): anything that is not a
/// regular file or a directory is an error, and a FIFO is never opened.
pub fn hash_tree_uncached(root: &Path) -> Result<Tree, HashError> {
    hash_with(root, &RwLock::new(StatCache::default()), Unreadable::Refuse)
}

#[derive(Clone, Copy, PartialEq)]
enum Unreadable {
    Skip,
    Refuse,
}

fn hash_with(
    root: &Path,
    cache: &RwLock<StatCache>,
    policy: Unreadable,
) -> Result<Tree, HashError> {
    let meta = std::fs::metadata(root).map_err(io_err(root))?;
    let mut files: Vec<(String, PathBuf, std::fs::Metadata)> = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    let rel_of = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    };
    if meta.is_file() {
        files.push((String::new(), root.to_path_buf(), meta));
    } else {
        for item in walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
        {
            let item = match item {
                Ok(item) => item,
                Err(e) if policy == Unreadable::Skip && e.depth() > 0 => {
                    let path = e.path().map(&rel_of).unwrap_or_default();
                    let why = if e.loop_ancestor().is_some() {
                        "a symlink loop".to_string()
                    } else if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) {
                        "a dangling symlink".to_string()
                    } else {
                        let what = e
                            .io_error()
                            .map_or_else(|| e.to_string(), ToString::to_string);
                        format!("unreadable ({what})")
                    };
                    skipped.push((path, why));
                    continue;
                }
                Err(source) => {
                    return Err(HashError::Walk {
                        path: root.to_path_buf(),
                        source,
                    });
                }
            };
            let kind = item.file_type();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                // Never opened: reading a FIFO would wait forever for a writer.
                if policy == Unreadable::Skip {
                    skipped.push((rel_of(item.path()), format!("a {}", special_kind(&kind))));
                    continue;
                }
                return Err(HashError::Special {
                    path: item.path().to_path_buf(),
                    what: special_kind(&kind),
                });
            }
            let meta = item.metadata().map_err(|source| HashError::Walk {
                path: item.path().to_path_buf(),
                source,
            })?;
            files.push((rel_of(item.path()), item.path().to_path_buf(), meta));
        }
    }
    let hashed: Vec<Result<Entry, (String, HashError)>> = files
        .into_par_iter()
        .map(|(rel, path, meta)| hash_entry(rel.clone(), &path, &meta, cache).map_err(|e| (rel, e)))
        .collect();
    let mut entries = Vec::with_capacity(hashed.len());
    for h in hashed {
        match h {
            Ok(e) => entries.push(e),
            // A file under the input that cannot be opened (no read permission).
            Err((rel, HashError::Io { source, .. }))
                if policy == Unreadable::Skip && !rel.is_empty() =>
            {
                skipped.push((rel, format!("unreadable ({source})")));
            }
            Err((_, e)) => return Err(e),
        }
    }
    skipped.sort();
    Ok(Tree {
        digest: digest_of(&entries),
        entries,
        skipped,
    })
}

/// One file's entry: from the stat cache when its stat is unchanged and not racy, else hashed.
fn hash_entry(
    rel: String,
    path: &Path,
    meta: &std::fs::Metadata,
    cache: &RwLock<StatCache>,
) -> Result<Entry, HashError> {
    let (size, mtime_ns, ctime_ns, ino) = stat_of(meta);
    let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Read-locked: the threads hashing a tree look up in parallel.
    let cached = cache.read().ok().and_then(|c| c.entries.get(&key).cloned());
    if let Some(s) = cached
        && s.size == size
        && s.mtime_ns == mtime_ns
        && s.ctime_ns == ctime_ns
        && s.ino == ino
        && mtime_ns + RACY_NS < s.hashed_ns
    {
        return Ok(Entry {
            path: rel,
            size,
            hash: s.hash,
        });
    }
    let hashed_ns = now_ns();
    let hash = hash_file(path)?;
    if let Ok(mut c) = cache.write() {
        c.entries.insert(
            key,
            Stat {
                size,
                mtime_ns,
                ctime_ns,
                ino,
                hashed_ns,
                hash: hash.clone(),
            },
        );
        c.dirty = true;
    }
    Ok(Entry {
        path: rel,
        size,
        hash,
    })
}

/// What a file that is neither regular nor a directory is, for messages.
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "FIFO (named pipe)"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device node"
    } else {
        "special file"
    }
}

fn digest_of(entries: &[Entry]) -> String {
    let mut hasher = blake3::Hasher::new();
    for e in entries {
        hasher.update(e.path.as_bytes());
        hasher.update(b"\0");
        hasher.update(e.size.to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(e.hash.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().to_hex().to_string()
}

/// Which files differ between two listings: (changed, added, removed) paths.
pub fn diff(old: &[Entry], new: &[Entry]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let old: BTreeMap<&str, &str> = old
        .iter()
        .map(|e| (e.path.as_str(), e.hash.as_str()))
        .collect();
    let new: BTreeMap<&str, &str> = new
        .iter()
        .map(|e| (e.path.as_str(), e.hash.as_str()))
        .collect();
    let changed = new
        .iter()
        .filter(|(p, h)| old.get(*p).is_some_and(|o| o != *h))
        .map(|(p, _)| p.to_string())
        .collect();
    let added = new
        .keys()
        .filter(|p| !old.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    let removed = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    (changed, added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_digest_depends_on_content_and_names_only() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        for d in [a.path(), b.path()] {
            std::fs::create_dir(d.join("sub")).expect("mkdir");
            std::fs::write(d.join("sub/x.txt"), "x").expect("write");
            std::fs::write(d.join("y.txt"), "y").expect("write");
        }
        let ta = hash_tree_uncached(a.path()).expect("hash");
        assert_eq!(ta, hash_tree_uncached(b.path()).expect("hash"));
        std::fs::write(b.path().join("y.txt"), "Y").expect("write");
        let tb = hash_tree_uncached(b.path()).expect("hash");
        assert_ne!(ta.digest, tb.digest);
        assert_eq!(
            diff(&ta.entries, &tb.entries),
            (vec!["y.txt".to_string()], vec![], vec![])
        );
    }

    #[test]
    fn stat_cache_is_not_trusted_for_racy_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("f");
        std::fs::write(&f, "one").expect("write");
        let cache = RwLock::new(StatCache::default());
        let first = hash_tree(&f, &cache).expect("hash");
        // Same size, same second: a racy rewrite must still be seen.
        std::fs::write(&f, "two").expect("write");
        let second = hash_tree(&f, &cache).expect("hash");
        assert_ne!(first.digest, second.digest);
    }

    #[test]
    fn an_edit_with_its_mtime_put_back_is_seen() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("f");
        std::fs::write(&f, "one").expect("write");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let set_old = || {
            std::fs::File::options()
                .write(true)
                .open(&f)
                .and_then(|h| h.set_modified(old))
                .expect("set mtime");
        };
        set_old();
        let cache = RwLock::new(StatCache::default());
        let first = hash_tree(&f, &cache).expect("hash");
        // Same size, same inode, the mtime restored: before, the cached hash was trusted.
        std::fs::write(&f, "two").expect("write");
        set_old();
        let second = hash_tree(&f, &cache).expect("hash");
        assert_ne!(first.digest, second.digest);
    }
}
