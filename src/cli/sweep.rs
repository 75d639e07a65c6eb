//! `pipe run --sweep NAME`: every point of `[sweeps.NAME]` run as a try.
//!
//! Every point's pipeline is loaded and checked before anything runs, so a bad value is a
//! located error (exit 2) and not a failure halfway through. Points run up to `-j` at once,
//! each like `pipe run --set …`: what points share (same keys) is computed once, by whichever
//! point gets to it first, while the others wait on its execution lock; stages that use the
//! accelerator run one at a time across all points.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use indicatif::MultiProgress;
use pipe::cache::Cache;
use pipe::plan::Planner;
use pipe::run::{self, RunOptions, StageReport};
use pipe::spec::{self, Diagnostic, MAX_PROBLEMS, Override, Spec, SpecError, Sweep};
use pipe::tries::{self, TryStatus};
use serde_json::json;

use super::{CliError, Exit, TryOf, output};

pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

/// One point of the sweep: its try's name and overrides, and its pipeline.
struct Point {
    name: String,
    overrides: Vec<String>,
    spec: Spec,
}

/// How a point ended.
enum Ended {
    /// Its stages, and the status its try was recorded with.
    Ran(Vec<StageReport>, TryStatus),
    /// An earlier point failed and `--keep-going` was not given.
    NotRun,
}

pub fn run(
    spec: &Spec,
    name: &str,
    set: &[Override],
    opts: &RunOptions,
    out: Output,
) -> Result<Exit, CliError> {
    let sweep = find(spec, name)?;
    let points = points(spec, sweep, set)?;
    if opts.dry_run {
        return dry_run(&points, opts, &out);
    }
    let cache = Cache::open(&spec.cache_dir)?;
    let bars = MultiProgress::new();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let ended: Mutex<Vec<Option<Result<Ended, CliError>>>> =
        Mutex::new((0..points.len()).map(|_| None).collect());
    let point_opts = RunOptions {
        targets: opts.targets.clone(),
        force: opts.force,
        dry_run: false,
        keep_going: opts.keep_going,
        jobs: 1,
        remote: opts.remote.clone(),
        pull: opts.pull,
        push: opts.push,
        executor: opts.executor.clone(),
        notes: opts.notes.clone(),
    };
    let workers = opts.jobs.clamp(1, points.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(point) = points.get(i) else { break };
                    let result = if stop.load(Ordering::SeqCst) {
                        Ok(Ended::NotRun)
                    } else {
                        run_point(point, &point_opts, &cache, &bars)
                    };
                    let failed = status(&result) == TryStatus::Failed.as_str();
                    if failed && !opts.keep_going {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if !out.json && !out.quiet {
                        bars.suspend(|| point_line(i, &points, &result));
                    }
                    let mut ended = ended.lock().unwrap_or_else(|e| e.into_inner());
                    ended[i] = Some(result);
                }
            });
        }
    });
    let ended = ended.into_inner().unwrap_or_else(|e| e.into_inner());
    super::exp::refresh_page(spec);
    summary(spec, sweep, &points, ended, &out)
}

fn find<'s>(spec: &'s Spec, name: &str) -> Result<&'s Sweep, CliError> {
    spec.sweep(name).ok_or_else(|| {
        let known: Vec<&str> = spec.sweeps.iter().map(|s| s.name.as_str()).collect();
        let file = spec.file.display();
        CliError::Usage(if known.is_empty() {
            format!("--sweep {name}: {file} declares no sweeps (add a `[sweeps.{name}]` table)")
        } else {
            let help = spec::did_you_mean(name, known.iter().copied())
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            format!(
                "--sweep {name}: no such sweep in {file} (known: {}){help}",
                known.join(", ")
            )
        })
    })
}

