//! Downloading a model from the Hub into the Hugging Face cache (hf-hub's blocking client):
//! resumable, retried, checked for truncation and for a repo that changed mid-download.

use std::path::{Path, PathBuf};

use hf_hub::api::Progress;
use hf_hub::api::sync::{Api, ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, CacheRepo, Repo, RepoType};

use crate::{HubError, HubId, HubOptions, OPTIONAL_FILES};

/// Retries of an interrupted file download (it resumes where it stopped).
const RETRIES: usize = 3;

/// Files at least this large get progress lines while they download.
const PROGRESS_ABOVE: usize = 64 << 20;

/// The HTTP status of a failed Hub request, if the server answered.
fn http_status(e: &ApiError) -> Option<u16> {
    match e {
        ApiError::RequestError(e) => match **e {
            ureq::Error::StatusCode(code) => Some(code),
            _ => None,
        },
        ApiError::TooManyRetries(e) => http_status(e),
        _ => None,
    }
}

/// One Hub download of one model into the cache.
struct Download<'a> {
    id: &'a HubId,
    hub: &'a HubOptions,
    cache: &'a Path,
    api: Api,
    remote: ApiRepo,
    local: CacheRepo,
}

/// A file of the repo: in the cache now, or absent from the repo (HTTP 404).
enum Fetched {
    File(PathBuf),
    Absent(ApiError),
}

impl Download<'_> {
    fn error(&self, file: &str, source: ApiError) -> HubError {
        HubError::Download {
            model: self.id.to_string(),
            file: file.to_string(),
            endpoint: self.hub.endpoint.clone(),
            cache: self.cache.display().to_string(),
            source: Box::new(source),
        }
    }

    /// Download `file` into the cache (unless this commit's copy is there already) and check
    /// its size against what the Hub announced.
    fn fetch(&self, file: &str) -> Result<Fetched, HubError> {
        let meta = match self.api.metadata(&self.remote.url(file)) {
            Ok(meta) => meta,
            Err(e) if http_status(&e) == Some(404) => return Ok(Fetched::Absent(e)),
            Err(e) => return Err(self.error(file, e)),
        };
        let expected = meta.size() as u64;
        let cached = self.local.pointer_path(meta.commit_hash()).join(file);
        if file_len(&cached) == Some(expected) {
            tracing::info!(model = %self.id, file, bytes = expected, "already in the Hugging Face cache");
            return Ok(Fetched::File(cached));
        }
        tracing::info!(model = %self.id, file, bytes = expected, "downloading");
        let start = std::time::Instant::now();
        let path = self
            .remote
            .download_with_progress(file, LogProgress::new(file))
            .map_err(|e| self.error(file, e))?;
        let found = file_len(&path).unwrap_or(0);
        if found != expected {
            discard(&path);
            return Err(HubError::Truncated {
                model: self.id.to_string(),
                file: file.to_string(),
                endpoint: self.hub.endpoint.clone(),
                expected,
                found,
            });
        }
        tracing::info!(
            model = %self.id,
            file,
            bytes = found,
            secs = start.elapsed().as_secs_f32(),
            "downloaded"
        );
        Ok(Fetched::File(path))
    }
}

