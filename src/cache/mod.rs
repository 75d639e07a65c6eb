//! The content-addressed artifact store.
//!
//! ```text
//! cache/
//!   CACHEDIR.TAG
//!   v1/
//!     artifacts/<key>/{manifest.json, preimage.json, inputs.json, log.txt, out/}
//!     tmp/<key>.<pid>.<n>/       a run in progress (scratch); renamed into artifacts/ when done
//!     work/<key>/                resumable state of a stage key; survives failed runs
//!     refs/<pipeline>/<stage>    the key each stage of each pipeline last produced
//!     runs/<pipeline>/<t>-<pid>.json   run records (roots for gc)
//!     tries/<pipeline>/<name>.json     recorded tries (`pipe exp`; roots for gc until removed)
//!     locks/                     per-key execution locks, the metadata lock
//!     statcache.bin              per input: (path, size, mtime, ctime, inode) → hash
//! ```
//! An artifact directory exists only complete: it is assembled in tmp/, sealed (fsync,
//! read-only), and renamed into place in one step.

mod fsutil;
mod gc;
mod key;
mod lock;
mod manifest;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use fsutil::{read_json, remove_tree, write_atomic, write_json_atomic};
pub use gc::{GcReport, VerifyProblem, VerifyReport};
pub use key::{PreImage, SCHEME, canonical, flatten, flatten_values, params_json};
pub use lock::{Lock, Taken};
pub use manifest::Manifest;

use crate::hash::{StatCache, Tree};

const VERSION_DIR: &str = "v1";
/// How many run records per pipeline `gc` keeps as roots.
pub const KEEP_RUNS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache I/O error at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot take lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot hash {path}")]
    Hash {
        path: PathBuf,
        #[source]
        source: crate::hash::HashError,
    },
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A finished artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Artifact {
    /// The directory holding what the stage wrote.
    pub fn out(&self) -> PathBuf {
        self.dir.join("out")
    }
}

/// A run in progress: write into `out`, then [`Cache::publish`]. Dropped unpublished (the
/// stage failed, its output was refused), it removes its directory.
pub struct Scratch {
    pub dir: PathBuf,
    pub out: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // After a publish the directory has been renamed away: nothing left to remove.
        if let Err(e) = remove_tree(&self.dir) {
            tracing::warn!(
                "cannot remove the scratch directory {}: {e}",
                self.dir.display()
            );
        }
    }
}

pub struct Cache {
    root: PathBuf,
}

