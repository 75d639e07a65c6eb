//! Printing: one function per command, human text or JSON.

use std::path::Path;

use pipe::cache::{Artifact, GcReport, VerifyReport, flatten, short};
use pipe::disk::DiskPlan;
use pipe::lockfile::LockFile;
use pipe::plan::{Planner, StageStatus, State};
use pipe::run::{Action, StageReport};
use pipe::spec::{Spec, StageSpec};
use serde_json::json;

pub fn print_json(v: &serde_json::Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn status(statuses: &[StageStatus], disk: &DiskPlan, lock: Option<&LockFile>, as_json: bool) {
    let locked = |s: &StageStatus| lock.and_then(|l| l.stages.get(&s.name)).map(|l| &l.key);
    if as_json {
        let stages: Vec<_> = statuses
            .iter()
            .map(|s| json!({ "stage": s.name, "status": s.state.as_str(), "key": s.key, "reasons": s.reasons, "locked": locked(s), "estimate": disk.stages.get(&s.name) }))
            .collect();
        print_json(&json!({ "stages": stages, "free_bytes": disk.free }));
        return;
    }
    let width = statuses
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    for s in statuses {
        let key = s.key.as_deref().map_or("-", short);
        let line = format!("{:width$}  {:8} {key}", s.name, s.state.as_str());
        outln!("{}", line.trim_end());
        for r in &s.reasons {
            outln!("{:width$}    {r}", "");
        }
    }
    lock_lines(statuses, lock);
    self::disk(disk);
}

/// What a run would write, when anything can be estimated, and a warning when the cache's
/// filesystem lacks the space.
pub fn disk(disk: &DiskPlan) {
    if disk.stages.is_empty() {
        return;
    }
    let free = disk
        .free
        .map(|f| format!("; {} free there", pipe::disk::human_bytes(f)))
        .unwrap_or_default();
    outln!(
        "a run would write about {} into the cache{free}",
        pipe::disk::human_bytes(disk.total())
    );
    if let Some(warning) = disk.shortfall() {
        tracing::warn!("{warning}");
    }
}

/// Where pipe.lock (the committed config's keys) and this workspace part: each stage whose
/// key differs; else, the locked stages this machine cannot key (an input it lacks), which
/// `pipe pull` fetches all the same.
fn lock_lines(statuses: &[StageStatus], lock: Option<&LockFile>) {
    let Some(lock) = lock else { return };
    let locked = |s: &StageStatus| lock.stages.get(&s.name).map(|l| l.key.as_str());
    let differ: Vec<(&StageStatus, &str)> = statuses
        .iter()
        .filter_map(|s| locked(s).map(|l| (s, l)))
        .filter(|(s, l)| s.key.as_deref().is_some_and(|k| k != *l))
        .collect();
    for (s, l) in &differ {
        outln!(
            "{}: `{}` is locked at {}, the workspace is at {} (`pipe run` rewrites the lock)",
            pipe::lockfile::FILE,
            s.name,
            short(l),
            short(s.key.as_deref().unwrap_or_default())
        );
    }
    if !differ.is_empty() {
        return;
    }
    let unkeyed: Vec<&str> = statuses
        .iter()
        .filter(|s| s.key.is_none() && s.state != State::Fresh && locked(s).is_some())
        .map(|s| s.name.as_str())
        .collect();
    if !unkeyed.is_empty() {
        outln!(
            "{}: locks {} at keys not computed here; `pipe pull` fetches them",
            pipe::lockfile::FILE,
            unkeyed.join(", ")
        );
    }
}

pub fn run_line(r: &StageReport) {
    let mark = match r.action {
        Action::Ran => "✓",
        Action::Cached | Action::Restored => "·",
        Action::Pulled => "↓",
        Action::Failed => "✗",
        Action::Skipped => "-",
        Action::WouldRun => "?",
    };
    let key = r.key.as_deref().map_or("", short);
    let took = r
        .duration_s
        .map(|d| format!("  {d:.1}s"))
        .unwrap_or_default();
    let size = r
        .estimate
        .as_ref()
        .map(|e| format!("  ~{} ({})", pipe::disk::human_bytes(e.bytes), e.basis))
        .unwrap_or_default();
    let line = format!(
        "{mark} {:12} {:9} {key}{took}{size}",
        r.stage,
        r.action.as_str()
    );
    outln!("{}", line.trim_end());
    if r.action != Action::Cached {
        for reason in &r.reasons {
            outln!("      {reason}");
        }
    }
    if let Some(e) = &r.error {
        outln!("      error: {e}");
    }
}

pub fn run_summary(reports: &[StageReport]) {
    outln!(
        "{} stage{}: {}",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" },
        action_counts(reports)
    );
}

/// A run's last lines: each fresh stage's headline metrics (`StageKind::headline`) and its
/// page under `results` (report.html, gallery.html), e.g.
/// `evaluate: BLEU-4 0.2312 · CIDEr 0.6511 · results/evaluate/report.html`.
pub fn headlines(spec: &Spec, fresh: &[(String, Artifact)], results: &Path) {
    // Pages are named as the user can open them from where they are.
    let cwd = std::env::current_dir().unwrap_or_default();
    for (name, artifact) in fresh {
        let Some(stage) = spec.stage(name) else {
            continue;
        };
        let mut parts: Vec<String> = stage
            .kind
            .headline()
            .iter()
            .filter_map(|k| {
                let v = artifact.manifest.metrics.get(*k)?;
                Some(match v.as_f64() {
                    Some(x) if v.is_f64() => format!("{k} {}", significant(x)),
                    _ => format!("{k} {v}"),
                })
            })
            .collect();
        // results/ shows the file's config at the stage's own folder; a try's under its name.
        let folder = if results == spec.results_dir {
            stage.results.clone()
        } else {
            results.join(name)
        };
        for page in ["report.html", "gallery.html"] {
            let path = folder.join(page);
            if path.is_file() {
                let shown = path.strip_prefix(&cwd).unwrap_or(&path);
                parts.push(shown.display().to_string());
            }
        }
        if !parts.is_empty() {
            outln!("{name}: {}", parts.join(" · "));
        }
    }
}

/// `x` to 4 significant digits (`0.5312`, `12.35`, `1235`, `2.350e-9`).
pub(crate) fn significant(x: f64) -> String {
    pipe_stage_api::significant(x, 4)
}

/// `2 ran, 3 cached`: how many stages ended each way.
pub fn action_counts(reports: &[StageReport]) -> String {
    let count = |a: Action| reports.iter().filter(|r| r.action == a).count();
    let mut parts = vec![];
    for a in [
        Action::Ran,
        Action::Cached,
        Action::Restored,
        Action::Pulled,
        Action::Failed,
        Action::Skipped,
    ] {
        let n = count(a);
        if n > 0 {
            parts.push(format!("{n} {}", a.as_str()));
        }
    }
    parts.join(", ")
}

/// A run's stages; `try_name` is the try it was recorded as (`null` in JSON when none).
pub fn run(reports: &[StageReport], try_name: Option<&str>, as_json: bool, dry_run: bool) {
    if as_json {
        print_json(&json!({ "dry_run": dry_run, "stages": reports, "try": try_name }));
        return;
    }
    for r in reports {
        run_line(r);
    }
    if !dry_run {
        run_summary(reports);
    }
}

pub fn show(planner: &Planner, stage: &StageSpec, status: &StageStatus, as_json: bool) {
    // A stale stage shows the artifact it last produced.
    let artifact = status.artifact.clone().or_else(|| {
        let key = planner.cache.read_ref(&planner.pipeline_id, &stage.name)?;
        planner.cache.artifact(&key)
    });
    let preimage = artifact
        .as_ref()
        .and_then(|a| planner.cache.preimage(&a.manifest.key));
    let mut params = std::collections::BTreeMap::new();
    flatten(&pipe::cache::params_json(&stage.params), "", &mut params);
    if as_json {
        let m = artifact.as_ref().map(|a| &a.manifest);
        print_json(&json!({
            "stage": stage.name,
            "kind": stage.kind.name(),
            "status": status.state.as_str(),
            "key": artifact.as_ref().map(|a| a.manifest.key.clone()),
            "path": artifact.as_ref().map(|a| a.out()),
            "current_key": status.key,
            "reasons": status.reasons,
            "deps": stage.deps,
            "params": pipe::cache::params_json(&stage.params),
            "inputs": preimage.as_ref().map(|p| &p.inputs),
            "started": m.map(|m| m.started),
            "duration_s": m.map(|m| m.duration_s),
            "files": m.map(|m| m.files),
            "bytes": m.map(|m| m.bytes),
            "metrics": m.map(|m| &m.metrics),
        }));
        return;
    }
    let row = |k: &str, v: &str| outln!("{k:9} {v}");
    row("stage", &format!("{} [{}]", stage.name, stage.kind.name()));
    row("status", status.state.as_str());
    for r in &status.reasons {
        row("", &r.text);
    }
    let Some(a) = artifact else {
        row("artifact", "none yet: run `pipe run` to produce it");
        return;
    };
    if status.state != State::Fresh {
        row("artifact", "the last one produced (not current)");
    }
    row("key", &a.manifest.key);
    row("path", &a.out().display().to_string());
    if !stage.deps.is_empty() {
        row("deps", &stage.deps.join(", "));
    }
    for (i, (k, v)) in params.iter().enumerate() {
        row(if i == 0 { "params" } else { "" }, &format!("{k} = {v}"));
    }
    if let Some(p) = &preimage {
        for (i, (path, digest)) in p.inputs.iter().enumerate() {
            row(
                if i == 0 { "inputs" } else { "" },
                &format!("{path}  {}", short(digest)),
            );
        }
    }
    row(
        "created",
        &format!(
            "{} (took {:.2}s)",
            utc(a.manifest.started),
            a.manifest.duration_s
        ),
    );
    row(
        "files",
        &format!(
            "{} ({})",
            a.manifest.files,
            pipe::disk::human_bytes(a.manifest.bytes)
        ),
    );
    for (i, (k, v)) in a.manifest.metrics.iter().enumerate() {
        row(if i == 0 { "metrics" } else { "" }, &format!("{k} = {v}"));
    }
}

pub fn gc(report: &GcReport, dry_run: bool, as_json: bool) {
    if as_json {
        print_json(
            &json!({ "dry_run": dry_run, "removed": report.removed, "kept": report.kept, "work_dirs_removed": report.work_dirs_removed }),
        );
        return;
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for (key, size) in &report.removed {
        outln!("{verb} {}  {}", short(key), pipe::disk::human_bytes(*size));
    }
    let total: u64 = report.removed.iter().map(|(_, b)| b).sum();
    outln!(
        "{verb} {} artifact{} ({}), {} work dir{}; kept {}",
        report.removed.len(),
        if report.removed.len() == 1 { "" } else { "s" },
        pipe::disk::human_bytes(total),
        report.work_dirs_removed,
        if report.work_dirs_removed == 1 {
            ""
        } else {
            "s"
        },
        report.kept
    );
}

pub fn verify(report: &VerifyReport, dry_run: bool, as_json: bool) {
    if as_json {
        print_json(&json!({
            "checked": report.checked,
            "problems": report.problems,
            "in_use": report.in_use.iter().map(|(key, holder)| json!({"key": key, "holder": holder})).collect::<Vec<_>>(),
            "evicted": !dry_run,
        }));
        return;
    }
    for p in &report.problems {
        let action = if dry_run { "" } else { " (evicted)" };
        outln!(
            "corrupt {} [{}]: {}{action}",
            short(&p.key),
            p.stage,
            p.problem
        );
    }
    for (key, holder) in &report.in_use {
        outln!("skipped {}: being produced by {holder}", short(key));
    }
    let (checked, problems) = (report.checked, report.problems.len());
    outln!(
        "checked {checked} artifact{}: {problems} problem{}{}",
        if checked == 1 { "" } else { "s" },
        if problems == 1 { "" } else { "s" },
        match report.in_use.len() {
            0 => String::new(),
            n => format!(", {n} in use and skipped"),
        }
    );
}

/// Unix seconds → `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian, Howard Hinnant's algorithm).
pub(crate) fn utc(secs: f64) -> String {
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `"s"` unless there is exactly one.
pub fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
