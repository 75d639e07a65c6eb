//! `gc --remote`: delete the records no root names, then the blobs no remaining record uses.
//!
//! Records go first, so no record is ever left naming a deleted blob by this collection. An
//! object younger than the grace period is spared whatever it holds: a push in flight uploads
//! its blobs before its record, and a teammate's record may name a key this machine's pipeline
//! does not know yet.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::Serialize;

use crate::error::RemoteError;
use crate::record::{is_hash, is_key};
use crate::store::Remote;
use crate::transfer::META_TIMEOUT;

/// The longest a whole collection may take (listings of millions of objects included).
const GC_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Keys whose records were removed (or would be, on a dry run).
    pub records_removed: Vec<String>,
    pub records_kept: u64,
    pub blobs_removed: u64,
    /// What the removed blobs held.
    pub bytes_removed: u64,
    pub blobs_kept: u64,
    /// Unreferenced records and blobs left because they are younger than the grace period.
    pub spared_young: u64,
}

impl Remote {
    /// Remove every record whose key is not in `roots` and every blob no kept record names,
    /// sparing objects modified less than `grace` ago. Every kept record is read first: one
    /// that cannot be read (or trusted) stops the collection before anything is deleted.
    pub fn gc(
        &self,
        roots: &BTreeSet<String>,
        grace: Duration,
        dry_run: bool,
    ) -> Result<GcReport, RemoteError> {
        let now = SystemTime::now();
        let young = |meta: &ObjectMeta| {
            let modified = SystemTime::UNIX_EPOCH
                + Duration::from_millis(meta.last_modified.timestamp_millis().max(0) as u64);
            now.duration_since(modified).unwrap_or_default() < grace
        };
        let mut report = GcReport::default();
        let (mut kept_keys, mut doomed_records) = (Vec::new(), Vec::new());
        for meta in self.list_all("ac")? {
            let name = meta.location.filename().unwrap_or_default();
            // Not a record pipe writes: not pipe's to delete.
            let Some(key) = name.strip_suffix(".json").filter(|k| is_key(k)) else {
                continue;
            };
            if roots.contains(key) {
                kept_keys.push(key.to_string());
            } else if young(&meta) {
                report.spared_young += 1;
                kept_keys.push(key.to_string());
            } else {
                report.records_removed.push(key.to_string());
                doomed_records.push(meta.location);
            }
        }
        report.records_kept = kept_keys.len() as u64;
        let used = self.blobs_named_by(&kept_keys)?;
        let mut doomed_blobs = Vec::new();
        for meta in self.list_all("cas")? {
            let name = meta.location.filename().unwrap_or_default();
            if !is_hash(name) {
                continue;
            }
            if used.contains(name) {
                report.blobs_kept += 1;
            } else if young(&meta) {
                report.spared_young += 1;
            } else {
                report.blobs_removed += 1;
                report.bytes_removed += meta.size;
                doomed_blobs.push(meta.location);
            }
        }
        report.records_removed.sort();
        if !dry_run {
            self.delete_all("deleting records", doomed_records)?;
            self.delete_all("deleting blobs", doomed_blobs)?;
        }
        tracing::debug!(?report, dry_run, "remote gc");
        Ok(report)
    }

    /// Every object under `<prefix>/<dir>/`.
    fn list_all(&self, dir: &str) -> Result<Vec<ObjectMeta>, RemoteError> {
        let under = self.prefix.clone().join(dir);
        self.wait(&format!("listing {under}"), GC_TIMEOUT, async {
            self.store.list(Some(&under)).try_collect().await
        })
    }

    /// The blobs `keys`' records name, the records read `jobs` at a time.
    fn blobs_named_by(&self, keys: &[String]) -> Result<HashSet<String>, RemoteError> {
        let jobs = self.jobs;
        let read = async {
            futures::stream::iter(keys)
                .map(|key| async move {
                    let record = tokio::time::timeout(META_TIMEOUT, self.read_record(key))
                        .await
                        .map_err(|_| RemoteError::Timeout {
                            remote: self.name.clone(),
                            at: self.at.clone(),
                            what: format!("reading {}", self.record_path(key)),
                            secs: META_TIMEOUT.as_secs(),
                        })??;
                    Ok::<_, RemoteError>(record.map(|r| r.files).unwrap_or_default())
                })
                .buffer_unordered(jobs)
                .try_fold(HashSet::new(), |mut used, files| async move {
                    used.extend(files.into_iter().map(|f| f.blake3));
                    Ok(used)
                })
                .await
        };
        self.runtime.block_on(read).map_err(|e| match e {
            RemoteError::BadRecord {
                remote,
                object,
                why,
            } => RemoteError::BadRecord {
                remote,
                object,
                why: format!("{why}; nothing was deleted (remove the record, then collect again)"),
            },
            other => other,
        })
    }

