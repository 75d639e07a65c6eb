//! Flickr8k in the layouts people have it in:
//! * the original release: `Flickr8k_text/Flickr8k.token.txt` (`image.jpg#k<TAB>caption`),
//!   the official split lists `Flickr_8k.{train,dev,test}Images.txt` (dev → `val`), images in
//!   `Flicker8k_Dataset/` (sic) or `Flickr8k_Dataset/`;
//! * Kaggle's: `captions.txt` (CSV, header `image,caption`) and `Images/`, no split lists (the
//!   split is then by image hash, unless `splits = DIR` points at the official lists);
//! * explicit `captions = FILE`, `images = DIR`, `splits = DIR`.
//!
//! Known quirks of the real files are reported, not fatal: the bogus id
//! `2258277193_586949ec62.jpg.1`, captions whose image is missing from the image release, and
//! images that are in no split list.

use pipe_data::images::{IMAGE_EXTENSIONS, has_image_extension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipe_stage_api::ParamError;
use serde::{Deserialize, Serialize};

use super::listing::{Listing, SplitSource, read_lines};
use super::table::{Columns, read_csv};
use pipe_data::prep::PrepError;
use pipe_data::prep::split::{Split, SplitFractions};

const TOKEN_FILE: &str = "Flickr8k.token.txt";
const LIST_FILES: [(Split, &str); 3] = [
    (Split::Train, "Flickr_8k.trainImages.txt"),
    (Split::Val, "Flickr_8k.devImages.txt"),
    (Split::Test, "Flickr_8k.testImages.txt"),
];

/// `dataset = "flickr8k"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Flickr8kParams {
    pub root: Option<PathBuf>,
    pub captions: Option<PathBuf>,
    pub images: Option<PathBuf>,
    pub splits: Option<PathBuf>,
    /// Used only when there are no official split lists.
    #[serde(default)]
    pub split: SplitFractions,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaptionFormat {
    /// `Flickr8k.token.txt`: `image.jpg#k<TAB>caption`.
    Token,
    /// Kaggle's `captions.txt`: CSV with header `image,caption`.
    Csv,
}

/// Where the files of one Flickr8k copy are.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub captions: PathBuf,
    pub format: CaptionFormat,
    pub images: PathBuf,
    pub lists: Option<Vec<(Split, PathBuf)>>,
}

impl Layout {
    /// The files and directories the artifact depends on.
    pub fn inputs(&self) -> Vec<PathBuf> {
        let mut v = vec![self.captions.clone()];
        if let Some(lists) = &self.lists {
            v.extend(lists.iter().map(|(_, p)| p.clone()));
        }
        v.push(self.images.clone());
        v
    }
}

/// The error for a Flickr8k root that does not exist: where to get the data and where to put
/// it, and the offline demo that needs none.
pub(crate) fn where_to_get(root: &Path) -> String {
    format!(
        "Flickr8k is not at {} (it does not exist). pipe does not download it: get Kaggle's \
         copy (https://www.kaggle.com/datasets/adityajn105/flickr8k: captions.txt and Images/) \
         or the original release (Flickr8k_Dataset.zip and Flickr8k_text.zip, from the \
         University of Illinois' request form, https://hockenmaier.cs.illinois.edu/DenotationGraph/) \
         and unzip it there, or point `root` at your copy. To try pipe without it: \
         `pipe run -p examples/quickstart/pipeline.toml`",
        root.display()
    )
}

impl Flickr8kParams {
    pub fn check(&self) -> Result<(), ParamError> {
        if self.root.is_none() && (self.captions.is_none() || self.images.is_none()) {
            return Err(ParamError::new(
                Vec::<String>::new(),
                "dataset `flickr8k` needs `root = DIR`, or both `captions = FILE` and `images = DIR`",
            ));
        }
        self.split.check()
    }

