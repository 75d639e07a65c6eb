//! `pipe run`: bring the selected stages up to date, running independent stages in parallel.
//!
//! For each stage, once its upstream stages are done: compute its key; if the artifact exists,
//! use it (cached, or restored when the stage last pointed elsewhere); otherwise take the key's
//! execution lock (another process may be producing it: wait, then use its result), run the
//! stage in a scratch dir, and publish the artifact atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipe_remote::Remote;
use pipe_stage_api::{Dep, Deps, StageContext};
use serde::Serialize;

use crate::cache::{Artifact, Manifest, SCHEME, short};
use crate::dag::{UnknownStage, select};
use crate::error_chain;
use crate::hash::hash_tree_uncached;
use crate::plan::{Planner, StageKey, State};
use crate::schedule::{self, Event, Scheduler};
use crate::spec::StageSpec;

pub struct RunOptions {
    pub targets: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
    pub keep_going: bool,
    pub jobs: usize,
    /// A shared remote cache: where `pull` looks a key up before executing it, and where
    /// `push` sends each stage's artifact as it finishes.
    pub remote: Option<Arc<Remote>>,
    pub pull: bool,
    pub push: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Already up to date.
    Cached,
    /// An earlier artifact for the current key was reused (e.g. a parameter switched back).
    Restored,
    /// Fetched from the remote cache instead of executed (`run --pull`).
    Pulled,
    Ran,
    Failed,
    /// Not run: an upstream stage failed, or the run stopped at an earlier failure.
    Skipped,
    /// `--dry-run`: would execute.
    WouldRun,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Cached => "cached",
            Action::Restored => "restored",
            Action::Pulled => "pulled",
            Action::Ran => "ran",
            Action::Failed => "failed",
            Action::Skipped => "skipped",
            Action::WouldRun => "would run",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub stage: String,
    pub action: Action,
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StageReport {
    fn new(stage: &str, action: Action) -> Self {
        Self {
            stage: stage.to_string(),
            action,
            key: None,
            duration_s: None,
            reasons: Vec::new(),
            error: None,
        }
    }
}

/// What `--dry-run` would do, from the current status.
pub fn dry_run(planner: &Planner, opts: &RunOptions) -> Result<Vec<StageReport>, UnknownStage> {
    let selected = select(planner.spec, &opts.targets)?;
    let forced = forced(planner, opts);
    let mut reports = Vec::new();
    for status in planner
        .status()
        .into_iter()
        .filter(|s| selected.contains(&s.name))
    {
        let mut r = StageReport::new(&status.name, Action::WouldRun);
        r.key = status.key;
        if forced.contains(&status.name) {
            r.reasons.push("--force".to_string());
        } else if status.state == State::Fresh {
            r.action = Action::Cached;
        } else {
            r.reasons = status.reasons;
        }
        reports.push(r);
    }
    Ok(reports)
}

fn forced(planner: &Planner, opts: &RunOptions) -> BTreeSet<String> {
    match (opts.force, opts.targets.is_empty()) {
        (false, _) => BTreeSet::new(),
        (true, true) => planner.spec.stage_names().map(str::to_string).collect(),
        (true, false) => opts.targets.iter().cloned().collect(),
    }
}

/// Stages that use the accelerator run one at a time: there is one device to run them on.
const ACCELERATOR_SLOTS: usize = 1;

/// Stages that use the accelerator produce one at a time in this process, whichever run they
/// belong to (a sweep runs several points at once; each point's scheduler sees only its own).
/// Taken after the key's execution lock, never before, so no two runs wait on each other.
static ACCELERATOR: Mutex<()> = Mutex::new(());

/// Run the selected stages. `on_done` is called as each stage finishes (for live output);
/// each stage's progress bar is drawn in `bars`.
///
/// The [`Scheduler`] decides what starts and what is skipped; this runs what it starts, each
/// stage on its own thread with its own progress bar, and tells it how each one ended.
pub fn execute(
    planner: &Planner,
    opts: &RunOptions,
    bars: &MultiProgress,
    on_done: &dyn Fn(&StageReport),
) -> Result<Vec<StageReport>, UnknownStage> {
    let spec = planner.spec;
    let selected = select(spec, &opts.targets)?;
    let forced = forced(planner, opts);
    let mut scheduler = Scheduler::new(
        spec.stages
            .iter()
            .filter(|s| selected.contains(&s.name))
            .map(|s| schedule::Stage {
                name: s.name.clone(),
                deps: s.deps.clone(),
                uses_accelerator: s.kind.uses_accelerator(),
            }),
        opts.jobs,
        ACCELERATOR_SLOTS,
        opts.keep_going,
    );
    // The artifacts of the stages that completed: what their dependents read.
    let mut completed: BTreeMap<String, Artifact> = BTreeMap::new();
    let mut reports: BTreeMap<String, StageReport> = BTreeMap::new();
    planner.cache.clean_dead_scratch();

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<StageReport>();
        loop {
            for event in scheduler.poll() {
                match event {
                    Event::Skip { stage, reason } => {
                        let mut r = StageReport::new(&stage, Action::Skipped);
                        r.reasons.push(reason.to_string());
                        on_done(&r);
                        reports.insert(stage, r);
                    }
                    Event::Start(name) => {
                        let tx = tx.clone();
                        let Some(stage) = spec.stage(&name) else {
                            // Cannot happen (the scheduler starts only the stages it was given),
                            // but if it did, fail the stage rather than wait for it forever.
                            let mut r = StageReport::new(&name, Action::Failed);
                            r.error = Some("not a stage of this pipeline".to_string());
                            let _ = tx.send(r);
                            continue;
                        };
                        let deps: BTreeMap<String, Artifact> = stage
                            .deps
                            .iter()
                            .filter_map(|d| completed.get(d).map(|a| (d.clone(), a.clone())))
                            .collect();
                        let force = forced.contains(&stage.name);
                        let bar = bars.add(spinner(&stage.name));
                        let remote = opts.remote.as_deref();
                        let (pull, push) = (remote.filter(|_| opts.pull), opts.push);
                        scope.spawn(move || {
                            let report = run_stage(planner, stage, &deps, force, pull, &bar);
                            if push && let Some(remote) = remote {
                                push_finished(planner, remote, &report, &bar);
                            }
                            bar.finish_and_clear();
                            let _ = tx.send(report);
                        });
                    }
                }
            }
            if scheduler.in_flight() == 0 {
                break;
            }
            let Ok(report) = rx.recv() else { break };
            let artifact = match report.action {
                Action::Cached | Action::Restored | Action::Pulled | Action::Ran => report
                    .key
                    .as_deref()
                    .and_then(|k| planner.cache.artifact(k)),
                Action::Failed | Action::Skipped | Action::WouldRun => None,
            };
            scheduler.finished(&report.stage, artifact.is_some());
            if let Some(a) = artifact {
                completed.insert(report.stage.clone(), a);
            }
            bars.suspend(|| on_done(&report));
            reports.insert(report.stage.clone(), report);
        }
    });
    Ok(scheduler.in_order(reports))
}

