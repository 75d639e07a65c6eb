//! `pipe run`: bring the selected stages up to date, running independent stages in parallel.
//!
//! For each stage, once its upstream stages are done: compute its key; if the artifact exists,
//! use it (cached, or restored when the stage last pointed elsewhere); otherwise take the key's
//! execution lock (another process may be producing it: wait, then use its result), run the
//! stage in a scratch dir, and publish the artifact atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipe_remote::Remote;
use pipe_stage_api::{Dep, Deps, DeviceCount, StageContext};
use serde::Serialize;

use crate::cache::{Artifact, Manifest, SCHEME, short};
use crate::dag::{UnknownStage, select};
use crate::disk::DiskPlan;
use crate::error_chain;
use crate::hash::hash_tree_uncached;
use crate::plan::{Change, Planner, Reason, StageKey, State};
use crate::schedule::{self, Event, Scheduler};
use crate::spec::{Devices, Executor, ExecutorKind, StageSpec};

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
    /// Where stages run: `[executor]`, or `--executor` for this run.
    pub executor: Executor,
    /// Who shows the stages' notes (an epoch's summary line).
    pub notes: Option<NoteSink>,
}

impl RunOptions {
    /// Whether `stage` runs as a Slurm job (its own `executor` first, then the run's).
    pub fn on_slurm(&self, stage: &StageSpec) -> bool {
        stage.executor.unwrap_or(self.executor.kind) == ExecutorKind::Slurm
    }
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
    pub reasons: Vec<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `--dry-run`: the artifact's estimated size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<pipe_stage_api::SizeEstimate>,
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
            estimate: None,
        }
    }
}

/// What `--dry-run` would do, from the current status, with the size each stage that would run
/// is estimated to write.
pub fn dry_run(
    planner: &Planner,
    opts: &RunOptions,
) -> Result<(Vec<StageReport>, DiskPlan), UnknownStage> {
    let selected = select(planner.spec, &opts.targets)?;
    let forced = forced(planner, opts);
    let statuses = planner.status();
    let mut reports = Vec::new();
    for status in statuses.iter().filter(|s| selected.contains(&s.name)) {
        let mut r = StageReport::new(&status.name, Action::WouldRun);
        r.key = status.key.clone();
        if forced.contains(&status.name) {
            r.reasons.push(Reason::new(Change::Forced, "--force"));
        } else if status.state == State::Fresh {
            r.action = Action::Cached;
        } else {
            r.reasons = status.reasons.clone();
        }
        reports.push(r);
    }
    let to_run = reports
        .iter()
        .filter(|r| r.action == Action::WouldRun)
        .map(|r| r.stage.clone())
        .collect();
    let disk = DiskPlan::new(planner.spec, &statuses, &to_run);
    for r in &mut reports {
        r.estimate = disk.stages.get(&r.stage).cloned();
    }
    Ok((reports, disk))
}

fn forced(planner: &Planner, opts: &RunOptions) -> BTreeSet<String> {
    match (opts.force, opts.targets.is_empty()) {
        (false, _) => BTreeSet::new(),
        (true, true) => planner.spec.stage_names().map(str::to_string).collect(),
        (true, false) => opts.targets.iter().cloned().collect(),
    }
}

/// The accelerator devices stages run on, one stage per device at a time, shared by every run
/// of this process (a sweep runs several points at once; each point's scheduler sees only its
/// own). A device is taken after the key's execution lock, never before, so no two runs wait on
/// each other.
pub struct DevicePool {
    free: Mutex<Vec<Option<usize>>>,
    returned: Condvar,
    size: usize,
    /// No devices listed: one slot, the CPU's.
    cpu: bool,
}

/// Devices taken from a [`DevicePool`], given back when dropped.
pub struct DeviceLease<'a> {
    pool: &'a DevicePool,
    /// The ordinals the stage runs on; `None`: the backend's only (or first) device.
    pub devices: Vec<Option<usize>>,
}

impl DeviceLease<'_> {
    /// The ordinals a stage is given (empty: the backend's only or first device).
    pub fn ordinals(&self) -> Vec<usize> {
        self.devices.iter().flatten().copied().collect()
    }
}

