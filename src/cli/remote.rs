//! `pipe push`, `pipe pull`, `pipe status --remote`, and the remote of `run --pull/--push`.

use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipe::cache::{Cache, short};
use pipe::dag::select;
use pipe::plan::{Planner, StageStatus, State};
use pipe::remote::{self, SyncError};
use pipe::spec::Spec;
use pipe_remote::Remote;
use serde_json::json;

use super::output::{plural, print_json};
use super::{CliError, Exit};
use pipe::disk::human_bytes;

#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// Stages to transfer, with their ancestors (all stages when none is named).
    pub stages: Vec<String>,
    /// The remote (`[remotes.NAME]`); default: `[pipeline] remote`.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// How many files move at once.
    #[arg(short, long, default_value_t = pipe_remote::DEFAULT_JOBS)]
    pub jobs: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The remote, opened and reached: an unreachable one fails here, within seconds.
pub fn reach(spec: &Spec, name: Option<&str>, jobs: usize) -> Result<Remote, CliError> {
    let remote = remote::open(spec, name)?.with_jobs(jobs);
    remote.check().map_err(SyncError::from)?;
    Ok(remote)
}

/// For `run --pull/--push`: the remote, or `None` with one warning when it cannot be reached
/// (the run goes on locally).
pub fn for_run(spec: &Spec, name: Option<&str>) -> Result<Option<Arc<Remote>>, CliError> {
    let remote = remote::open(spec, name)?;
    match remote.check() {
        Ok(()) => Ok(Some(Arc::new(remote))),
        Err(e) => {
            tracing::warn!("{}; running locally", pipe::error_chain(&e));
            Ok(None)
        }
    }
}

/// A bar in bytes; the transfer sets its length once it knows the artifact's size.
fn byte_bar(bars: &MultiProgress, stage: &str) -> ProgressBar {
    let bar = bars.add(ProgressBar::new(0));
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(stage.to_string());
    bar
}

fn selected_statuses(planner: &Planner, stages: &[String]) -> Result<Vec<StageStatus>, CliError> {
    let selected = select(planner.spec, stages)?;
    Ok(planner
        .status()
        .into_iter()
        .filter(|s| selected.contains(&s.name))
        .collect())
}

pub fn push(spec: &Spec, args: &TransferArgs) -> Result<Exit, CliError> {
    let cache = Cache::for_reading(&spec.cache_dir);
    let planner = Planner::new(spec, &cache);
    let statuses = selected_statuses(&planner, &args.stages)?;
    planner.finish();
    let remote = reach(spec, args.remote.as_deref(), args.jobs)?;
    let bars = MultiProgress::new();
    let (mut artifacts, mut files_uploaded, mut bytes_uploaded, mut files_skipped) = (0, 0, 0, 0);
    let mut stages = Vec::new();
    for s in &statuses {
        let Some(artifact) = s.artifact.as_ref().filter(|_| s.state == State::Fresh) else {
            if !args.json {
                outln!(
                    "- {}: {}, not pushed (`pipe run {}` first)",
                    s.name,
                    s.state.as_str(),
                    s.name
                );
            }
            stages.push(json!({"stage": s.name, "key": s.key, "action": "not-fresh"}));
            continue;
        };
        let bar = byte_bar(&bars, &s.name);
        bar.set_message(format!("pushing to {}", remote.name()));
        let report = remote::push(&remote, artifact, &bar);
        bar.finish_and_clear();
        let report = report?;
        let key = &artifact.manifest.key;
        files_uploaded += report.files_uploaded;
        bytes_uploaded += report.bytes_uploaded;
        files_skipped += report.files_skipped;
        let action = if report.already {
            "present"
        } else {
            artifacts += 1;
            "pushed"
        };
        if !args.json {
            bars.suspend(|| {
                if report.already {
                    outln!(
                        "· {} ({}): already on {}",
                        s.name,
                        short(key),
                        remote.name()
                    );
                } else {
                    outln!(
                        "↑ {} ({}): {} files, {} uploaded, {} already there",
                        s.name,
                        short(key),
                        report.files_uploaded,
                        human_bytes(report.bytes_uploaded),
                        report.files_skipped
                    );
                }
            });
        }
        stages.push(json!({"stage": s.name, "key": key, "action": action}));
    }
    if args.json {
        print_json(&json!({
            "remote": remote.name(),
            "artifacts": artifacts,
            "files_uploaded": files_uploaded,
            "bytes_uploaded": bytes_uploaded,
            "files_skipped": files_skipped,
            "stages": stages,
        }));
    } else {
        outln!(
            "pushed {artifacts} artifact{} to {} ({}): {files_uploaded} files, {} uploaded, \
             {files_skipped} already there",
            plural(artifacts),
            remote.name(),
            remote.at(),
            human_bytes(bytes_uploaded)
        );
    }
    Ok(Exit::Ok)
}

