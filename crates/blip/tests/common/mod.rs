//! Shared helpers for the integration tests: the fixture's location and reference tensors.
#![allow(dead_code)]

use std::path::Path;

use serde_json::{Map, Value};

use burn::store::{ModuleStore, SafetensorsStore};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, ElementConversion, Tensor};

pub type Cpu = pipe_backend::CpuBackend;

/// A tensor of reference.safetensors as f32, on any backend.
pub fn reference_tensor<B: Backend, const D: usize>(
    dir: &std::path::Path,
    name: &str,
    device: &B::Device,
) -> Tensor<B, D> {
    let mut store = SafetensorsStore::from_file(dir.join("reference/reference.safetensors"));
    let snap = store
        .get_snapshot(name)
        .expect("read reference")
        .expect("tensor present");
    let data = snap
        .to_data()
        .expect("tensor data")
        .convert_dtype(DType::F32);
    Tensor::from_data(data, device)
}

/// max |a - b| over all elements.
pub fn max_abs_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes");
    (a - b).abs().max().into_scalar().elem()
}

/// A tensor of a safetensors file: name, dtype, shape, little-endian bytes.
pub type RawTensor = (String, String, Vec<usize>, Vec<u8>);

/// Rewrite the fixture's model.safetensors through `edit` (name → (dtype, shape, bytes)).
pub fn rewrite(dir: &Path, out: &Path, edit: impl FnOnce(&mut Vec<RawTensor>)) {
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let data = &bytes[8 + n..];
    let mut tensors: Vec<RawTensor> = header
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(k, v)| {
            let off: Vec<usize> = v["data_offsets"]
                .as_array()
                .expect("offsets")
                .iter()
                .map(|x| x.as_u64().expect("u64") as usize)
                .collect();
            let shape = v["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|x| x.as_u64().expect("u64") as usize)
                .collect();
            (
                k.clone(),
                v["dtype"].as_str().expect("dtype").to_string(),
                shape,
                data[off[0]..off[1]].to_vec(),
            )
        })
        .collect();
    edit(&mut tensors);
    let mut header = Map::new();
    let mut body = Vec::new();
    for (name, dtype, shape, b) in &tensors {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [body.len(), body.len() + b.len()]}),
        );
        body.extend_from_slice(b);
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).expect("json");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend(h);
    file.extend(body);
    std::fs::write(out, file).expect("write");
}