    /// Delete `paths` (in batches where the store has a bulk delete); one already gone is fine.
    fn delete_all(&self, what: &str, paths: Vec<Path>) -> Result<(), RemoteError> {
        if paths.is_empty() {
            return Ok(());
        }
        self.wait(what, GC_TIMEOUT, async {
            let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
            self.store
                .delete_stream(locations)
                .try_for_each(|_| async { Ok(()) })
                .await
                .or_else(|e| match e {
                    object_store::Error::NotFound { .. } => Ok(()),
                    e => Err(e),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{entry, memory, record};
    use object_store::ObjectStoreExt;

    #[test]
    fn gc_removes_unrooted_records_then_the_blobs_only_they_used() {
        let src = tempfile::tempdir().expect("tmp");
        let remote = memory();
        let shared = entry(src.path(), "out/shared.txt", b"both keys hold this");
        let only_old = entry(src.path(), "out/old.txt", b"only the old key");
        let only_new = entry(src.path(), "out/new.txt", b"only the new key");
        let old = record("old", vec![shared.clone(), only_old.clone()]);
        let new = record("new", vec![shared.clone(), only_new.clone()]);
        for r in [&old, &new] {
            remote.push(r, src.path(), &|_| {}).expect("push");
        }
        let roots = BTreeSet::from(["new".to_string()]);

        // Everything is younger than an hour: nothing goes (the old record is spared, and so
        // the blobs it names are in use).
        let spared = remote
            .gc(&roots, Duration::from_secs(3600), false)
            .expect("gc");
        assert_eq!(spared.records_removed, Vec::<String>::new());
        assert_eq!((spared.spared_young, spared.blobs_removed), (1, 0));

        let dry = remote.gc(&roots, Duration::ZERO, true).expect("dry run");
        assert_eq!(dry.records_removed, ["old"]);
        assert_eq!((dry.blobs_removed, dry.blobs_kept), (1, 2));
        assert_eq!(dry.bytes_removed, only_old.size);
        assert_eq!(remote.keys().expect("keys"), ["new", "old"], "dry run");

        let done = remote.gc(&roots, Duration::ZERO, false).expect("gc");
        assert_eq!(done, dry);
        assert_eq!(remote.keys().expect("keys"), ["new"]);
        let blobs: BTreeSet<String> = remote
            .list_all("cas")
            .expect("list")
            .into_iter()
            .map(|m| m.location.filename().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            blobs,
            BTreeSet::from([shared.blake3.clone(), only_new.blake3.clone()])
        );
        // What is kept still pulls whole.
        let dst = tempfile::tempdir().expect("tmp");
        remote.pull(&new, dst.path(), &|_| {}).expect("pull new");
        // A second collection finds nothing to do.
        let again = remote.gc(&roots, Duration::ZERO, false).expect("gc");
        assert_eq!((again.records_removed.len(), again.blobs_removed), (0, 0));
    }

    #[test]
    fn an_unreadable_kept_record_stops_gc_before_anything_is_deleted() {
        let src = tempfile::tempdir().expect("tmp");
        let remote = memory();
        let r = record("old", vec![entry(src.path(), "out/a.txt", b"alpha")]);
        remote.push(&r, src.path(), &|_| {}).expect("push");
        let bad = remote.record_path("kept");
        remote
            .runtime
            .block_on(
                remote
                    .store
                    .put(&bad, object_store::PutPayload::from_static(b"{not json")),
            )
            .expect("plant");
        let roots = BTreeSet::from(["kept".to_string()]);
        let err = remote
            .gc(&roots, Duration::ZERO, false)
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("ac/kept.json") && text.contains("nothing was deleted"),
            "{text}"
        );
        assert_eq!(remote.keys().expect("keys"), ["kept", "old"]);
        assert_eq!(remote.list_all("cas").expect("list").len(), 1);
    }
}