pub fn pull(spec: &Spec, args: &TransferArgs) -> Result<Exit, CliError> {
    let cache = Cache::open(&spec.cache_dir)?;
    let planner = Planner::new(spec, &cache);
    let remote = reach(spec, args.remote.as_deref(), args.jobs)?;
    let bars = MultiProgress::new();
    let (mut artifacts, mut files, mut bytes_in) = (0u64, 0u64, 0u64);
    let mut tried = std::collections::BTreeSet::new();
    let mut stages = Vec::new();
    // Pull what the plan names, then plan again: a pulled stage makes its dependents' keys
    // known.
    loop {
        let statuses = selected_statuses(&planner, &args.stages)?;
        let wanted: Vec<(String, String)> = statuses
            .iter()
            .filter(|s| s.state != State::Fresh)
            .filter_map(|s| s.key.clone().map(|k| (s.name.clone(), k)))
            .filter(|(_, k)| !tried.contains(k))
            .collect();
        if wanted.is_empty() {
            break;
        }
        for (stage, key) in wanted {
            tried.insert(key.clone());
            let bar = byte_bar(&bars, &stage);
            bar.set_message(format!("pulling from {}", remote.name()));
            let pulled = remote::pull(&cache, &remote, &key, &bar);
            bar.finish_and_clear();
            match pulled? {
                Some((artifact, report)) => {
                    artifacts += 1;
                    files += report.files;
                    bytes_in += report.bytes;
                    cache.write_ref(&planner.pipeline_id, &stage, &key)?;
                    if !args.json {
                        bars.suspend(|| {
                            outln!(
                                "↓ {stage} ({}): {} files, {}",
                                short(&key),
                                artifact.manifest.files,
                                human_bytes(report.bytes)
                            )
                        });
                    }
                    stages.push(json!({"stage": stage, "key": key, "action": "pulled"}));
                }
                None => {
                    if !args.json {
                        outln!(
                            "- {stage} ({}): not on {}; `pipe run` executes it",
                            short(&key),
                            remote.name()
                        );
                    }
                    stages.push(json!({"stage": stage, "key": key, "action": "missing"}));
                }
            }
        }
    }
    // What this machine cannot key (an input it lacks, or upstream of such a stage): the
    // artifacts pipe.lock names for the committed config.
    let lock = super::read_lock(spec);
    let statuses = selected_statuses(&planner, &args.stages)?;
    let mut from_lock = Vec::new();
    for s in statuses.iter().filter(|s| s.key.is_none()) {
        let Some(locked) = lock.as_ref().and_then(|l| l.stages.get(&s.name)) else {
            continue;
        };
        let key = &locked.key;
        let artifact = match cache.artifact(key) {
            Some(a) => a,
            None => {
                let bar = byte_bar(&bars, &s.name);
                bar.set_message(format!(
                    "pulling the locked artifact from {}",
                    remote.name()
                ));
                let pulled = remote::pull(&cache, &remote, key, &bar);
                bar.finish_and_clear();
                let Some((artifact, report)) = pulled? else {
                    if !args.json {
                        outln!(
                            "- {} ({}, from {}): not on {}",
                            s.name,
                            short(key),
                            pipe::lockfile::FILE,
                            remote.name()
                        );
                    }
                    stages.push(json!({"stage": s.name, "key": key, "action": "missing"}));
                    continue;
                };
                artifacts += 1;
                files += report.files;
                bytes_in += report.bytes;
                if !args.json {
                    outln!(
                        "↓ {} ({}, from {}): {} files, {}",
                        s.name,
                        short(key),
                        pipe::lockfile::FILE,
                        artifact.manifest.files,
                        human_bytes(report.bytes)
                    );
                }
                stages
                    .push(json!({"stage": s.name, "key": key, "action": "pulled", "from": "lock"}));
                artifact
            }
        };
        cache.write_ref(&planner.pipeline_id, &s.name, key)?;
        from_lock.push((s.name.clone(), artifact));
    }
    let mut fresh: Vec<(&str, &pipe::cache::Artifact)> = statuses
        .iter()
        .filter(|s| s.state == State::Fresh)
        .filter_map(|s| s.artifact.as_ref().map(|a| (s.name.as_str(), a)))
        .collect();
    fresh.extend(from_lock.iter().map(|(n, a)| (n.as_str(), a)));
    {
        let _lock = cache.meta_lock()?;
        pipe::results::update(spec, &fresh)?;
    }
    planner.finish();
    let not_fresh: Vec<&str> = statuses
        .iter()
        .filter(|s| s.state != State::Fresh)
        .filter(|s| !from_lock.iter().any(|(n, _)| *n == s.name))
        .map(|s| s.name.as_str())
        .collect();
    if args.json {
        print_json(&json!({
            "remote": remote.name(),
            "artifacts": artifacts,
            "files_downloaded": files,
            "bytes_downloaded": bytes_in,
            "stages": stages,
            "not_fresh": not_fresh,
        }));
    } else {
        outln!(
            "pulled {artifacts} artifact{} from {} ({}): {files} files, {}{}",
            plural(artifacts),
            remote.name(),
            remote.at(),
            human_bytes(bytes_in),
            if not_fresh.is_empty() {
                String::new()
            } else {
                format!("; still not fresh: {}", not_fresh.join(", "))
            }
        );
    }
    Ok(Exit::Ok)
}

