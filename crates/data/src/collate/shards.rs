//! The collate artifact's files, their writer and their reader ([`Collated`]).
//!
//! ```text
//! collate.json   {"format": 1, "model": "/abs/model/dir", "height": 384, "width": 384,
//!                 "image_bytes": 442368, "preprocessor": {..preprocessor_config.json..},
//!                 "special": {"bos": 30522, "sep": 102, "pad": 0}, "max_length": 40,
//!                 "prompt": "", "prompt_len": 1,
//!                 "shards": [{"file": "pixels/shard-00000.bin", "images": 592, "bytes": ..}],
//!                 "splits": {"train": {"images": N, "captions": M}, ..}}
//! images.jsonl   one line per image, in prep's order:
//!                {"id": "a.jpg", "split": "train", "shard": 0, "offset": 0,
//!                 "captions": [{"text": "...", "ids": [30522, .., 102], "prompt_len": 1}, ..]}
//! pixels/shard-NNNNN.bin   resized RGB8 images, HWC, `image_bytes` each, back to back;
//!                an image is the `image_bytes` at `offset` of shard `shard`.
//! summary.json   {"splits": {..}, "images": N, "captions": M, "truncated_captions": K,
//!                 "pixel_bytes": B, "max_tokens": T}
//! ```
//! Pixels are stored before rescaling and normalisation (exact, 4× smaller than f32); the
//! reader applies them ([`Normalizer`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::{PreprocessorConfig, SpecialTokens};
use super::error::{CollateError, read_json};
use super::pixels::Normalizer;
use super::tokenize::{Batch, TokenizedCaption, pad_batch};
use crate::prep::{Split, SplitCounts};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub images: usize,
    pub bytes: u64,
}

/// `collate.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollateMeta {
    pub format: u32,
    pub model: String,
    pub height: u32,
    pub width: u32,
    pub image_bytes: u64,
    pub preprocessor: PreprocessorConfig,
    pub special: SpecialTokens,
    pub max_length: usize,
    pub prompt: String,
    pub prompt_len: usize,
    pub shards: Vec<ShardInfo>,
    pub splits: BTreeMap<Split, SplitCounts>,
}

/// One line of `images.jsonl`: an image, where its pixels are, and its tokenized captions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollatedImage {
    pub id: String,
    pub split: Split,
    pub shard: usize,
    pub offset: u64,
    pub captions: Vec<TokenizedCaption>,
}

/// Appends fixed-size images to shard files of at most `max_bytes` each.
pub struct ShardWriter {
    dir: PathBuf,
    max_bytes: u64,
    current: Option<BufWriter<File>>,
    pub shards: Vec<ShardInfo>,
}

