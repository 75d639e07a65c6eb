//! pipeline.toml → a typed, validated [`Spec`]. Everything that can be wrong with the file is
//! found here, once, and reported with its location; later stages trust the spec.

pub mod edit;
mod error;
mod executor;
mod locate;
mod overrides;
mod remotes;
mod sweep;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pipe_remote::RemoteConfig;
use pipe_stage_api::{BackendChoice, StageKind};

pub use error::{Diagnostic, SpecError, did_you_mean};
pub use executor::{Devices, Executor, ExecutorKind, Resources};
pub use locate::{Location, Source};
pub use overrides::Override;
pub use pipe_stage_api::env_name;
pub use sweep::{Axis, MAX_POINTS, Sweep};

use crate::registry::Registry;

/// The validated pipeline.
pub struct Spec {
    /// Absolute path of pipeline.toml.
    pub file: PathBuf,
    /// Its directory: relative paths resolve here and commands run here.
    pub dir: PathBuf,
    pub name: String,
    pub backend: BackendChoice,
    pub seed: u64,
    /// The kinds and backends this build has.
    pub registry: &'static Registry,
    pub cache_dir: PathBuf,
    pub results_dir: PathBuf,
    /// Stages in a topological order (file order among independent stages).
    pub stages: Vec<StageSpec>,
    /// `[sweeps.NAME]`, in file order.
    pub sweeps: Vec<Sweep>,
    /// `[remotes.NAME]`, in file order.
    pub remotes: Vec<RemoteConfig>,
    /// `[pipeline] remote`: the remote push, pull and `run --pull/--push` use by default.
    pub remote: Option<String>,
    /// `[executor]`: where stages run.
    pub executor: Executor,
    /// `[pipeline] devices`: the accelerator devices stages are spread over.
    pub devices: Devices,
}

pub struct StageSpec {
    pub name: String,
    pub kind: &'static dyn StageKind,
    pub deps: Vec<String>,
    /// The stage's table without `kind`, `deps` and `results`.
    pub params: toml::Table,
    /// Where `results/` shows this stage's files.
    pub results: PathBuf,
    /// `executor`: where this stage runs, whatever `[executor]` says.
    pub executor: Option<ExecutorKind>,
    /// `resources`: what its Slurm job asks for.
    pub resources: Resources,
}

impl Spec {
    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn stage_names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|s| s.name.as_str())
    }

    pub fn sweep(&self, name: &str) -> Option<&Sweep> {
        self.sweeps.iter().find(|s| s.name == name)
    }

    pub fn remote_config(&self, name: &str) -> Option<&RemoteConfig> {
        self.remotes.iter().find(|r| r.name == name)
    }
}

const TOP_KEYS: &[&str] = &["pipeline", "stages", "sweeps", "remotes", "executor"];
const PIPELINE_KEYS: &[&str] = &[
    "name", "backend", "seed", "cache", "results", "remote", "devices",
];
/// A stage's keys that are not its parameters (never part of its key).
const STAGE_KEYS: &[&str] = &["kind", "deps", "results", "executor", "resources"];