impl DevicePool {
    /// A pool of `devices` (at least one slot).
    pub fn new(mut devices: Vec<Option<usize>>) -> Self {
        if devices.is_empty() {
            devices.push(None);
        }
        devices.reverse(); // taken from the end: the first listed goes first
        Self {
            size: devices.len(),
            cpu: devices.iter().all(Option::is_none),
            free: Mutex::new(devices),
            returned: Condvar::new(),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// A free device, waiting for one to be given back if none is.
    pub fn take(&self) -> DeviceLease<'_> {
        self.take_n(1)
    }

    /// `n` free devices at once (1 ≤ n ≤ the pool's size), waiting until that many are free:
    /// a stage never holds part of what it waits for, so two never wait on each other.
    pub fn take_n(&self, n: usize) -> DeviceLease<'_> {
        let n = n.clamp(1, self.size);
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if free.len() >= n {
                let at = free.len() - n;
                let mut devices = free.split_off(at);
                devices.reverse();
                return DeviceLease {
                    pool: self,
                    devices,
                };
            }
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// How many devices a stage asking for `want` takes: on the CPU (no devices listed) the
    /// one slot, where the stage runs its peers; else `want`, or every device for `all`.
    /// Asking for more than the pool holds is an error naming both.
    pub fn wanted(&self, stage: &str, want: DeviceCount) -> Result<usize, String> {
        match want {
            _ if self.cpu => Ok(1),
            DeviceCount::All => Ok(self.size),
            DeviceCount::Count(n) if n <= self.size => Ok(n.max(1)),
            DeviceCount::Count(n) => Err(format!(
                "stage `{stage}` asks for {n} devices but {} {} available here \
                 ([pipeline] devices, or what the backend finds)",
                self.size,
                if self.size == 1 { "is" } else { "are" }
            )),
        }
    }
}

impl Drop for DeviceLease<'_> {
    fn drop(&mut self) {
        let mut free = self
            .pool
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        free.extend(self.devices.drain(..).rev());
        self.pool.returned.notify_all();
    }
}

/// The devices `[pipeline] devices` names: a list as written, or with `auto` every device of
/// the resolved backend (one slot, `None`, on the CPU).
fn devices_of(spec: &crate::spec::Spec) -> Vec<Option<usize>> {
    match &spec.devices {
        Devices::List(list) => list.iter().copied().map(Some).collect(),
        Devices::Auto => match (spec.registry.devices)(spec.backend) {
            0 => vec![None],
            n => (0..n).map(Some).collect(),
        },
    }
}

/// This process's device pool, made from the first spec that needs one.
fn device_pool(spec: &crate::spec::Spec) -> &'static DevicePool {
    static POOL: OnceLock<DevicePool> = OnceLock::new();
    POOL.get_or_init(|| {
        let devices = devices_of(spec);
        tracing::debug!(?devices, "device pool");
        DevicePool::new(devices)
    })
}

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
    // Probe for devices only when a selected stage will want one here.
    let local_accelerator = spec
        .stages
        .iter()
        .any(|s| selected.contains(&s.name) && s.kind.uses_accelerator() && !opts.on_slurm(s));
    let device_slots = if local_accelerator {
        device_pool(spec).size()
    } else {
        1
    };
    let mut scheduler = Scheduler::new(
        spec.stages
            .iter()
            .filter(|s| selected.contains(&s.name))
            .map(|s| schedule::Stage {
                name: s.name.clone(),
                deps: s.deps.clone(),
                // A Slurm job takes the cluster's devices, not this machine's.
                uses_accelerator: s.kind.uses_accelerator() && !opts.on_slurm(s),
            }),
        opts.jobs,
        device_slots,
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
                        let change = match &reason {
                            schedule::SkipReason::Upstream(stage) => Change::Upstream {
                                stage: stage.clone(),
                            },
                            schedule::SkipReason::Stopped => Change::Other,
                        };
                        r.reasons.push(Reason::new(change, reason.to_string()));
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
                        let slurm = opts.on_slurm(stage).then_some(&opts.executor);
                        let notes = opts.notes.as_ref();
                        scope.spawn(move || {
                            let how = How {
                                force,
                                pull,
                                slurm,
                                notes,
                            };
                            let report = run_stage(planner, stage, &deps, how, &bar);
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

/// Who shows a stage's notes (`Progress::note`: an epoch's summary), given the stage's name and
/// the line; the binary prints them, above the bars.
pub type NoteSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A stage's progress shown on its bar: a spinner until a phase with a known length begins;
/// its notes go to the run's [`NoteSink`] (or the log at `-v` without one).
struct BarProgress<'a> {
    bar: &'a ProgressBar,
    stage: &'a str,
    notes: Option<&'a NoteSink>,
    /// The current phase, which a status is shown after.
    phase: Mutex<String>,
}

impl<'a> BarProgress<'a> {
    fn new(bar: &'a ProgressBar, stage: &'a str, notes: Option<&'a NoteSink>) -> Self {
        Self {
            bar,
            stage,
            notes,
            phase: Mutex::new(String::new()),
        }
    }
}

impl BarProgress<'_> {
    fn start(&self, phase: &str, total: Option<u64>, unit: &str) {
        let style = match total {
            Some(_) => ProgressStyle::with_template(&format!(
                "{{spinner}} {{prefix}} {{msg}} [{{bar:30}}] {{pos}}/{{len}}{}{} {{rate}} eta {{eta}}",
                if unit.is_empty() { "" } else { " " },
                unit
            ))
            .map(|s| s.with_key("rate", rate)),
            None => ProgressStyle::with_template("{spinner} {prefix} {msg} {pos} {elapsed}"),
        };
        if let Ok(style) = style {
            self.bar.set_style(style.progress_chars("=> "));
        }
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase.to_string();
        self.bar.set_message(phase.to_string());
        self.bar.set_position(0);
        match total {
            Some(n) => self.bar.set_length(n),
            None => self.bar.unset_length(),
        }
    }
}

/// A bar's `{rate}`: per second to 3 significant digits (`12.3/s`, `0.0521/s`), not
/// indicatif's full-precision float.
fn rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{}/s", round3(state.per_sec()));
}

