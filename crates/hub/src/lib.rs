//! Model sources: a local checkpoint directory or a Hub id (`ORG/NAME[@REVISION]`), looked up
//! in the Hugging Face cache and, when it is not there and the network is allowed, downloaded
//! into it with hf-hub's blocking client ([`ModelSource`], [`HubOptions`], [`ModelDir`]).
//!
//! Reading the weights is the model's business (`pipe_blip::weights`); this crate only finds
//! the files.

use std::path::{Path, PathBuf};

mod download;

use download::download;
use hf_hub::api::sync::ApiError;

/// The files a snapshot must hold to be loaded (and to count as complete in the cache).
pub const REQUIRED_FILES: [&str; 2] = ["config.json", "model.safetensors"];

/// The files a Hub download fetches besides [`REQUIRED_FILES`], when the repo has them (a 404 is
/// fine). Weights are only ever read from `model.safetensors`: `pytorch_model.bin` (a pickle)
/// is never fetched.
pub const OPTIONAL_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "vocab.txt",
];

/// Why a model source could not be found or downloaded.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "model {source_name:?} is neither a local directory nor in the Hugging Face cache \
         ({cache}); download it first, e.g. `huggingface-cli download {source_name}` \
         (or `hf download {source_name}`) on a machine with network access, or pass a local \
         directory holding config.json, model.safetensors and tokenizer.json"
    )]
    NotFound { source_name: String, cache: String },
    #[error(
        "model directory {path} does not exist (a path, not a Hub id ORG/NAME); put a \
         checkpoint there, e.g. `huggingface-cli download Salesforce/blip-image-captioning-base \
         --local-dir {path}` on a machine with network access"
    )]
    NoDirectory { path: String },
    #[error("{dir} has no {file}")]
    MissingFile { dir: String, file: &'static str },
    #[error("the artifact {dir} holds no model (no config.json in model/ or at its top level)")]
    NoModelInArtifact { dir: String },
    /// A transfer from the Hub failed: no network, DNS, timeout, a server error, or the cache
    /// could not be written. The cause is the error's source.
    #[error(
        "cannot download {file} of {model} from {endpoint} into {cache}; get the model on a \
         machine with network access ({}) and copy the cache, or pass a local directory \
         holding config.json, model.safetensors and tokenizer.json",
        download_command(.model)
    )]
    Download {
        model: String,
        file: String,
        endpoint: String,
        cache: String,
        #[source]
        source: Box<ApiError>,
    },
    /// The Hub answered 401, 403 or 404 for the repo's config.json.
    #[error(
        "{model} is neither a local directory nor a model on {endpoint} (HTTP {status} for \
         config.json: a wrong name, or a private or gated repo that needs HF_TOKEN); download it \
         where it is accessible ({}) and pass a local directory holding config.json, \
         model.safetensors and tokenizer.json",
        download_command(.model)
    )]
    NotOnHub {
        model: String,
        endpoint: String,
        status: u16,
        #[source]
        source: Box<ApiError>,
    },
    #[error(
        "{model} on {endpoint} has no model.safetensors; weights are only loaded from \
         safetensors (never from pytorch_model.bin): convert the checkpoint, e.g. with \
         transformers' `save_pretrained(dir, safe_serialization=True)`, and pass that directory"
    )]
    NoSafetensors { model: String, endpoint: String },
    #[error(
        "downloaded {file} of {model} has {found} bytes, {endpoint} announced {expected}; the \
         file was removed from the cache, try again"
    )]
    Truncated {
        model: String,
        file: String,
        endpoint: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "the files of {model} came from different commits ({first} and {second}): the repo \
         changed during the download; try again"
    )]
    MixedCommits {
        model: String,
        first: String,
        second: String,
    },
}

/// Where and how Hub ids are looked up and downloaded. [`HubOptions::from_env`] reads the
/// variables Python's `huggingface_hub` reads; tests build one directly.
#[derive(Clone)]
pub struct HubOptions {
    /// The Hub's base URL, without a trailing `/` (`HF_ENDPOINT`, default
    /// [`HubOptions::DEFAULT_ENDPOINT`]).
    pub endpoint: String,
    /// The cache in the standard layout (`models--ORG--NAME/{blobs,refs,snapshots}`):
    /// `$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`. `None`: no cache, so
    /// nothing is looked up or downloaded.
    pub cache_dir: Option<PathBuf>,
    /// No network at all (`HF_HUB_OFFLINE=1`): only the cache is used.
    pub offline: bool,
    /// Sent as a bearer token (`HF_TOKEN`, else the file `hf auth login` writes).
    pub token: Option<String>,
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl HubOptions {
    pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

    /// `HF_ENDPOINT`, `HF_HUB_CACHE`/`HF_HOME`, `HF_HUB_OFFLINE` and `HF_TOKEN` (else
    /// `$HF_TOKEN_PATH` or `$HF_HOME/token`).
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let endpoint = var("HF_ENDPOINT").map_or_else(
            || Self::DEFAULT_ENDPOINT.to_string(),
            |e| e.trim_end_matches('/').to_string(),
        );
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            ["1", "true", "yes", "on"]
                .iter()
                .any(|t| v.eq_ignore_ascii_case(t))
        });
        let token = var("HF_TOKEN").or_else(|| {
            let path = std::env::var_os("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .or_else(|| hf_home().map(|h| h.join("token")))?;
            let token = std::fs::read_to_string(path).ok()?;
            let token = token.trim();
            (!token.is_empty()).then(|| token.to_string())
        });
        Self {
            endpoint,
            cache_dir: hf_cache_dir(),
            offline,
            token,
        }
    }
}

