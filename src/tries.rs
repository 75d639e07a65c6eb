//! Tries: runs with overrides (`pipe run --set …`) or a name (`--name`), recorded so they can
//! be compared (`pipe exp show`), diffed (`pipe exp diff`) and kept from `gc` until removed.
//!
//! A try is a small JSON record in the cache, `tries/<pipeline>/<name>.json`: its overrides,
//! its effective parameters (every stage's, flattened to `STAGE.PATH`) and the key of every
//! stage it left fresh. Metrics are not copied into it: they are read from those keys'
//! manifests, one small file per stage, so a table of hundreds of tries stays cheap.
//!
//! Named tries are kept until `pipe exp remove`; tries with generated names are pruned to the
//! newest [`KEEP_UNNAMED`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::{Cache, CacheError, flatten_values, params_json, read_json, write_json_atomic};
use crate::spec::edit::Change;
use crate::spec::{Override, Spec};

/// The row for the pipeline file's own configuration.
pub const WORKSPACE: &str = "workspace";
/// How many tries with generated names are kept (named tries are kept until removed).
pub const KEEP_UNNAMED: usize = 50;
/// The longest try name (it is a file name and a folder under `results/tries/`).
pub const MAX_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TryError {
    #[error(
        "try name {0:?}: use 1 to {MAX_NAME} letters, digits and `.`, `_`, `-`, `=`, `+`, \
         starting with a letter or digit"
    )]
    BadName(String),
    #[error("try name {WORKSPACE:?} is reserved for the pipeline file's own configuration")]
    Reserved,
    #[error("no try named {name:?}{}", known_names(.known))]
    Unknown { name: String, known: Vec<String> },
    #[error("try record {path} is unreadable")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

fn known_names(known: &[String]) -> String {
    if known.is_empty() {
        " (there are no tries yet: `pipe run --set STAGE.KEY=VALUE` makes one)".to_string()
    } else {
        format!(" (known: {})", known.join(", "))
    }
}

/// How a try's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TryStatus {
    /// Every stage is fresh.
    Ok,
    /// A stage failed.
    Failed,
    /// Some stages were not run (a run of named stages, or stages skipped after a failure).
    Incomplete,
}

impl TryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TryStatus::Ok => "ok",
            TryStatus::Failed => "failed",
            TryStatus::Incomplete => "incomplete",
        }
    }
}

/// One recorded try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Try {
    pub name: String,
    /// Named by the user (`--name`), so kept until removed.
    pub named: bool,
    /// Unix seconds when it was recorded.
    pub created: f64,
    pub status: TryStatus,
    /// The overrides as `STAGE.KEY=VALUE` (TOML values).
    pub overrides: Vec<String>,
    /// Every stage's effective parameters, `STAGE.PATH → value`, and `pipeline.seed`.
    pub params: BTreeMap<String, Value>,
    /// Stage → the key of its fresh artifact.
    pub keys: BTreeMap<String, String>,
}