/// `x` to 3 significant digits; `0` for a rate not yet known (no step done, or none).
pub(crate) fn round3(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "0".into();
    }
    pipe_stage_api::significant(x, 3)
}

impl pipe_stage_api::Progress for BarProgress<'_> {
    fn begin(&self, phase: &str, total: Option<u64>) {
        self.start(phase, total, "");
    }

    fn begin_items(&self, phase: &str, total: u64, unit: &str) {
        self.start(phase, Some(total), unit);
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    fn status(&self, text: &str) {
        let phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        self.bar.set_message(format!("{phase} · {text}"));
    }

    fn note(&self, line: &str) {
        match self.notes {
            Some(sink) => self.bar.suspend(|| sink(self.stage, line)),
            None => tracing::info!("[{}] {line}", self.stage),
        }
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

/// How one stage is brought up to date.
struct How<'a> {
    force: bool,
    /// Look a missing key up on this remote before executing.
    pull: Option<&'a Remote>,
    /// Execute as a Slurm job with these options, not in this process.
    slurm: Option<&'a Executor>,
    notes: Option<&'a NoteSink>,
}

fn run_stage(
    planner: &Planner,
    stage: &StageSpec,
    deps: &BTreeMap<String, Artifact>,
    how: How,
    bar: &ProgressBar,
) -> StageReport {
    let How {
        force,
        pull,
        slurm,
        notes,
    } = how;
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
        _ if force => vec![Reason::new(Change::Forced, "--force")],
        Some(prev) => planner.explain(prev, &keyed),
        None => vec![Reason::new(Change::NeverRun, "never run")],
    };
    // Said only when someone holds it: who, as the lock file names them.
    let waiting = |holder: &str| bar.set_message(format!("waiting for {holder}"));
    let _lock = match cache.exec_lock_telling(&keyed.key, &stage.name, &waiting) {
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
                report.reasons.push(Reason::other(format!(
                    "pulled from remote `{}`",
                    remote.name()
                )));
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
    // Estimates are rough: a shortfall is a warning, and the stage goes on.
    if let Some(warning) = crate::disk::shortfall_of(planner.spec, stage, deps) {
        tracing::warn!("stage `{}`: {warning}", stage.name);
    }
    let lease = if stage.kind.uses_accelerator() && slurm.is_none() {
        let pool = device_pool(planner.spec);
        match pool.wanted(&stage.name, stage.kind.devices(&stage.params)) {
            Ok(n) => {
                bar.set_message(if n == 1 {
                    "waiting for a device".to_string()
                } else {
                    format!("waiting for {n} devices")
                });
                Some(pool.take_n(n))
            }
            Err(e) => {
                report.error = Some(e);
                return report;
            }
        }
    } else {
        None
    };
    let devices = lease
        .as_ref()
        .map(DeviceLease::ordinals)
        .unwrap_or_default();
    bar.set_message(format!("running ({})", stage.kind.name()));
    tracing::info!("running stage `{}` ({})", stage.name, short(&keyed.key));
    let started = Instant::now();
    let result = match slurm {
        Some(executor) => produce_on_slurm(planner, stage, deps, &keyed, executor, bar),
        None => {
            let progress = BarProgress::new(bar, &stage.name, notes);
            produce(planner, stage, deps, &keyed, &devices, &progress)
        }
    };
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
    devices: &[usize],
    progress: &BarProgress,
) -> Result<Artifact, Box<dyn std::error::Error + Send + Sync>> {
    let spec = planner.spec;
    let dep_dirs: Deps = deps
        .iter()
        .map(|(n, a)| {
            let kind = spec.stage(n).map_or("", |s| s.kind.name());
            (n.clone(), Dep::new(kind, a.out()))
        })
        .collect();
    let production = Production {
        stage: &stage.name,
        params: &stage.params,
        pipeline_dir: &spec.dir,
        seed: spec.seed,
        backend: spec.backend,
        devices,
        deps: &dep_dirs,
        key: &keyed.key,
        preimage: &keyed.preimage,
        inputs: &keyed.inputs,
    };
    let scratch = planner.cache.new_scratch(&keyed.key)?;
    Ok(production.run(planner.cache, stage.kind, scratch, progress)?)
}

/// [`produce`] as a Slurm job: the job description and script beside the scratch directory,
/// `sbatch`, then watch the job until it ends. The job publishes the artifact itself; a job that
/// ended without one fails the stage, naming how it ended, with the end of its stderr (the
/// whole logs are kept in the key's work directory). Preempted jobs and lost nodes are
/// submitted again up to `resubmit` times.
fn produce_on_slurm(
    planner: &Planner,
    stage: &StageSpec,
    deps: &BTreeMap<String, Artifact>,
    keyed: &StageKey,
    executor: &Executor,
    bar: &ProgressBar,
) -> Result<Artifact, Box<dyn std::error::Error + Send + Sync>> {
    use crate::slurm::{self, SlurmError};
    let cache = planner.cache;
    let scratch = cache.new_scratch(&keyed.key)?;
    let job = Job::new(planner, stage, deps, keyed, &scratch)?;
    let dir = JobDir(PathBuf::from(format!("{}.job", scratch.dir.display())));
    let job_file = dir.0.join("job.json");
    std::fs::create_dir_all(&dir.0)
        .and_then(|()| crate::cache::write_json_atomic(&job_file, &job))
        .map_err(|source| SlurmError::Write {
            path: job_file.clone(),
            source,
        })?;
    slurm::write_script(&dir.0, &job_file)?;
    let accelerator = matches!(
        planner.spec.backend,
        pipe_stage_api::BackendChoice::Cuda | pipe_stage_api::BackendChoice::Wgpu
    );
    let job_name = format!("pipe-{}-{}", planner.spec.name, stage.name);
    let submission = slurm::Submission {
        executor,
        resources: &stage.resources,
        default_gpus: u32::from(accelerator && stage.kind.uses_accelerator()),
        job_name: &job_name,
        chdir: &planner.spec.dir,
        dir: &dir.0,
    };
    let mut resubmitted = 0;
    loop {
        bar.set_message("submitting to Slurm");
        let id = slurm::submit(&submission)?;
        tracing::info!("stage `{}`: Slurm job {id}", stage.name);
        bar.set_message(format!("slurm job {id}: submitted"));
        let end = slurm::wait(id, &|shown| bar.set_message(shown.to_string()))?;
        if let Some(artifact) = cache.artifact(&keyed.key) {
            return Ok(artifact);
        }
        if let Some(info) = &end
            && info.retryable()
            && resubmitted < executor.resubmit
        {
            resubmitted += 1;
            tracing::warn!(
                "stage `{}`: Slurm job {id} {}; submitting it again ({resubmitted} of {})",
                stage.name,
                info.why(&stage.resources),
                executor.resubmit
            );
            continue;
        }
        let what = end.map_or_else(
            || "left the queue without publishing an artifact".to_string(),
            |info| info.why(&stage.resources),
        );
        let kept = keep_job_logs(cache, &keyed.key, id, &dir.0);
        let tail = slurm::stderr_tail(kept.as_deref().unwrap_or(&dir.0));
        return Err(SlurmError::Ended { id, what, tail }.into());
    }
}

/// A job's directory beside its scratch directory, removed when the stage is done with it.
struct JobDir(PathBuf);

impl Drop for JobDir {
    fn drop(&mut self) {
        let _ = crate::cache::remove_tree(&self.0);
    }
}

/// Move a failed job's logs into the key's work directory (which failed runs keep), under
/// `slurm/<id>/`; that directory.
fn keep_job_logs(
    cache: &crate::cache::Cache,
    key: &str,
    id: u64,
    dir: &std::path::Path,
) -> Option<PathBuf> {
    let to = cache.work_dir(key).ok()?.join("slurm").join(id.to_string());
    std::fs::create_dir_all(&to).ok()?;
    for log in ["slurm.out", "slurm.err"] {
        let _ = std::fs::rename(dir.join(log), to.join(log));
    }
    Some(to)
}

/// Everything producing one stage key takes, apart from the kind's code: what a Slurm job reads
/// (`pipe exec-stage JOB`) to produce the key exactly as a local run would.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Job {
    pub stage: String,
    pub kind: String,
    /// The stage's parameters as TOML (dates and all, as the file wrote them).
    pub params: String,
    pub pipeline_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub seed: u64,
    pub backend: pipe_stage_api::BackendChoice,
    /// Each dependency: its name, kind and key (its artifact is in the cache).
    pub deps: Vec<(String, String, String)>,
    pub key: String,
    pub preimage: crate::cache::PreImage,
    pub inputs: BTreeMap<String, crate::hash::Tree>,
    /// The scratch directory the artifact is assembled in.
    pub scratch: PathBuf,
}

