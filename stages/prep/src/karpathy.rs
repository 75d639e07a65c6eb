//! Karpathy's split files: `dataset_flickr8k.json`, `dataset_flickr30k.json`,
//! `dataset_coco.json` — `images[].filename` (under `images[].filepath` for COCO),
//! `images[].sentences[].raw`, `images[].split` ∈ train | val | test | restval (→ train).

use std::path::{Path, PathBuf};

use pipe_stage_api::ParamError;
use serde::{Deserialize, Serialize};

use super::listing::{Listing, SplitSource};
use pipe_data::prep::PrepError;
use pipe_data::prep::split::Split;

/// `dataset = "karpathy"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KarpathyParams {
    /// The `dataset_*.json` file.
    pub file: PathBuf,
    /// The images directory; default: the JSON file's directory.
    pub images: Option<PathBuf>,
}

#[derive(Deserialize)]
struct KarpathyFile {
    images: Vec<KarpathyImage>,
}

#[derive(Deserialize)]
struct KarpathyImage {
    #[serde(default)]
    filepath: Option<String>,
    filename: String,
    split: String,
    #[serde(default)]
    sentences: Vec<KarpathySentence>,
}

#[derive(Deserialize)]
struct KarpathySentence {
    raw: String,
}

impl KarpathyParams {
    pub fn check(&self) -> Result<(), ParamError> {
        Ok(())
    }

    pub fn resolve(&self, base: &Path) -> (PathBuf, PathBuf) {
        let file = base.join(&self.file);
        let images = match &self.images {
            Some(i) => base.join(i),
            None => file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| base.to_path_buf()),
        };
        (file, images)
    }

    pub fn read(&self, base: &Path) -> Result<Listing, PrepError> {
        let (file, images) = self.resolve(base);
        let bytes = std::fs::read(&file).map_err(|source| PrepError::Read {
            path: file.clone(),
            source,
        })?;
        let parsed: KarpathyFile =
            serde_json::from_slice(&bytes).map_err(|e| PrepError::Parse {
                file: file.clone(),
                line: e.line(),
                message: format!("not a Karpathy split file: {e}"),
            })?;
        // COCO's file is ~150 MB: not held beside what was parsed from it.
        drop(bytes);
        let mut listing = Listing::new(
            "karpathy",
            images,
            SplitSource::Dataset("the file's `split` fields".to_string()),
        );
        for (i, img) in parsed.images.iter().enumerate() {
            let id = match img.filepath.as_deref().filter(|p| !p.is_empty()) {
                Some(dir) => format!("{dir}/{}", img.filename),
                None => img.filename.clone(),
            };
            let Some(split) = Split::parse(&img.split) else {
                listing.row_issue(
                    &file,
                    0,
                    format!("images[{i}] `{id}`: unknown split `{}`", img.split),
                );
                continue;
            };
            if img.sentences.is_empty() {
                listing.skip(id, "no sentences");
                continue;
            }
            for s in &img.sentences {
                listing.add(&file, 0, &id, &s.raw, Some(split));
            }
        }
        listing.sources.push(file);
        Ok(listing)
    }
}
