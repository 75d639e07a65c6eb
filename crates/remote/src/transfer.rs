//! Push and pull: bounded parallel transfers of blobs, then the record (push) or after it
//! (pull), every pulled byte checked against its blake3 hash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::error::{RemoteError, io_at};
use crate::record::{MAX_RECORD_BYTES, Record, is_key};
use crate::store::Remote;

/// Files up to this size go up in one request; bigger ones in parts of this size.
const PART: usize = 16 << 20;
/// Above this many distinct blobs, a push lists `cas/` once rather than asking for each.
const LIST_ABOVE: usize = 1000;
/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// The longest a metadata request (a record, a listing of keys) may take, retries included.
pub(crate) const META_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a whole push or pull may take: generous, but every wait has an end.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// The remote had the record already: nothing was uploaded.
    pub already: bool,
    pub files_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Files whose bytes the remote already held (or that the record already covered).
    pub files_skipped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullReport {
    pub files: u64,
    pub bytes: u64,
}

impl Remote {
    pub(crate) fn record_path(&self, key: &str) -> object_store::path::Path {
        self.path("ac", &format!("{key}.json"))
    }

    pub(crate) fn blob_path(&self, hash: &str) -> object_store::path::Path {
        self.path("cas", hash)
    }

    /// Which of `keys` the remote has a record for.
    pub fn has_keys(&self, keys: &[String]) -> Result<BTreeSet<String>, RemoteError> {
        let jobs = self.jobs;
        self.wait("looking up keys", META_TIMEOUT, async {
            let found: Vec<Option<String>> =
                futures::stream::iter(keys.iter().filter(|k| is_key(k)))
                    .map(|key| async move {
                        match self.store.head(&self.record_path(key)).await {
                            Ok(_) => Ok(Some(key.clone())),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        }
                    })
                    .buffer_unordered(jobs)
                    .try_collect()
                    .await?;
            Ok(found.into_iter().flatten().collect())
        })
    }

    /// The record of `key`, checked (see [`Record::problem`]); `None` when the remote has none.
    pub fn record(&self, key: &str) -> Result<Option<Record>, RemoteError> {
        let read = self
            .runtime
            .block_on(async { tokio::time::timeout(META_TIMEOUT, self.read_record(key)).await });
        read.unwrap_or_else(|_| {
            Err(RemoteError::Timeout {
                remote: self.name.clone(),
                at: self.at.clone(),
                what: format!("reading {}", self.record_path(key)),
                secs: META_TIMEOUT.as_secs(),
            })
        })
    }

