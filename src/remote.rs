//! Artifacts between the local cache and a remote ([`pipe_remote`]): what a push sends (the
//! artifact's `out/` and log, its manifest, pre-image and input listing as the record's
//! metadata) and how a pull lands (a scratch directory, checked, then published exactly like a
//! local run: sealed and renamed into place).

use std::collections::BTreeMap;
use std::path::Path;

use indicatif::ProgressBar;
use pipe_remote::{FileEntry, PullReport, PushReport, Record, Remote, RemoteError};

use crate::cache::{Artifact, Cache, CacheError, Manifest, PreImage, read_json, short};
use crate::hash::{HashError, Tree, hash_file, hash_tree_uncached};
use crate::spec::Spec;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(
        "no remote is configured: declare one in {file} ([remotes.NAME] with url = \
         \"s3://bucket/prefix\", and [pipeline] remote = \"NAME\") or pass --remote NAME"
    )]
    NoRemote { file: String },
    #[error("no remote `{name}` in {file} (declared: {known})")]
    UnknownRemote {
        name: String,
        file: String,
        known: String,
    },
    #[error(
        "the local artifact {key} of stage `{stage}` no longer matches its manifest (its files \
         changed since it was sealed): not pushed; `pipe verify` evicts it"
    )]
    LocalChanged { stage: String, key: String },
    #[error("remote `{remote}`: the artifact {key} is refused: {why}")]
    Refused {
        remote: String,
        key: String,
        why: String,
    },
}

