//! Readers for the JSONL prediction and reference files.
//!
//! * predictions: one `{"image": ID, "caption": TEXT}` per line;
//! * references: one `{"image": ID, "captions": [TEXT, ...]}` per line.
//!
//! `ID` is a string or an integer (COCO uses integers); blank lines are
//! ignored. Every problem is reported with the file and the 1-based line.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::MetricsError;

/// Reads a predictions file into image id → caption.
pub fn read_predictions(path: &Path) -> Result<BTreeMap<String, String>, MetricsError> {
    read_keyed(path, |line_no, obj| match obj.get("caption") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(malformed(
            path,
            line_no,
            format!("\"caption\" must be a string, got {}", kind(other)),
        )),
        None => Err(malformed(path, line_no, "missing \"caption\"".into())),
    })
}

/// Reads a references file into image id → reference captions.
pub fn read_references(path: &Path) -> Result<BTreeMap<String, Vec<String>>, MetricsError> {
    read_keyed(path, |line_no, obj| match obj.get("captions") {
        Some(Value::Array(items)) => {
            let mut caps = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => caps.push(s.clone()),
                    other => {
                        return Err(malformed(
                            path,
                            line_no,
                            format!("\"captions\"[{i}] must be a string, got {}", kind(other)),
                        ));
                    }
                }
            }
            if caps.is_empty() {
                return Err(malformed(path, line_no, "\"captions\" is empty".into()));
            }
            Ok(caps)
        }
        Some(other) => Err(malformed(
            path,
            line_no,
            format!(
                "\"captions\" must be an array of strings, got {}",
                kind(other)
            ),
        )),
        None => Err(malformed(path, line_no, "missing \"captions\"".into())),
    })
}

/// One value per image id, each line's value read by `value`; a repeated id is an error naming
/// both lines.
fn read_keyed<T>(
    path: &Path,
    value: impl Fn(usize, &serde_json::Map<String, Value>) -> Result<T, MetricsError>,
) -> Result<BTreeMap<String, T>, MetricsError> {
    let mut out = BTreeMap::new();
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    for (line_no, obj) in json_lines(path)? {
        let obj = obj?;
        let id = image_id(path, line_no, &obj)?;
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

/// The non-blank lines of a file parsed as JSON objects, with line numbers. A leading UTF-8
/// byte-order mark is skipped; a line that is not UTF-8 is a located error.
fn json_lines(path: &Path) -> Result<Vec<Line>, MetricsError> {
    let bytes = std::fs::read(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
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
    Ok(out)
}

/// What some editors write at the start of a UTF-8 file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

fn image_id(
    path: &Path,
    line_no: usize,
    obj: &serde_json::Map<String, Value>,
) -> Result<String, MetricsError> {
    match obj.get("image") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Some(other) => Err(malformed(
            path,
            line_no,
            format!(
                "\"image\" must be a string or an integer, got {}",
                kind(other)
            ),
        )),
        None => Err(malformed(path, line_no, "missing \"image\"".into())),
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
