//! The prep artifact's files, their writer and their reader.
//!
//! ```text
//! summary.json    {"splits": {"train": {"images": N, "captions": M}, "val": {..}, "test": {..}},
//!                  "skipped": [{"image": "...", "reason": "..."}],
//!                  "cross_split_duplicates": [{"image": "...", "reason": "..."}], "dataset": "flickr8k",
//!                  "split_source": "...", "images_root": "...", "empty_captions_dropped": 0,
//!                  "rejected_rows": [{"file": "...", "line": 7, "reason": "..."}], "sources": [...]}
//! dataset.json    {"format": 2, "dataset": "flickr8k", "images_root": "data/Images",
//!                  "images_base": "project" | "artifact" | "absolute"}
//!                 (`project`: relative to pipeline.toml's directory; `artifact`: inside the
//!                 artifact, the synthetic images; `absolute`: a dataset outside the project.
//!                 No path that depends on where the project lives is stored.)
//! images.jsonl    one line per usable image, in dataset order:
//!                 {"id": "a/b.jpg", "hash": "<blake3 of the file>", "width": 500, "height": 375,
//!                  "split": "train", "captions": ["...", ...]}
//!                 `id` is the path relative to the images root; width/height are upright
//!                 (after EXIF orientation).
//! splits/{train,val,test}.txt   the ids of each split, one per line (for people and tools)
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::PrepError;
use super::split::Split;

pub const FORMAT: u32 = 2;

/// An image left out of the artifact, and why (`summary.json` → `skipped`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub image: String,
    pub reason: String,
}

/// A caption row that could not be used (`summary.json` → `rejected_rows`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowIssue {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// One usable image (a line of `images.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    pub hash: String,
    pub width: u32,
    pub height: u32,
    pub split: Split,
    pub captions: Vec<String>,
}

/// `dataset.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub format: u32,
    pub dataset: String,
    /// Relative to [`Self::images_base`].
    pub images_root: PathBuf,
    pub images_base: ImagesBase,
}

/// What `dataset.json`'s `images_root` is relative to. Never the machine's layout: two
/// checkouts of one project write the same artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagesBase {
    /// The directory of pipeline.toml: a dataset inside the project.
    Project,
    /// The artifact directory: images the stage generated.
    Artifact,
    /// The file system: a dataset outside the project, named so in the stage's parameters.
    Absolute,
}