/// The remote `name` (else the pipeline's default), opened; nothing is contacted yet.
pub fn open(spec: &Spec, name: Option<&str>) -> Result<Remote, SyncError> {
    let file = spec.file.display().to_string();
    let Some(name) = name.or(spec.remote.as_deref()) else {
        return Err(SyncError::NoRemote { file });
    };
    let Some(config) = spec.remote_config(name) else {
        let known: Vec<&str> = spec.remotes.iter().map(|r| r.name.as_str()).collect();
        return Err(SyncError::UnknownRemote {
            name: name.to_string(),
            file,
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    };
    Ok(Remote::open(config)?)
}

/// The record that describes `artifact`, its files hashed anew: a push never sends bytes that
/// differ from what the manifest sealed.
fn record_of(artifact: &Artifact) -> Result<Record, SyncError> {
    let manifest = &artifact.manifest;
    let tree = hash_tree_uncached(&artifact.out())?;
    if tree.digest != manifest.content {
        return Err(SyncError::LocalChanged {
            stage: manifest.stage.clone(),
            key: short(&manifest.key).to_string(),
        });
    }
    let mut files: Vec<FileEntry> = Vec::with_capacity(tree.entries.len() + 1);
    for e in &tree.entries {
        let path = format!("out/{}", e.path);
        let executable = is_executable(&artifact.dir.join(&path));
        files.push(FileEntry {
            path,
            blake3: e.hash.clone(),
            size: e.size,
            executable,
        });
    }
    let log = artifact.dir.join("log.txt");
    if log.is_file() {
        files.push(FileEntry {
            path: "log.txt".into(),
            blake3: hash_file(&log)?,
            size: std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0),
            executable: false,
        });
    }
    let mut meta = serde_json::Map::new();
    for (name, file) in [
        ("manifest", "manifest.json"),
        ("preimage", "preimage.json"),
        ("inputs", "inputs.json"),
    ] {
        let path = artifact.dir.join(file);
        let value: serde_json::Value = read_json(&path).map_err(crate::cache::io_at(&path))?;
        meta.insert(name.into(), value);
    }
    Ok(Record {
        scheme: pipe_remote::SCHEME,
        key: manifest.key.clone(),
        meta,
        files,
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// Send `artifact` to `remote` unless it is there already (then nothing is re-hashed);
/// `bar` counts the bytes uploaded.
pub fn push(
    remote: &Remote,
    artifact: &Artifact,
    bar: &ProgressBar,
) -> Result<PushReport, SyncError> {
    let key = &artifact.manifest.key;
    if remote.has_keys(std::slice::from_ref(key))?.contains(key) {
        return Ok(PushReport {
            already: true,
            files_skipped: artifact.manifest.files,
            ..PushReport::default()
        });
    }
    let record = record_of(artifact)?;
    bar.set_length(record.bytes());
    Ok(remote.push(&record, &artifact.dir, &|n| bar.inc(n))?)
}

/// Fetch `key` from `remote` into the local cache: `None` when the remote lacks it. What
/// arrives is checked (each blob's hash as it streams, then the whole `out/` against the
/// manifest's content digest) before it is published; a refused artifact leaves nothing.
pub fn pull(
    cache: &Cache,
    remote: &Remote,
    key: &str,
    bar: &ProgressBar,
) -> Result<Option<(Artifact, PullReport)>, SyncError> {
    let Some(checked) = checked_record(remote, key)? else {
        return Ok(None);
    };
    let _lock = cache.exec_lock(key, &checked.manifest.stage)?;
    if let Some(a) = cache.artifact(key) {
        // Produced here while we waited for the lock.
        return Ok(Some((a, PullReport::default())));
    }
    land(cache, remote, checked, bar).map(Some)
}

/// [`pull`] for a caller that holds `key`'s execution lock already (`run --pull`).
pub fn pull_locked(
    cache: &Cache,
    remote: &Remote,
    key: &str,
    bar: &ProgressBar,
) -> Result<Option<(Artifact, PullReport)>, SyncError> {
    let Some(checked) = checked_record(remote, key)? else {
        return Ok(None);
    };
    land(cache, remote, checked, bar).map(Some)
}

/// Download a checked record into a scratch directory, check the whole `out/` against the
/// manifest, and publish it.
fn land(
    cache: &Cache,
    remote: &Remote,
    checked: Checked,
    bar: &ProgressBar,
) -> Result<(Artifact, PullReport), SyncError> {
    let Checked {
        record,
        manifest,
        preimage,
        inputs,
    } = checked;
    let key = record.key.as_str();
    let scratch = cache.new_scratch(key)?;
    bar.set_length(record.bytes());
    let report = remote.pull(&record, &scratch.dir, &|n| bar.inc(n))?;
    let tree = hash_tree_uncached(&scratch.out)?;
    if tree.digest != manifest.content {
        return Err(refused(
            remote,
            key,
            format!(
                "its files hash to {} but its manifest says {}",
                short(&tree.digest),
                short(&manifest.content)
            ),
        ));
    }
    let artifact = cache.publish(scratch, &preimage, &inputs, &manifest)?;
    Ok((artifact, report))
}

/// A record and the metadata it carries, each checked.
struct Checked {
    record: Record,
    manifest: Manifest,
    preimage: PreImage,
    inputs: BTreeMap<String, Tree>,
}

fn refused(remote: &Remote, key: &str, why: String) -> SyncError {
    SyncError::Refused {
        remote: remote.name().to_string(),
        key: short(key).to_string(),
        why,
    }
}

/// `key`'s record with its metadata parsed and checked; `None` when the remote lacks it.
fn checked_record(remote: &Remote, key: &str) -> Result<Option<Checked>, SyncError> {
    let Some(record) = remote.record(key)? else {
        return Ok(None);
    };
    let refused = |why: String| refused(remote, key, why);
    if let Some(f) = record
        .files
        .iter()
        .find(|f| f.path != "log.txt" && !f.path.starts_with("out/"))
    {
        return Err(refused(format!(
            "its record lists {:?}, outside out/ and log.txt",
            f.path
        )));
    }
    let field = |name: &str| {
        record
            .meta
            .get(name)
            .cloned()
            .ok_or_else(|| refused(format!("its record has no {name}")))
    };
    let manifest: Manifest = serde_json::from_value(field("manifest")?)
        .map_err(|e| refused(format!("its manifest: {e}")))?;
    let preimage: PreImage = serde_json::from_value(field("preimage")?)
        .map_err(|e| refused(format!("its pre-image: {e}")))?;
    let inputs: BTreeMap<String, Tree> = serde_json::from_value(field("inputs")?)
        .map_err(|e| refused(format!("its input listing: {e}")))?;
    if manifest.key != key {
        return Err(refused(format!(
            "its manifest is that of key {}",
            short(&manifest.key)
        )));
    }
    Ok(Some(Checked {
        record,
        manifest,
        preimage,
        inputs,
    }))
}
