//! `--set STAGE.KEY=VALUE` (and `--set pipeline.KEY=VALUE`): change a value for one run without
//! editing the file. VALUE is TOML value syntax; a bare word that is not valid TOML is a string.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::{Diagnostic, did_you_mean};

#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The flag as the user wrote it, for error messages.
    pub flag: String,
    /// `["stages", "train", "lr"]` or `["pipeline", "seed"]`.
    pub path: Vec<String>,
    pub value: toml::Value,
}

#[derive(Debug, thiserror::Error)]
#[error("--set {0}: expected STAGE.KEY=VALUE (e.g. --set train.lr=5e-5)")]
pub struct OverrideSyntax(String);

impl FromStr for Override {
    type Err = OverrideSyntax;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (lhs, rhs) = s
            .split_once('=')
            .ok_or_else(|| OverrideSyntax(s.to_string()))?;
        let keys: Vec<String> = lhs
            .trim()
            .split('.')
            .map(|k| k.trim().to_string())
            .collect();
        if keys.len() < 2 || keys.iter().any(String::is_empty) {
            return Err(OverrideSyntax(s.to_string()));
        }
        let path = if keys[0] == "pipeline" {
            keys
        } else {
            std::iter::once("stages".to_string()).chain(keys).collect()
        };
        let value = parse_value(rhs.trim());
        Ok(Self {
            flag: format!("--set {s}"),
            path,
            value,
        })
    }
}

fn parse_value(text: &str) -> toml::Value {
    let doc = format!("v = {text}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.to_string())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

/// Apply the overrides; returns which key paths they set (for error locations).
pub fn apply(
    doc: &mut toml::Table,
    overrides: &[Override],
) -> Result<BTreeMap<Vec<String>, String>, Vec<Diagnostic>> {
    let mut set = BTreeMap::new();
    let mut problems = Vec::new();
    for o in overrides {
        if o.path[0] == "stages" {
            let stages = doc.get("stages").and_then(toml::Value::as_table);
            let known: Vec<&str> = stages
                .map(|t| t.keys().map(String::as_str).collect())
                .unwrap_or_default();
            if !known.contains(&o.path[1].as_str()) {
                problems.push(Diagnostic {
                    at: o.flag.clone(),
                    key: o.path[1..].join("."),
                    message: format!("no stage named `{}` in the pipeline", o.path[1]),
                    help: did_you_mean(&o.path[1], known.iter().copied()),
                });
                continue;
            }
        }
        let Some((last, parents)) = o.path.split_last() else {
            continue;
        };
        match set_path(doc, parents, last, o.value.clone()) {
            Ok(()) => {
                set.insert(o.path.clone(), o.flag.clone());
            }
            Err(key) => problems.push(Diagnostic {
                at: o.flag.clone(),
                key: o.path.join("."),
                message: format!("`{key}` is not a table"),
                help: None,
            }),
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// Set `parents.last = value`, creating tables on the way; Err(name) if a parent is not a table.
fn set_path(
    table: &mut toml::Table,
    parents: &[String],
    last: &str,
    value: toml::Value,
) -> Result<(), String> {
    match parents.split_first() {
        None => {
            table.insert(last.to_string(), value);
            Ok(())
        }
        Some((first, rest)) => match table
            .entry(first.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => set_path(t, rest, last, value),
            _ => Err(first.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_as_toml_with_string_fallback() {
        let o: Override = "train.lr=5e-5".parse().expect("valid");
        assert_eq!(o.path, ["stages", "train", "lr"]);
        assert_eq!(o.value, toml::Value::Float(5e-5));
        let o: Override = "prep.root=/data/flickr".parse().expect("valid");
        assert_eq!(o.value, toml::Value::String("/data/flickr".into()));
        let o: Override = "pipeline.seed=3".parse().expect("valid");
        assert_eq!(o.path, ["pipeline", "seed"]);
        assert!("nodot=3".parse::<Override>().is_err());
        assert!("a.b".parse::<Override>().is_err());
    }
}