impl ShardWriter {
    pub fn new(out_dir: &Path, max_bytes: u64) -> Result<Self, CollateError> {
        let dir = out_dir.join("pixels");
        std::fs::create_dir_all(&dir).map_err(|source| CollateError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            max_bytes,
            current: None,
            shards: Vec::new(),
        })
    }

    /// Append one image; returns (shard, offset).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(usize, u64), CollateError> {
        let full = self
            .shards
            .last()
            .is_none_or(|s| s.images > 0 && s.bytes + bytes.len() as u64 > self.max_bytes);
        if full || self.current.is_none() {
            self.close_current()?;
            let name = format!("pixels/shard-{:05}.bin", self.shards.len());
            let path = self.dir.join(format!("shard-{:05}.bin", self.shards.len()));
            let file =
                File::create(&path).map_err(|source| CollateError::Write { path, source })?;
            self.current = Some(BufWriter::with_capacity(1 << 20, file));
            self.shards.push(ShardInfo {
                file: name,
                images: 0,
                bytes: 0,
            });
        }
        let index = self.shards.len().saturating_sub(1);
        let (Some(w), Some(info)) = (self.current.as_mut(), self.shards.last_mut()) else {
            return Err(CollateError::Write {
                path: self.dir.clone(),
                source: std::io::Error::other("no open shard"),
            });
        };
        let path = self.dir.join(format!("shard-{index:05}.bin"));
        w.write_all(bytes)
            .map_err(|source| CollateError::Write { path, source })?;
        let at = (index, info.bytes);
        info.bytes += bytes.len() as u64;
        info.images += 1;
        Ok(at)
    }

    fn close_current(&mut self) -> Result<(), CollateError> {
        if let Some(mut w) = self.current.take() {
            w.flush().map_err(|source| CollateError::Write {
                path: self.dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<ShardInfo>, CollateError> {
        self.close_current()?;
        Ok(self.shards)
    }
}

/// A collate artifact opened for training: per image, its normalised pixels and its
/// tokenized captions.
pub struct Collated {
    pub dir: PathBuf,
    pub meta: CollateMeta,
    pub images: Vec<CollatedImage>,
    normalizer: Normalizer,
    shards: Vec<File>,
}

impl Collated {
    pub fn open(dir: &Path) -> Result<Self, CollateError> {
        let meta_path = dir.join("collate.json");
        let meta: CollateMeta = read_json(&meta_path)?;
        if meta.format != FORMAT {
            return Err(CollateError::Artifact {
                path: meta_path,
                message: format!(
                    "collate artifact format {} is not the supported {FORMAT}; rerun collate",
                    meta.format
                ),
            });
        }
        let list = dir.join("images.jsonl");
        let text = std::fs::read_to_string(&list).map_err(|source| CollateError::Read {
            path: list.clone(),
            source,
        })?;
        let mut images = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let img: CollatedImage =
                serde_json::from_str(line).map_err(|e| CollateError::Artifact {
                    path: list.clone(),
                    message: format!("line {}: {e}", i + 1),
                })?;
            if img.shard >= meta.shards.len()
                || img.offset + meta.image_bytes > meta.shards[img.shard].bytes
            {
                return Err(CollateError::Artifact {
                    path: list.clone(),
                    message: format!(
                        "line {}: pixels of `{}` lie outside the shards",
                        i + 1,
                        img.id
                    ),
                });
            }
            images.push(img);
        }
        let shards = meta
            .shards
            .iter()
            .map(|s| {
                let path = dir.join(&s.file);
                File::open(&path).map_err(|source| CollateError::Read { path, source })
            })
            .collect::<Result<_, _>>()?;
        let normalizer = Normalizer::new(&meta.preprocessor);
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            images,
            normalizer,
            shards,
        })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// (height, width) of every image's pixels.
    pub fn image_size(&self) -> (u32, u32) {
        (self.meta.height, self.meta.width)
    }

    /// Indices (into [`Collated::images`]) of one split's images.
    pub fn split_indices(&self, split: Split) -> Vec<usize> {
        self.images
            .iter()
            .enumerate()
            .filter(|(_, im)| im.split == split)
            .map(|(i, _)| i)
            .collect()
    }

    /// The tokenized captions of image `index`.
    pub fn captions(&self, index: usize) -> &[TokenizedCaption] {
        self.images
            .get(index)
            .map_or(&[], |im| im.captions.as_slice())
    }

    /// The special tokens captions are framed with (`pad` for [`pad_batch`]).
    pub fn special(&self) -> SpecialTokens {
        self.meta.special
    }

    /// Pad some captions into a batch (`pad_to`: a fixed length, else the longest).
    pub fn batch(&self, captions: &[&TokenizedCaption], pad_to: Option<usize>) -> Batch {
        pad_batch(captions, self.meta.special.pad, pad_to)
    }

    /// The stored RGB8 pixels of image `index` (HWC, `height × width × 3`).
    pub fn rgb8(&self, index: usize) -> Result<Vec<u8>, CollateError> {
        let Some(im) = self.images.get(index) else {
            return Err(CollateError::Artifact {
                path: self.dir.clone(),
                message: format!(
                    "image index {index} out of range ({} images)",
                    self.images.len()
                ),
            });
        };
        let mut buf = vec![0u8; self.meta.image_bytes as usize];
        let path = self.dir.join(&self.meta.shards[im.shard].file);
        read_at(&self.shards[im.shard], &mut buf, im.offset)
            .map_err(|source| CollateError::Read { path, source })?;
        Ok(buf)
    }

    /// The model's `pixel_values` for image `index`: normalised f32, CHW (`3 × h × w`).
    pub fn pixels(&self, index: usize) -> Result<Vec<f32>, CollateError> {
        Ok(self.normalizer.to_chw(&self.rgb8(index)?))
    }

    /// Like [`Collated::pixels`], into a caller's buffer of `3 × h × w` values (for batching).
    pub fn pixels_into(&self, index: usize, out: &mut [f32]) -> Result<(), CollateError> {
        let rgb = self.rgb8(index)?;
        if out.len() != rgb.len() {
            return Err(CollateError::Artifact {
                path: self.dir.clone(),
                message: format!(
                    "pixel buffer holds {} values, an image needs {}",
                    out.len(),
                    rgb.len()
                ),
            });
        }
        self.normalizer.to_chw_into(&rgb, out);
        Ok(())
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}
