//! Finding a checkpoint and loading `model.safetensors` into [`Blip`] through burn-store.
//!
//! The module tree carries the checkpoint's own tensor names, with one rename Rust forces:
//! `…attention.self.query` is `…attention.self_.query` here (`self` is a keyword). burn-store's
//! PyTorch adapter transposes Linear weights (`[out, in]` → `[in, out]`) and maps LayerNorm
//! `weight/bias` to Burn's `gamma/beta`. Every parameter must be found with its exact shape and
//! every tensor of the file must be used, except the ones listed in [`IGNORED`].

use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::store::{
    KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
    TensorSnapshot,
};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element};

use crate::config::{BlipConfig, ConfigError};
use crate::model::Blip;

/// Tensors a checkpoint may hold that the model deliberately does not read:
/// - the LM head's `decoder` is tied to `word_embeddings` (and its bias to `predictions.bias`);
///   files saved with tied weights omit it, others store a copy;
/// - `position_ids` buffers that older transformers versions saved.
pub const IGNORED: &[&str] = &[
    "text_decoder.cls.predictions.decoder.weight",
    "text_decoder.cls.predictions.decoder.bias",
    "text_decoder.bert.embeddings.position_ids",
];

/// Checkpoint name → module path, applied before matching:
/// - `self` is a Rust keyword, so the attention's `self` block is the field `self_`;
/// - Burn's LayerNorm calls its affine parameters `gamma`/`beta` (PyTorch: `weight`/`bias`).
///   Renaming here (rather than through the adapter's fallback lookup) keeps burn-store's
///   "unused tensor" report exact.
const RENAMES: &[(&str, &str)] = &[
    (r"\.self\.", ".self_."),
    (
        r"(LayerNorm|layer_norm1|layer_norm2|post_layernorm)\.weight$",
        "$1.gamma",
    ),
    (
        r"(LayerNorm|layer_norm1|layer_norm2|post_layernorm)\.bias$",
        "$1.beta",
    ),
];

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "model {source_name:?} is neither a local directory nor in the Hugging Face cache \
         ({cache}); download it first, e.g. `huggingface-cli download {source_name}` \
         (or `hf download {source_name}`) on a machine with network access, or pass a local \
         directory holding config.json, model.safetensors and tokenizer.json"
    )]
    NotFound { source_name: String, cache: String },
    #[error("{dir} has no {file}")]
    MissingFile { dir: String, file: &'static str },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read weights from {path}")]
    Store {
        path: String,
        source: burn::store::SafetensorsStoreError,
    },
    #[error("{path}: tensor {name} has shape {found:?}, the model expects {expected:?}")]
    Shape {
        path: String,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: cannot load tensor {name}: {message}")]
    Tensor {
        path: String,
        name: String,
        message: String,
    },
    #[error("{path}: missing tensor(s) {}", .names.join(", "))]
    Missing { path: String, names: Vec<String> },
    #[error("{path}: unused tensor(s) {} (not a BlipForConditionalGeneration checkpoint of this config?)", .names.join(", "))]
    Unused { path: String, names: Vec<String> },
}

/// A checkpoint directory in the Hugging Face layout.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
}

impl ModelDir {
    /// Resolve a model source: a local directory, or a Hub id (`ORG/NAME`) found in the local
    /// Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`).
    pub fn resolve(source: &str) -> Result<Self, LoadError> {
        let path = Path::new(source);
        if path.is_dir() {
            return Self::checked(path.to_path_buf());
        }
        let cache = hf_cache_dir();
        if let Some(dir) = cache.as_deref().and_then(|c| find_in_hf_cache(c, source)) {
            tracing::info!(model = source, dir = %dir.display(), "using the Hugging Face cache");
            return Self::checked(dir);
        }
        Err(LoadError::NotFound {
            source_name: source.to_string(),
            cache: cache.map_or_else(
                || "no cache directory".to_string(),
                |c| c.display().to_string(),
            ),
        })
    }

