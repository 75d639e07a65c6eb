//! Exports: the merged model as a Hugging Face checkpoint (`model.safetensors` with HF tensor
//! names, PyTorch `[out, in]` Linear layout, LayerNorm `weight`/`bias`, the tied LM decoder
//! omitted as transformers saves it) and the LoRA adapter in PEFT's format.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use pipe_blip::Blip;
use pipe_blip::weights::checkpoint_tensors;
use safetensors::tensor::{Dtype, TensorView};

use crate::error::TrainError;
use crate::lora::{LoraAdapter, LoraSpec};

/// A named f32 tensor on the host.
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

fn export_err(path: &Path) -> impl Fn(String) -> TrainError + '_ {
    move |message| TrainError::Export {
        path: path.to_path_buf(),
        message,
    }
}

/// Write `tensors` as a safetensors file with `{"format": "pt"}` metadata (transformers
/// requires it).
pub fn write_safetensors(
    tensors: &BTreeMap<String, HostTensor>,
    path: &Path,
) -> Result<(), TrainError> {
    let err = export_err(path);
    let bytes: Vec<(&String, Vec<u8>, &Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            let b = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (n, b, &t.shape)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, s)| {
            TensorView::new(Dtype::F32, s.to_vec(), b)
                .map(|v| (n.as_str(), v))
                .map_err(|e| err(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize_to_file(views, Some(meta), path).map_err(|e| err(e.to_string()))
}

/// The model's tensors under their HF names, in PyTorch layout.
pub fn hf_tensors<B: Backend>(model: &Blip<B>) -> Result<BTreeMap<String, HostTensor>, String> {
    let mut out = BTreeMap::new();
    for (name, s) in checkpoint_tensors(model) {
        let data = s
            .to_data()
            .map_err(|e| format!("{name}: {e:?}"))?
            .convert_dtype(DType::F32);
        let shape = data.shape.to_vec();
        let values = data
            .into_vec::<f32>()
            .map_err(|e| format!("{name}: {e:?}"))?;
        out.insert(name, HostTensor { shape, values });
    }
    Ok(out)
}

/// Write the merged checkpoint into `dir` (config.json, tokenizer.json and
/// preprocessor_config.json are copied from `source_dir` when present).
pub fn write_hf_model<B: Backend>(
    model: &Blip<B>,
    source_dir: &Path,
    dir: &Path,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io("create", dir))?;
    let path = dir.join("model.safetensors");
    let tensors = hf_tensors(model).map_err(export_err(&path))?;
    write_safetensors(&tensors, &path)?;
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        let src = source_dir.join(f);
        if src.is_file() {
            let dst = dir.join(f);
            std::fs::copy(&src, &dst).map_err(TrainError::io("copy", &src))?;
        }
    }
    Ok(())
}

fn host<B: Backend>(t: Tensor<B, 2>) -> Result<HostTensor, String> {
    let data = t.into_data().convert_dtype(DType::F32);
    let shape = data.shape.to_vec();
    let values = data.into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    Ok(HostTensor { shape, values })
}

/// Write `adapter_model.safetensors` and `adapter_config.json` (PEFT's LoRA format) into `dir`.
pub fn write_peft_adapter<B: Backend>(
    adapter: &LoraAdapter<B>,
    spec: &LoraSpec,
    dropout: f64,
    targets: &[String],
    base_model: &str,
    dir: &Path,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io("create", dir))?;
    let path = dir.join("adapter_model.safetensors");
    let err = export_err(&path);
    let mut tensors = BTreeMap::new();
    for (name, layer) in spec.names.iter().zip(&adapter.layers) {
        // PyTorch's lora_A is Linear(in, r): weight [r, in] = Aᵀ; lora_B: [out, r] = Bᵀ.
        let a = host(layer.a.val().transpose()).map_err(&err)?;
        let b = host(layer.b.val().transpose()).map_err(&err)?;
        tensors.insert(format!("base_model.model.{name}.lora_A.weight"), a);
        tensors.insert(format!("base_model.model.{name}.lora_B.weight"), b);
    }
    write_safetensors(&tensors, &path)?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": base_model,
        "r": spec.r,
        "lora_alpha": spec.alpha,
        "lora_dropout": dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_rslora": false,
        "use_dora": false,
        "revision": null,
    });
    let p = dir.join("adapter_config.json");
    write_json(&p, &config)
}

/// Pretty JSON to `path`.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| TrainError::Export {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(TrainError::io("write", path))
}
