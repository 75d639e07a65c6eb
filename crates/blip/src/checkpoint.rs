//! What a `model.safetensors` holds, read from its header alone (the `safetensors` crate over a
//! memory map: offsets are validated, no tensor data is read), and checked against the config
//! **before** the model is allocated: a config whose sizes the file does not have would
//! otherwise allocate them (1,000,000 layers: 12.6 GB), and a float tensor labelled `I32`
//! would reach Burn's loader, which panics on it.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::config::BlipConfig;
use crate::weights::{IGNORED, LoadError};

/// The most names a message lists; the rest are counted.
pub const LISTED: usize = 10;

/// `names` joined with `, `, at most [`LISTED`] of them, then "… and N more".
pub fn listed(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        text.push_str(&format!(" … and {} more", names.len() - LISTED));
    }
    text
}

/// Every tensor of the file: name → (dtype, shape).
pub struct Header {
    pub tensors: BTreeMap<String, (Dtype, Vec<usize>)>,
}

impl Header {
    /// Read and validate the header of the safetensors file `path`.
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        let invalid = |message: String| LoadError::Tensor {
            path: shown.clone(),
            name: String::new(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| invalid(format!("cannot open: {e}")))?;
        // SAFETY: the map is only read, while this function runs; a file truncated meanwhile
        // can fault, as with any reader of a file being rewritten (the cache seals its files).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| invalid(format!("cannot map: {e}")))?;
        let st = SafeTensors::deserialize(&map)
            .map_err(|e| invalid(format!("not a valid safetensors file: {e}")))?;
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, (view.dtype(), view.shape().to_vec())))
            .collect();
        Ok(Self { tensors })
    }

    /// Every tensor the model reads is a float tensor (the ignored buffers may be integers).
    pub fn check_dtypes(&self, path: &Path) -> Result<(), LoadError> {
        let bad: Vec<String> = self
            .tensors
            .iter()
            .filter(|(name, (dtype, _))| {
                !IGNORED.contains(&name.as_str())
                    && !matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
            })
            .map(|(name, (dtype, _))| format!("{name} ({dtype:?})"))
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        Err(LoadError::DType {
            path: path.display().to_string(),
            names: bad,
        })
    }

    /// The sizes that decide how much the model allocates, as the file has them: layer counts,
    /// vocabulary, hidden and intermediate widths, the patch grid.
    pub fn check_config(&self, config: &BlipConfig, path: &Path) -> Result<(), LoadError> {
        let (t, v) = (&config.text_config, &config.vision_config);
        let layers = |prefix: &str| {
            self.tensors
                .keys()
                .filter_map(|n| {
                    n.strip_prefix(prefix)?
                        .split('.')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .max()
                .map_or(0, |i| i + 1)
        };
        let text = "text_decoder.bert.encoder.layer.";
        let vision = "vision_model.encoder.layers.";
        let counts = [
            (
                "text_config.num_hidden_layers",
                t.num_hidden_layers,
                layers(text),
            ),
            (
                "vision_config.num_hidden_layers",
                v.num_hidden_layers,
                layers(vision),
            ),
        ];
        for (key, wanted, found) in counts {
            if wanted != found {
                return Err(LoadError::Layers {
                    path: path.display().to_string(),
                    key,
                    wanted,
                    found,
                });
            }
        }
        let shapes: [(&str, Vec<usize>); 4] = [
            (
                "text_decoder.bert.embeddings.word_embeddings.weight",
                vec![t.vocab_size, t.hidden_size],
            ),
            (
                "text_decoder.bert.embeddings.position_embeddings.weight",
                vec![t.max_position_embeddings, t.hidden_size],
            ),
            (
                "text_decoder.bert.encoder.layer.0.intermediate.dense.weight",
                vec![t.intermediate_size, t.hidden_size],
            ),
            (
                "vision_model.embeddings.position_embedding",
                vec![1, v.num_positions(), v.hidden_size],
            ),
        ];
        for (name, expected) in shapes {
            match self.tensors.get(name) {
                Some((_, found)) if *found != expected => {
                    return Err(LoadError::Shape {
                        path: path.display().to_string(),
                        name: name.to_string(),
                        expected,
                        found: found.clone(),
                    });
                }
                // Absent: the loader names every missing tensor.
                _ => {}
            }
        }
        Ok(())
    }
}