    /// Find the caption file, images and split lists (auto-detected under `root` unless given).
    pub fn detect(&self, base: &Path) -> Result<Layout, ParamError> {
        let root = self.root.as_ref().map(|r| base.join(r));
        let missing = |key: &str, tried: &[PathBuf]| {
            ParamError::new(
                [key],
                format!(
                    "no Flickr8k layout found: expected the original release (Flickr8k_text/{TOKEN_FILE} and \
                     Flicker8k_Dataset/) or Kaggle's (captions.txt and Images/); looked for {}",
                    tried
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        };
        let captions = match (&self.captions, &root) {
            (Some(c), _) => base.join(c),
            (None, Some(r)) => {
                let tried = [
                    r.join(TOKEN_FILE),
                    r.join("Flickr8k_text").join(TOKEN_FILE),
                    r.join("captions.txt"),
                ];
                tried
                    .iter()
                    .find(|p| p.is_file())
                    .cloned()
                    .ok_or_else(|| missing("root", &tried))?
            }
            (None, None) => {
                return Err(ParamError::new(
                    ["captions"],
                    "`captions` or `root` is required",
                ));
            }
        };
        let images = match (&self.images, &root) {
            (Some(i), _) => base.join(i),
            (None, Some(r)) => {
                let tried = [
                    r.join("Flicker8k_Dataset"),
                    r.join("Flickr8k_Dataset"),
                    r.join("Flickr8k_Dataset").join("Flicker8k_Dataset"),
                    r.join("Images"),
                    r.join("images"),
                ];
                tried
                    .iter()
                    .find(|p| p.is_dir())
                    .cloned()
                    .ok_or_else(|| missing("root", &tried))?
            }
            (None, None) => {
                return Err(ParamError::new(
                    ["images"],
                    "`images` or `root` is required",
                ));
            }
        };
        let format = caption_format(&captions);
        let lists = match &self.splits {
            Some(dir) => {
                let dir = base.join(dir);
                let lists: Vec<_> = LIST_FILES.iter().map(|(s, f)| (*s, dir.join(f))).collect();
                if let Some((_, absent)) = lists.iter().find(|(_, p)| !p.is_file()) {
                    return Err(ParamError::new(
                        ["splits"],
                        format!("split list {} not found", absent.display()),
                    ));
                }
                Some(lists)
            }
            None => {
                let mut dirs: Vec<PathBuf> = captions
                    .parent()
                    .map(Path::to_path_buf)
                    .into_iter()
                    .collect();
                if let Some(r) = &root {
                    dirs.push(r.clone());
                    dirs.push(r.join("Flickr8k_text"));
                }
                dirs.into_iter()
                    .map(|d| {
                        LIST_FILES
                            .iter()
                            .map(|(s, f)| (*s, d.join(f)))
                            .collect::<Vec<_>>()
                    })
                    .find(|lists| lists.iter().all(|(_, p)| p.is_file()))
            }
        };
        Ok(Layout {
            captions,
            format,
            images,
            lists,
        })
    }

    pub fn read(&self, base: &Path) -> Result<Listing, PrepError> {
        let layout = self.detect(base)?;
        let source = match &layout.lists {
            Some(_) => SplitSource::Dataset("official split lists".to_string()),
            None => SplitSource::Hash {
                seed: self.seed,
                fractions: self.split,
            },
        };
        let mut listing = Listing::new("flickr8k", layout.images.clone(), source);
        match layout.format {
            CaptionFormat::Token => read_token_file(&mut listing, &layout.captions)?,
            CaptionFormat::Csv => read_csv(
                &mut listing,
                &layout.captions,
                Columns {
                    image: Some("image"),
                    caption: Some("caption"),
                    split: None,
                },
            )?,
        }
        listing.sources.push(layout.captions.clone());
        tracing::info!(
            captions = %layout.captions.display(),
            images = %layout.images.display(),
            lists = layout.lists.is_some(),
            "flickr8k layout"
        );

        // Ids that are not file names (the `….jpg.1` typo): say what they look like.
        let ids: std::collections::HashSet<String> =
            listing.entries.iter().map(|e| e.id.clone()).collect();
        listing.retain_or_skip(|e| {
            if has_image_extension(Path::new(&e.id)) {
                return Ok(());
            }
            let near = IMAGE_EXTENSIONS
                .iter()
                .filter_map(|ext| {
                    e.id.find(&format!(".{ext}."))
                        .map(|i| e.id[..i + 1 + ext.len()].to_string())
                })
                .find(|stem| ids.contains(stem));
            Err(match near {
                Some(real) => format!(
                    "malformed image id (stray suffix after the extension; looks like `{real}`)"
                ),
                None => "malformed image id (not an image file name)".to_string(),
            })
        });
        // Captions whose image is not in the image release.
        let images = layout.images.clone();
        listing.retain_or_skip(|e| {
            if images.join(&e.id).exists() {
                Ok(())
            } else {
                Err("image file missing".to_string())
            }
        });

        if let Some(lists) = &layout.lists {
            apply_lists(&mut listing, lists)?;
        }
        Ok(listing)
    }
}

/// Kaggle's CSV starts with the header `image,caption`; the token file does not.
fn caption_format(path: &Path) -> CaptionFormat {
    let first = std::fs::read(path).ok().and_then(|b| {
        b.split(|&c| c == b'\n')
            .next()
            .map(|l| String::from_utf8_lossy(l).trim().to_ascii_lowercase())
    });
    match first {
        Some(l) if l.trim_start_matches('\u{feff}').replace(' ', "") == "image,caption" => {
            CaptionFormat::Csv
        }
        _ => CaptionFormat::Token,
    }
}

/// `image.jpg#k<TAB>caption` lines (a space instead of the tab is accepted).
fn read_token_file(listing: &mut Listing, path: &Path) -> Result<(), PrepError> {
    for (line, text) in read_lines(path)? {
        let text = match text {
            Ok(t) => t,
            Err(reason) => {
                listing.row_issue(path, line, reason);
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let Some((key, caption)) = text.split_once('\t').or_else(|| text.split_once(' ')) else {
            listing.row_issue(
                path,
                line,
                "expected `image.jpg#N<TAB>caption`, found no tab",
            );
            continue;
        };
        let Some((id, number)) = key.trim().rsplit_once('#') else {
            listing.row_issue(
                path,
                line,
                format!("expected `image.jpg#N` before the tab, found `{key}`"),
            );
            continue;
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            listing.row_issue(
                path,
                line,
                format!("caption number `{number}` after `#` is not a number"),
            );
            continue;
        }
        listing.add(path, line, id, caption, None);
    }
    Ok(())
}

/// Put each image in the split its list names; skip images in no list (or in several), and
/// report listed images that have no captions.
fn apply_lists(listing: &mut Listing, lists: &[(Split, PathBuf)]) -> Result<(), PrepError> {
    let mut assigned: BTreeMap<String, Vec<Split>> = BTreeMap::new();
    let mut order = Vec::new();
    for (split, file) in lists {
        for (line, text) in read_lines(file)? {
            match text {
                Ok(t) if t.trim().is_empty() => {}
                Ok(t) => {
                    let id = t.trim().to_string();
                    let splits = assigned.entry(id.clone()).or_default();
                    if splits.is_empty() {
                        order.push((id, *split, file.clone()));
                    }
                    if !splits.contains(split) {
                        splits.push(*split);
                    }
                }
                Err(reason) => listing.row_issue(file, line, reason),
            }
        }
        listing.sources.push(file.clone());
    }
    for (id, _, file) in &order {
        if !listing.contains(id) && !listing.skipped.iter().any(|s| &s.image == id) {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            listing.skip(id.clone(), format!("listed in {name} but has no captions"));
        }
    }
    listing.retain_or_skip(|e| match assigned.get(&e.id).map(Vec::as_slice) {
        Some([one]) => {
            e.split = Some(*one);
            Ok(())
        }
        Some(several) => Err(format!(
            "listed in several split lists ({})",
            several
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => Err("in no split list".to_string()),
    });
    Ok(())
}