    /// [`Remote::record`] on the runtime: many can be read at once.
    pub(crate) async fn read_record(&self, key: &str) -> Result<Option<Record>, RemoteError> {
        if !is_key(key) {
            return Ok(None);
        }
        let path = self.record_path(key);
        let object = path.to_string();
        let bad = |why: String| RemoteError::BadRecord {
            remote: self.name.clone(),
            object: object.clone(),
            why,
        };
        let got = match self.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_err(format!("reading {object}"))(e)),
        };
        if got.meta.size > MAX_RECORD_BYTES {
            return Err(bad(format!(
                "{} bytes (at most {MAX_RECORD_BYTES})",
                got.meta.size
            )));
        }
        let bytes = got
            .bytes()
            .await
            .map_err(self.store_err(format!("reading {object}")))?;
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if let Some(why) = record.problem(key) {
            return Err(bad(why));
        }
        Ok(Some(record))
    }

    /// Every key the remote has a record for.
    pub fn keys(&self) -> Result<Vec<String>, RemoteError> {
        let ac = self.prefix.clone().join("ac");
        let mut keys: Vec<String> = self.wait("listing its records", META_TIMEOUT, async {
            self.store
                .list(Some(&ac))
                .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
                .try_collect()
                .await
        })?;
        keys.retain_mut(|name| match name.strip_suffix(".json") {
            Some(k) if is_key(k) => {
                *name = k.to_string();
                true
            }
            _ => false,
        });
        keys.sort();
        Ok(keys)
    }

    /// Upload what the remote lacks of `record`'s files (read from `root`), then the record
    /// itself, created only if absent: the commit point. `progress` is told of each uploaded
    /// byte count.
    pub fn push(
        &self,
        record: &Record,
        root: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<PushReport, RemoteError> {
        let files = record.files.len() as u64;
        if self
            .has_keys(std::slice::from_ref(&record.key))?
            .contains(&record.key)
        {
            return Ok(PushReport {
                already: true,
                files_skipped: files,
                ..PushReport::default()
            });
        }
        // One upload per distinct content.
        let mut blobs: BTreeMap<&str, &crate::FileEntry> = BTreeMap::new();
        for f in &record.files {
            blobs.entry(f.blake3.as_str()).or_insert(f);
        }
        // Many blobs: one listing of cas/ (a request per 1,000 names) instead of a HEAD each.
        let known: Option<HashMap<String, u64>> = if blobs.len() > LIST_ABOVE {
            let cas = self.prefix.clone().join("cas");
            Some(self.wait("listing its blobs", TRANSFER_TIMEOUT, async {
                self.store
                    .list(Some(&cas))
                    .map_ok(|m| {
                        let name = m.location.filename().unwrap_or_default().to_string();
                        (name, m.size)
                    })
                    .try_collect()
                    .await
            })?)
        } else {
            None
        };
        let known = known.as_ref();
        let jobs = self.jobs;
        let uploaded: Vec<Option<u64>> = self.wait("uploading", TRANSFER_TIMEOUT, async {
            futures::stream::iter(blobs.values())
                .map(|f| async move {
                    let path = self.blob_path(&f.blake3);
                    match known {
                        Some(known) if known.get(&f.blake3) == Some(&f.size) => return Ok(None),
                        Some(_) => {}
                        None => match self.store.head(&path).await {
                            Ok(meta) if meta.size == f.size => return Ok(None),
                            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(e),
                        },
                    }
                    upload(&self.store, path, &root.join(&f.path), f.size as usize).await?;
                    progress(f.size);
                    Ok(Some(f.size))
                })
                .buffer_unordered(jobs)
                .try_collect()
                .await
        })?;
        let body = serde_json::to_vec(record).map_err(|e| RemoteError::BadRecord {
            remote: self.name.clone(),
            object: self.record_path(&record.key).to_string(),
            why: e.to_string(),
        })?;
        let path = self.record_path(&record.key);
        self.wait(&format!("writing {path}"), META_TIMEOUT, async {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body), opts)
                .await
            {
                // Another pusher committed the same key first: its record stands.
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })?;
        let files_uploaded = uploaded.iter().flatten().count() as u64;
        Ok(PushReport {
            already: false,
            files_uploaded,
            bytes_uploaded: uploaded.iter().flatten().sum(),
            files_skipped: files - files_uploaded,
        })
    }

    /// Download `record`'s files into `into` (which must be empty or absent), each checked
    /// against its hash and size as it arrives. On an error, what was written stays for the
    /// caller to remove with the rest of its scratch directory.
    pub fn pull(
        &self,
        record: &Record,
        into: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<PullReport, RemoteError> {
        if let Some(why) = record.problem(&record.key) {
            return Err(RemoteError::BadRecord {
                remote: self.name.clone(),
                object: self.record_path(&record.key).to_string(),
                why,
            });
        }
        let jobs = self.jobs;
        let downloads = futures::stream::iter(&record.files)
            .map(|f| async move {
                let object = self.blob_path(&f.blake3);
                let target = into.join(&f.path);
                download(self, &object, &target, f, progress).await
            })
            .buffer_unordered(jobs)
            .try_collect::<Vec<()>>();
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(TRANSFER_TIMEOUT, downloads).await });
        match result {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                return Err(RemoteError::Timeout {
                    remote: self.name.clone(),
                    at: self.at.clone(),
                    what: "downloading".into(),
                    secs: TRANSFER_TIMEOUT.as_secs(),
                });
            }
        }
        Ok(PullReport {
            files: record.files.len() as u64,
            bytes: record.bytes(),
        })
    }
}

