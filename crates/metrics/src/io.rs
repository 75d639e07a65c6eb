//! Readers for the prediction and reference files.
//!
//! Three layouts, told apart by content (not by the file's name):
//!
//! * JSONL: predictions one `{"image": ID, "caption": TEXT}` per line, references one
//!   `{"image": ID, "captions": [TEXT, ...]}` per line (blank lines are ignored);
//! * predictions only: the COCO results format, one JSON array
//!   `[{"image_id": ID, "caption": TEXT}, ...]` (what pycocoevalcap's `loadRes` reads);
//! * references only: the COCO annotations format, one JSON object
//!   `{"images": [...], "annotations": [{"image_id": ID, "caption": TEXT, ...}, ...]}`, the
//!   references of an image being its annotations' captions in file order.
//!
//! `ID` is a string or an integer (COCO uses integers; `42` and `"42"` are the same image).
//! Every problem is reported with the file and the 1-based line (JSONL) or the entry (`[3]`,
//! `annotations[3]`) of the JSON formats.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::MetricsError;

/// The layout of a predictions or references file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of `{"image_id", "caption"}` (predictions).
    CocoResults,
    /// A JSON object with `"annotations"` (references).
    CocoAnnotations,
}

impl Format {
    fn describe(self) -> &'static str {
        match self {
            Format::Jsonl => "JSONL",
            Format::CocoResults => "a COCO results array",
            Format::CocoAnnotations => "a COCO annotations object (references)",
        }
    }
}

/// A file's content, parsed as far as telling its layout needed.
enum Content {
    Jsonl(Vec<u8>),
    Results(Vec<Value>),
    Annotations(serde_json::Map<String, Value>),
}

impl Content {
    fn format(&self) -> Format {
        match self {
            Content::Jsonl(_) => Format::Jsonl,
            Content::Results(_) => Format::CocoResults,
            Content::Annotations(_) => Format::CocoAnnotations,
        }
    }
}

/// What the layouts are, for the error of a file that is none of them.
const LAYOUTS: &str = "expected JSONL (one JSON object per line), a COCO results array \
                       `[{\"image_id\", \"caption\"}, ...]` or a COCO annotations object \
                       `{\"images\", \"annotations\"}`";

/// Reads `path` and tells its layout: a JSON array is COCO results; one JSON object with
/// `"annotations"` is COCO annotations; anything else starting with `{` is JSONL, unless it is
/// one JSON document over several lines (a pretty-printed object), which is none of them.
fn read_content(path: &Path) -> Result<Content, MetricsError> {
    let bytes = std::fs::read(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = if bytes.starts_with(UTF8_BOM) {
        bytes[UTF8_BOM.len()..].to_vec()
    } else {
        bytes
    };
    let whole_document_error = |e: serde_json::Error| MetricsError::MalformedLine {
        path: path.to_path_buf(),
        line: e.line().max(1),
        message: format!("invalid JSON: {e}"),
    };
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(Content::Jsonl(bytes)),
        Some(b'[') => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Array(items)) => Ok(Content::Results(items)),
            Ok(_) => Err(MetricsError::UnknownFormat {
                path: path.to_path_buf(),
                message: LAYOUTS.into(),
            }),
            Err(e) => Err(whole_document_error(e)),
        },
        Some(b'{') => {
            let lines: Vec<&[u8]> = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.trim_ascii().is_empty())
                .collect();
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) if map.contains_key("annotations") => {
                    Ok(Content::Annotations(map))
                }
                Ok(_) if lines.len() > 1 => Err(MetricsError::UnknownFormat {
                    path: path.to_path_buf(),
                    message: format!(
                        "one JSON object over {} lines without \"annotations\": {LAYOUTS}",
                        lines.len()
                    ),
                }),
                Ok(_) => Ok(Content::Jsonl(bytes)),
                // A JSONL file (its first line is a JSON value by itself), or one broken
                // document over several lines: its own parse error says where.
                Err(e) => {
                    let first_is_json = lines
                        .first()
                        .is_some_and(|l| serde_json::from_slice::<Value>(l).is_ok());
                    if lines.len() <= 1 || first_is_json {
                        Ok(Content::Jsonl(bytes))
                    } else {
                        Err(whole_document_error(e))
                    }
                }
            }
        }
        Some(&b) => Err(MetricsError::UnknownFormat {
            path: path.to_path_buf(),
            message: format!(
                "{LAYOUTS}; it starts with {:?}",
                char::from(b).escape_default().to_string()
            ),
        }),
    }
}

/// The error of a file in a layout that holds the other kind of captions.
fn wrong_kind(path: &Path, found: Format, expected: &str) -> MetricsError {
    MetricsError::UnknownFormat {
        path: path.to_path_buf(),
        message: format!("this is {}, but {expected}", found.describe()),
    }
}

/// The layout of a predictions or references file, as [`read_predictions`] and
/// [`read_references`] tell it.
pub fn detect_format(path: &Path) -> Result<Format, MetricsError> {
    Ok(read_content(path)?.format())
}