    fn checked(dir: PathBuf) -> Result<Self, LoadError> {
        for file in ["config.json", "model.safetensors"] {
            if !dir.join(file).is_file() {
                return Err(LoadError::MissingFile {
                    dir: dir.display().to_string(),
                    file,
                });
            }
        }
        Ok(Self { dir })
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

fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// `ORG/NAME` → `CACHE/models--ORG--NAME/snapshots/<rev>/`: the revision `refs/main` names, else
/// any snapshot that holds a config.json.
fn find_in_hf_cache(cache: &Path, id: &str) -> Option<PathBuf> {
    let (org, name) = id.split_once('/')?;
    if org.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    let repo = cache.join(format!("models--{org}--{name}"));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if dir.join("config.json").is_file() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Read the config and the weights of `dir` onto `device`.
pub fn load_model<B: Backend>(
    dir: &ModelDir,
    device: &B::Device,
) -> Result<(BlipConfig, Blip<B>), LoadError> {
    let config = BlipConfig::from_file(&dir.config_path())?;
    let model = load_weights(Blip::new(&config, device), &dir.weights_path())?;
    Ok((config, model))
}

/// Fill `model` from a safetensors file in the Hugging Face layout.
pub fn load_weights<B: Backend>(mut model: Blip<B>, path: &Path) -> Result<Blip<B>, LoadError> {
    let shown = path.display().to_string();
    let remap = KeyRemapper::from_patterns(RENAMES.to_vec()).map_err(|e| LoadError::Tensor {
        path: shown.clone(),
        name: String::new(),
        message: e.to_string(),
    })?;
    let mut store = SafetensorsStore::from_file(path)
        .remap(remap)
        .with_from_adapter(PyTorchToBurnAdapter.chain(ToDType(<B::FloatElem as Element>::dtype())))
        .allow_partial(true) // missing/unused are reported below, by name
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|source| LoadError::Store {
            path: shown.clone(),
            source,
        })?;

    // Report in the checkpoint's names.
    let hf = |n: &str| {
        let n = n.replace(".self_.", ".self.");
        match n.rsplit_once('.') {
            Some((m, "gamma")) => format!("{m}.weight"),
            Some((m, "beta")) => format!("{m}.bias"),
            _ => n,
        }
    };
    if let Some(e) = result.errors.first() {
        return Err(match e {
            burn::store::ApplyError::ShapeMismatch {
                path: name,
                expected,
                found,
            } => LoadError::Shape {
                path: shown,
                name: hf(name),
                // Burn's layout: Linear weights are [in, out], PyTorch's transposed.
                expected: expected.to_vec(),
                found: found.to_vec(),
            },
            other => LoadError::Tensor {
                path: shown,
                name: String::new(),
                message: other.to_string(),
            },
        });
    }
    if !result.missing.is_empty() {
        let names = result.missing.iter().map(|(n, _)| hf(n)).collect();
        return Err(LoadError::Missing { path: shown, names });
    }
    let unused: Vec<String> = result
        .unused
        .iter()
        .map(|n| hf(n))
        .filter(|n| !IGNORED.contains(&n.as_str()))
        .collect();
    if !unused.is_empty() {
        return Err(LoadError::Unused {
            path: shown,
            names: unused,
        });
    }
    tracing::debug!(tensors = result.applied.len(), path = %shown, "loaded weights");
    Ok(model)
}

/// Casts float tensors to the backend's float type (e.g. an f16/bf16 checkpoint onto the f32
/// CPU backend), so every parameter has the dtype the model computes in.
#[derive(Debug, Clone)]
struct ToDType(DType);

impl ModuleAdapter for ToDType {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let is_float = matches!(
            snapshot.dtype,
            DType::F16 | DType::BF16 | DType::F32 | DType::F64
        );
        if !is_float || snapshot.dtype == self.0 {
            return snapshot.clone();
        }
        let (data, target) = (snapshot.clone_data_fn(), self.0);
        TensorSnapshot::from_closure(
            Rc::new(move || Ok(data()?.convert_dtype(target))),
            target,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}