/// Why a job could not produce its key.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Hash(#[from] crate::hash::HashError),
    #[error("stage `{stage}` panicked (a bug in the `{kind}` kind)")]
    Panicked { stage: String, kind: String },
    /// The kind's own error, as it said it.
    #[error(transparent)]
    Stage(Box<dyn std::error::Error + Send + Sync>),
    #[error("job {file}: {why}")]
    Description { file: PathBuf, why: String },
}

impl Job {
    pub fn new(
        planner: &Planner,
        stage: &StageSpec,
        deps: &BTreeMap<String, Artifact>,
        keyed: &StageKey,
        scratch: &crate::cache::Scratch,
    ) -> Result<Self, JobError> {
        let spec = planner.spec;
        let params = toml::to_string(&stage.params).map_err(|e| JobError::Description {
            file: scratch.dir.clone(),
            why: format!("parameters: {e}"),
        })?;
        Ok(Self {
            stage: stage.name.clone(),
            kind: stage.kind.name().to_string(),
            params,
            pipeline_dir: spec.dir.clone(),
            cache_dir: spec.cache_dir.clone(),
            seed: spec.seed,
            backend: spec.backend,
            deps: deps
                .iter()
                .map(|(n, a)| {
                    let kind = spec.stage(n).map_or("", |s| s.kind.name());
                    (n.clone(), kind.to_string(), a.manifest.key.clone())
                })
                .collect(),
            key: keyed.key.clone(),
            preimage: keyed.preimage.clone(),
            inputs: keyed.inputs.clone(),
            scratch: scratch.dir.clone(),
        })
    }

