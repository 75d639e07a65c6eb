//! `[sweeps.NAME]`: a grid of values over parameter paths, each point a try.
//!
//! ```toml
//! [sweeps.lr_rank]                  # pipe run --sweep lr_rank
//! "train.lr" = [1e-4, 3e-4, 1e-3]
//! "train.lora.r" = [8, 16]          # the cartesian product: 6 points
//! ```
//!
//! A key is what `--set` accepts (`STAGE.PATH` or `pipeline.KEY`); each value becomes an
//! [`Override`] whose flag is where the value is written, so a point's invalid value is
//! reported at `pipeline.toml:LINE:COL` by the same checks as `--set`.

use std::collections::BTreeSet;

use super::{Override, Validator, did_you_mean, valid_name};

/// The most points one sweep may have: a grid is run, not enumerated forever.
pub const MAX_POINTS: usize = 1000;

/// The longest sweep name (point names start with it and are at most 64 characters).
pub const MAX_NAME: usize = 24;

/// Keys of a stage that say what it is, not how it runs: a sweep cannot vary them.
const FIXED_STAGE_KEYS: &[&str] = &["kind", "deps", "results"];
/// Keys of a stage that say where it runs, not what it computes: every point would be the same.
const PLACEMENT_STAGE_KEYS: &[&str] = &["executor", "resources"];
/// The `[pipeline]` keys a sweep may vary.
const SWEEPABLE_PIPELINE_KEYS: &[&str] = &["seed", "backend"];

/// One declared sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    /// In file order; the first varies slowest.
    pub axes: Vec<Axis>,
}

/// One swept path and its values, each an override located where it is written.
#[derive(Debug, Clone)]
pub struct Axis {
    /// As written, e.g. `train.lr`.
    pub key: String,
    pub values: Vec<Override>,
}

impl Sweep {
    /// Every point of the grid, each the overrides of one value per axis, in order (the last
    /// axis varies fastest).
    pub fn points(&self) -> Vec<Vec<Override>> {
        let mut points: Vec<Vec<Override>> = vec![Vec::new()];
        for axis in &self.axes {
            points = points
                .into_iter()
                .flat_map(|p| {
                    axis.values.iter().map(move |v| {
                        let mut p = p.clone();
                        p.push(v.clone());
                        p
                    })
                })
                .collect();
        }
        points
    }
}

