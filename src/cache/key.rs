//! Cache keys: blake3 over a canonical JSON pre-image of everything a stage's output depends on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bump when the meaning of a pre-image changes: every key changes with it.
pub const SCHEME: u32 = 1;

/// What a stage's output is a function of. Stored beside the artifact so staleness can be
/// explained as a diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreImage {
    pub scheme: u32,
    pub kind: String,
    pub kind_version: u32,
    /// The stage's parameters, canonical (sorted keys).
    pub params: serde_json::Value,
    /// Upstream stage name → the content hash of its artifact (not its key: early cutoff).
    pub deps: BTreeMap<String, String>,
    /// External input path (as written in pipeline.toml) → content digest.
    pub inputs: BTreeMap<String, String>,
    pub seed: u64,
    /// The resolved backend, for stages that use the accelerator (results differ by device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl PreImage {
    pub fn key(&self) -> String {
        blake3::hash(canonical(&serde_json::to_value(self).unwrap_or_default()).as_bytes())
            .to_hex()
            .to_string()
    }
}

/// TOML parameters → JSON with a stable representation (floats that JSON cannot hold become
/// strings; datetimes become their RFC 3339 text).
pub fn params_json(table: &toml::Table) -> serde_json::Value {
    fn value(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => s.clone().into(),
            toml::Value::Integer(i) => (*i).into(),
            toml::Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or_else(|| f.to_string().into(), serde_json::Value::Number),
            toml::Value::Boolean(b) => (*b).into(),
            toml::Value::Datetime(d) => d.to_string().into(),
            toml::Value::Array(a) => a.iter().map(value).collect(),
            toml::Value::Table(t) => t
                .iter()
                .map(|(k, v)| (k.clone(), value(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
    value(&toml::Value::Table(table.clone()))
}

/// Canonical JSON text: object keys sorted at every level, no insignificant whitespace.
pub fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(k.clone()),
                        canonical(&map[k])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Flatten parameters to `dotted.path → value text`, for explaining changes.
pub fn flatten(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    let mut values = BTreeMap::new();
    flatten_values(v, prefix, &mut values);
    out.extend(values.into_iter().map(|(k, v)| (k, v.to_string())));
}

/// Flatten nested objects to `dotted.path → value` (arrays and empty objects are values).
pub fn flatten_values(
    v: &serde_json::Value,
    prefix: &str,
    out: &mut BTreeMap<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_values(v, &p, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_key_order_but_not_values() {
        let a: toml::Table = toml::from_str("a = 1\nb = { y = 2, x = 1.5 }").expect("toml");
        let b: toml::Table = toml::from_str("b = { x = 1.5, y = 2 }\na = 1").expect("toml");
        let c: toml::Table = toml::from_str("a = 1\nb = { y = 2, x = 1.25 }").expect("toml");
        let pre = |t: &toml::Table| PreImage {
            scheme: SCHEME,
            kind: "command".into(),
            kind_version: 1,
            params: params_json(t),
            deps: BTreeMap::new(),
            inputs: BTreeMap::new(),
            seed: 0,
            backend: None,
        };
        assert_eq!(pre(&a).key(), pre(&b).key());
        assert_ne!(pre(&a).key(), pre(&c).key());
        assert_eq!(
            canonical(&params_json(&a)),
            r#"{"a":1,"b":{"x":1.5,"y":2}}"#
        );
    }
}