    /// Run the stage into `scratch` and publish the artifact (seal, atomic rename), as a local
    /// run does: the parameters parsed back, the dependencies found in the cache by key.
    pub fn produce(
        &self,
        cache: &crate::cache::Cache,
        kind: &dyn pipe_stage_api::StageKind,
        scratch: crate::cache::Scratch,
        devices: &[usize],
        progress: &dyn pipe_stage_api::Progress,
    ) -> Result<Artifact, JobError> {
        let bad = |why: String| JobError::Description {
            file: self.scratch.clone(),
            why,
        };
        let params: toml::Table =
            toml::from_str(&self.params).map_err(|e| bad(format!("parameters: {e}")))?;
        let deps: Deps = self
            .deps
            .iter()
            .map(|(name, kind, key)| {
                let dir = cache.artifact(key).map(|a| a.out()).ok_or_else(|| {
                    bad(format!(
                        "dependency `{name}` ({}) is not in the cache",
                        short(key)
                    ))
                })?;
                Ok((name.clone(), Dep::new(kind.as_str(), dir)))
            })
            .collect::<Result<_, JobError>>()?;
        let production = Production {
            stage: &self.stage,
            params: &params,
            pipeline_dir: &self.pipeline_dir,
            seed: self.seed,
            backend: self.backend,
            // A Slurm job has its own GPUs: what it was given.
            devices,
            deps: &deps,
            key: &self.key,
            preimage: &self.preimage,
            inputs: &self.inputs,
        };
        production.run(cache, kind, scratch, progress)
    }
}