impl Validator<'_> {
    /// The `[sweeps]` table: every sweep's shape checked (its name, its paths, non-empty lists,
    /// a bounded size). Whether each value suits its parameter is checked per point, by
    /// loading the pipeline with the point's overrides.
    pub(super) fn sweeps(&mut self, doc: &toml::Table, stage_names: &[&str]) -> Vec<Sweep> {
        let Some(value) = doc.get("sweeps") else {
            return Vec::new();
        };
        let Some(table) = value.as_table() else {
            self.report(
                &["sweeps"],
                "must be a table of `[sweeps.<name>]` tables",
                None,
            );
            return Vec::new();
        };
        let mut sweeps = Vec::new();
        for (name, value) in table {
            let at = ["sweeps", name.as_str()];
            if !valid_name(name) || name.len() > MAX_NAME {
                self.report(
                    &at,
                    format!(
                        "sweep names must start with a letter and use only letters, digits, \
                         `_` and `-`, at most {MAX_NAME} characters"
                    ),
                    None,
                );
                continue;
            }
            let Some(grid) = value.as_table() else {
                self.report(&at, "must be a table of `\"STAGE.KEY\" = [values…]`", None);
                continue;
            };
            if let Some(sweep) = self.sweep(name, grid, stage_names) {
                sweeps.push(sweep);
            }
        }
        sweeps
    }

    fn sweep(&mut self, name: &str, grid: &toml::Table, stages: &[&str]) -> Option<Sweep> {
        let mut entries = Vec::new();
        flatten_grid(grid, &mut Vec::new(), &mut entries);
        if entries.is_empty() {
            self.report(
                &["sweeps", name],
                "an empty sweep: add `\"STAGE.KEY\" = [values…]`",
                None,
            );
            return None;
        }
        let mut axes = Vec::new();
        let mut seen = BTreeSet::new();
        let mut ok = true;
        for (segments, value) in entries {
            let mut at: Vec<&str> = vec!["sweeps", name];
            at.extend(segments.iter().map(String::as_str));
            let key = segments.join(".");
            let parts: Vec<String> = key.split('.').map(str::to_string).collect();
            let Some(path) = self.sweep_path(&at, &parts, stages) else {
                ok = false;
                continue;
            };
            if !seen.insert(path.clone()) {
                self.report(&at, format!("`{key}` is swept twice"), None);
                ok = false;
                continue;
            }
            let Some(items) = value.as_array() else {
                self.report(&at, "must be a list of values, e.g. [1e-4, 3e-4]", None);
                ok = false;
                continue;
            };
            if items.is_empty() {
                self.report(&at, "an empty list: give at least one value", None);
                ok = false;
                continue;
            }
            let values = items
                .iter()
                .enumerate()
                .map(|(i, v)| Override {
                    flag: self.src.locate_item(&at, i).to_string(),
                    path: path.clone(),
                    value: v.clone(),
                })
                .collect();
            axes.push(Axis { key, values });
        }
        if !ok {
            return None;
        }
        let sweep = Sweep {
            name: name.to_string(),
            axes,
        };
        let size = sweep
            .axes
            .iter()
            .try_fold(1usize, |n, a| n.checked_mul(a.values.len()));
        if size.is_none_or(|n| n > MAX_POINTS) {
            self.report(
                &["sweeps", name],
                format!("more than {MAX_POINTS} points: split it into smaller sweeps"),
                None,
            );
            return None;
        }
        Some(sweep)
    }

    /// The override path of a swept key (`train.lr` → `stages.train.lr`), or a reported problem.
    fn sweep_path(
        &mut self,
        at: &[&str],
        parts: &[String],
        stages: &[&str],
    ) -> Option<Vec<String>> {
        let key = parts.join(".");
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            self.report(
                at,
                format!("`{key}`: expected STAGE.KEY or pipeline.KEY, as `--set` takes"),
                None,
            );
            return None;
        }
        if parts[0] == "pipeline" {
            if parts.len() != 2 || !SWEEPABLE_PIPELINE_KEYS.contains(&parts[1].as_str()) {
                let help = did_you_mean(&parts[1], SWEEPABLE_PIPELINE_KEYS.iter().copied());
                self.report(
                    at,
                    format!(
                        "`{key}` cannot be swept (of [pipeline], only {} can)",
                        SWEEPABLE_PIPELINE_KEYS.join(" and ")
                    ),
                    help,
                );
                return None;
            }
            return Some(parts.to_vec());
        }
        if !stages.contains(&parts[0].as_str()) {
            let help = did_you_mean(&parts[0], stages.iter().copied());
            self.report(
                at,
                format!("no stage named `{}` in the pipeline", parts[0]),
                help,
            );
            return None;
        }
        if FIXED_STAGE_KEYS.contains(&parts[1].as_str()) {
            self.report(
                at,
                format!("`{key}` cannot be swept: it says what the stage is, not how it runs"),
                None,
            );
            return None;
        }
        if PLACEMENT_STAGE_KEYS.contains(&parts[1].as_str()) {
            self.report(
                at,
                format!(
                    "`{key}` cannot be swept: it says where the stage runs, not what it \
                     computes, so every point would be the same"
                ),
                None,
            );
            return None;
        }
        Some(
            std::iter::once("stages".to_string())
                .chain(parts.iter().cloned())
                .collect(),
        )
    }
}

/// The grid's entries as (key segments, value): nested tables (`train.lr = […]` written as a
/// dotted key) are followed; anything else, a list or not, ends a path.
fn flatten_grid<'t>(
    table: &'t toml::Table,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'t toml::Value)>,
) {
    for (k, v) in table {
        prefix.push(k.clone());
        match v {
            toml::Value::Table(t) => flatten_grid(t, prefix, out),
            other => out.push((prefix.clone(), other)),
        }
        prefix.pop();
    }
}