/// A checkpoint directory in the Hugging Face layout (it holds [`REQUIRED_FILES`]).
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
}

impl ModelDir {
    /// `dir` as a checkpoint directory, when it holds every one of [`REQUIRED_FILES`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, HubError> {
        let dir = dir.into();
        for file in REQUIRED_FILES {
            if !dir.join(file).is_file() {
                return Err(HubError::MissingFile {
                    dir: dir.display().to_string(),
                    file,
                });
            }
        }
        Ok(Self { dir })
    }

    /// The model a stage artifact holds: its `model/` directory (what train writes), else its
    /// top level (a command stage that wrote a checkpoint). The one lookup every user of an
    /// upstream model goes through.
    pub fn in_artifact(artifact: &Path) -> Result<Self, HubError> {
        let inner = artifact.join("model");
        let dir = [inner.as_path(), artifact]
            .into_iter()
            .find(|d| d.join("config.json").is_file())
            .ok_or_else(|| HubError::NoModelInArtifact {
                dir: artifact.display().to_string(),
            })?;
        Self::open(dir)
    }

    /// The files that decide what this model computes, for a stage's cache key: the config,
    /// the weights (unless `weights` is false: only the architecture is used) and the
    /// tokenizer/preprocessor files present.
    pub fn key_files(&self, weights: bool) -> Vec<PathBuf> {
        let mut files = vec![self.config_path()];
        if weights {
            files.push(self.weights_path());
        }
        for f in ["tokenizer.json", "preprocessor_config.json"] {
            if self.dir.join(f).is_file() {
                files.push(self.dir.join(f));
            }
        }
        files
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn weights_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
}

/// Where a model comes from: a local directory or a Hub id (`ORG/NAME`, optionally
/// `ORG/NAME@REVISION`) found in the Hugging Face cache or downloaded into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Local(PathBuf),
    Hub(HubId),
}

impl ModelSource {
    /// A source as a command line names it: an existing directory, else a Hub id. Anything
    /// else is [`HubError::NotFound`] (it says how to download a model).
    pub fn parse(source: &str, hub: &HubOptions) -> Result<Self, HubError> {
        let path = Path::new(source);
        if path.is_dir() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        HubId::parse(source)
            .map(Self::Hub)
            .ok_or_else(|| not_found(source, hub))
    }

    /// A source as a pipeline names it: a directory relative to `base` (the pipeline's
    /// directory) when one is there or when the string is no Hub id, else the Hub id.
    pub fn in_pipeline(source: &str, base: &Path) -> Self {
        let local = base.join(source);
        match HubId::parse(source) {
            Some(id) if !local.is_dir() => Self::Hub(id),
            _ => Self::Local(local),
        }
    }

    /// The checkpoint without the network: a local directory or a complete copy in the
    /// Hugging Face cache, else `None`. Planning uses this, so `pipe status` never downloads.
    pub fn find(&self) -> Option<ModelDir> {
        // Only the cache is read: no endpoint, no token (planning runs this for every stage).
        let hub = HubOptions {
            endpoint: String::new(),
            cache_dir: hf_cache_dir(),
            offline: true,
            token: None,
        };
        self.resolve(&hub).ok()
    }

    /// [`ModelDir::key_files`] (with the weights) when the model is local or cached, else
    /// none: `pipe run` fetches it before the stage's key, and a stage that cannot get it says
    /// how when it runs.
    pub fn key_files(&self) -> Vec<PathBuf> {
        self.find().map_or_else(Vec::new, |d| d.key_files(true))
    }

    /// Download a Hub id into the Hugging Face cache when it is not there yet (a no-op for
    /// directories and cached ids; a missing directory is reported when the stage runs).
    /// `pipe run` calls this before planning, so a stage's key covers the downloaded files
    /// from its first run on. See [`HubOptions::from_env`] for the variables read.
    pub fn fetch(&self) -> Result<(), HubError> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Hub(_) if self.find().is_some() => Ok(()),
            Self::Hub(_) => self.resolve(&HubOptions::from_env()).map(|_| ()),
        }
    }

    /// The checkpoint directory: the local one, or the Hub id's snapshot in the cache,
    /// downloaded unless `hub.offline`.
    pub fn resolve(&self, hub: &HubOptions) -> Result<ModelDir, HubError> {
        let id = match self {
            Self::Local(dir) if dir.is_dir() => return ModelDir::open(dir.clone()),
            Self::Local(dir) => {
                return Err(HubError::NoDirectory {
                    // `components` drops inner `.`s: /project/./models/x → /project/models/x.
                    path: dir.components().collect::<PathBuf>().display().to_string(),
                });
            }
            Self::Hub(id) => id,
        };
        let Some(cache) = hub.cache_dir.as_deref() else {
            return Err(not_found(&id.to_string(), hub));
        };
        if let Some(dir) = find_in_hf_cache(cache, id) {
            tracing::info!(model = %id, dir = %dir.display(), "using the Hugging Face cache");
            return ModelDir::open(dir);
        }
        if hub.offline {
            return Err(not_found(&id.to_string(), hub));
        }
        ModelDir::open(download(id, cache, hub)?)
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "{}", dir.display()),
            Self::Hub(id) => id.fmt(f),
        }
    }
}