/// `status --remote`: which of the current keys the remote has.
pub fn status(
    spec: &Spec,
    statuses: &[StageStatus],
    name: Option<&str>,
    json: bool,
) -> Result<Exit, CliError> {
    let remote = reach(spec, name, pipe_remote::DEFAULT_JOBS)?;
    let keys: Vec<String> = statuses.iter().filter_map(|s| s.key.clone()).collect();
    let has = remote.has_keys(&keys).map_err(SyncError::from)?;
    let on = |s: &StageStatus| s.key.as_ref().map(|k| has.contains(k));
    if json {
        let stages: Vec<_> = statuses
            .iter()
            .map(|s| json!({ "stage": s.name, "status": s.state.as_str(), "key": s.key, "reasons": s.reasons, "on_remote": on(s) }))
            .collect();
        print_json(&json!({ "remote": remote.name(), "stages": stages }));
        return Ok(Exit::Ok);
    }
    let no_estimates = pipe::disk::DiskPlan::default();
    super::output::status(
        statuses,
        &no_estimates,
        super::read_lock(spec).as_ref(),
        false,
    );
    let listed = |want: bool| -> Vec<&str> {
        statuses
            .iter()
            .filter(|s| on(s) == Some(want))
            .map(|s| s.name.as_str())
            .collect()
    };
    let (there, absent) = (listed(true), listed(false));
    outln!(
        "remote {} ({}): has {}{}",
        remote.name(),
        remote.at(),
        if there.is_empty() {
            "none of the current keys".to_string()
        } else {
            there.join(", ")
        },
        if absent.is_empty() {
            String::new()
        } else {
            format!("; lacks {}", absent.join(", "))
        }
    );
    Ok(Exit::Ok)
}

/// `gc --remote`: remove what no root names from the remote (see [`Remote::gc`]).
pub fn gc(
    spec: &Spec,
    roots: &std::collections::BTreeSet<String>,
    name: Option<&str>,
    grace: std::time::Duration,
    dry_run: bool,
    json: bool,
) -> Result<Exit, CliError> {
    let remote = reach(spec, name, pipe_remote::DEFAULT_JOBS)?;
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner.set_message(format!("collecting {} ({})", remote.name(), remote.at()));
    let report = remote.gc(roots, grace, dry_run);
    spinner.finish_and_clear();
    let report = report.map_err(SyncError::from)?;
    if json {
        print_json(&json!({
            "remote": remote.name(),
            "dry_run": dry_run,
            "records_removed": report.records_removed,
            "records_kept": report.records_kept,
            "blobs_removed": report.blobs_removed,
            "bytes_removed": report.bytes_removed,
            "blobs_kept": report.blobs_kept,
            "spared_young": report.spared_young,
        }));
        return Ok(Exit::Ok);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for key in &report.records_removed {
        outln!("{verb} {}", short(key));
    }
    let n = report.records_removed.len();
    outln!(
        "remote {} ({}): {verb} {n} record{} and {} blob{} ({}); kept {} record{}, {} blob{}{}",
        remote.name(),
        remote.at(),
        plural(n as u64),
        report.blobs_removed,
        plural(report.blobs_removed),
        human_bytes(report.bytes_removed),
        report.records_kept,
        plural(report.records_kept),
        report.blobs_kept,
        plural(report.blobs_kept),
        if report.spared_young == 0 {
            String::new()
        } else {
            format!(
                "; spared {} unused object{} younger than {} (--older-than)",
                report.spared_young,
                plural(report.spared_young),
                humantime::format_duration(grace)
            )
        }
    );
    Ok(Exit::Ok)
}