/// Read, override and validate a pipeline file against the kinds of `registry`.
pub fn load(
    file: &Path,
    overrides: &[Override],
    registry: &'static Registry,
) -> Result<Spec, SpecError> {
    let bytes = std::fs::read(file).map_err(|source| SpecError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let text =
        String::from_utf8(bytes).map_err(|e| not_utf8(file, e.as_bytes(), e.utf8_error()))?;
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let cache_elsewhere = std::env::var_os(CACHE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    parse_with(&file, &text, overrides, registry, cache_elsewhere)
}

/// Where a pipeline file stops being UTF-8 (TOML is UTF-8), as a located problem.
fn not_utf8(file: &Path, bytes: &[u8], e: std::str::Utf8Error) -> SpecError {
    let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
    let name = file
        .file_name()
        .map_or_else(|| file.to_path_buf(), PathBuf::from);
    let at = Location::of(&name, valid, valid.len());
    SpecError::one(Diagnostic {
        at: at.to_string(),
        key: String::new(),
        message: "not valid UTF-8 (TOML files are UTF-8; re-save the file as UTF-8)".into(),
        help: None,
    })
}

/// The environment variable that puts the cache outside the project (a shared filesystem):
/// the one way to do so, since `[pipeline] cache` must stay inside the project.
pub const CACHE_ENV: &str = "PIPE_CACHE_DIR";

/// Validate pipeline text as if read from `file`.
pub fn parse(
    file: &Path,
    text: &str,
    overrides: &[Override],
    registry: &'static Registry,
) -> Result<Spec, SpecError> {
    parse_with(file, text, overrides, registry, None)
}

/// [`parse`], with the cache in `cache_elsewhere` when [`CACHE_ENV`] names one.
fn parse_with(
    file: &Path,
    text: &str,
    overrides: &[Override],
    registry: &'static Registry,
    cache_elsewhere: Option<PathBuf>,
) -> Result<Spec, SpecError> {
    let display_name = file
        .file_name()
        .map_or_else(|| file.to_path_buf(), PathBuf::from);
    let src = Source::new(&display_name, text);
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map_or_else(|| src.at(0), |s| src.at(s.start))
            .to_string();
        let message = e.message().trim().to_string();
        SpecError::one(Diagnostic {
            at,
            key: String::new(),
            message,
            help: None,
        })
    })?;
    let overridden = overrides::apply(&mut doc, overrides).map_err(|d| SpecError::invalid(d, 0))?;
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut v = Validator {
        src: &src,
        dir,
        cache_elsewhere,
        overridden: &overridden,
        registry,
        problems: Vec::new(),
        more_problems: 0,
    };
    let spec = v.spec(file, &doc);
    match spec {
        Some(spec) if v.problems.is_empty() => Ok(spec),
        _ => Err(SpecError::invalid(v.problems, v.more_problems)),
    }
}

struct Validator<'a> {
    src: &'a Source<'a>,
    /// The pipeline file's directory.
    dir: PathBuf,
    /// [`CACHE_ENV`]: a cache outside the project, chosen explicitly.
    cache_elsewhere: Option<PathBuf>,
    /// Key paths set by `--set`, with the flag's text, so errors point at the flag.
    overridden: &'a BTreeMap<Vec<String>, String>,
    registry: &'static Registry,
    problems: Vec<Diagnostic>,
    /// Problems found beyond [`MAX_PROBLEMS`]: counted, not located.
    more_problems: usize,
}

/// Problems reported with their location; the rest are counted ("… and 38000 more"), so a
/// file with a million mistakes costs no more to locate than one with fifty.
pub const MAX_PROBLEMS: usize = 50;

