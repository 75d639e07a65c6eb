//! The `encode` artifact: every image's vision-encoder output, computed once.
//!
//! `features.bin` holds the images in the collate artifact's order, each `[N, E]` row-major,
//! little-endian f32 or f16; `features.json` ([`FeaturesMeta`]) says how to read it and what
//! it was computed from, so train can refuse features of another model or another collate.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Why an encode artifact cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FeaturesError {
    let path = path.to_path_buf();
    move |source| FeaturesError::Io {
        action,
        path,
        source,
    }
}

pub const META: &str = "features.json";
pub const DATA: &str = "features.bin";
/// The version of the layout below.
pub const FORMAT: u32 = 1;

/// How an encode artifact differs from what a stage would compute itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Other images, or another order: another collate artifact.
    Collate,
    /// Another vision encoder.
    Vision,
}

/// Element type on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F16,
}

impl Dtype {
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
}

/// `features.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesMeta {
    pub format: u32,
    pub dtype: Dtype,
    /// Images, in the collate artifact's order.
    pub images: usize,
    /// N: image tokens per image (patches + CLS).
    pub tokens: usize,
    /// E: the vision encoder's hidden size.
    pub width: usize,
    /// blake3 of the vision encoder's weights ([`vision_fingerprint`]).
    pub vision: String,
    /// blake3 of the collate artifact's `images.jsonl` (which images, in which order).
    pub collate: String,
    /// The model source the features were computed with (informational).
    pub model: String,
}

/// blake3 over the vision encoder's parameters (names in module order, shapes, f32 values):
/// equal exactly when the vision encoder computes the same function.
pub fn vision_fingerprint<B: Backend, M: Module<B>>(vision: &M) -> String {
    struct Hasher(blake3::Hasher);
    impl<B: Backend> ModuleVisitor<B> for Hasher {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let t = param.val();
            for d in t.dims() {
                self.0.update(&(d as u64).to_le_bytes());
            }
            let data = t.into_data().convert::<f32>();
            self.0.update(data.as_bytes());
        }
    }
    let mut h = Hasher(blake3::Hasher::new());
    vision.visit(&mut h);
    h.0.finalize().to_hex().to_string()
}

/// blake3 of a collate artifact's image list.
pub fn collate_fingerprint(collate_dir: &Path) -> Result<String, FeaturesError> {
    let path = collate_dir.join("images.jsonl");
    let bytes = std::fs::read(&path).map_err(io("read", &path))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Appends images' features to `features.bin`.
pub struct FeatureWriter {
    path: PathBuf,
    out: BufWriter<File>,
    dtype: Dtype,
    buf: Vec<u8>,
}

impl FeatureWriter {
    pub fn create(dir: &Path, dtype: Dtype) -> Result<Self, FeaturesError> {
        let path = dir.join(DATA);
        let file = File::create(&path).map_err(io("create", &path))?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            dtype,
            buf: Vec::new(),
        })
    }

    /// Append values (any number of whole images).
    pub fn push(&mut self, values: &[f32]) -> Result<(), FeaturesError> {
        self.buf.clear();
        match self.dtype {
            Dtype::F32 => self.buf.extend(values.iter().flat_map(|v| v.to_le_bytes())),
            Dtype::F16 => self.buf.extend(
                values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes()),
            ),
        }
        self.out
            .write_all(&self.buf)
            .map_err(io("write", &self.path))
    }

    pub fn finish(self) -> Result<(), FeaturesError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| io("write", &self.path)(e.into_error()))?;
        file.sync_all().map_err(io("sync", &self.path))
    }
}

impl FeaturesMeta {
    /// Write `features.json` into `dir` (pretty JSON).
    pub fn write(&self, dir: &Path) -> Result<(), FeaturesError> {
        let path = dir.join(META);
        let text = serde_json::to_vec_pretty(self).map_err(|e| FeaturesError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(io("write", &path))
    }
}

/// An encode artifact opened for reading.
pub struct Features {
    pub meta: FeaturesMeta,
    path: PathBuf,
    file: File,
}

impl Features {
    /// Open `dir`'s features, checking the file holds exactly what its metadata says.
    pub fn open(dir: &Path) -> Result<Self, FeaturesError> {
        let meta_path = dir.join(META);
        let bad = |message: String| FeaturesError::Invalid {
            path: meta_path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&meta_path).map_err(io("read", &meta_path))?;
        let meta: FeaturesMeta =
            serde_json::from_str(&text).map_err(|e| bad(format!("not an encode artifact: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "format {} is not the supported {FORMAT}; rerun encode",
                meta.format
            )));
        }
        let path = dir.join(DATA);
        let file = File::open(&path).map_err(io("open", &path))?;
        let len = file.metadata().map_err(io("stat", &path))?.len();
        let expected = (meta.images * meta.tokens * meta.width * meta.dtype.bytes()) as u64;
        if len != expected {
            return Err(bad(format!(
                "{} has {len} bytes, {expected} expected; rerun encode",
                path.display()
            )));
        }
        Ok(Self { meta, path, file })
    }