/// Download `id`'s files into `cache` (the standard layout, which Python's `transformers` reads
/// too) and return the snapshot directory.
///
/// Order matters: config.json is first only asked about (a missing or private repo is told
/// apart from a missing weights file, and nothing is written), then model.safetensors, the
/// optional files, and config.json last. A snapshot only counts as complete with both
/// config.json and model.safetensors ([`find_in_hf_cache`]), so a failed run never leaves one
/// that looks like a model; a rerun reuses the files already downloaded.
pub(crate) fn download(id: &HubId, cache: &Path, hub: &HubOptions) -> Result<PathBuf, HubError> {
    let repo = Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision.clone());
    let api = ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
        .with_endpoint(hub.endpoint.clone())
        .with_token(hub.token.clone())
        .with_progress(false)
        .with_retries(RETRIES)
        .with_user_agent("pipe", env!("CARGO_PKG_VERSION"))
        .build();
    let ctx = |api: Api| Download {
        id,
        hub,
        cache,
        remote: api.repo(repo.clone()),
        local: Cache::new(cache.to_path_buf()).repo(repo.clone()),
        api,
    };
    let d = match api {
        Ok(api) => ctx(api),
        Err(e) => {
            return Err(HubError::Download {
                model: id.to_string(),
                file: "config.json".to_string(),
                endpoint: hub.endpoint.clone(),
                cache: cache.display().to_string(),
                source: Box::new(e),
            });
        }
    };
    tracing::info!(
        model = %id,
        endpoint = %hub.endpoint,
        cache = %cache.display(),
        "not in the Hugging Face cache: downloading from the Hub"
    );

    let not_on_hub = |status: u16, source: ApiError| HubError::NotOnHub {
        model: id.to_string(),
        endpoint: hub.endpoint.clone(),
        status,
        source: Box::new(source),
    };
    match d.api.metadata(&d.remote.url("config.json")) {
        Ok(_) => {}
        Err(e) => {
            return Err(match http_status(&e) {
                Some(status @ (401 | 403 | 404)) => not_on_hub(status, e),
                _ => d.error("config.json", e),
            });
        }
    }

    let weights = match d.fetch("model.safetensors")? {
        Fetched::File(path) => path,
        Fetched::Absent(_) => {
            return Err(HubError::NoSafetensors {
                model: id.to_string(),
                endpoint: hub.endpoint.clone(),
            });
        }
    };
    let mut files = vec![weights];
    for file in OPTIONAL_FILES {
        match d.fetch(file)? {
            Fetched::File(path) => files.push(path),
            Fetched::Absent(_) => tracing::debug!(model = %id, file, "not in the repo"),
        }
    }
    match d.fetch("config.json")? {
        Fetched::File(path) => files.push(path),
        Fetched::Absent(e) => return Err(not_on_hub(404, e)),
    }

    // All from one commit, or the snapshot is not the model that was asked for.
    let snapshot = |p: &PathBuf| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = snapshot(&files[0]);
    if let Some(other) = files.iter().map(snapshot).find(|d| *d != dir) {
        let name = |d: &Path| {
            d.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        return Err(HubError::MixedCommits {
            model: id.to_string(),
            first: name(&dir),
            second: name(&other),
        });
    }
    // `refs/<revision>` names this snapshot (a rerun that only reused files wrote no ref).
    if let Some(commit) = dir.file_name().and_then(|c| c.to_str())
        && commit != id.revision
    {
        d.local
            .create_ref(commit)
            .map_err(|e| d.error(&format!("refs/{}", id.revision), e.into()))?;
    }
    Ok(dir)
}

/// The length of the file `path` names (following links), if it is one.
fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// Remove a downloaded file that turned out wrong: its blob and the snapshot's link to it.
fn discard(pointer: &Path) {
    if let Ok(blob) = std::fs::canonicalize(pointer) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(pointer);
}

/// Download progress: a bar with bytes, rate and ETA on a terminal (indicatif draws nothing
/// when stderr is not one), and a log line a quarter at a time for large files (`-v`, and in a
/// Slurm job's log).
struct LogProgress {
    file: String,
    total: usize,
    done: usize,
    next: usize,
    bar: indicatif::ProgressBar,
}

impl LogProgress {
    fn new(file: &str) -> Self {
        Self {
            file: file.to_string(),
            total: 0,
            done: 0,
            next: 0,
            bar: indicatif::ProgressBar::hidden(),
        }
    }
}

impl Progress for LogProgress {
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size;
        self.done = 0;
        self.next = size / 4;
        self.bar = indicatif::ProgressBar::new(size as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_message(format!("downloading {}", self.file));
    }

    fn update(&mut self, size: usize) {
        self.done += size;
        self.bar.inc(size as u64);
        if self.total < PROGRESS_ABOVE || self.done < self.next || self.done >= self.total {
            return;
        }
        tracing::info!(
            file = %self.file,
            percent = self.done * 100 / self.total,
            "downloading"
        );
        while self.next <= self.done {
            self.next += self.total / 4;
        }
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
