//! Disk you can plan: the size of what a run would write, estimated per stage before it runs
//! ([`pipe_stage_api::StageKind::estimate`]), against the free space of the cache's
//! filesystem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pipe_stage_api::{SizeEstimate, Upstream};

use crate::cache::Artifact;
use crate::plan::StageStatus;
use crate::spec::{Spec, StageSpec};

/// What the stages that would run are estimated to write.
#[derive(Debug, Clone, Default)]
pub struct DiskPlan {
    /// Stage → its estimate, for the stages that would run and can say.
    pub stages: BTreeMap<String, SizeEstimate>,
    /// Free bytes on the cache's filesystem, when known.
    pub free: Option<u64>,
}

impl DiskPlan {
    /// The stages' estimates in pipeline order (`statuses`), each stage's upstream images taken
    /// from its dep's artifact when that one stays, else from the dep's own estimate.
    pub fn new(spec: &Spec, statuses: &[StageStatus], to_run: &BTreeSet<String>) -> Self {
        let mut plan = DiskPlan {
            stages: BTreeMap::new(),
            free: free_space(&spec.cache_dir),
        };
        let mut images: BTreeMap<&str, Option<u64>> = BTreeMap::new();
        for stage in &spec.stages {
            let deps: BTreeMap<String, Upstream> = stage
                .deps
                .iter()
                .filter_map(|d| spec.stages.iter().find(|s| &s.name == d))
                .map(|d| {
                    let upstream = Upstream {
                        kind: d.kind.name().to_string(),
                        images: images.get(d.name.as_str()).copied().flatten(),
                    };
                    (d.name.clone(), upstream)
                })
                .collect();
            let held = if to_run.contains(&stage.name) {
                let estimate = stage.kind.estimate(&stage.params, &spec.dir, &deps);
                let held = estimate.as_ref().and_then(|e| e.images);
                if let Some(e) = estimate {
                    plan.stages.insert(stage.name.clone(), e);
                }
                held
            } else {
                statuses
                    .iter()
                    .find(|s| s.name == stage.name)
                    .and_then(|s| s.artifact.as_ref())
                    .and_then(|a| images_in(&a.manifest.metrics))
            };
            images.insert(&stage.name, held);
        }
        plan
    }

    pub fn total(&self) -> u64 {
        self.stages.values().map(|e| e.bytes).sum()
    }

    /// The warning to give when the estimate exceeds the free space.
    pub fn shortfall(&self) -> Option<String> {
        let free = self.free?;
        let total = self.total();
        let parts: Vec<String> = self
            .stages
            .iter()
            .map(|(name, e)| format!("{name} ~{}", human_bytes(e.bytes)))
            .collect();
        (total > free).then(|| {
            let what = format!(
                "this run would write about {} into the cache ({})",
                human_bytes(total),
                parts.join(", ")
            );
            short_of_space(&what, free)
        })
    }
}

/// `what` would not fit in `free` bytes: the warning, with what to do.
fn short_of_space(what: &str, free: u64) -> String {
    format!(
        "{what} and the cache's filesystem has {} free: free some space (`pipe gc`) or move \
         `cache_dir` to a larger disk",
        human_bytes(free)
    )
}

/// A warning when `stage`, about to run with `deps`' artifacts, is estimated to write more than
/// the cache's filesystem has free. Checked as each stage starts (its upstream artifacts exist
/// by then, so their image counts are known), not before the run: keys are computed only once
/// a stage's Hub model is fetched.
pub fn shortfall_of(
    spec: &Spec,
    stage: &StageSpec,
    deps: &BTreeMap<String, Artifact>,
) -> Option<String> {
    let upstream: BTreeMap<String, Upstream> = deps
        .iter()
        .map(|(name, a)| {
            let kind = spec
                .stages
                .iter()
                .find(|s| &s.name == name)
                .map_or("", |s| s.kind.name());
            let up = Upstream {
                kind: kind.to_string(),
                images: images_in(&a.manifest.metrics),
            };
            (name.clone(), up)
        })
        .collect();
    let estimate = stage.kind.estimate(&stage.params, &spec.dir, &upstream)?;
    let free = free_space(&spec.cache_dir)?;
    (estimate.bytes > free).then(|| {
        let what = format!(
            "it is estimated to write {} ({})",
            human_bytes(estimate.bytes),
            estimate.basis
        );
        short_of_space(&what, free)
    })
}

/// How many images an artifact holds, from its metrics: `images`, else the sum of the
/// per-split counts prep reports (`train_images`, ...).
fn images_in(metrics: &serde_json::Map<String, serde_json::Value>) -> Option<u64> {
    if let Some(n) = metrics.get("images").and_then(serde_json::Value::as_u64) {
        return Some(n);
    }
    let splits: Vec<u64> = metrics
        .iter()
        .filter(|(k, _)| k.ends_with("_images") && k.as_str() != "skipped_images")
        .filter_map(|(_, v)| v.as_u64())
        .collect();
    (!splits.is_empty()).then(|| splits.iter().sum())
}

/// Free bytes on the filesystem holding `dir` (or its nearest existing parent).
pub fn free_space(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let stat = rustix::fs::statvfs(existing).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Bytes for people: `3.4 GiB`, `512.0 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_come_from_the_total_or_the_splits() {
        let m = |v: serde_json::Value| v.as_object().cloned().expect("object");
        let collate = m(serde_json::json!({"images": 8091, "captions": 40455}));
        assert_eq!(images_in(&collate), Some(8091));
        let prep = m(serde_json::json!({
            "train_images": 6000, "val_images": 1000, "test_images": 1000, "skipped_images": 3
        }));
        assert_eq!(images_in(&prep), Some(8000));
        assert_eq!(images_in(&m(serde_json::json!({"loss": 1.5}))), None);
    }

    #[test]
    fn a_run_larger_than_the_free_space_is_warned_of() {
        let gib = 1u64 << 30;
        let mut plan = DiskPlan::default();
        plan.stages.insert(
            "collate".into(),
            SizeEstimate::per_image(8091, 442_968, "384x384 RGB8"),
        );
        plan.stages.insert(
            "encode".into(),
            SizeEstimate::per_image(8091, 886_272, "f16"),
        );
        plan.free = Some(20 * gib);
        assert_eq!(plan.shortfall(), None);
        plan.free = Some(5 * gib);
        let warning = plan.shortfall().expect("short of space");
        assert!(
            warning.starts_with("this run would write about 10.0 GiB into the cache (collate ~3.3 GiB, encode ~6.7 GiB) and")
                && warning.contains("has 5.0 GiB free: free some space"),
            "{warning}"
        );
        plan.free = None;
        assert_eq!(plan.shortfall(), None, "unknown free space: no warning");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_bytes(3_579_139_413), "3.3 GiB");
    }
}