async fn upload(
    store: &std::sync::Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    file: &Path,
    size: usize,
) -> Result<(), object_store::Error> {
    let local = |source: std::io::Error| object_store::Error::Generic {
        store: "local file",
        source: format!("{}: {source}", file.display()).into(),
    };
    if size <= PART {
        let bytes = tokio::fs::read(file).await.map_err(local)?;
        store.put(&path, PutPayload::from(bytes)).await?;
        return Ok(());
    }
    // Multipart: parts of PART bytes, a few in flight; aborted (no object) on an error.
    let mut writer =
        BufWriter::with_capacity(store.clone(), path, PART).with_max_concurrency(PARTS_IN_FLIGHT);
    let mut reader = tokio::fs::File::open(file).await.map_err(local)?;
    let copied = tokio::io::copy(&mut reader, &mut writer).await;
    match copied {
        Ok(_) => writer
            .shutdown()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "multipart upload",
                source: Box::new(e),
            }),
        Err(e) => {
            let _ = writer.abort().await;
            Err(local(e))
        }
    }
}

async fn download(
    remote: &Remote,
    object: &object_store::path::Path,
    target: &Path,
    entry: &crate::FileEntry,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), RemoteError> {
    let store_err = |what: &str| remote.store_err(format!("{what} {object}"));
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io_at(parent))?;
    }
    let got = remote
        .store
        .get(object)
        .await
        .map_err(store_err("reading"))?;
    let mut stream = got.into_stream();
    let mut file = tokio::fs::File::create(target)
        .await
        .map_err(io_at(target))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let corrupt = |hasher: &blake3::Hasher, size: u64| RemoteError::Corrupt {
        remote: remote.name.clone(),
        object: object.to_string(),
        expected: entry.blake3.clone(),
        expected_size: entry.size,
        actual: hasher.finalize().to_hex().to_string(),
        size,
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(store_err("reading"))?;
        size += chunk.len() as u64;
        // More bytes than the record says: stop before they fill the disk.
        if size > entry.size {
            return Err(corrupt(&hasher, size));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_at(target))?;
        progress(chunk.len() as u64);
    }
    if size != entry.size || hasher.finalize().to_hex().as_str() != entry.blake3 {
        return Err(corrupt(&hasher, size));
    }
    file.sync_all().await.map_err(io_at(target))?;
    if entry.executable {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))
            .await
            .map_err(io_at(target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileEntry;
    use crate::testing::{entry, memory, record};

    #[test]
    fn push_then_pull_gives_the_same_bytes_and_a_second_push_uploads_nothing() {
        let src = tempfile::tempdir().expect("tmp");
        let big = vec![7u8; PART + 123];
        let files = vec![
            entry(src.path(), "out/a.txt", b"alpha"),
            entry(src.path(), "out/same.txt", b"alpha"),
            entry(src.path(), "out/sub/big.bin", &big),
            entry(src.path(), "log.txt", b""),
        ];
        let r = record("k1", files);
        let remote = memory();
        let none = |_| {};
        let first = remote.push(&r, src.path(), &none).expect("push");
        assert_eq!(
            (first.files_uploaded, first.files_skipped),
            (3, 1),
            "one upload per distinct content"
        );
        assert_eq!(first.bytes_uploaded, 5 + big.len() as u64);
        let again = remote.push(&r, src.path(), &none).expect("push again");
        assert!(again.already && again.files_uploaded == 0, "{again:?}");
        // Another key with the same file shares its blob.
        let r2 = record("k2", vec![entry(src.path(), "out/a.txt", b"alpha")]);
        let shared = remote.push(&r2, src.path(), &none).expect("push k2");
        assert_eq!((shared.files_uploaded, shared.files_skipped), (0, 1));
        assert_eq!(remote.keys().expect("keys"), ["k1", "k2"]);

        let got = remote.record("k1").expect("get").expect("present");
        assert_eq!(got, r);
        let dst = tempfile::tempdir().expect("tmp");
        let report = remote.pull(&got, dst.path(), &none).expect("pull");
        assert_eq!(report.files, 4);
        for f in &r.files {
            let a = std::fs::read(src.path().join(&f.path)).expect("src");
            let b = std::fs::read(dst.path().join(&f.path)).expect("dst");
            assert_eq!(a, b, "{}", f.path);
        }
        assert_eq!(
            remote.has_keys(&["k1".into(), "k3".into()]).expect("has"),
            BTreeSet::from(["k1".to_string()])
        );
        assert_eq!(remote.record("k3").expect("get"), None);
    }

    #[test]
    fn a_push_of_many_files_lists_the_blobs_once_and_skips_those_there() {
        let src = tempfile::tempdir().expect("tmp");
        let n = LIST_ABOVE + 10;
        let files: Vec<FileEntry> = (0..n)
            .map(|i| {
                entry(
                    src.path(),
                    &format!("out/f{i}"),
                    format!("file {i}").as_bytes(),
                )
            })
            .collect();
        let remote = memory();
        // Half of them are there already, under another key.
        let half = record("k0", files[..n / 2].to_vec());
        remote.push(&half, src.path(), &|_| {}).expect("push half");
        let all = record("k1", files);
        let report = remote.push(&all, src.path(), &|_| {}).expect("push all");
        assert_eq!(
            (report.files_uploaded, report.files_skipped),
            ((n - n / 2) as u64, (n / 2) as u64)
        );
        let dst = tempfile::tempdir().expect("tmp");
        remote.pull(&all, dst.path(), &|_| {}).expect("pull");
        assert_eq!(
            std::fs::read(dst.path().join("out/f7")).expect("f7"),
            b"file 7"
        );
    }

    #[test]
    fn a_corrupt_blob_is_refused_naming_it() {
        let src = tempfile::tempdir().expect("tmp");
        let r = record("k1", vec![entry(src.path(), "out/a.txt", b"alpha")]);
        let remote = memory();
        remote.push(&r, src.path(), &|_| {}).expect("push");
        let blob = remote.blob_path(&r.files[0].blake3);
        remote
            .runtime
            .block_on(remote.store.put(&blob, PutPayload::from_static(b"alphb")))
            .expect("tamper");
        let dst = tempfile::tempdir().expect("tmp");
        let err = remote.pull(&r, dst.path(), &|_| {}).expect_err("corrupt");
        let text = err.to_string();
        assert!(
            text.contains(&format!("cas/{}", r.files[0].blake3)) && text.contains("corrupt"),
            "{text}"
        );
        // Longer than the record says: refused, and no byte past the declared size written.
        remote
            .runtime
            .block_on(
                remote
                    .store
                    .put(&blob, PutPayload::from(vec![b'a'; 1 << 20])),
            )
            .expect("tamper");
        let err = remote.pull(&r, dst.path(), &|_| {}).expect_err("too long");
        assert!(matches!(err, RemoteError::Corrupt { .. }), "{err}");
        let written = std::fs::metadata(dst.path().join("out/a.txt")).expect("file");
        assert!(written.len() <= 5, "{} bytes written", written.len());
    }

    #[test]
    fn a_record_with_an_escaping_path_is_refused_before_any_download() {
        let remote = memory();
        let mut r = record("k1", Vec::new());
        r.files.push(FileEntry {
            path: "../../escape".into(),
            blake3: "0".repeat(64),
            size: 1,
            executable: false,
        });
        let path = remote.record_path("k1");
        let body = serde_json::to_vec(&r).expect("json");
        remote
            .runtime
            .block_on(remote.store.put(&path, PutPayload::from(body)))
            .expect("plant");
        let err = remote.record("k1").expect_err("refused");
        assert!(err.to_string().contains("leaves its directory"), "{err}");
        let dst = tempfile::tempdir().expect("tmp");
        assert!(remote.pull(&r, &dst.path().join("in"), &|_| {}).is_err());
        assert!(!dst.path().join("escape").exists());
    }
}