/// Every point's name, overrides and pipeline; the problems of all points at once if any is
/// invalid.
fn points(spec: &Spec, sweep: &Sweep, set: &[Override]) -> Result<Vec<Point>, CliError> {
    for axis in &sweep.axes {
        if let Some(o) = set
            .iter()
            .find(|o| axis.values.first().is_some_and(|v| v.path == o.path))
        {
            return Err(CliError::Usage(format!(
                "{}: `{}` is swept by sweep {}: drop the --set, or the sweep's `{}`",
                o.flag, axis.key, sweep.name, axis.key
            )));
        }
    }
    let mut points: Vec<Point> = Vec::new();
    let mut problems: Vec<Diagnostic> = Vec::new();
    let mut more = 0;
    for values in sweep.points() {
        let texts: Vec<String> = values.iter().map(tries::override_text).collect();
        let mut name = tries::point_name(&sweep.name, &texts);
        // Values that read the same in a name (`a b` and `a/b`) still name distinct points.
        let mut n = 2;
        while points.iter().any(|p| p.name == name) {
            let suffix = format!("-{n}");
            name.truncate(tries::MAX_NAME - suffix.len());
            name.push_str(&suffix);
            n += 1;
        }
        let overrides: Vec<Override> = set.iter().cloned().chain(values).collect();
        match spec::load(&spec.file, &overrides, spec.registry) {
            Ok(point_spec) => points.push(Point {
                name,
                overrides: overrides.iter().map(tries::override_text).collect(),
                spec: point_spec,
            }),
            Err(SpecError::Invalid(found, m)) => {
                more += m;
                for d in found {
                    if problems.contains(&d) {
                        continue;
                    }
                    if problems.len() < MAX_PROBLEMS {
                        problems.push(d);
                    } else {
                        more += 1;
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if problems.is_empty() {
        Ok(points)
    } else {
        Err(SpecError::invalid(problems, more).into())
    }
}

fn run_point(
    point: &Point,
    opts: &RunOptions,
    cache: &Cache,
    bars: &MultiProgress,
) -> Result<Ended, CliError> {
    let planner = Planner::new(&point.spec, cache);
    let try_of = TryOf {
        overrides: point.overrides.clone(),
        name: Some(point.name.clone()),
    };
    let done = super::run_and_record(&planner, opts, Some(&try_of), bars, &|_| {});
    planner.finish();
    let done = done?;
    let status = done.recorded.map_or(TryStatus::Failed, |(_, s)| s);
    Ok(Ended::Ran(done.reports, status))
}

/// A point's status: its try's (`ok`, `failed`, `incomplete`), or `not run`.
fn status(result: &Result<Ended, CliError>) -> &'static str {
    match result {
        Err(_) => TryStatus::Failed.as_str(),
        Ok(Ended::NotRun) => "not run",
        Ok(Ended::Ran(_, s)) => s.as_str(),
    }
}

/// `[2/6] lr_rank-lr=0.0003_r=8  ok  2 ran, 1 cached`, and the error of a failed stage.
fn point_line(i: usize, points: &[Point], result: &Result<Ended, CliError>) {
    let name = &points[i].name;
    let n = points.len();
    let status = status(result);
    match result {
        Ok(Ended::Ran(reports, _)) => {
            outln!(
                "[{}/{n}] {name}  {status}  {}",
                i + 1,
                output::action_counts(reports)
            );
            for r in reports.iter().filter(|r| r.error.is_some()) {
                outln!(
                    "      {}: {}",
                    r.stage,
                    r.error.as_deref().unwrap_or_default()
                );
            }
        }
        Ok(Ended::NotRun) => outln!("[{}/{n}] {name}  not run (an earlier point failed)", i + 1),
        Err(e) => outln!("[{}/{n}] {name}  failed: {}", i + 1, pipe::error_chain(e)),
    }
}

fn summary(
    spec: &Spec,
    sweep: &Sweep,
    points: &[Point],
    ended: Vec<Option<Result<Ended, CliError>>>,
    out: &Output,
) -> Result<Exit, CliError> {
    let results: Vec<Result<Ended, CliError>> = ended
        .into_iter()
        .map(|e| e.unwrap_or(Ok(Ended::NotRun)))
        .collect();
    let statuses: Vec<&str> = results.iter().map(status).collect();
    let all_ok = statuses.iter().all(|s| *s == "ok" || *s == "incomplete");
    if out.json {
        let rows: Vec<serde_json::Value> = points
            .iter()
            .zip(&results)
            .zip(&statuses)
            .map(|((p, r), s)| {
                let (stages, error) = match r {
                    Ok(Ended::Ran(reports, _)) => (json!(reports), None),
                    Ok(Ended::NotRun) => (json!([]), None),
                    Err(e) => (json!([]), Some(pipe::error_chain(e))),
                };
                json!({ "try": p.name, "overrides": p.overrides, "status": s,
                        "stages": stages, "error": error })
            })
            .collect();
        output::print_json(&json!({ "sweep": sweep.name, "points": rows }));
    } else if !out.quiet {
        let count = |what: &str| statuses.iter().filter(|s| **s == what).count();
        let mut parts = vec![format!("{} ok", count("ok"))];
        for what in ["incomplete", "failed", "not run"] {
            if count(what) > 0 {
                parts.push(format!("{} {what}", count(what)));
            }
        }
        outln!(
            "sweep {}: {} point{}: {}; compare with `pipe exp show` or {}",
            sweep.name,
            points.len(),
            if points.len() == 1 { "" } else { "s" },
            parts.join(", "),
            super::exp::page_text(spec),
        );
    }
    Ok(if all_ok { Exit::Ok } else { Exit::Failed })
}

/// `--dry-run`: what each point would run.
fn dry_run(points: &[Point], opts: &RunOptions, out: &Output) -> Result<Exit, CliError> {
    let mut rows = Vec::new();
    for point in points {
        let cache = Cache::for_reading(&point.spec.cache_dir);
        let planner = Planner::new(&point.spec, &cache);
        let (reports, _) = run::dry_run(&planner, opts)?;
        planner.finish();
        if out.json {
            rows.push(
                json!({ "try": point.name, "overrides": point.overrides, "stages": reports }),
            );
        } else {
            outln!("{}:", point.name);
            for r in &reports {
                output::run_line(r);
            }
        }
    }
    if out.json {
        output::print_json(&json!({ "dry_run": true, "points": rows }));
    }
    Ok(Exit::Ok)
}