    /// Values per image (N·E).
    pub fn image_len(&self) -> usize {
        self.meta.tokens * self.meta.width
    }

    /// The features of images `indices` as a `[I, N, E]` tensor on `device`.
    pub fn embeds<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> Result<Tensor<B, 3>, FeaturesError> {
        let n = self.image_len();
        let mut values = vec![0f32; indices.len() * n];
        let mut raw = vec![0u8; n * self.meta.dtype.bytes()];
        for (&i, out) in indices.iter().zip(values.chunks_mut(n)) {
            self.read_with(i, &mut raw, out)?;
        }
        let shape = [indices.len(), self.meta.tokens, self.meta.width];
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// Why these features are not the output of `vision` over the images of the collate
    /// artifact in `collate_dir` (`images` of them, in its order), if they are not.
    pub fn mismatch<B: Backend, M: Module<B>>(
        &self,
        vision: &M,
        collate_dir: &Path,
        images: usize,
    ) -> Result<Option<Mismatch>, FeaturesError> {
        Ok(
            if self.meta.images != images || self.meta.collate != collate_fingerprint(collate_dir)?
            {
                Some(Mismatch::Collate)
            } else if self.meta.vision != vision_fingerprint(vision) {
                Some(Mismatch::Vision)
            } else {
                None
            },
        )
    }

    /// Image `index`'s features into `out` (`image_len()` values).
    pub fn read_into(&self, index: usize, out: &mut [f32]) -> Result<(), FeaturesError> {
        let mut raw = vec![0u8; self.image_len() * self.meta.dtype.bytes()];
        self.read_with(index, &mut raw, out)
    }

    /// [`Self::read_into`] through the caller's buffer `raw` (one image's bytes).
    fn read_with(
        &self,
        index: usize,
        raw: &mut [u8],
        out: &mut [f32],
    ) -> Result<(), FeaturesError> {
        self.file
            .read_exact_at(raw, (index * raw.len()) as u64)
            .map_err(io("read", &self.path))?;
        match self.meta.dtype {
            Dtype::F32 => {
                for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Dtype::F16 => {
                for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `features.json` for `images` images of 3 tokens × 4 values.
    fn write_meta(dir: &Path, dtype: Dtype, images: usize) {
        let meta = FeaturesMeta {
            format: FORMAT,
            dtype,
            images,
            tokens: 3,
            width: 4,
            vision: String::new(),
            collate: String::new(),
            model: String::new(),
        };
        std::fs::write(dir.join(META), serde_json::to_string(&meta).expect("json")).expect("write");
    }

    fn roundtrip(dtype: Dtype) -> Vec<f32> {
        let dir = tempfile::tempdir().expect("tmp");
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.37 - 4.0).collect();
        let mut w = FeatureWriter::create(dir.path(), dtype).expect("create");
        w.push(&values).expect("push");
        w.finish().expect("finish");
        write_meta(dir.path(), dtype, 2);
        let f = Features::open(dir.path()).expect("open");
        let mut out = vec![0f32; 12];
        f.read_into(1, &mut out).expect("read");
        assert_eq!(values[12..].len(), out.len());
        out
    }

    #[test]
    fn f32_is_exact_and_f16_is_close() {
        let values: Vec<f32> = (12..24).map(|i| i as f32 * 0.37 - 4.0).collect();
        assert_eq!(roundtrip(Dtype::F32), values);
        for (a, b) in roundtrip(Dtype::F16).iter().zip(&values) {
            assert!((a - b).abs() <= b.abs() * 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = FeatureWriter::create(dir.path(), Dtype::F32).expect("create");
        w.push(&[1.0; 10]).expect("push");
        w.finish().expect("finish");
        write_meta(dir.path(), Dtype::F32, 1);
        let err = Features::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("40 bytes, 48 expected"), "{err}");
    }
}
