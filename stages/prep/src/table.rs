//! Caption tables: `jsonl` (one JSON object per line) and `csv` (a header row), one row per
//! caption, several rows per image allowed — also a Hugging Face imagefolder's
//! `metadata.jsonl` / `metadata.csv` (`file_name` + a caption column). Kaggle's Flickr8k
//! `captions.txt` is read here too.

use std::path::{Path, PathBuf};

use pipe_stage_api::ParamError;
use serde::{Deserialize, Serialize};

use super::listing::{Listing, SplitSource};
use pipe_data::prep::PrepError;
use pipe_data::prep::split::{Split, SplitFractions};

/// Column names tried, in order, when none is given.
pub(crate) const IMAGE_COLUMNS: [&str; 6] = [
    "file_name",
    "image",
    "filename",
    "image_path",
    "path",
    "file",
];
pub(crate) const CAPTION_COLUMNS: [&str; 5] =
    ["caption", "text", "captions", "sentence", "description"];

/// `dataset = "jsonl"` / `"csv"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableParams {
    /// The table, or a directory holding `metadata.jsonl` / `metadata.csv` (imagefolder).
    pub file: PathBuf,
    /// Directory image paths are relative to; default: the table's directory.
    pub images: Option<PathBuf>,
    pub image_column: Option<String>,
    pub caption_column: Option<String>,
    /// A column holding train/val/test per row; without it the split is by image hash.
    pub split_column: Option<String>,
    #[serde(default)]
    pub split: SplitFractions,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableFormat {
    Jsonl,
    Csv,
}

impl TableFormat {
    fn metadata_name(self) -> &'static str {
        match self {
            TableFormat::Jsonl => "metadata.jsonl",
            TableFormat::Csv => "metadata.csv",
        }
    }
}

/// Which columns to read; `None` means "guess from the candidates".
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Columns<'a> {
    pub image: Option<&'a str>,
    pub caption: Option<&'a str>,
    pub split: Option<&'a str>,
}

impl TableParams {
    pub fn check(&self) -> Result<(), ParamError> {
        self.split.check()
    }

    /// The table file and the images root, resolved against the pipeline's directory.
    pub fn resolve(&self, format: TableFormat, base: &Path) -> (PathBuf, PathBuf) {
        let mut file = base.join(&self.file);
        if file.is_dir() {
            file = file.join(format.metadata_name());
        }
        let images = match &self.images {
            Some(dir) => base.join(dir),
            None => file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| base.to_path_buf()),
        };
        (file, images)
    }

    pub fn read(&self, format: TableFormat, base: &Path) -> Result<Listing, PrepError> {
        let (file, images) = self.resolve(format, base);
        let source = match &self.split_column {
            Some(col) => SplitSource::Dataset(format!("column `{col}`")),
            None => SplitSource::Hash {
                seed: self.seed,
                fractions: self.split,
            },
        };
        let name = match format {
            TableFormat::Jsonl => "jsonl",
            TableFormat::Csv => "csv",
        };
        let mut listing = Listing::new(name, images, source);
        let cols = Columns {
            image: self.image_column.as_deref(),
            caption: self.caption_column.as_deref(),
            split: self.split_column.as_deref(),
        };
        match format {
            TableFormat::Jsonl => read_jsonl(&mut listing, &file, cols)?,
            TableFormat::Csv => read_csv(&mut listing, &file, cols)?,
        }
        listing.sources.push(file);
        Ok(listing)
    }
}

fn pick(
    given: Option<&str>,
    candidates: &[&str],
    header: &[String],
    what: &str,
    file: &Path,
) -> Result<usize, PrepError> {
    let found = match given {
        Some(name) => header.iter().position(|h| h == name),
        None => candidates
            .iter()
            .find_map(|c| header.iter().position(|h| h.eq_ignore_ascii_case(c))),
    };
    found.ok_or_else(|| PrepError::Parse {
        file: file.to_path_buf(),
        line: 1,
        message: match given {
            Some(name) => format!(
                "no {what} column `{name}` in the header (columns: {})",
                header.join(", ")
            ),
            None => format!(
                "no {what} column in the header (columns: {}); tried {}, or set `{what}_column`",
                header.join(", "),
                candidates.join(", ")
            ),
        },
    })
}