static SCRATCH_SEQ: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Open (creating if needed) the cache under `dir`.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        let root = dir.join(VERSION_DIR);
        for sub in ["artifacts", "tmp", "work", "refs", "runs", "locks"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        let tag = dir.join("CACHEDIR.TAG");
        if !tag.exists() {
            let text = "Signature: 8a477f597d28d172789f06886806bc55\n# This is pipe's artifact cache; see `pipe gc`.\n";
            write_atomic(&tag, text.as_bytes()).map_err(io_at(&tag))?;
        }
        Ok(Self { root })
    }

    /// The cache in `dir` for a command that only reads (`status`, `show`): it creates nothing.
    /// When there is no cache yet, every lookup finds nothing and nothing is saved.
    pub fn for_reading(dir: &Path) -> Self {
        Self {
            root: dir.join(VERSION_DIR),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn artifact_dir(&self, key: &str) -> PathBuf {
        self.root.join("artifacts").join(key)
    }

    /// The finished artifact for `key`, if there is one.
    pub fn artifact(&self, key: &str) -> Option<Artifact> {
        let dir = self.artifact_dir(key);
        let manifest: Manifest = read_json(&dir.join("manifest.json")).ok()?;
        (manifest.key == key).then_some(Artifact { dir, manifest })
    }

    pub fn preimage(&self, key: &str) -> Option<PreImage> {
        read_json(&self.artifact_dir(key).join("preimage.json")).ok()
    }

    /// The per-file listing of each external input when `key` was produced.
    pub fn input_trees(&self, key: &str) -> Option<BTreeMap<String, Tree>> {
        read_json(&self.artifact_dir(key).join("inputs.json")).ok()
    }

    pub fn work_dir(&self, key: &str) -> Result<PathBuf, CacheError> {
        let dir = self.root.join("work").join(key);
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(dir)
    }

    pub fn new_scratch(&self, key: &str) -> Result<Scratch, CacheError> {
        let n = SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .root
            .join("tmp")
            .join(format!("{key}.{}.{n}", std::process::id()));
        remove_tree(&dir).map_err(io_at(&dir))?;
        let out = dir.join("out");
        std::fs::create_dir_all(&out).map_err(io_at(&out))?;
        Ok(Scratch { dir, out })
    }

    /// Seal a finished scratch dir and move it into place as the artifact for `key`. If the
    /// artifact already exists (another process won, or `--force`), it is replaced.
    pub fn publish(
        &self,
        scratch: Scratch,
        preimage: &PreImage,
        inputs: &BTreeMap<String, Tree>,
        manifest: &Manifest,
    ) -> Result<Artifact, CacheError> {
        let dir = &scratch.dir;
        write_json_atomic(&dir.join("preimage.json"), preimage).map_err(io_at(dir))?;
        write_json_atomic(&dir.join("inputs.json"), inputs).map_err(io_at(dir))?;
        // Written last: an artifact without a manifest is never considered complete.
        write_json_atomic(&dir.join("manifest.json"), manifest).map_err(io_at(dir))?;
        fsutil::seal_tree(dir).map_err(io_at(dir))?;
        let target = self.artifact_dir(&manifest.key);
        if target.exists() {
            self.evict(&manifest.key)?;
        }
        std::fs::rename(dir, &target).map_err(io_at(&target))?;
        let parent = self.root.join("artifacts");
        fsutil::fsync_dir(&parent).map_err(io_at(&parent))?;
        let work = self.root.join("work").join(&manifest.key);
        remove_tree(&work).map_err(io_at(&work))?;
        Ok(Artifact {
            dir: target,
            manifest: manifest.clone(),
        })
    }

    /// Remove an artifact: first renamed away (so it vanishes atomically), then deleted.
    pub fn evict(&self, key: &str) -> Result<(), CacheError> {
        let dir = self.artifact_dir(key);
        let n = SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed);
        let trash = self
            .root
            .join("tmp")
            .join(format!("evict-{key}.{}.{n}", std::process::id()));
        match std::fs::rename(&dir, &trash) {
            Ok(()) => remove_tree(&trash).map_err(io_at(&trash)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&dir)(e)),
        }
    }

    /// Every finished artifact's key.
    pub fn keys(&self) -> Result<Vec<String>, CacheError> {
        let dir = self.root.join("artifacts");
        let mut keys = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(io_at(&dir))? {
            let item = item.map_err(io_at(&dir))?;
            keys.push(item.file_name().to_string_lossy().into_owned());
        }
        keys.sort();
        Ok(keys)
    }

    /// Remove scratch dirs (and Slurm job dirs, eviction leftovers) that no run is using:
    /// those whose key's execution lock is free. Whoever assembles a key holds that lock (a
    /// run, a pull, or for a Slurm job the `pipe run` that submitted it), and the kernel drops
    /// it with its holder, so this is right across hosts sharing the cache, where a pid says
    /// nothing.
    pub fn clean_dead_scratch(&self) {
        let dir = self.root.join("tmp");
        let Ok(items) = std::fs::read_dir(&dir) else {
            return;
        };
        for item in items.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let key = name.strip_prefix("evict-").unwrap_or(&name);
            let key = key.split('.').next().unwrap_or_default();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if let Ok(Taken::Mine(_lock)) = self.try_exec_lock(key, "cleaning scratch") {
                tracing::debug!("removing scratch {name}: no run holds its key");
                let _ = remove_tree(&item.path());
            }
        }
    }

    pub fn exec_lock(&self, key: &str, stage: &str) -> Result<Lock, CacheError> {
        self.exec_lock_telling(key, stage, &|_| {})
    }

    /// [`Cache::exec_lock`], telling `waiting` who holds it before waiting (only when someone
    /// does).
    pub fn exec_lock_telling(
        &self,
        key: &str,
        stage: &str,
        waiting: &dyn Fn(&str),
    ) -> Result<Lock, CacheError> {
        Lock::acquire_telling(
            &self.root.join("locks").join(format!("{key}.lock")),
            &format!("stage `{stage}` ({})", short(key)),
            waiting,
        )
    }

    /// [`Cache::exec_lock`] without waiting: `Held` while a run is producing `key`.
    pub fn try_exec_lock(&self, key: &str, what: &str) -> Result<Taken, CacheError> {
        Lock::try_acquire(&self.root.join("locks").join(format!("{key}.lock")), what)
    }

    /// A short lock for metadata updates (refs, run records, stat cache, results/).
    pub fn meta_lock(&self) -> Result<Lock, CacheError> {
        Lock::acquire(
            &self.root.join("locks").join("meta.lock"),
            "the cache metadata",
        )
    }

    fn refs_dir(&self, pipeline: &str) -> PathBuf {
        self.root.join("refs").join(pipeline)
    }

    /// The key `stage` of `pipeline` last produced or restored.
    pub fn read_ref(&self, pipeline: &str, stage: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.refs_dir(pipeline).join(stage)).ok()?;
        Some(text.trim().to_string()).filter(|k| !k.is_empty())
    }

    pub fn write_ref(&self, pipeline: &str, stage: &str, key: &str) -> Result<(), CacheError> {
        let path = self.refs_dir(pipeline).join(stage);
        let text = format!("{key}\n");
        // A no-op run names the same keys: two fsyncs saved per stage.
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(());
        }
        write_atomic(&path, text.as_bytes()).map_err(io_at(&path))
    }

    /// Record a run (its stage keys) and keep the newest [`KEEP_RUNS`] records per pipeline.
    /// A run that names the same keys as the newest record adds none: a no-op run writes
    /// nothing, and no-op runs do not push older keys out of the records.
    pub fn record_run(
        &self,
        pipeline: &str,
        file: &Path,
        keys: &BTreeMap<String, String>,
    ) -> Result<(), CacheError> {
        let dir = self.root.join("runs").join(pipeline);
        let newest = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .max();
        let same = newest
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|r| {
                r["pipeline"] == serde_json::json!(file) && r["keys"] == serde_json::json!(keys)
            });
        if same {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let path = dir.join(format!(
            "{:020}-{}.json",
            now.as_millis(),
            std::process::id()
        ));
        let record =
            serde_json::json!({ "pipeline": file, "time": now.as_secs_f64(), "keys": keys });
        write_json_atomic(&path, &record).map_err(io_at(&path))?;
        let mut records: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io_at(&dir))?
            .flatten()
            .map(|e| e.path())
            .collect();
        records.sort();
        let excess = records.len().saturating_sub(KEEP_RUNS);
        for old in &records[..excess] {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// Where the tries of a pipeline are recorded (see [`crate::tries`]).
    pub fn tries_dir(&self, pipeline: &str) -> PathBuf {
        self.root.join("tries").join(pipeline)
    }

    /// Keys named by any pipeline's recent run records, tries and refs.
    pub fn rooted_keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for sub in ["runs", "tries", "refs"] {
            for item in walkdir::WalkDir::new(self.root.join(sub))
                .into_iter()
                .flatten()
            {
                if !item.file_type().is_file() {
                    continue;
                }
                if sub == "refs" {
                    if let Ok(text) = std::fs::read_to_string(item.path()) {
                        keys.insert(text.trim().to_string());
                    }
                } else if let Ok(v) = read_json::<serde_json::Value>(item.path())
                    && let Some(map) = v.get("keys").and_then(|k| k.as_object())
                {
                    keys.extend(map.values().filter_map(|k| k.as_str().map(str::to_string)));
                }
            }
        }
        keys
    }

    /// The stat cache on disk (empty when missing or unreadable: it is only a cache); see
    /// [`StatCache`] for why it is a flat binary file.
    pub fn load_statcache(&self) -> StatCache {
        read_statcache(&self.root.join(STATCACHE))
    }

    /// Write what `cache` learned over what is on disk now (under the metadata lock).
    pub fn save_statcache(&self, cache: StatCache) -> Result<(), CacheError> {
        // No cache directory: a read-only command on a project that never ran creates none.
        if !cache.is_dirty() || !self.root.is_dir() {
            return Ok(());
        }
        let _lock = self.meta_lock()?;
        let path = self.root.join(STATCACHE);
        let bytes = cache.to_bytes(read_statcache(&path));
        write_atomic(&path, &bytes).map_err(io_at(&path))?;
        // The JSON and MessagePack ones earlier versions wrote are never read again.
        for old in ["statcache.json", "statcache.msgpack"] {
            let _ = std::fs::remove_file(self.root.join(old));
        }
        Ok(())
    }
}

