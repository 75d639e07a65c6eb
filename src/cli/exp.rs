//! `pipe exp`: this pipeline's tries side by side (`show`), two of them compared (`diff`),
//! one written into the file (`apply`), some forgotten (`remove`). A try is made by `pipe run --set …` or `pipe run --name NAME`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipe::cache::{Cache, short};
use pipe::plan::{Planner, State, display_path, pipeline_id};
use pipe::results;
use pipe::spec::{self, Spec, SpecError, edit};
use pipe::tries::{self, Diff, Row, Tries, WORKSPACE};
use serde_json::{Value, json};

use super::{CliError, Exit};

#[derive(Debug, clap::Subcommand)]
pub enum ExpCommand {
    /// A table of the workspace (the file's own config) and every try: the parameters that
    /// differ between them, then every metric, the best value of each marked with `*`.
    Show(ShowArgs),
    /// What differs between two tries (`workspace` is the file's config): parameters,
    /// metrics (with `b - a`) and stage keys.
    Diff {
        /// The first try (`workspace`: the file's own config).
        a: String,
        /// The second try.
        b: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a try's parameters into the pipeline file, keeping its comments and layout, so
    /// that `pipe run` restores the try from the cache.
    Apply {
        /// The try whose parameters the file gets.
        name: String,
        /// Print what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Forget tries: `gc` may then delete their artifacts; their results folders go now.
    Remove {
        /// The tries to forget.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Order the tries by this metric, best first (e.g. `train.best_val_loss`).
    #[arg(long, value_name = "STAGE.METRIC")]
    sort: Option<String>,
    /// Show every parameter, not only those that differ between the rows.
    #[arg(long)]
    all_params: bool,
    /// Show only the metrics whose values differ between the rows.
    #[arg(long)]
    only_changed: bool,
    /// Show each try's metrics as differences from the workspace's.
    #[arg(long)]
    delta: bool,
    /// A Markdown table.
    #[arg(long, conflicts_with_all = ["csv", "json"])]
    md: bool,
    /// CSV: a header of column names, one line per row, plain values.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// `{"tries": [{"name", "created", "status", "params", "metrics", "keys"}]}`, the
    /// workspace first, every parameter and metric of each.
    #[arg(long)]
    json: bool,
    /// Write results/experiments.html (the table, the tries' validation losses overlaid, a
    /// link to each evaluate report) and results/experiments.png; print the page's path.
    #[arg(long, conflicts_with_all = ["md", "csv", "json", "delta", "all_params", "sort"])]
    html: bool,
}

pub fn run(spec: &Spec, command: &ExpCommand) -> Result<Exit, CliError> {
    let cache = Cache::for_reading(&spec.cache_dir);
    match command {
        ExpCommand::Show(args) => {
            let mut rows = all_rows(spec, &cache)?;
            if let Some(metric) = &args.sort {
                let known = tries::metric_names(&rows);
                if !known.contains(metric) {
                    return Err(CliError::Usage(format!(
                        "--sort {metric}: no try has this metric (known: {})",
                        if known.is_empty() {
                            "none yet".to_string()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
                tries::sort_by_metric(&mut rows, metric);
            }
            if args.html {
                if let Some(path) = write_page(&spec.file, true)? {
                    outln!("{}", display_path(&path, &spec.dir));
                }
            } else {
                show(&rows, args);
            }
        }
        ExpCommand::Diff { a, b, json } => {
            let rows = all_rows(spec, &cache)?;
            let find = |name: &str| -> Result<&Row, CliError> {
                rows.iter().find(|r| r.name == name).ok_or_else(|| {
                    tries::TryError::Unknown {
                        name: name.to_string(),
                        known: rows.iter().map(|r| r.name.clone()).collect(),
                    }
                    .into()
                })
            };
            let d = tries::diff(find(a)?, find(b)?);
            if *json {
                super::output::print_json(&json!({
                    "params": d.params, "metrics": d.metrics, "keys": d.keys
                }));
            } else {
                print_diff(a, b, &d);
            }
        }
        ExpCommand::Apply { name, dry_run } => return apply(spec, &cache, name, *dry_run),
        ExpCommand::Remove { names } => {
            let cache = Cache::open(&spec.cache_dir)?;
            let store = Tries::new(&cache, &pipeline_id(spec));
            let _lock = cache.meta_lock()?;
            // Every name first: a typo removes nothing.
            let known: Vec<String> = store.list()?.into_iter().map(|t| t.name).collect();
            if let Some(unknown) = names.iter().find(|n| !known.contains(n)) {
                return Err(tries::TryError::Unknown {
                    name: unknown.clone(),
                    known,
                }
                .into());
            }
            for name in names {
                store.remove(name)?;
                results::remove_try(&tries::results_dir(spec, name))?;
                outln!("removed try {name}");
            }
            refresh_page(spec);
        }
    }
    Ok(Exit::Ok)
}

/// `pipe exp apply NAME`: the try's values into the file, checked before anything is written
/// (the new text must be a valid pipeline with exactly the try's parameters), written
/// atomically; then what `pipe run` will do.
fn apply(spec: &Spec, cache: &Cache, name: &str, dry_run: bool) -> Result<Exit, CliError> {
    let file = display_path(&spec.file, &spec.dir);
    if name == WORKSPACE {
        return Err(CliError::Usage(format!(
            "exp apply: `{WORKSPACE}` is {file} itself; name a try (see `pipe exp show`)"
        )));
    }
    let t = Tries::new(cache, &pipeline_id(spec)).get(name)?;
    let fail = |reason: String| CliError::Apply {
        name: name.to_string(),
        file: file.clone(),
        reason,
    };
    let current = tries::effective_params(spec);
    let gone: Vec<&str> = tries::stages_of(&t.params)
        .difference(&tries::stages_of(&current))
        .copied()
        .collect();
    if !gone.is_empty() {
        return Err(fail(format!(
            "the try has stages the file no longer has ({}), so no edit of the file restores it",
            gone.join(", ")
        )));
    }
    let changes = tries::changes_to(&current, &t.params);
    if changes.is_empty() {
        outln!("{file} already has try {name}'s parameters");
        return Ok(Exit::Ok);
    }
    let text = std::fs::read_to_string(&spec.file).map_err(|source| SpecError::Read {
        path: spec.file.clone(),
        source,
    })?;
    let new_text = edit::apply(&text, &changes).map_err(|e| fail(e.to_string()))?;
    let new_spec = spec::parse(&spec.file, &new_text, &[], &crate::REGISTRY)
        .map_err(|e| fail(format!("the edited file would be invalid: {e}")))?;
    let stages = tries::stages_of(&current);
    let after = tries::effective_params(&new_spec);
    let mismatched: Vec<String> = t
        .params
        .iter()
        .filter(|(k, v)| stages.contains(tries::stage_of(k)) && after.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    if !mismatched.is_empty() {
        return Err(fail(format!(
            "the edited file would not carry these values as the try has them: {}",
            mismatched.join(", ")
        )));
    }
    let verb = if dry_run { "would change" } else { "changed" };
    outln!("exp apply {name}: {verb} in {file}:");
    for c in &changes {
        let key = c
            .path
            .strip_prefix(&["stages".to_string()][..])
            .unwrap_or(&c.path);
        let key = key.join(".");
        let old = current.get(&key).map_or("-".to_string(), param_text);
        let new = c.value.as_ref().map_or("(removed)".to_string(), param_text);
        outln!("  {key}  {old} → {new}");
    }
    if dry_run {
        return Ok(Exit::Ok);
    }
    pipe::cache::write_atomic(&spec.file, new_text.as_bytes()).map_err(|source| {
        CliError::Write {
            path: spec.file.clone(),
            source,
        }
    })?;
    let planner = Planner::new(&new_spec, cache);
    let to_run: Vec<String> = planner
        .status()
        .into_iter()
        .filter(|s| s.state != State::Fresh)
        .map(|s| s.name)
        .collect();
    planner.finish();
    if to_run.is_empty() {
        outln!("`pipe run` restores it from the cache: nothing to execute");
    } else {
        outln!(
            "`pipe run` will execute {} (not in the cache for this code and data)",
            to_run.join(", ")
        );
    }
    Ok(Exit::Ok)
}

/// The workspace row, then every try, oldest first.
fn all_rows(spec: &Spec, cache: &Cache) -> Result<Vec<Row>, CliError> {
    let planner = Planner::new(spec, cache);
    let fresh: BTreeMap<String, String> = planner
        .status()
        .into_iter()
        .filter(|s| s.state == State::Fresh)
        .filter_map(|s| Some((s.name, s.key?)))
        .collect();
    let store = Tries::new(cache, &planner.pipeline_id);
    planner.finish();
    let mut rows = vec![Row::workspace(spec, fresh, cache)];
    rows.extend(store.list()?.iter().map(|t| Row::of_try(t, cache)));
    Ok(rows)
}

fn show(rows: &[Row], args: &ShowArgs) {
    let params = if args.all_params {
        let all: std::collections::BTreeSet<&String> =
            rows.iter().flat_map(|r| r.params.keys()).collect();
        all.into_iter().cloned().collect()
    } else {
        tries::differing_params(rows)
    };
    let metrics = if args.only_changed {
        tries::differing_metrics(rows)
    } else {
        tries::metric_names(rows)
    };
    if args.json {
        let tries: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "created": r.created, "status": r.status,
                    "params": r.params, "metrics": r.metrics, "keys": r.keys,
                })
            })
            .collect();
        super::output::print_json(&json!({ "tries": tries }));
        return;
    }
    let header = header(&params, &metrics);
    if args.csv {
        print_csv(rows, &header, &params, &metrics);
        return;
    }
    let table = cells(rows, &params, &metrics, args.delta);
    let table: Vec<Vec<String>> = table
        .into_iter()
        .map(|row| row.into_iter().map(Cell::marked).collect())
        .collect();
    if args.md {
        print_md(&header, &table);
    } else {
        print_text(&header, &table);
    }
    if rows.len() == 1 {
        outln!("\nno tries yet: `pipe run --set STAGE.KEY=VALUE [--name NAME]` records one");
    }
}

/// One cell of the table; `best` when it holds the best value of its metric.
pub struct Cell {
    pub text: String,
    pub best: bool,
}

impl Cell {
    fn plain(text: String) -> Self {
        Self { text, best: false }
    }

    /// The text with the best value marked `*`.
    fn marked(self) -> String {
        if self.best {
            self.text + "*"
        } else {
            self.text
        }
    }
}

/// The column names: the try, its status and age, the parameters, the metrics. A metric named
/// like a parameter (train's `epochs` run against the `train.epochs` asked for) says so.
fn header(params: &[String], metrics: &[String]) -> Vec<String> {
    let mut header = vec!["try".to_string(), "status".into(), "created".into()];
    header.extend(params.iter().cloned());
    header.extend(metrics.iter().map(|m| {
        if params.contains(m) {
            format!("{m} (metric)")
        } else {
            m.clone()
        }
    }));
    header
}

/// The table's cells, one row per row; metrics as differences from the workspace's with
/// `delta`.
fn cells(rows: &[Row], params: &[String], metrics: &[String], delta: bool) -> Vec<Vec<Cell>> {
    // A best value only where there is a choice: the metric differs between rows.
    let varies = tries::differing_metrics(rows);
    let best: Vec<Option<f64>> = metrics
        .iter()
        .map(|m| tries::best(rows, m).filter(|_| varies.contains(m)))
        .collect();
    let workspace = rows.iter().find(|r| r.name == WORKSPACE);
    let now = unix_now();
    rows.iter()
        .map(|r| {
            let mut cells = vec![
                Cell::plain(r.name.clone()),
                Cell::plain(r.status.clone()),
                Cell::plain(r.created.map_or_else(|| "-".to_string(), |t| age(now - t))),
            ];
            cells.extend(
                params
                    .iter()
                    .map(|p| Cell::plain(r.params.get(p).map_or("-".into(), param_text))),
            );
            for (m, best) in metrics.iter().zip(&best) {
                let Some(v) = r.metrics.get(m).copied() else {
                    cells.push(Cell::plain("-".into()));
                    continue;
                };
                let base = workspace.and_then(|w| w.metrics.get(m)).copied();
                let text = match base {
                    Some(b) if delta && r.name != WORKSPACE => signed(v - b),
                    _ => number(v),
                };
                let best = Some(v) == *best;
                cells.push(Cell { text, best });
            }
            cells
        })
        .collect()
}

/// Write `results/experiments.html` (and its plot) for the pipeline in `file` as written (a
/// run with overrides has the file's own config as its workspace row too). With `on_demand`
/// false (after a run), nothing is written while the pipeline has no try and no page yet.
pub fn write_page(file: &Path, on_demand: bool) -> Result<Option<PathBuf>, CliError> {
    let spec = spec::load(file, &[], &crate::REGISTRY)?;
    let cache = Cache::for_reading(&spec.cache_dir);
    let page = spec.results_dir.join(super::exp_page::PAGE);
    // No page and no try to show: nothing to write, and no second walk over the inputs (the
    // workspace row's status) after every plain run.
    let no_tries = || {
        Tries::new(&cache, &pipe::plan::pipeline_id(&spec))
            .list()
            .is_ok_and(|t| t.is_empty())
    };
    if !on_demand && !page.exists() && no_tries() {
        return Ok(None);
    }
    let rows = all_rows(&spec, &cache)?;
    if !on_demand && rows.len() == 1 && !page.exists() {
        return Ok(None);
    }
    let params = tries::differing_params(&rows);
    let metrics = tries::metric_names(&rows);
    let table = cells(&rows, &params, &metrics, false);
    let written_at = super::output::utc(unix_now());
    let path = super::exp_page::write(
        &spec,
        &cache,
        &rows,
        &header(&params, &metrics),
        &table,
        &written_at,
    )?;
    Ok(Some(path))
}

fn print_text(header: &[String], table: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        outln!("{}", padded.join("  ").trim_end());
    };
    line(header);
    for row in table {
        line(row);
    }
}

fn print_md(header: &[String], table: &[Vec<String>]) {
    let escape = |c: &String| c.replace('|', "\\|");
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(escape).collect();
        outln!("| {} |", cells.join(" | "));
    };
    line(header);
    outln!("|{}", "---|".repeat(header.len()));
    for row in table {
        line(row);
    }
}

fn print_csv(rows: &[Row], header: &[String], params: &[String], metrics: &[String]) {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut lines = vec![header.to_vec()];
    for r in rows {
        let mut cells = vec![
            r.name.clone(),
            r.status.clone(),
            r.created.map(|t| format!("{t:.3}")).unwrap_or_default(),
        ];
        cells.extend(
            params
                .iter()
                .map(|p| r.params.get(p).map_or(String::new(), param_text)),
        );
        cells.extend(
            metrics
                .iter()
                .map(|m| r.metrics.get(m).map_or(String::new(), |v| v.to_string())),
        );
        lines.push(cells);
    }
    for line in lines {
        if let Err(e) = w.write_record(&line) {
            tracing::warn!("cannot write a CSV line: {e}");
        }
    }
    match w.into_inner() {
        Ok(bytes) => out!("{}", String::from_utf8_lossy(&bytes)),
        Err(e) => tracing::warn!("cannot finish the CSV: {e}"),
    }
}

fn print_diff(a: &str, b: &str, d: &Diff) {
    if d.params.is_empty() && d.metrics.is_empty() && d.keys.is_empty() {
        outln!("{a} and {b}: no differences");
        return;
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    if !d.params.is_empty() {
        outln!("params ({a} → {b}):");
        for p in &d.params {
            let (x, y) = (p.a.as_ref().map(param_text), p.b.as_ref().map(param_text));
            outln!("  {}  {} → {}", p.key, or_dash(x), or_dash(y));
        }
    }
    if !d.metrics.is_empty() {
        outln!("metrics ({a} → {b}):");
        for m in &d.metrics {
            let delta = m
                .delta
                .map(|d| format!("  ({})", signed(d)))
                .unwrap_or_default();
            let (x, y) = (m.a.map(number), m.b.map(number));
            outln!("  {}  {} → {}{delta}", m.key, or_dash(x), or_dash(y));
        }
    }
    if !d.keys.is_empty() {
        outln!("stage keys ({a} → {b}):");
        for k in &d.keys {
            let (x, y) = (k.a.as_deref().map(short), k.b.as_deref().map(short));
            let (x, y) = (x.map(str::to_string), y.map(str::to_string));
            outln!("  {}  {} → {}", k.stage, or_dash(x), or_dash(y));
        }
    }
}

/// A parameter as a person reads it: strings without quotes, other values as JSON.
fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A metric with at most 4 decimals, integers as integers.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 1e-4 {
        let text = format!("{v:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3e}")
    }
}

/// A difference, with its sign: `+0.25`, `-1`.
fn signed(d: f64) -> String {
    if d >= 0.0 {
        format!("+{}", number(d))
    } else {
        number(d)
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How long ago, roughly: `12s`, `5m`, `3h`, `2d`.
fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// After a run or `exp remove`: bring the experiments page up to date when the pipeline has
/// tries or a page. What the command did stands whatever happens here; a failure is a warning.
pub fn refresh_page(spec: &Spec) {
    if let Err(e) = write_page(&spec.file, false) {
        tracing::warn!("{}", pipe::error_chain(&e));
    }
}

/// Where the experiments page is, as the user reads it: `results/experiments.html`.
pub fn page_text(spec: &Spec) -> String {
    display_path(&spec.results_dir.join(super::exp_page::PAGE), &spec.dir)
}

/// The line a try's run ends with: its name and where its results are.
pub fn try_line(spec: &Spec, name: &str) -> String {
    let dir = display_path(&tries::results_dir(spec, name), &spec.dir);
    let file = display_path(&spec.file, &spec.dir);
    let results = display_path(&spec.results_dir, &spec.dir);
    format!(
        "try {name}: its results are in {dir}/ ({results}/ shows {file} as written); \
         compare with `pipe exp show` or {}",
        page_text(spec)
    )
}

#[cfg(test)]
mod tests {
    use super::header;

    #[test]
    fn a_metric_named_like_a_parameter_says_it_is_one() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let params = s(&["train.epochs", "train.lr"]);
        let metrics = s(&["evaluate.BLEU-4", "train.epochs"]);
        assert_eq!(
            header(&params, &metrics),
            s(&[
                "try",
                "status",
                "created",
                "train.epochs",
                "train.lr",
                "evaluate.BLEU-4",
                "train.epochs (metric)"
            ])
        );
    }
}
