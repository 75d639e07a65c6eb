//! What every dataset reader produces: images (by their path relative to the images root) with
//! their captions and, where the dataset says so, their split; plus what was dropped and why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::paths::normalize_rel;
use pipe_data::prep::split::{Split, SplitFractions};
use pipe_data::prep::{PrepError, RowIssue, Skipped};

/// Where the split of each image comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SplitSource {
    /// The dataset's own split (official lists, a split column or field).
    Dataset(String),
    /// A hash of the image id and the seed.
    Hash {
        seed: u64,
        fractions: SplitFractions,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Path relative to the images root, `/`-separated: also the image's id.
    pub id: String,
    pub captions: Vec<String>,
    pub split: Option<Split>,
}

/// The images of a dataset in first-seen order, captions grouped by image.
#[derive(Debug)]
pub(crate) struct Listing {
    pub dataset: &'static str,
    pub images_root: PathBuf,
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
    pub rows: Vec<RowIssue>,
    pub empty_captions: usize,
    pub split_source: SplitSource,
    /// Caption/split files read, for the summary.
    pub sources: Vec<PathBuf>,
    pub index: HashMap<String, usize>,
}

impl Listing {
    pub fn new(dataset: &'static str, images_root: PathBuf, split_source: SplitSource) -> Self {
        Self {
            dataset,
            images_root,
            entries: Vec::new(),
            skipped: Vec::new(),
            rows: Vec::new(),
            empty_captions: 0,
            split_source,
            sources: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn row_issue(&mut self, file: &Path, line: usize, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(file = %file.display(), line, "{reason}");
        self.rows.push(RowIssue {
            file: file.display().to_string(),
            line,
            reason,
        });
    }

    pub fn skip(&mut self, image: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            image: image.into(),
            reason: reason.into(),
        });
    }

    /// Record one caption row. The image path is normalised (and refused if it escapes the
    /// root); the caption is cleaned and dropped (counted) if empty. `split` conflicts between
    /// rows of the same image keep the first and report the row.
    pub fn add(
        &mut self,
        file: &Path,
        line: usize,
        image: &str,
        caption: &str,
        split: Option<Split>,
    ) {
        let id = match normalize_rel(image) {
            Ok(id) => id,
            Err(reason) => {
                self.row_issue(file, line, format!("image `{image}`: {reason}"));
                return;
            }
        };
        let slot = match self.index.get(&id) {
            Some(&i) => i,
            None => {
                self.entries.push(Entry {
                    id: id.clone(),
                    captions: Vec::new(),
                    split,
                });
                self.index.insert(id.clone(), self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        if let (Some(first), Some(now)) = (self.entries[slot].split, split)
            && first != now
        {
            self.row_issue(
                file,
                line,
                format!("image `{id}` was put in `{first}` by an earlier row, this row says `{now}`; keeping `{first}`"),
            );
        }
        match clean_caption(caption) {
            Some(c) => self.entries[slot].captions.push(c),
            None => self.empty_captions += 1,
        }
    }

    /// Keep the entries `keep` accepts; move the others to `skipped` with the reason it gives.
    pub fn retain_or_skip(&mut self, mut keep: impl FnMut(&mut Entry) -> Result<(), String>) {
        let entries = std::mem::take(&mut self.entries);
        self.index.clear();
        for mut e in entries {
            match keep(&mut e) {
                Ok(()) => {
                    self.index.insert(e.id.clone(), self.entries.len());
                    self.entries.push(e);
                }
                Err(reason) => self.skipped.push(Skipped {
                    image: e.id,
                    reason,
                }),
            }
        }
    }

    /// Whether an image is in the listing.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }
}

/// Trim, collapse internal whitespace to single spaces; `None` if nothing is left.
pub fn clean_caption(raw: &str) -> Option<String> {
    let cleaned = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A 1-based line number and the line, or why it is unusable.
pub(crate) type Line = (usize, Result<String, String>);

/// The lines of a text file, 1-based, each either its text (without `\r\n`/`\n` and, on the
/// first line, a UTF-8 byte-order mark) or why it is not valid UTF-8.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<Line>, PrepError> {
    let bytes = std::fs::read(path).map_err(|source| PrepError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut lines = Vec::new();
    let mut parts = bytes.split(|&b| b == b'\n').peekable();
    let mut n = 0;
    while let Some(line) = parts.next() {
        n += 1;
        if line.is_empty() && parts.peek().is_none() {
            break; // the empty remainder after a final newline
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        lines.push((
            n,
            String::from_utf8(line.to_vec()).map_err(|e| {
                format!(
                    "invalid UTF-8 at byte {} of the line",
                    e.utf8_error().valid_up_to()
                )
            }),
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_are_cleaned() {
        assert_eq!(
            clean_caption("  a  dog\t runs \n"),
            Some("a dog runs".to_string())
        );
        assert_eq!(clean_caption(" \t "), None);
    }
}