/// Check a user-given try name.
pub fn validate_name(name: &str) -> Result<(), TryError> {
    if name == WORKSPACE {
        return Err(TryError::Reserved);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-=+".contains(c);
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.len() > MAX_NAME || !starts_well || !name.chars().all(allowed) {
        return Err(TryError::BadName(name.to_string()));
    }
    Ok(())
}

/// An override as `STAGE.KEY=VALUE` (or `pipeline.KEY=VALUE`), the value in TOML syntax.
pub fn override_text(o: &Override) -> String {
    let path = if o.path.first().is_some_and(|p| p == "stages") {
        &o.path[1..]
    } else {
        &o.path[..]
    };
    format!("{}={}", path.join("."), o.value)
}

/// A readable name made of the overrides' last keys and values (`lr=0.0003_epochs=2`), cut
/// to [`MAX_NAME`] with a digest of the whole when it is too long. Empty without overrides.
pub fn generated_name(overrides: &[String]) -> String {
    bounded(readable(overrides), overrides)
}

/// The name of a sweep's point: the sweep's, then its values (`lr_rank-lr=0.0001_r=8`).
pub fn point_name(sweep: &str, overrides: &[String]) -> String {
    bounded(format!("{sweep}-{}", readable(overrides)), overrides)
}

/// `last=value` for each override, joined by `_`, with what a name may not hold made `-`.
fn readable(overrides: &[String]) -> String {
    let words: Vec<String> = overrides
        .iter()
        .map(|o| {
            let (path, value) = o.split_once('=').unwrap_or((o, ""));
            let last = path.rsplit('.').next().unwrap_or(path);
            // A string reads better without its quotes: `model=base`, not `model=-base-`.
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            format!("{last}={value}")
        })
        .collect();
    words
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-=+".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `name` made a valid try name: starting with a letter or digit, cut to [`MAX_NAME`] with
/// a digest of `overrides` when too long.
fn bounded(mut name: String, overrides: &[String]) -> String {
    if name.starts_with(|c: char| !c.is_ascii_alphanumeric()) {
        name.insert(0, 't');
    }
    if name.len() > MAX_NAME {
        let digest = blake3::hash(overrides.join("\n").as_bytes()).to_hex();
        name.truncate(MAX_NAME - 9);
        name.push('-');
        name.push_str(&digest[..8]);
    }
    name
}

/// Every stage's effective parameters as `STAGE.PATH → value`, and `pipeline.seed`.
pub fn effective_params(spec: &Spec) -> BTreeMap<String, Value> {
    let mut params = BTreeMap::new();
    params.insert("pipeline.seed".to_string(), Value::from(spec.seed));
    for stage in &spec.stages {
        flatten_values(&params_json(&stage.params), &stage.name, &mut params);
    }
    params
}

/// The tries of one pipeline file in one cache.
pub struct Tries {
    dir: PathBuf,
}

impl Tries {
    pub fn new(cache: &Cache, pipeline_id: &str) -> Self {
        Self {
            dir: cache.tries_dir(pipeline_id),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every try, oldest first. A record that cannot be read is an error naming its file.
    pub fn list(&self) -> Result<Vec<Try>, TryError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(TryError::Corrupt {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut tries = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue; // a temporary file of a write in progress
            }
            let t: Try = read_json(&path).map_err(|source| TryError::Corrupt {
                path: path.clone(),
                source,
            })?;
            // The name becomes a path under results/: it must be the file's own, and valid.
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            if stem.as_deref() != Some(t.name.as_str()) || validate_name(&t.name).is_err() {
                return Err(TryError::Corrupt {
                    path,
                    source: std::io::Error::other(format!(
                        "its name {:?} is not a valid try name matching the file's",
                        t.name
                    )),
                });
            }
            tries.push(t);
        }
        tries.sort_by(|a, b| a.created.total_cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(tries)
    }

    /// The try called `name`.
    pub fn get(&self, name: &str) -> Result<Try, TryError> {
        let tries = self.list()?;
        let known = tries.iter().map(|t| t.name.clone()).collect();
        tries
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TryError::Unknown {
                name: name.to_string(),
                known,
            })
    }

    /// The name an unnamed try with these overrides gets: [`generated_name`], with `-2`, `-3`…
    /// when another try already has it (the same overrides reuse their name).
    pub fn unique_name(&self, overrides: &[String]) -> Result<String, TryError> {
        let base = generated_name(overrides);
        let tries = self.list()?;
        let taken = |n: &str| {
            tries
                .iter()
                .any(|t| t.name == n && t.overrides != overrides)
        };
        let mut name = base.clone();
        let mut n = 2;
        while taken(&name) || name == WORKSPACE {
            let suffix = format!("-{n}");
            let mut stem = base.clone();
            stem.truncate(MAX_NAME - suffix.len());
            name = stem + &suffix;
            n += 1;
        }
        Ok(name)
    }

    /// Record `t` (replacing a try of the same name), then prune tries with generated names
    /// to the newest `keep_unnamed`; the names pruned. Callers hold the cache's metadata lock.
    pub fn save(&self, t: &Try, keep_unnamed: usize) -> Result<Vec<String>, TryError> {
        let path = self.path(&t.name);
        write_json_atomic(&path, t).map_err(crate::cache::io_at(&path))?;
        let unnamed: Vec<Try> = self.list()?.into_iter().filter(|t| !t.named).collect();
        let excess = unnamed.len().saturating_sub(keep_unnamed);
        let mut pruned = Vec::new();
        for old in &unnamed[..excess] {
            tracing::debug!("pruning unnamed try {}", old.name);
            if std::fs::remove_file(self.path(&old.name)).is_ok() {
                pruned.push(old.name.clone());
            }
        }
        Ok(pruned)
    }

    /// Forget the try called `name` (its artifacts stay until `gc`).
    pub fn remove(&self, name: &str) -> Result<(), TryError> {
        let path = self.path(name);
        std::fs::remove_file(&path).map_err(crate::cache::io_at(&path))?;
        Ok(())
    }
}

/// One row of the table: a try, or the workspace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub name: String,
    pub created: Option<f64>,
    /// `ok`, `failed`, `incomplete`; the workspace is `ok` when every stage is fresh.
    pub status: String,
    pub params: BTreeMap<String, Value>,
    /// `STAGE.METRIC → number`, from the manifests of the row's keys.
    pub metrics: BTreeMap<String, f64>,
    pub keys: BTreeMap<String, String>,
}

impl Row {
    /// A try's row, its metrics read from the cache (a key gc'd meanwhile has none).
    pub fn of_try(t: &Try, cache: &Cache) -> Self {
        Self {
            name: t.name.clone(),
            created: Some(t.created),
            status: t.status.as_str().to_string(),
            params: t.params.clone(),
            metrics: metrics_of(&t.keys, cache),
            keys: t.keys.clone(),
        }
    }

    /// The workspace's row: the file's parameters and its fresh stages' keys.
    pub fn workspace(spec: &Spec, fresh: BTreeMap<String, String>, cache: &Cache) -> Self {
        let complete = fresh.len() == spec.stages.len();
        Self {
            name: WORKSPACE.to_string(),
            created: None,
            status: if complete { "ok" } else { "incomplete" }.to_string(),
            params: effective_params(spec),
            metrics: metrics_of(&fresh, cache),
            keys: fresh,
        }
    }
}

/// Every numeric metric of the artifacts `keys` name, as `STAGE.METRIC` (nested objects
/// joined with `.`).
pub fn metrics_of(keys: &BTreeMap<String, String>, cache: &Cache) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::new();
    for (stage, key) in keys {
        let Some(artifact) = cache.artifact(key) else {
            continue;
        };
        let mut flat = BTreeMap::new();
        flatten_values(&Value::Object(artifact.manifest.metrics), stage, &mut flat);
        metrics.extend(
            flat.into_iter()
                .filter_map(|(k, v)| v.as_f64().filter(|x| x.is_finite()).map(|x| (k, x))),
        );
    }
    metrics
}

/// The parameter paths whose values are not the same in every row (a path missing from a row
/// counts as different).
pub fn differing_params(rows: &[Row]) -> Vec<String> {
    let all: BTreeSet<&String> = rows.iter().flat_map(|r| r.params.keys()).collect();
    all.into_iter()
        .filter(|k| {
            let mut values = rows.iter().map(|r| r.params.get(*k));
            let first = values.next().flatten();
            values.any(|v| v != first)
        })
        .cloned()
        .collect()
}

/// Every metric any row has, sorted.
pub fn metric_names(rows: &[Row]) -> Vec<String> {
    let all: BTreeSet<&String> = rows.iter().flat_map(|r| r.metrics.keys()).collect();
    all.into_iter().cloned().collect()
}

/// The metrics whose values are not the same in every row (a row without one counts as
/// different).
pub fn differing_metrics(rows: &[Row]) -> Vec<String> {
    metric_names(rows)
        .into_iter()
        .filter(|m| {
            let mut values = rows.iter().map(|r| r.metrics.get(m));
            let first = values.next().flatten();
            values.any(|v| v != first)
        })
        .collect()
}

/// Whether smaller is better for a metric: losses, perplexities, errors and durations.
pub fn lower_is_better(metric: &str) -> bool {
    let name = metric
        .rsplit('.')
        .next()
        .unwrap_or(metric)
        .to_ascii_lowercase();
    ["loss", "perplexity", "error", "seconds"]
        .iter()
        .any(|w| name.contains(w))
        || (name.ends_with("_s") && !name.contains("_per_"))
}

/// The best value of `metric` among the rows.
pub fn best(rows: &[Row], metric: &str) -> Option<f64> {
    let values = rows.iter().filter_map(|r| r.metrics.get(metric).copied());
    if lower_is_better(metric) {
        values.reduce(f64::min)
    } else {
        values.reduce(f64::max)
    }
}

/// Sort rows by `metric`, best first; rows without it last. The workspace row stays first.
pub fn sort_by_metric(rows: &mut [Row], metric: &str) {
    let lower = lower_is_better(metric);
    let start = usize::from(rows.first().is_some_and(|r| r.name == WORKSPACE));
    rows[start..].sort_by(
        |a, b| match (a.metrics.get(metric), b.metrics.get(metric)) {
            (Some(x), Some(y)) if lower => x.total_cmp(y),
            (Some(x), Some(y)) => y.total_cmp(x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        },
    );
}

/// What differs between two rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub params: Vec<ParamDiff>,
    pub metrics: Vec<MetricDiff>,
    pub keys: Vec<KeyDiff>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamDiff {
    pub key: String,
    pub a: Option<Value>,
    pub b: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDiff {
    pub key: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// `b - a`, when both have it.
    pub delta: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyDiff {
    pub stage: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// The parameters, metrics and stage keys that differ from `a` to `b`.
pub fn diff(a: &Row, b: &Row) -> Diff {
    let params = changed(&a.params, &b.params)
        .map(|(key, a, b)| ParamDiff { key, a, b })
        .collect();
    let metrics = changed(&a.metrics, &b.metrics)
        .map(|(key, a, b)| MetricDiff {
            key,
            a,
            b,
            delta: a.zip(b).map(|(x, y)| y - x),
        })
        .collect();
    let keys = changed(&a.keys, &b.keys)
        .map(|(stage, a, b)| KeyDiff { stage, a, b })
        .collect();
    Diff {
        params,
        metrics,
        keys,
    }
}

/// The entries of either map whose values differ (missing counts as different), in key order.
fn changed<'m, V: PartialEq + Clone>(
    a: &'m BTreeMap<String, V>,
    b: &'m BTreeMap<String, V>,
) -> impl Iterator<Item = (String, Option<V>, Option<V>)> + 'm {
    let all: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    all.into_iter()
        .filter(move |k| a.get(*k) != b.get(*k))
        .map(move |k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
}

/// The edits to pipeline.toml that give its stages `target`'s parameters (a try's): each
/// value that differs set, each value `target` lacks removed. Only the stages (and
/// `pipeline`) both sides have are compared; [`stages_of`] tells which those are.
pub fn changes_to(
    current: &BTreeMap<String, Value>,
    target: &BTreeMap<String, Value>,
) -> Vec<Change> {
    let theirs = stages_of(target);
    let both: BTreeSet<&str> = stages_of(current).intersection(&theirs).copied().collect();
    changed(current, target)
        .filter(|(key, ..)| both.contains(stage_of(key)))
        .map(|(key, _, value)| Change {
            path: file_path(&key),
            value,
        })
        .collect()
}

/// The stages (and `pipeline`) that flattened parameters are of.
pub fn stages_of(params: &BTreeMap<String, Value>) -> BTreeSet<&str> {
    params.keys().map(|k| stage_of(k)).collect()
}

/// `train.lr` → `train`; `pipeline.seed` → `pipeline`.
pub fn stage_of(key: &str) -> &str {
    key.split('.').next().unwrap_or(key)
}

/// A flattened parameter's path in the file: `train.lr` → `stages.train.lr`.
fn file_path(key: &str) -> Vec<String> {
    let parts = key.split('.').map(str::to_string);
    if stage_of(key) == "pipeline" {
        parts.collect()
    } else {
        std::iter::once("stages".to_string()).chain(parts).collect()
    }
}

/// Where a try's results are shown: `results/tries/NAME/`.
pub fn results_dir(spec: &Spec, name: &str) -> PathBuf {
    tries_results_root(&spec.results_dir).join(name)
}

/// `results/tries/`.
pub fn tries_results_root(results: &Path) -> PathBuf {
    results.join("tries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_generated_names_are_valid_and_bounded() {
        for ok in ["lr-3e-4", "a", "best.v2", "lr=0.001_r=8"] {
            validate_name(ok).expect(ok);
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "with space",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(validate_name(bad), Err(TryError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(validate_name(WORKSPACE), Err(TryError::Reserved)));

        let name = generated_name(&["train.lr=0.0003".into(), "train.lora.r=8".into()]);
        assert_eq!(name, "lr=0.0003_r=8");
        let odd = generated_name(&["prep.path=\"a b/c\"".into()]);
        assert_eq!(odd, "path=a-b-c", "a string's quotes are dropped");
        validate_name(&odd).expect("generated names are valid");
        let point = point_name("grid", &["train.lr=0.0003".into()]);
        assert_eq!(point, "grid-lr=0.0003");
        let long_point = point_name("grid", &[format!("train.cmd=\"{}\"", "x".repeat(100))]);
        assert_eq!(long_point.len(), MAX_NAME);
        assert!(long_point.starts_with("grid-cmd=xxx"), "{long_point}");
        validate_name(&long_point).expect("point names are valid");
        let long: Vec<String> = (0..20).map(|i| format!("s.key{i}={i}")).collect();
        let cut = generated_name(&long);
        assert_eq!(cut.len(), MAX_NAME);
        validate_name(&cut).expect("cut names are valid");
        let mut other = long.clone();
        other[19] = "s.key19=20".into();
        assert_ne!(
            generated_name(&other),
            cut,
            "the digest tells cut names apart"
        );
    }

    fn row(name: &str, params: &[(&str, Value)], metrics: &[(&str, f64)]) -> Row {
        Row {
            name: name.into(),
            created: None,
            status: "ok".into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            keys: BTreeMap::new(),
        }
    }

    #[test]
    fn differing_params_best_values_sorting_and_diff() {
        let mut rows = vec![
            row(
                WORKSPACE,
                &[("train.lr", 1e-4.into()), ("train.epochs", 2.into())],
                &[("train.best_val_loss", 2.0), ("evaluate.bleu4", 0.1)],
            ),
            row(
                "a",
                &[("train.lr", 3e-4.into()), ("train.epochs", 2.into())],
                &[("train.best_val_loss", 1.5), ("evaluate.bleu4", 0.3)],
            ),
            row(
                "b",
                &[
                    ("train.lr", 1e-3.into()),
                    ("train.epochs", 2.into()),
                    ("x.y", true.into()),
                ],
                &[("train.best_val_loss", 1.0), ("evaluate.bleu4", 0.2)],
            ),
        ];
        assert_eq!(differing_params(&rows), ["train.lr", "x.y"]);
        assert_eq!(best(&rows, "train.best_val_loss"), Some(1.0));
        assert_eq!(best(&rows, "evaluate.bleu4"), Some(0.3));
        assert_eq!(best(&rows, "nothing"), None);
        sort_by_metric(&mut rows, "evaluate.bleu4");
        let order: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, [WORKSPACE, "a", "b"]);
        sort_by_metric(&mut rows, "train.best_val_loss");
        let order: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, [WORKSPACE, "b", "a"]);

        let d = diff(&rows[0], &rows[1]);
        let params: Vec<&str> = d.params.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(params, ["train.lr", "x.y"]);
        assert_eq!(d.params[1].a, None);
        let loss = d.metrics.iter().find(|m| m.key == "train.best_val_loss");
        assert_eq!(loss.and_then(|m| m.delta), Some(-1.0));
    }

    #[test]
    fn loss_like_metrics_are_lower_is_better() {
        for lower in [
            "train.best_val_loss",
            "evaluate.test_loss",
            "train.duration_s",
            "infer.seconds",
        ] {
            assert!(lower_is_better(lower), "{lower}");
        }
        for higher in [
            "evaluate.bleu4",
            "evaluate.meteor",
            "evaluate.cider",
            "infer.captions_per_s",
        ] {
            assert!(!lower_is_better(higher), "{higher}");
        }
    }

    #[test]
    fn save_replaces_by_name_and_prunes_only_unnamed_tries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path()).expect("cache");
        let tries = Tries::new(&cache, "p");
        let t = |name: &str, named: bool, created: f64| Try {
            name: name.into(),
            named,
            created,
            status: TryStatus::Ok,
            overrides: vec![format!("s.x={created}")],
            params: BTreeMap::new(),
            keys: BTreeMap::new(),
        };
        tries.save(&t("kept", true, 0.0), 2).expect("save");
        for i in 1..=4 {
            tries
                .save(&t(&format!("u{i}"), false, f64::from(i)), 2)
                .expect("save");
        }
        let names: Vec<String> = tries
            .list()
            .expect("list")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["kept", "u3", "u4"]);
        tries.save(&t("kept", true, 9.0), 2).expect("replace");
        assert_eq!(tries.get("kept").expect("get").created, 9.0);
        assert!(matches!(tries.get("nope"), Err(TryError::Unknown { .. })));
        // Another try's name with different overrides is not reused.
        assert_eq!(tries.unique_name(&["s.x=3".into()]).expect("name"), "x=3");
        let mut clash = t("x=3", false, 10.0);
        clash.overrides = vec!["other.x=3".into()];
        tries.save(&clash, 50).expect("save");
        assert_eq!(tries.unique_name(&["s.x=3".into()]).expect("name"), "x=3-2");
        assert_eq!(
            tries.unique_name(&["other.x=3".into()]).expect("name"),
            "x=3"
        );
    }
}