/// Reads a predictions file (JSONL or COCO results) into image id → caption.
pub fn read_predictions(path: &Path) -> Result<BTreeMap<String, String>, MetricsError> {
    match read_content(path)? {
        Content::Jsonl(bytes) => read_keyed(path, &bytes, |line_no, obj| {
            caption_of(obj, "caption").map_err(|m| malformed(path, line_no, m))
        }),
        Content::Results(items) => {
            let mut out = BTreeMap::new();
            let mut first: BTreeMap<String, usize> = BTreeMap::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("[{i}]");
                let (id, caption) = coco_entry(item).map_err(|m| entry(path, &at, m))?;
                if let Some(&j) = first.get(&id) {
                    return Err(entry(
                        path,
                        &at,
                        format!("duplicate image_id {id:?} (first seen at [{j}])"),
                    ));
                }
                first.insert(id.clone(), i);
                out.insert(id, caption);
            }
            Ok(out)
        }
        c @ Content::Annotations(_) => Err(wrong_kind(
            path,
            c.format(),
            "predictions are JSONL or a COCO results array",
        )),
    }
}

/// Reads a references file (JSONL or COCO annotations) into image id → reference captions.
pub fn read_references(path: &Path) -> Result<BTreeMap<String, Vec<String>>, MetricsError> {
    match read_content(path)? {
        Content::Jsonl(bytes) => read_keyed(path, &bytes, |line_no, obj| {
            reference_captions(obj).map_err(|m| malformed(path, line_no, m))
        }),
        Content::Annotations(map) => {
            let Some(Value::Array(items)) = map.get("annotations") else {
                return Err(entry(
                    path,
                    "annotations",
                    format!(
                        "must be an array, got {}",
                        map.get("annotations").map_or("nothing", kind)
                    ),
                ));
            };
            let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (i, item) in items.iter().enumerate() {
                let (id, caption) =
                    coco_entry(item).map_err(|m| entry(path, &format!("annotations[{i}]"), m))?;
                out.entry(id).or_default().push(caption);
            }
            Ok(out)
        }
        c @ Content::Results(_) => Err(wrong_kind(
            path,
            c.format(),
            "references are JSONL or a COCO annotations object `{\"images\", \"annotations\"}`",
        )),
    }
}

/// `(image_id, caption)` of one COCO results or annotations entry.
fn coco_entry(item: &Value) -> Result<(String, String), String> {
    let Value::Object(obj) = item else {
        return Err(format!("expected a JSON object, got {}", kind(item)));
    };
    let id = id_of(obj, "image_id")?;
    Ok((id, caption_of(obj, "caption")?))
}

fn caption_of(obj: &serde_json::Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("\"{key}\" must be a string, got {}", kind(other))),
        None => Err(format!("missing \"{key}\"")),
    }
}

fn reference_captions(obj: &serde_json::Map<String, Value>) -> Result<Vec<String>, String> {
    match obj.get("captions") {
        Some(Value::Array(items)) => {
            let mut caps = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => caps.push(s.clone()),
                    other => {
                        return Err(format!(
                            "\"captions\"[{i}] must be a string, got {}",
                            kind(other)
                        ));
                    }
                }
            }
            if caps.is_empty() {
                return Err("\"captions\" is empty".into());
            }
            Ok(caps)
        }
        Some(other) => Err(format!(
            "\"captions\" must be an array of strings, got {}",
            kind(other)
        )),
        None => Err("missing \"captions\"".into()),
    }
}

/// One value per image id, each line's value read by `value`; a repeated id is an error naming
/// both lines.
fn read_keyed<T>(
    path: &Path,
    bytes: &[u8],
    value: impl Fn(usize, &serde_json::Map<String, Value>) -> Result<T, MetricsError>,
) -> Result<BTreeMap<String, T>, MetricsError> {
    let mut out = BTreeMap::new();
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    for (line_no, obj) in json_lines(path, bytes) {
        let obj = obj?;
        let id = id_of(&obj, "image").map_err(|m| malformed(path, line_no, m))?;
        let v = value(line_no, &obj)?;
        if let Some(&first) = first_line.get(&id) {
            return Err(MetricsError::DuplicateId {
                path: path.to_path_buf(),
                line: line_no,
                first_line: first,
                id,
            });
        }
        first_line.insert(id.clone(), line_no);
        out.insert(id, v);
    }
    Ok(out)
}

type Line = (usize, Result<serde_json::Map<String, Value>, MetricsError>);

/// The non-blank lines of a file (its byte-order mark already skipped) parsed as JSON objects,
/// with line numbers; a line that is not UTF-8 is a located error.
fn json_lines(path: &Path, bytes: &[u8]) -> Vec<Line> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = match std::str::from_utf8(line) {
            Ok(line) => line,
            Err(e) => {
                let col = e.valid_up_to() + 1;
                out.push((
                    line_no,
                    Err(malformed(
                        path,
                        line_no,
                        format!("not valid UTF-8 (byte {col} of the line)"),
                    )),
                ));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let parsed = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(malformed(
                path,
                line_no,
                format!("expected a JSON object, got {}", kind(&other)),
            )),
            Err(e) => Err(malformed(path, line_no, format!("invalid JSON: {e}"))),
        };
        out.push((line_no, parsed));
    }
    out
}

/// What some editors write at the start of a UTF-8 file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The image id under `key`: a string, or an integer (written in decimal).
fn id_of(obj: &serde_json::Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Some(other) => Err(format!(
            "\"{key}\" must be a string or an integer, got {}",
            kind(other)
        )),
        None => Err(format!("missing \"{key}\"")),
    }
}

fn entry(path: &Path, entry: &str, message: String) -> MetricsError {
    MetricsError::MalformedEntry {
        path: path.to_path_buf(),
        entry: entry.to_string(),
        message,
    }
}

fn malformed(path: &Path, line: usize, message: String) -> MetricsError {
    MetricsError::MalformedLine {
        path: path.to_path_buf(),
        line,
        message,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
