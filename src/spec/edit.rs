//! Edit pipeline.toml's values in place, keeping every comment, blank line and the order of
//! keys (toml_edit): what `pipe exp apply` writes. The caller validates the result with
//! [`super::parse`] before writing it anywhere.

use serde_json::Value as Json;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// One value to change: `path` from the file's root (`["stages", "train", "lr"]`), set to a
/// value or, with `None`, removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: Vec<String>,
    pub value: Option<Json>,
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("not valid TOML: {0}")]
    Parse(#[from] toml_edit::TomlError),
    #[error("`{path}` is not a table, so `{key}` cannot be set in it")]
    NotATable { path: String, key: String },
    #[error("`{path}`: {reason}")]
    Value { path: String, reason: String },
}

/// `text` with `changes` made: removals first, then sets in order. A set keeps the old
/// value's surrounding whitespace and trailing comment; a missing table on the way is made
/// (a `[table]` at the top level, an inline table below it).
pub fn apply(text: &str, changes: &[Change]) -> Result<String, EditError> {
    let mut doc: DocumentMut = text.parse()?;
    let (removes, sets): (Vec<&Change>, Vec<&Change>) =
        changes.iter().partition(|c| c.value.is_none());
    for c in removes {
        remove(&mut doc, &c.path);
    }
    for c in sets {
        if let Some(v) = &c.value {
            set(&mut doc, &c.path, v)?;
        }
    }
    Ok(doc.to_string())
}

fn remove(doc: &mut DocumentMut, path: &[String]) {
    let Some((leaf, parents)) = path.split_last() else {
        return;
    };
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    for (i, key) in parents.iter().enumerate() {
        let Some(item) = table.get_mut(key) else {
            return;
        };
        if i + 1 == parents.len()
            && let Some(inline) = item.as_inline_table_mut()
        {
            remove_inline(inline, leaf);
            return;
        }
        match item.as_table_like_mut() {
            Some(t) => table = t,
            None => return,
        }
    }
    table.remove(leaf);
}

/// Remove `key` from `{ a = 1, key = 2 }`, handing the space before `}` to the new last value.
fn remove_inline(table: &mut InlineTable, key: &str) {
    let was_last = table.iter().last().is_some_and(|(k, _)| k == key);
    let Some(removed) = table.remove(key) else {
        return;
    };
    if was_last && let Some((_, last)) = table.iter_mut().last() {
        let suffix = removed.decor().suffix().cloned();
        if let Some(suffix) = suffix {
            last.decor_mut().set_suffix(suffix);
        }
    }
}

fn set(doc: &mut DocumentMut, path: &[String], json: &Json) -> Result<(), EditError> {
    let Some((leaf, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut new = value(json).map_err(|reason| EditError::Value {
        path: path.join("."),
        reason,
    })?;
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    for (depth, key) in parents.iter().enumerate() {
        if table.get(key).is_none() {
            let made = if depth == 0 {
                Item::Table(Table::new())
            } else {
                Item::Value(Value::InlineTable(InlineTable::new()))
            };
            table.insert(key, made);
        }
        table = match table.get_mut(key).and_then(Item::as_table_like_mut) {
            Some(t) => t,
            None => {
                return Err(EditError::NotATable {
                    path: path[..=depth].join("."),
                    key: leaf.clone(),
                });
            }
        };
    }
    match table.get_mut(leaf) {
        Some(Item::Value(old)) => {
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        Some(other) => *other = Item::Value(new),
        None => {
            table.insert(leaf, Item::Value(new));
        }
    }
    Ok(())
}

/// A JSON parameter as a TOML value: integers stay integers (`serde_json` keeps `2` and
/// `2.0` apart), objects become inline tables.
fn value(json: &Json) -> Result<Value, String> {
    Ok(match json {
        Json::Bool(b) => Value::from(*b),
        Json::String(s) => Value::from(s.as_str()),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) if n.is_f64() => Value::from(f),
            _ => return Err(format!("{n} does not fit a TOML integer")),
        },
        Json::Array(items) => {
            let mut a = Array::new();
            for item in items {
                a.push_formatted(value(item)?);
            }
            a.fmt();
            Value::Array(a)
        }
        Json::Object(map) => {
            let mut t = InlineTable::new();
            for (k, v) in map {
                t.insert(k, value(v)?);
            }
            t.fmt();
            Value::InlineTable(t)
        }
        Json::Null => return Err("null has no TOML form".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(path: &str, value: Option<Json>) -> Change {
        Change {
            path: path.split('.').map(str::to_string).collect(),
            value,
        }
    }

    const FILE: &str = "\
# the file's own comment
[pipeline]
seed = 0

[stages.train]
lr = 1e-4          # the learning rate
lora = { r = 16, alpha = 32, dropout = 0.1 }   # adapters
epochs = 5
";

    #[test]
    fn sets_keep_comments_and_layout() {
        let out = apply(
            FILE,
            &[
                change("stages.train.lr", Some(json!(0.0003))),
                change("stages.train.lora.r", Some(json!(8))),
                change("stages.train.epochs", None),
                change("stages.train.lora.dropout", None),
                change("stages.train.schedule", Some(json!("cosine"))),
            ],
        )
        .expect("apply");
        assert_eq!(
            out,
            "\
# the file's own comment
[pipeline]
seed = 0

[stages.train]
lr = 0.0003          # the learning rate
lora = { r = 8, alpha = 32 }   # adapters
schedule = \"cosine\"
"
        );
    }

    #[test]
    fn numbers_keep_their_type_and_missing_tables_are_made() {
        let out = apply(
            "",
            &[
                change("pipeline.seed", Some(json!(3))),
                change("stages.a.x", Some(json!(2.0))),
                change("stages.a.t.y", Some(json!([1, "b"]))),
            ],
        )
        .expect("apply");
        let back: toml::Table = toml::from_str(&out).expect("valid TOML");
        assert_eq!(back["pipeline"]["seed"].as_integer(), Some(3));
        assert_eq!(back["stages"]["a"]["x"].as_float(), Some(2.0));
        assert_eq!(back["stages"]["a"]["t"]["y"][1].as_str(), Some("b"));
    }

    #[test]
    fn a_value_in_the_way_is_an_error() {
        let err = apply(FILE, &[change("stages.train.lr.x", Some(json!(1)))]).unwrap_err();
        assert!(
            matches!(&err, EditError::NotATable { path, .. } if path == "stages.train.lr"),
            "{err}"
        );
    }
}
