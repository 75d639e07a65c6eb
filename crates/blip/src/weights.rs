//! Loading `model.safetensors` into [`Blip`] through burn-store, and the model's tensors under
//! their checkpoint names for an export.
//!
//! The module tree follows the checkpoint's tensor names, with the renames of [`RENAMES`] (Rust
//! field names are snake_case and `self` is a keyword; Burn's LayerNorm calls its affine
//! parameters `gamma`/`beta`). The one table is applied in both directions: checkpoint →
//! module path when loading, module path → checkpoint name when reporting and exporting.
//! burn-store's PyTorch adapters transpose Linear weights (`[out, in]` ↔ `[in, out]`). Every
//! parameter must be found with its exact shape and every tensor of the file must be used,
//! except the ones listed in [`IGNORED`].

use std::path::Path;
use std::rc::Rc;

use burn::store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore, TensorSnapshot,
};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element};
use pipe_hub::ModelDir;

use crate::checkpoint::{Header, listed};
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

/// Checkpoint name ↔ module path, as whole `.`-separated segments: the only places where the
/// module tree does not spell the checkpoint's names.
pub const RENAMES: &[(&str, &str)] = &[
    // The attention's query/key/value block: `self` is a Rust keyword.
    ("self", "projections"),
    // LayerNorms: snake_case fields; PyTorch's `weight`/`bias` are Burn's `gamma`/`beta`.
    ("LayerNorm.weight", "layer_norm.gamma"),
    ("LayerNorm.bias", "layer_norm.beta"),
    ("layer_norm1.weight", "layer_norm1.gamma"),
    ("layer_norm1.bias", "layer_norm1.beta"),
    ("layer_norm2.weight", "layer_norm2.gamma"),
    ("layer_norm2.bias", "layer_norm2.beta"),
    ("post_layernorm.weight", "post_layernorm.gamma"),
    ("post_layernorm.bias", "post_layernorm.beta"),
    // The text attention's projections are `LoraLinear`s: the checkpoint's Linear is their
    // `base`.
    ("query", "query.base"),
    ("key", "key.base"),
    ("value", "value.base"),
];

/// Which way [`rename`] reads [`RENAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Checkpoint name → module path.
    ToModule,
    /// Module path → checkpoint name.
    ToCheckpoint,
}

/// `name` with [`RENAMES`] applied in `direction`.
pub fn rename(name: &str, direction: Direction) -> String {
    let mut s = format!(".{name}.");
    for (hf, burn) in RENAMES {
        let (from, to) = match direction {
            Direction::ToModule => (hf, burn),
            Direction::ToCheckpoint => (burn, hf),
        };
        s = s.replace(&format!(".{from}."), &format!(".{to}."));
    }
    s[1..s.len() - 1].to_string()
}

/// The checkpoint name of module path `path`.
pub fn checkpoint_name(path: &str) -> String {
    rename(path, Direction::ToCheckpoint)
}

/// [`RENAMES`] (checkpoint → module) as burn-store's regex key remapper. Renaming before
/// matching (rather than through the adapter's fallback lookup) keeps burn-store's "unused
/// tensor" report exact.
fn remapper() -> Result<KeyRemapper, String> {
    let escape = |s: &str| s.replace('.', r"\.");
    KeyRemapper::from_patterns(
        RENAMES
            .iter()
            .map(|(hf, burn)| {
                (
                    format!(r"(^|\.){}(\.|$)", escape(hf)),
                    format!("${{1}}{burn}${{2}}"),
                )
            })
            .collect(),
    )
    .map_err(|e| e.to_string())
}

/// Why a checkpoint's weights could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
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
    #[error("{path}: missing tensor(s) {}", listed(.names))]
    Missing { path: String, names: Vec<String> },
    #[error("{path}: unused tensor(s) {} (not a BlipForConditionalGeneration checkpoint of this config?)", listed(.names))]
    Unused { path: String, names: Vec<String> },
    #[error("{path}: tensor(s) {} are not floating point; a BLIP checkpoint's weights are F32, F16 or BF16", listed(.names))]
    DType { path: String, names: Vec<String> },
    #[error("config.json's {key} is {wanted}, but {path} has {found} such layers")]
    Layers {
        path: String,
        key: &'static str,
        wanted: usize,
        found: usize,
    },
}

/// Read the config and the weights of `dir` onto `device`.
pub fn load_model<B: Backend>(
    dir: &ModelDir,
    device: &B::Device,
) -> Result<(BlipConfig, Blip<B>), LoadError> {
    let config = BlipConfig::from_file(&dir.config_path())?;
    let path = dir.weights_path();
    // Before allocating: the config's sizes must be the file's (and its weights floats).
    let header = Header::read(&path)?;
    header.check_config(&config, &path)?;
    header.check_dtypes(&path)?;
    let model = fill(Blip::new(&config, device), &path)?;
    Ok((config, model))
}

/// Fill `model` from a safetensors file in the Hugging Face layout.
pub fn load_weights<B: Backend>(model: Blip<B>, path: &Path) -> Result<Blip<B>, LoadError> {
    // Burn's loader panics on an integer tensor where a float parameter is (and the unwind
    // then crashed): refuse it first.
    Header::read(path)?.check_dtypes(path)?;
    fill(model, path)
}

/// [`load_weights`] once the header has been checked.
fn fill<B: Backend>(mut model: Blip<B>, path: &Path) -> Result<Blip<B>, LoadError> {
    let shown = path.display().to_string();
    let remap = remapper().map_err(|message| LoadError::Tensor {
        path: shown.clone(),
        name: String::new(),
        message,
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
    let hf = checkpoint_name;
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

/// The model's tensors under their checkpoint names, in PyTorch layout (Linear weights
/// `[out, in]`), as an export writes them; the tied LM decoder is not among them.
pub fn checkpoint_tensors<B: Backend>(model: &Blip<B>) -> Vec<(String, TensorSnapshot)> {
    // Named from the module path before the adapter, which renames norm parameters itself.
    model
        .collect(None, None, false)
        .into_iter()
        .map(|s| {
            (
                checkpoint_name(&s.full_path()),
                BurnToPyTorchAdapter.adapt(&s),
            )
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_go_both_ways() {
        for (hf, module) in [
            (
                "text_decoder.bert.encoder.layer.0.attention.self.query.weight",
                "text_decoder.bert.encoder.layer.0.attention.projections.query.base.weight",
            ),
            (
                "text_decoder.bert.embeddings.LayerNorm.bias",
                "text_decoder.bert.embeddings.layer_norm.beta",
            ),
            (
                "vision_model.encoder.layers.3.layer_norm1.weight",
                "vision_model.encoder.layers.3.layer_norm1.gamma",
            ),
            (
                "vision_model.encoder.layers.3.self_attn.qkv.weight",
                "vision_model.encoder.layers.3.self_attn.qkv.weight",
            ),
            (
                "vision_model.post_layernorm.bias",
                "vision_model.post_layernorm.beta",
            ),
        ] {
            assert_eq!(rename(hf, Direction::ToModule), module);
            assert_eq!(checkpoint_name(module), hf);
        }
        let remap = remapper().expect("patterns");
        let (from, to) = &remap.to_regex_pairs()[1];
        assert_eq!(
            from.replace("text_decoder.bert.embeddings.LayerNorm.weight", to.as_str()),
            "text_decoder.bert.embeddings.layer_norm.gamma"
        );
    }
}