/// Read a CSV caption table with a header row into `listing`. Extra fields after the caption
/// (an unquoted comma inside the last column, as in some Flickr8k copies) are joined back.
pub(crate) fn read_csv(
    listing: &mut Listing,
    path: &Path,
    cols: Columns<'_>,
) -> Result<(), PrepError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .map_err(|e| csv_fatal(path, e))?;
    let header: Vec<String> = reader
        .byte_headers()
        .map_err(|e| csv_fatal(path, e))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let image_col = pick(cols.image, &IMAGE_COLUMNS, &header, "image", path)?;
    let caption_col = pick(cols.caption, &CAPTION_COLUMNS, &header, "caption", path)?;
    let split_col = match cols.split {
        Some(name) => Some(pick(Some(name), &[], &header, "split", path)?),
        None => None,
    };
    let needed = image_col.max(caption_col).max(split_col.unwrap_or(0)) + 1;
    let caption_is_last = caption_col + 1 == header.len();
    for record in reader.byte_records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(csv_fatal(path, e));
                }
                listing.row_issue(path, line, format!("malformed CSV row: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.len() < needed {
            listing.row_issue(
                path,
                line,
                format!("expected {} fields, found {}", header.len(), record.len()),
            );
            continue;
        }
        let mut fields = Vec::with_capacity(record.len());
        let mut bad = None;
        for (i, f) in record.iter().enumerate() {
            match std::str::from_utf8(f) {
                Ok(s) => fields.push(s),
                Err(e) => {
                    bad = Some(format!(
                        "invalid UTF-8 in field {} at byte {}",
                        i + 1,
                        e.valid_up_to()
                    ));
                    break;
                }
            }
        }
        if let Some(reason) = bad {
            listing.row_issue(path, line, reason);
            continue;
        }
        let caption = if caption_is_last && fields.len() > header.len() {
            fields[caption_col..].join(",")
        } else if fields.len() > header.len() {
            listing.row_issue(
                path,
                line,
                format!("expected {} fields, found {}", header.len(), fields.len()),
            );
            continue;
        } else {
            fields[caption_col].to_string()
        };
        let split = match split_col {
            Some(c) => match Split::parse(fields[c]) {
                Some(s) => Some(s),
                None => {
                    listing.row_issue(
                        path,
                        line,
                        format!(
                            "unknown split `{}` (expected train, val or test)",
                            fields[c]
                        ),
                    );
                    continue;
                }
            },
            None => None,
        };
        listing.add(path, line, fields[image_col], &caption, split);
    }
    Ok(())
}

fn csv_fatal(path: &Path, e: csv::Error) -> PrepError {
    let line = e.position().map_or(1, |p| p.line() as usize);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => PrepError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => PrepError::Parse {
            file: path.to_path_buf(),
            line,
            message: format!("{other:?}"),
        },
    }
}

/// Read a JSON-lines caption table into `listing`. The caption field may be a string or an
/// array of strings (several captions of one image in one row).
pub(crate) fn read_jsonl(
    listing: &mut Listing,
    path: &Path,
    cols: Columns<'_>,
) -> Result<(), PrepError> {
    for (line, text) in super::listing::read_lines(path)? {
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
        let row: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                listing.row_issue(path, line, "not a JSON object");
                continue;
            }
            Err(e) => {
                listing.row_issue(path, line, format!("invalid JSON: {e}"));
                continue;
            }
        };
        let image_key = match find_key(&row, cols.image, &IMAGE_COLUMNS) {
            Some(k) => k,
            None => {
                listing.row_issue(path, line, missing_key("image", cols.image, &IMAGE_COLUMNS));
                continue;
            }
        };
        let caption_key = match find_key(&row, cols.caption, &CAPTION_COLUMNS) {
            Some(k) => k,
            None => {
                listing.row_issue(
                    path,
                    line,
                    missing_key("caption", cols.caption, &CAPTION_COLUMNS),
                );
                continue;
            }
        };
        let Some(image) = row[&image_key].as_str() else {
            listing.row_issue(path, line, format!("`{image_key}` is not a string"));
            continue;
        };
        let split = match cols.split {
            Some(col) => match row
                .get(col)
                .and_then(|v| v.as_str())
                .map(|s| (s, Split::parse(s)))
            {
                Some((_, Some(s))) => Some(s),
                Some((s, None)) => {
                    listing.row_issue(
                        path,
                        line,
                        format!("unknown split `{s}` (expected train, val or test)"),
                    );
                    continue;
                }
                None => {
                    listing.row_issue(
                        path,
                        line,
                        format!("no string field `{col}` (the split column)"),
                    );
                    continue;
                }
            },
            None => None,
        };
        match &row[&caption_key] {
            serde_json::Value::String(c) => listing.add(path, line, image, c, split),
            serde_json::Value::Array(items) if items.iter().all(|v| v.is_string()) => {
                for c in items.iter().filter_map(|v| v.as_str()) {
                    listing.add(path, line, image, c, split);
                }
            }
            _ => listing.row_issue(
                path,
                line,
                format!("`{caption_key}` is neither a string nor a list of strings"),
            ),
        }
    }
    Ok(())
}

fn find_key(
    row: &serde_json::Map<String, serde_json::Value>,
    given: Option<&str>,
    candidates: &[&str],
) -> Option<String> {
    match given {
        Some(k) => row.contains_key(k).then(|| k.to_string()),
        None => candidates
            .iter()
            .find(|c| row.contains_key(**c))
            .map(|c| c.to_string()),
    }
}

fn missing_key(what: &str, given: Option<&str>, candidates: &[&str]) -> String {
    match given {
        Some(k) => format!("no `{k}` field (the {what} column)"),
        None => format!(
            "no {what} field (tried {}; set `{what}_column`)",
            candidates.join(", ")
        ),
    }
}