/// [`HubError::NotFound`] for `source`.
fn not_found(source: &str, hub: &HubOptions) -> HubError {
    HubError::NotFound {
        source_name: source.to_string(),
        cache: hub.cache_dir.as_ref().map_or_else(
            || "no cache directory".to_string(),
            |c| c.display().to_string(),
        ),
    }
}

/// `$HF_HOME`, else `~/.cache/huggingface`.
fn hf_home() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface"))
}

fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    hf_home().map(|h| h.join("hub"))
}

/// A Hub model id, `ORG/NAME[@REVISION]` (revision `main` when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `ORG/NAME`.
    pub repo: String,
    /// A branch, tag or commit; `main` when the id names none.
    pub revision: String,
}

impl HubId {
    pub fn parse(source: &str) -> Option<Self> {
        let (repo, revision) = source.split_once('@').unwrap_or((source, "main"));
        // One safe path component: letters, digits, `-`, `_`, `.`; not `.` or `..`.
        let component = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let (org, name) = repo.split_once('/')?;
        // A revision may be a branch with slashes (`refs/pr/1`): each part must be safe.
        let ok = component(org) && component(name) && revision.split('/').all(component);
        ok.then(|| Self {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    /// `models--ORG--NAME`
    fn folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

/// The commands that download `model` (`ORG/NAME[@REVISION]`) with the Hugging Face CLI, old
/// and new.
fn download_command(model: &str) -> String {
    let args = match model.split_once('@') {
        Some((repo, revision)) => format!("{repo} --revision {revision}"),
        None => model.to_string(),
    };
    format!("`huggingface-cli download {args}` or `hf download {args}`")
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.revision == "main" {
            f.write_str(&self.repo)
        } else {
            write!(f, "{}@{}", self.repo, self.revision)
        }
    }
}

/// Whether a snapshot holds every required file (a dangling link does not count).
fn complete(dir: &Path) -> bool {
    REQUIRED_FILES.iter().all(|f| dir.join(f).is_file())
}

/// `ORG/NAME[@REV]` → `CACHE/models--ORG--NAME/snapshots/<commit>/`: the commit `refs/<REV>`
/// names, or the snapshot `REV` itself (a commit hash); for `main` only, else any complete
/// snapshot. A snapshot counts only when it holds all of [`REQUIRED_FILES`], so an interrupted
/// download is never taken for a model.
fn find_in_hf_cache(cache: &Path, id: &HubId) -> Option<PathBuf> {
    let repo = cache.join(id.folder());
    let snapshots = repo.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(repo.join("refs").join(&id.revision)) {
        let dir = snapshots.join(commit.trim());
        if complete(&dir) {
            return Some(dir);
        }
    }
    if id.revision != "main" {
        let dir = snapshots.join(&id.revision);
        return (!id.revision.contains('/') && complete(&dir)).then_some(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| complete(p))
        .collect();
    dirs.sort();
    dirs.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_parse_with_an_optional_revision() {
        let id = HubId::parse("Salesforce/blip-image-captioning-base").expect("id");
        assert_eq!(id.revision, "main");
        assert_eq!(
            id.folder(),
            "models--Salesforce--blip-image-captioning-base"
        );
        assert_eq!(
            download_command(&id.to_string()),
            "`huggingface-cli download Salesforce/blip-image-captioning-base` or \
             `hf download Salesforce/blip-image-captioning-base`"
        );
        let id = HubId::parse("org/name@refs/pr/1").expect("id with revision");
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("org/name", "refs/pr/1")
        );
        assert_eq!(id.to_string(), "org/name@refs/pr/1");
        assert_eq!(
            download_command(&id.to_string()),
            "`huggingface-cli download org/name --revision refs/pr/1` or \
             `hf download org/name --revision refs/pr/1`"
        );
        for bad in [
            "name",
            "org/",
            "/name",
            "a/b/c",
            "../x",
            "./x",
            "org/..",
            "org/n@",
            "org/n@a/../b",
            "org/n m",
        ] {
            assert_eq!(HubId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let hub = HubOptions {
            endpoint: HubOptions::DEFAULT_ENDPOINT.into(),
            cache_dir: None,
            offline: false,
            token: Some("hf_secret".into()),
        };
        let shown = format!("{hub:?}");
        assert!(
            !shown.contains("hf_secret") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