impl ImagesBase {
    /// `root` as stored: relative to the artifact (`out_dir`) or the project when inside
    /// either, else absolute.
    pub fn portable(root: &Path, project: &Path, out_dir: &Path) -> (Self, PathBuf) {
        if let Ok(inside) = root.strip_prefix(out_dir) {
            (Self::Artifact, inside.to_path_buf())
        } else if let Ok(inside) = root.strip_prefix(project) {
            (Self::Project, inside.to_path_buf())
        } else {
            (Self::Absolute, root.to_path_buf())
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub images: usize,
    pub captions: usize,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub splits: BTreeMap<Split, SplitCounts>,
    pub skipped: Vec<Skipped>,
    /// Images whose content equals an image of another split where the dataset's own split
    /// puts them there (kept as published; a hash split leaves them out instead).
    pub cross_split_duplicates: Vec<Skipped>,
    pub dataset: String,
    pub split_source: String,
    pub images_root: String,
    pub empty_captions_dropped: usize,
    pub rejected_rows: Vec<RowIssue>,
    pub sources: Vec<String>,
}

/// A prep artifact opened for reading.
#[derive(Debug, Clone)]
pub struct PrepArtifact {
    pub dir: PathBuf,
    pub info: DatasetInfo,
    pub images: Vec<ImageRecord>,
    /// The directory image ids are relative to, resolved.
    root: PathBuf,
}

impl PrepArtifact {
    /// The artifact in `dir`, made by a stage of the pipeline in `project` (the directory of
    /// its pipeline.toml, which a project-relative images root is resolved against).
    pub fn open(dir: &Path, project: &Path) -> Result<Self, PrepError> {
        let mut artifact = Self::open_lazy(dir, project)?;
        artifact.images = artifact.records()?.collect::<Result<_, _>>()?;
        Ok(artifact)
    }

    /// [`Self::open`] without reading the image list ([`Self::images`] stays empty): for
    /// reading it a record at a time with [`Self::records`], in memory that does not grow
    /// with the dataset.
    pub fn open_lazy(dir: &Path, project: &Path) -> Result<Self, PrepError> {
        let info_path = dir.join("dataset.json");
        let info: DatasetInfo = read_json(&info_path)?;
        if info.format != FORMAT {
            return Err(PrepError::Layout {
                path: info_path,
                message: format!(
                    "prep artifact format {} is not the supported {FORMAT}; rerun prep",
                    info.format
                ),
            });
        }
        let root = match info.images_base {
            ImagesBase::Project => project.join(&info.images_root),
            ImagesBase::Artifact => dir.join(&info.images_root),
            ImagesBase::Absolute => info.images_root.clone(),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            info,
            images: Vec::new(),
            root,
        })
    }

    /// The image list (`images.jsonl`) read a line at a time, in dataset order.
    pub fn records(
        &self,
    ) -> Result<impl Iterator<Item = Result<ImageRecord, PrepError>> + use<>, PrepError> {
        use std::io::BufRead;
        let list = self.dir.join("images.jsonl");
        let file = std::fs::File::open(&list).map_err(|source| PrepError::Read {
            path: list.clone(),
            source,
        })?;
        let lines = std::io::BufReader::new(file).lines().enumerate();
        Ok(lines.filter_map(move |(i, line)| {
            let line = match line {
                Ok(line) if line.trim().is_empty() => return None,
                Ok(line) => line,
                Err(source) => {
                    let path = list.clone();
                    return Some(Err(PrepError::Read { path, source }));
                }
            };
            Some(serde_json::from_str(&line).map_err(|e| PrepError::Parse {
                file: list.clone(),
                line: i + 1,
                message: e.to_string(),
            }))
        }))
    }

    /// The directory image ids are relative to.
    pub fn images_root(&self) -> PathBuf {
        self.root.clone()
    }

    /// The file of an image.
    pub fn image_path(&self, record: &ImageRecord) -> PathBuf {
        self.images_root().join(&record.id)
    }

    /// The images of one split, in dataset order.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &ImageRecord> {
        self.images.iter().filter(move |r| r.split == split)
    }

    pub fn summary(&self) -> Result<Summary, PrepError> {
        read_json(&self.dir.join("summary.json"))
    }
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PrepError> {
    let bytes = std::fs::read(path).map_err(|source| PrepError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| PrepError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PrepError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| PrepError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| PrepError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Write `dataset.json`, `images.jsonl`, `splits/*.txt` and `summary.json` into `out_dir`.
pub fn write(
    out_dir: &Path,
    info: &DatasetInfo,
    images: &[ImageRecord],
    summary: &Summary,
) -> Result<(), PrepError> {
    write_json(&out_dir.join("dataset.json"), info)?;
    let list = out_dir.join("images.jsonl");
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PrepError::Write { path, source }
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(&list).map_err(werr(&list))?);
    for r in images {
        let line = serde_json::to_string(r).map_err(|source| PrepError::Json {
            path: list.clone(),
            source,
        })?;
        writeln!(w, "{line}").map_err(werr(&list))?;
    }
    w.flush().map_err(werr(&list))?;
    let splits = out_dir.join("splits");
    std::fs::create_dir_all(&splits).map_err(werr(&splits))?;
    for split in Split::ALL {
        let path = splits.join(format!("{split}.txt"));
        let mut text = String::new();
        for r in images.iter().filter(|r| r.split == split) {
            text.push_str(&r.id);
            text.push('\n');
        }
        std::fs::write(&path, text).map_err(werr(&path))?;
    }
    write_json(&out_dir.join("summary.json"), summary)
}