impl Validator<'_> {
    fn report(&mut self, path: &[&str], message: impl Into<String>, help: Option<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.more_problems += 1;
            return;
        }
        let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let at = match self.overridden.iter().find(|(p, _)| owned.starts_with(p)) {
            Some((_, flag)) => flag.clone(),
            None => self.src.locate(path).to_string(),
        };
        self.problems.push(Diagnostic {
            at,
            key: path.join("."),
            message: message.into(),
            help,
        });
    }

    fn unknown_keys(&mut self, table: &toml::Table, prefix: &[&str], known: &[&str]) {
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let mut path = prefix.to_vec();
                path.push(key);
                let help = did_you_mean(key, known.iter().copied())
                    .or_else(|| Some(format!("expected one of: {}", known.join(", "))));
                self.report(&path, "unknown key", help);
            }
        }
    }

    fn spec(&mut self, file: &Path, doc: &toml::Table) -> Option<Spec> {
        self.unknown_keys(doc, &[], TOP_KEYS);
        let dir = file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let empty = toml::Table::new();
        let pipeline = match doc.get("pipeline") {
            None => &empty,
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                self.report(&["pipeline"], "must be a table", None);
                &empty
            }
        };
        self.unknown_keys(pipeline, &["pipeline"], PIPELINE_KEYS);
        let default_name = dir
            .file_name()
            .map_or("pipeline".into(), |n| n.to_string_lossy().into_owned());
        let name = self
            .string(pipeline, &["pipeline", "name"])
            .unwrap_or(default_name);
        let backend = match self.string(pipeline, &["pipeline", "backend"]).as_deref() {
            None | Some("auto") => BackendChoice::Auto,
            Some("cpu") => BackendChoice::Cpu,
            Some("cuda") => BackendChoice::Cuda,
            Some("wgpu") => BackendChoice::Wgpu,
            Some(other) => {
                let help = did_you_mean(other, ["auto", "cpu", "cuda", "wgpu"]);
                self.report(
                    &["pipeline", "backend"],
                    format!(
                        "unknown backend `{other}`: expected \"auto\", \"cpu\", \"cuda\" or \"wgpu\""
                    ),
                    help,
                );
                BackendChoice::Auto
            }
        };
        let seed = match pipeline.get("seed") {
            None => 0,
            Some(toml::Value::Integer(i)) if *i >= 0 => *i as u64,
            Some(_) => {
                self.report(
                    &["pipeline", "seed"],
                    "must be a non-negative integer",
                    None,
                );
                0
            }
        };
        let cache = self
            .string(pipeline, &["pipeline", "cache"])
            .unwrap_or_else(|| "cache".into());
        let cache_dir = match self.cache_elsewhere.clone() {
            Some(elsewhere) => normalize(&dir.join(elsewhere)),
            None => self.inside(&["pipeline", "cache"], &cache),
        };
        let results = self
            .string(pipeline, &["pipeline", "results"])
            .unwrap_or_else(|| "results".into());
        let results_dir = self.inside(&["pipeline", "results"], &results);
        self.apart(
            &["pipeline", "results"],
            &results_dir,
            "the cache",
            &cache_dir,
        );

        let stage_names: Vec<&str> = doc
            .get("stages")
            .and_then(toml::Value::as_table)
            .map(|t| t.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let sweeps = self.sweeps(doc, &stage_names);
        let remotes = self.remotes(doc);
        let remote = self.default_remote(pipeline, &remotes);
        let executor = self.executor(doc);
        let devices = self.devices(pipeline);
        let stages = self.stages(doc, &results_dir)?;
        self.check_results(&stages, &cache_dir);
        let stages = self.order(stages)?;
        Some(Spec {
            file: file.to_path_buf(),
            dir,
            name,
            backend,
            seed,
            registry: self.registry,
            cache_dir,
            results_dir,
            stages,
            sweeps,
            remotes,
            remote,
            executor,
            devices,
        })
    }

    fn string(&mut self, table: &toml::Table, path: &[&str]) -> Option<String> {
        let key = path.last().copied().unwrap_or_default();
        match table.get(key) {
            None => None,
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.report(path, "must be a string", None);
                None
            }
        }
    }

    /// `value` (the key at `at`) as a directory inside the project, not the project itself:
    /// pipe writes and deletes there. A problem is reported otherwise.
    fn inside(&mut self, at: &[&str], value: &str) -> PathBuf {
        let path = normalize(&self.dir.join(value));
        if !path.starts_with(&self.dir) || path == self.dir {
            let mut message = format!(
                "must be a directory inside the project ({}), not {}",
                self.dir.display(),
                path.display()
            );
            if at == ["pipeline", "cache"] {
                message.push_str(&format!(
                    "; for a cache elsewhere (a shared filesystem) set {CACHE_ENV}"
                ));
            }
            self.report(at, message, None);
        }
        path
    }

    /// Report `at` when `path` and `other` (`what`) are inside one another.
    fn apart(&mut self, at: &[&str], path: &Path, what: &str, other: &Path) {
        if overlaps(path, other) {
            self.report(
                at,
                format!("{} overlaps {what} ({})", path.display(), other.display()),
                None,
            );
        }
    }

    /// Every stage's results folder apart from the cache, from the other stages' results and
    /// from every stage's inputs: pipe replaces what is there after each run.
    fn check_results(&mut self, out: &[StageSpec], cache_dir: &Path) {
        let dir = self.dir.clone();
        let shown = |p: &Path| p.strip_prefix(&dir).unwrap_or(p).display().to_string();
        // Kinds that cannot name their inputs yet (bad parameters) are reported elsewhere.
        let inputs: Vec<(&str, PathBuf)> = out
            .iter()
            .filter_map(|s| Some((s.name.as_str(), s.kind.inputs(&s.params, &dir).ok()?)))
            .flat_map(|(name, ins)| ins.into_iter().map(move |i| (name, normalize(&i))))
            .collect();
        for (i, stage) in out.iter().enumerate() {
            let at = ["stages", stage.name.as_str(), "results"];
            if overlaps(&stage.results, cache_dir) {
                let message = format!(
                    "{} overlaps the cache ({})",
                    shown(&stage.results),
                    shown(cache_dir)
                );
                self.report(&at, message, None);
            }
            for other in &out[..i] {
                let message = if stage.results == other.results {
                    format!(
                        "duplicate output path {}: stage `{}` writes its results there too",
                        shown(&stage.results),
                        other.name
                    )
                } else if overlaps(&stage.results, &other.results) {
                    format!(
                        "{} overlaps stage `{}`'s results ({}): results folders must not nest",
                        shown(&stage.results),
                        other.name,
                        shown(&other.results)
                    )
                } else {
                    continue;
                };
                self.report(&at, message, None);
            }
            if let Some((owner, input)) = inputs
                .iter()
                .find(|(_, input)| overlaps(&stage.results, input))
            {
                let message = format!(
                    "{} overlaps {}, an input of stage `{owner}`: each run would change that \
                     input and the stage would never be fresh",
                    shown(&stage.results),
                    shown(input),
                );
                self.report(&at, message, None);
            }
        }
    }

    fn stages(&mut self, doc: &toml::Table, results_dir: &Path) -> Option<Vec<StageSpec>> {
        let Some(value) = doc.get("stages") else {
            self.report(
                &[],
                "no stages: add at least one `[stages.<name>]` table",
                None,
            );
            return None;
        };
        let Some(table) = value.as_table() else {
            self.report(
                &["stages"],
                "must be a table of `[stages.<name>]` tables",
                None,
            );
            return None;
        };
        if table.is_empty() {
            self.report(
                &["stages"],
                "no stages: add at least one `[stages.<name>]` table",
                None,
            );
        }
        let names: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut env_names = BTreeMap::new();
        let mut out = Vec::new();
        for (name, value) in table {
            if let Some(stage) = self.stage(name, value, &names, results_dir) {
                out.push(stage);
            }
            let env = env_name(name);
            if let Some(other) = env_names.insert(env.clone(), name.clone()) {
                self.report(
                    &["stages", name],
                    format!("clashes with stage `{other}`: both export $PIPE_DEP_{env}"),
                    None,
                );
            }
        }
        Some(out)
    }

    fn stage(
        &mut self,
        name: &str,
        value: &toml::Value,
        names: &[&str],
        results_dir: &Path,
    ) -> Option<StageSpec> {
        let path = ["stages", name];
        if !valid_name(name) {
            self.report(
                &path,
                "stage names must start with a letter and use only letters, digits, `_` and `-`",
                None,
            );
        } else if name.len() > MAX_STAGE_NAME {
            // A name becomes file names (locks, refs, results/<stage>): long ones fail at run.
            self.report(
                &path,
                format!(
                    "stage names may have at most {MAX_STAGE_NAME} characters (this one has {})",
                    name.len()
                ),
                None,
            );
        }
        let Some(table) = value.as_table() else {
            self.report(
                &path,
                "must be a table: write `[stages.NAME]` with its keys below",
                None,
            );
            return None;
        };
        let kind_name = match table.get("kind") {
            None => name.to_string(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => {
                self.report(&["stages", name, "kind"], "must be a string", None);
                return None;
            }
        };
        let Some(kind) = self.registry.find(&kind_name) else {
            let known = self.registry.names();
            let help = did_you_mean(&kind_name, known.iter().copied())
                .or_else(|| Some(format!("known kinds: {}", known.join(", "))));
            let at: &[&str] = if table.contains_key("kind") {
                &["stages", name, "kind"]
            } else {
                &path
            };
            self.report(at, format!("unknown stage kind `{kind_name}`"), help);
            return None;
        };
        let deps = self.deps(name, table, names);
        let results = match self.string(table, &["stages", name, "results"]) {
            Some(p) => self.inside(&["stages", name, "results"], &p),
            None => results_dir.join(name),
        };
        let params: toml::Table = table
            .iter()
            .filter(|(k, _)| !STAGE_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Err(e) = kind.check(&params) {
            let mut full: Vec<&str> = vec!["stages", name];
            full.extend(e.path.iter().map(String::as_str));
            let help = unknown_key_help(&e);
            self.report(&full, e.message.clone(), help);
        }
        let executor = self.stage_executor(name, table);
        let resources = self.resources(name, table);
        Some(StageSpec {
            name: name.to_string(),
            kind,
            deps,
            params,
            results,
            executor,
            resources,
        })
    }

    fn deps(&mut self, name: &str, table: &toml::Table, names: &[&str]) -> Vec<String> {
        let path = ["stages", name, "deps"];
        let Some(value) = table.get("deps") else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.report(
                &path,
                "must be an array of stage names, e.g. deps = [\"prep\"]",
                None,
            );
            return Vec::new();
        };
        let mut deps = Vec::new();
        for item in items {
            let Some(dep) = item.as_str() else {
                self.report(&path, "must contain only stage names (strings)", None);
                continue;
            };
            if dep == name {
                self.report(
                    &path,
                    format!("stage `{name}` cannot depend on itself"),
                    None,
                );
            } else if !names.contains(&dep) {
                let help = did_you_mean(dep, names.iter().copied());
                self.report(&path, format!("unknown stage `{dep}`"), help);
            } else if deps.iter().any(|d| d == dep) {
                self.report(&path, format!("`{dep}` is listed twice"), None);
            } else {
                deps.push(dep.to_string());
            }
        }
        deps
    }

    /// Topological order, or a diagnostic naming a cycle.
    fn order(&mut self, stages: Vec<StageSpec>) -> Option<Vec<StageSpec>> {
        let index: BTreeMap<&str, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut graph = petgraph::graph::DiGraph::<usize, ()>::new();
        let nodes: Vec<_> = (0..stages.len()).map(|i| graph.add_node(i)).collect();
        for (i, s) in stages.iter().enumerate() {
            for d in &s.deps {
                if let Some(&j) = index.get(d.as_str()) {
                    graph.add_edge(nodes[j], nodes[i], ());
                }
            }
        }
        if let Some(cycle) = find_cycle(&graph, &stages) {
            let first = cycle[0].clone();
            let shown = cycle
                .iter()
                .chain(std::iter::once(&first))
                .cloned()
                .collect::<Vec<_>>()
                .join(" → ");
            self.report(
                &["stages", &first, "deps"],
                format!("dependency cycle: {shown}"),
                None,
            );
            return None;
        }
        // Kahn's algorithm with the file order as tie-break, so output is stable and readable.
        let mut placed = BTreeSet::new();
        let mut order = Vec::with_capacity(stages.len());
        while order.len() < stages.len() {
            let next = (0..stages.len()).find(|&i| {
                !placed.contains(&i)
                    && stages[i]
                        .deps
                        .iter()
                        .all(|d| index.get(d.as_str()).is_some_and(|j| placed.contains(j)))
            })?;
            placed.insert(next);
            order.push(next);
        }
        let mut slots: Vec<Option<StageSpec>> = stages.into_iter().map(Some).collect();
        Some(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }
}

fn find_cycle(
    graph: &petgraph::graph::DiGraph<usize, ()>,
    stages: &[StageSpec],
) -> Option<Vec<String>> {
    let scc = petgraph::algo::tarjan_scc(graph)
        .into_iter()
        .find(|c| c.len() > 1)?;
    // Walk the component from its first node (in file order) along edges that stay inside it.
    let start = *scc.iter().min_by_key(|n| graph[**n])?;
    let mut cycle = vec![start];
    let mut current = start;
    loop {
        let next = graph
            .neighbors(current)
            .filter(|n| scc.contains(n))
            .min_by_key(|n| graph[*n])?;
        if next == start || cycle.contains(&next) {
            break;
        }
        cycle.push(next);
        current = next;
    }
    Some(
        cycle
            .into_iter()
            .map(|n| stages[graph[n]].name.clone())
            .collect(),
    )
}

/// serde lists the accepted fields of an unknown-field error: offer the closest one, or ours
/// for a name people bring from transformers or PEFT.
fn unknown_key_help(e: &pipe_stage_api::ParamError) -> Option<String> {
    let key = e.path.last()?;
    let expected = e.message.split("expected one of ").nth(1)?;
    let candidates: Vec<&str> = expected
        .split(", ")
        .map(|s| s.trim_matches(|c| c == '`' || c == ' '))
        .collect();
    hf_name_help(key, &candidates).or_else(|| did_you_mean(key, candidates))
}

/// Hugging Face Trainer, PEFT and `generate` names, and what pipe calls the same thing
/// (`lora.alpha`: the `alpha` key of the `[stages.train.lora]` table).
const HF_NAMES: &[(&str, &str)] = &[
    ("learning_rate", "lr"),
    ("num_train_epochs", "epochs"),
    ("per_device_train_batch_size", "batch_size"),
    ("per_device_eval_batch_size", "batch_size"),
    ("train_batch_size", "batch_size"),
    ("gradient_accumulation_steps", "grad_accum"),
    ("warmup_ratio", "warmup"),
    ("lr_scheduler_type", "schedule"),
    ("label_smoothing_factor", "label_smoothing"),
    ("early_stopping_patience", "patience"),
    ("early_stopping_threshold", "min_delta"),
    ("eval_steps", "val_every_steps"),
    ("model_name_or_path", "model"),
    ("pretrained_model_name_or_path", "model"),
    ("lora_alpha", "lora.alpha"),
    ("lora_r", "lora.r"),
    ("rank", "lora.r"),
    ("lora_dropout", "lora.dropout"),
    ("target_modules", "lora.targets"),
];

/// `key` is a Hugging Face name for one of `candidates` (or, inside the `lora` table, for the
/// last part of one): say which, and where the name came from.
fn hf_name_help(key: &str, candidates: &[&str]) -> Option<String> {
    let (_, ours) = HF_NAMES.iter().find(|(hf, _)| *hf == key)?;
    let first = ours.split('.').next().unwrap_or(ours);
    let last = ours.rsplit('.').next().unwrap_or(ours);
    let name = if candidates.contains(&first) {
        ours
    } else if candidates.contains(&last) {
        last
    } else {
        return None;
    };
    Some(format!(
        "did you mean `{name}`? (`{key}` is the Hugging Face name; pipe calls it `{name}`)"
    ))
}

/// `path` with `.` and `..` resolved lexically (no file system access).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Whether one of two paths is inside the other (or they are equal).
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The longest stage name: it is part of file names (refs, locks, `results/<stage>`).
pub const MAX_STAGE_NAME: usize = 64;

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