/// The stat cache's file in the cache root.
const STATCACHE: &str = "statcache.bin";

fn read_statcache(path: &Path) -> StatCache {
    std::fs::read(path)
        .map(StatCache::from_bytes)
        .unwrap_or_default()
}

/// The first 12 hex digits of a key, as shown to people.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_cache_survives_the_process() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(&dir.path().join("cache")).expect("cache");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        let file = data.join("a.txt");
        std::fs::write(&file, "a").expect("write");
        // Older than the racy window, so the stat is trusted on the next look.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(old))
            .expect("mtime");
        std::fs::write(cache.root.join("statcache.json"), "{}").expect("an old JSON cache");
        std::fs::write(cache.root.join("statcache.msgpack"), "").expect("an old MessagePack one");

        let first = std::sync::RwLock::new(cache.load_statcache());
        let tree = crate::hash::hash_tree(&data, &first).expect("hash");
        let first = first.into_inner().expect("lock");
        assert!(first.is_dirty(), "hashed, not looked up");
        cache.save_statcache(first).expect("save");
        assert!(cache.root.join(STATCACHE).is_file());
        for old in ["statcache.json", "statcache.msgpack"] {
            assert!(!cache.root.join(old).exists(), "{old} is gone");
        }

        let second = std::sync::RwLock::new(cache.load_statcache());
        let again = crate::hash::hash_tree(&data, &second).expect("hash");
        assert_eq!(again.digest, tree.digest);
        assert!(
            !second.into_inner().expect("lock").is_dirty(),
            "every file found in the loaded cache"
        );
    }

    #[test]
    fn a_run_naming_the_newest_records_keys_adds_no_record() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(dir.path()).expect("cache");
        let file = Path::new("/p/pipeline.toml");
        let keys = |k: &str| BTreeMap::from([("prep".to_string(), k.to_string())]);
        let records = || {
            std::fs::read_dir(cache.root().join("runs/p"))
                .expect("runs")
                .count()
        };
        cache.record_run("p", file, &keys("a")).expect("record");
        cache.record_run("p", file, &keys("a")).expect("record");
        assert_eq!(records(), 1, "a no-op run writes nothing");
        std::thread::sleep(std::time::Duration::from_millis(2));
        cache.record_run("p", file, &keys("b")).expect("record");
        assert_eq!(records(), 2);
    }

    #[test]
    fn a_scratch_dir_is_alive_while_its_key_is_locked_whatever_its_pid() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(dir.path()).expect("cache");
        let key = "ab".repeat(32);
        // A pid that is no process's here: a run on another host sharing the cache.
        let tmp = cache.root().join("tmp");
        let elsewhere = tmp.join(format!("{key}.999999999.0"));
        let job = tmp.join(format!("{key}.999999999.0.job"));
        for d in [&elsewhere, &job] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let held = cache
            .exec_lock(&key, "a run on another host")
            .expect("lock");
        cache.clean_dead_scratch();
        assert!(elsewhere.exists() && job.exists(), "in use: kept");
        drop(held);
        cache.clean_dead_scratch();
        assert!(!elsewhere.exists() && !job.exists(), "no holder: removed");
        // Not a key: not pipe's, left alone.
        let stray = tmp.join("notes.txt");
        std::fs::write(&stray, "x").expect("write");
        cache.clean_dead_scratch();
        assert!(stray.exists());
    }
}