/// `run --push`: send a stage's artifact once it is done (ran, or found in a cache). A failed
/// push is a warning: the run's result stands locally.
fn push_finished(planner: &Planner, remote: &Remote, report: &StageReport, bar: &ProgressBar) {
    let Some(artifact) = report
        .key
        .as_deref()
        .filter(|_| report.error.is_none())
        .and_then(|k| planner.cache.artifact(k))
    else {
        return;
    };
    bar.set_message(format!("pushing to {}", remote.name()));
    if let Err(e) = crate::remote::push(remote, &artifact, bar) {
        tracing::warn!(
            "stage `{}`: not pushed to remote `{}`: {}",
            report.stage,
            remote.name(),
            error_chain(&e)
        );
    }
}

/// A stage's progress shown on its bar: a spinner until a phase with a known length begins.
struct BarProgress<'a>(&'a ProgressBar);

impl pipe_stage_api::Progress for BarProgress<'_> {
    fn begin(&self, phase: &str, total: Option<u64>) {
        let template = match total {
            Some(_) => "{spinner} {prefix} {msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            None => "{spinner} {prefix} {msg} {pos} {elapsed}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.0.set_style(style.progress_chars("=> "));
        }
        self.0.set_message(phase.to_string());
        self.0.set_position(0);
        match total {
            Some(n) => self.0.set_length(n),
            None => self.0.unset_length(),
        }
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

fn spinner(stage: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_prefix(stage.to_string());
    bar.set_message("hashing inputs");
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn run_stage(
    planner: &Planner,
    stage: &StageSpec,
    deps: &BTreeMap<String, Artifact>,
    force: bool,
    pull: Option<&Remote>,
    bar: &ProgressBar,
) -> StageReport {
    let cache = planner.cache;
    let mut report = StageReport::new(&stage.name, Action::Failed);
    // Remote inputs (Hub models) before the key, so it covers them from the first run on. A
    // failure is the stage's to report, with how to get the model, if it has to run.
    if let Err(e) = stage.kind.fetch(&stage.params, &planner.spec.dir) {
        tracing::debug!(stage = %stage.name, "cannot fetch an input: {}", error_chain(&*e));
    }
    let contents = deps
        .iter()
        .map(|(n, a)| (n.clone(), a.manifest.content.clone()))
        .collect();
    let keyed = match planner.key(stage, contents) {
        Ok(k) => k,
        Err(e) => {
            report.error = Some(error_chain(&e));
            return report;
        }
    };
    report.key = Some(keyed.key.clone());
    let previous = cache.read_ref(&planner.pipeline_id, &stage.name);
    let reuse = |report: &mut StageReport, artifact: &Artifact| {
        report.action = if previous.as_deref() == Some(artifact.manifest.key.as_str()) {
            Action::Cached
        } else {
            Action::Restored
        };
    };
    if !force && let Some(a) = cache.artifact(&keyed.key) {
        reuse(&mut report, &a);
        return finish(planner, report);
    }
    report.reasons = match &previous {
        _ if force => vec!["--force".to_string()],
        Some(prev) => planner.explain(prev, &keyed),
        None => vec!["never run".to_string()],
    };
    bar.set_message(format!("waiting for lock ({})", short(&keyed.key)));
    let _lock = match cache.exec_lock(&keyed.key, &stage.name) {
        Ok(l) => l,
        Err(e) => {
            report.error = Some(error_chain(&e));
            return report;
        }
    };
    // Another process may have produced it while we waited.
    if !force && let Some(a) = cache.artifact(&keyed.key) {
        reuse(&mut report, &a);
        return finish(planner, report);
    }
    if !force && let Some(remote) = pull {
        bar.set_message(format!(
            "looking up {} on {}",
            short(&keyed.key),
            remote.name()
        ));
        match crate::remote::pull_locked(cache, remote, &keyed.key, bar) {
            Ok(Some(_)) => {
                report.action = Action::Pulled;
                report
                    .reasons
                    .push(format!("pulled from remote `{}`", remote.name()));
                return finish(planner, report);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "stage `{}`: cannot pull {} ({}); running it here",
                stage.name,
                short(&keyed.key),
                error_chain(&e)
            ),
        }
    }
    let _device = stage.kind.uses_accelerator().then(|| {
        bar.set_message("waiting for the accelerator");
        ACCELERATOR.lock().unwrap_or_else(PoisonError::into_inner)
    });
    bar.set_message(format!("running ({})", stage.kind.name()));
    tracing::info!("running stage `{}` ({})", stage.name, short(&keyed.key));
    let started = Instant::now();
    let result = produce(planner, stage, deps, &keyed, bar);
    match result {
        Ok(_) => {
            report.action = Action::Ran;
            report.duration_s = Some(started.elapsed().as_secs_f64());
            finish(planner, report)
        }
        Err(e) => {
            report.duration_s = Some(started.elapsed().as_secs_f64());
            report.error = Some(error_chain(e.as_ref()));
            report
        }
    }
}

/// Run `stage` for `keyed` into a fresh scratch directory and publish its artifact: the one
/// step that produces a key (the rest of [`run_stage`] decides whether it is needed).
fn produce(
    planner: &Planner,
    stage: &StageSpec,
    deps: &BTreeMap<String, Artifact>,
    keyed: &StageKey,
    bar: &ProgressBar,
) -> Result<Artifact, Box<dyn std::error::Error + Send + Sync>> {
    let cache = planner.cache;
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let scratch = cache.new_scratch(&keyed.key)?;
    let work = cache.work_dir(&keyed.key)?;
    let dep_dirs: Deps = deps
        .iter()
        .map(|(n, a)| {
            let kind = planner.spec.stage(n).map_or("", |s| s.kind.name());
            (n.clone(), Dep::new(kind, a.out()))
        })
        .collect();
    let ctx = StageContext {
        stage: &stage.name,
        pipeline_dir: &planner.spec.dir,
        out_dir: &scratch.out,
        work_dir: &work,
        deps: &dep_dirs,
        params: &stage.params,
        seed: planner.spec.seed,
        backend: planner.spec.backend,
        progress: &BarProgress(bar),
    };
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| stage.kind.run(&ctx))) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            let _ = crate::cache::remove_tree(&scratch.dir);
            return Err(e);
        }
        Err(_) => {
            let _ = crate::cache::remove_tree(&scratch.dir);
            return Err(format!(
                "stage `{}` panicked (a bug in the `{}` kind)",
                stage.name,
                stage.kind.name()
            )
            .into());
        }
    };
    bar.set_message("publishing");
    let tree = hash_tree_uncached(&scratch.out)?;
    let manifest = Manifest {
        scheme: SCHEME,
        key: keyed.key.clone(),
        stage: stage.name.clone(),
        kind: stage.kind.name().to_string(),
        content: tree.digest.clone(),
        files: tree.entries.len() as u64,
        bytes: tree.bytes(),
        started: started_unix,
        duration_s: started.elapsed().as_secs_f64(),
        metrics: outcome.metrics,
        results: outcome
            .results
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        pipe_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(cache.publish(scratch, &keyed.preimage, &keyed.inputs, &manifest)?)
}

fn finish(planner: &Planner, mut report: StageReport) -> StageReport {
    if let Some(key) = &report.key
        && let Err(e) = planner
            .cache
            .write_ref(&planner.pipeline_id, &report.stage, key)
    {
        report.action = Action::Failed;
        report.error = Some(error_chain(&e));
    }
    report
}