/// The one step that produces a stage key, for a local run and a Slurm job alike: run the kind
/// into the scratch directory, hash what it wrote, publish (seal, atomic rename).
struct Production<'a> {
    stage: &'a str,
    params: &'a toml::Table,
    pipeline_dir: &'a std::path::Path,
    seed: u64,
    backend: pipe_stage_api::BackendChoice,
    devices: &'a [usize],
    deps: &'a Deps,
    key: &'a str,
    preimage: &'a crate::cache::PreImage,
    inputs: &'a BTreeMap<String, crate::hash::Tree>,
}

impl Production<'_> {
    fn run(
        &self,
        cache: &crate::cache::Cache,
        kind: &dyn pipe_stage_api::StageKind,
        scratch: crate::cache::Scratch,
        progress: &dyn pipe_stage_api::Progress,
    ) -> Result<Artifact, JobError> {
        let started = Instant::now();
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let work = cache.work_dir(self.key)?;
        let ctx = StageContext {
            stage: self.stage,
            pipeline_dir: self.pipeline_dir,
            out_dir: &scratch.out,
            work_dir: &work,
            deps: self.deps,
            params: self.params,
            seed: self.seed,
            backend: self.backend,
            devices: self.devices,
            progress,
        };
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| kind.run(&ctx))) {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => return Err(JobError::Stage(e)),
            Err(_) => {
                return Err(JobError::Panicked {
                    stage: self.stage.to_string(),
                    kind: kind.name().to_string(),
                });
            }
        };
        progress.begin("publishing", None);
        let tree = hash_tree_uncached(&scratch.out)?;
        let manifest = Manifest {
            scheme: SCHEME,
            key: self.key.to_string(),
            stage: self.stage.to_string(),
            kind: kind.name().to_string(),
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
        Ok(cache.publish(scratch, self.preimage, self.inputs, &manifest)?)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_shown_to_three_significant_digits() {
        assert_eq!(round3(123.456), "123");
        assert_eq!(round3(12.3456), "12.3");
        assert_eq!(round3(1.23456), "1.23");
        assert_eq!(round3(0.052137), "0.0521");
        assert_eq!(round3(4567.8), "4568");
        assert_eq!(round3(0.0), "0");
        assert_eq!(round3(f64::NAN), "0");
    }

    #[test]
    fn the_device_pool_gives_each_stage_its_own_device_and_waits_when_all_are_taken() {
        let pool = DevicePool::new(vec![Some(0), Some(1), Some(2)]);
        assert_eq!(pool.size(), 3);
        let (a, b, c) = (pool.take(), pool.take(), pool.take());
        assert_eq!(
            [a.devices.clone(), b.devices.clone(), c.devices.clone()],
            [vec![Some(0)], vec![Some(1)], vec![Some(2)]]
        );
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let d = pool.take();
                let _ = tx.send(d.devices.clone());
            });
            assert!(
                rx.recv_timeout(Duration::from_millis(200)).is_err(),
                "a fourth stage waits while three devices are taken"
            );
            drop(b);
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(vec![Some(1)]));
        });
        // No device listed (the CPU): one slot.
        let cpu = DevicePool::new(Vec::new());
        assert_eq!((cpu.size(), cpu.take().devices.clone()), (1, vec![None]));
    }

    #[test]
    fn a_stage_takes_all_the_devices_it_asks_for_at_once() {
        let pool = DevicePool::new(vec![Some(0), Some(1), Some(2)]);
        assert_eq!(pool.wanted("train", DeviceCount::Count(2)), Ok(2));
        assert_eq!(pool.wanted("train", DeviceCount::All), Ok(3));
        let e = pool
            .wanted("train", DeviceCount::Count(4))
            .expect_err("too many");
        assert!(e.contains("asks for 4 devices but 3 are available"), "{e}");
        let one = pool.take();
        assert_eq!(one.ordinals(), [0]);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let two = pool.take_n(2);
                let _ = tx.send(two.ordinals());
            });
            let got = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("two are free");
            assert_eq!(got, [1, 2]);
            // All three back (in whichever order the two leases end): a stage wanting three
            // takes them.
            drop(one);
            let mut all = pool.take_n(3).ordinals();
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2]);
        });
        // On the CPU every count runs on the one slot (its peers share the CPU).
        let cpu = DevicePool::new(Vec::new());
        assert_eq!(cpu.wanted("train", DeviceCount::Count(4)), Ok(1));
        assert_eq!(cpu.wanted("train", DeviceCount::All), Ok(1));
    }
}
