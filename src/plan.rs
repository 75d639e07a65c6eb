//! Where each stage stands: compute its key from its parameters, inputs and upstream content,
//! look the key up, and explain a miss as a diff against what the stage last produced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cache::{Artifact, Cache, PreImage, SCHEME, flatten_values, params_json, short};
use crate::hash::{self, StatCache, Tree};
use crate::spec::{Spec, StageSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The artifact for the current key exists.
    Fresh,
    /// The stage ran before with other inputs; `reasons` says what changed.
    Stale,
    /// The stage never produced an artifact for this pipeline.
    Missing,
    /// An upstream stage is not fresh, so this stage's key is not known yet.
    Blocked,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Fresh => "fresh",
            State::Stale => "stale",
            State::Missing => "missing",
            State::Blocked => "blocked",
        }
    }
}

pub struct StageStatus {
    pub name: String,
    pub state: State,
    pub key: Option<String>,
    pub reasons: Vec<Reason>,
    pub artifact: Option<Artifact>,
}

/// Why a stage is not fresh: what changed, for scripts (`status --json`), beside the sentence
/// people read (its `Display`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reason {
    #[serde(flatten)]
    pub change: Change,
    pub text: String,
}

/// What changed, as `status --json` names it in `kind`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A parameter, `pipeline.seed` or `pipeline.backend`: its old and new values (`null`
    /// when it was added or removed).
    Param {
        key: String,
        old: Option<serde_json::Value>,
        new: Option<serde_json::Value>,
    },
    /// An input file or folder changed, appeared or is no longer used.
    Input { path: String },
    /// An upstream stage changed, is not fresh, or was added or removed.
    Upstream { stage: String },
    /// The stage's code (its kind's version, its kind, the cache scheme).
    Code,
    /// It has never run.
    NeverRun,
    /// `--force`.
    Forced,
    /// Anything else: its key cannot be made (a missing input), the previous artifact is gone.
    Other,
}

impl Reason {
    pub fn new(change: Change, text: impl Into<String>) -> Self {
        Self {
            change,
            text: text.into(),
        }
    }

    pub fn other(text: impl Into<String>) -> Self {
        Self::new(Change::Other, text)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "stage `{stage}`: input {path} does not exist (create it, or fix the path in the pipeline file)"
    )]
    MissingInput { stage: String, path: String },
    #[error("stage `{stage}`: cannot hash input {path}")]
    Hash {
        stage: String,
        path: String,
        #[source]
        source: Box<hash::HashError>,
    },
    #[error("stage `{stage}`: {message}")]
    Inputs { stage: String, message: String },
    /// The backend could not be resolved; `reason` is its whole error chain.
    #[error("stage `{stage}` uses the accelerator: {reason}")]
    Backend { stage: String, reason: String },
}

/// A stage's cache key, what it is computed from (the pre-image), and the per-file listing of
/// its inputs.
#[derive(Clone)]
pub struct StageKey {
    pub preimage: PreImage,
    pub key: String,
    pub inputs: BTreeMap<String, Tree>,
}

/// Computes keys; shares one stat cache across all stages (and threads) of a command.
pub struct Planner<'a> {
    pub spec: &'a Spec,
    pub cache: &'a Cache,
    /// Identifies this pipeline file inside a shared cache (refs, run records).
    pub pipeline_id: String,
    stat: std::sync::RwLock<StatCache>,
    /// Keys already computed in this command, by stage and upstream digests: inputs are
    /// hashed once per command even when status is asked again after a run.
    memo: Mutex<Memo>,
    /// `[pipeline] backend` resolved once: what accelerator stages record in their keys.
    backend: Result<String, String>,
}

type Memo = BTreeMap<(String, BTreeMap<String, String>), Arc<StageKey>>;

impl<'a> Planner<'a> {
    pub fn new(spec: &'a Spec, cache: &'a Cache) -> Self {
        Self {
            spec,
            cache,
            pipeline_id: pipeline_id(spec),
            stat: std::sync::RwLock::new(cache.load_statcache()),
            memo: Mutex::new(BTreeMap::new()),
            backend: (spec.registry.backend)(spec.backend).map_err(|e| crate::error_chain(&*e)),
        }
    }

    /// Persist what hashing learned (best effort: a failure only costs a re-hash next time).
    pub fn finish(self) {
        if let Ok(stat) = self.stat.into_inner()
            && let Err(e) = self.cache.save_statcache(stat)
        {
            tracing::warn!("could not save the stat cache: {e}");
        }
    }

    /// The key of `stage` given its upstream artifacts' content digests. Shared, not cloned:
    /// its input listings hold a line per file (120,000 for COCO).
    pub fn key(
        &self,
        stage: &StageSpec,
        deps: BTreeMap<String, String>,
    ) -> Result<Arc<StageKey>, PlanError> {
        let memo_key = (stage.name.clone(), deps.clone());
        if let Some(k) = self
            .memo
            .lock()
            .ok()
            .and_then(|m| m.get(&memo_key).cloned())
        {
            return Ok(k);
        }
        let keyed = Arc::new(self.compute_key(stage, deps)?);
        if let Ok(mut m) = self.memo.lock() {
            m.insert(memo_key, keyed.clone());
        }
        Ok(keyed)
    }

    fn compute_key(
        &self,
        stage: &StageSpec,
        deps: BTreeMap<String, String>,
    ) -> Result<StageKey, PlanError> {
        let paths = stage
            .kind
            .inputs(&stage.params, &self.spec.dir)
            .map_err(|e| PlanError::Inputs {
                stage: stage.name.clone(),
                message: e.message,
            })?;
        let mut inputs = BTreeMap::new();
        for path in paths {
            let shown = display_path(&path, &self.spec.dir);
            if !path.exists() {
                return Err(PlanError::MissingInput {
                    stage: stage.name.clone(),
                    path: shown,
                });
            }
            let tree = hash::hash_tree(&path, &self.stat).map_err(|source| PlanError::Hash {
                stage: stage.name.clone(),
                path: shown.clone(),
                source: Box::new(source),
            })?;
            const LISTED: usize = 10;
            for (path, why) in tree.skipped.iter().take(LISTED) {
                tracing::warn!(
                    "stage `{}`: {shown}/{path} is {why}: not read, not part of the key",
                    stage.name
                );
            }
            if tree.skipped.len() > LISTED {
                tracing::warn!(
                    "stage `{}`: … and {} more unreadable entries under {shown}",
                    stage.name,
                    tree.skipped.len() - LISTED
                );
            }
            inputs.insert(shown, tree);
        }
        let preimage = PreImage {
            scheme: SCHEME,
            kind: stage.kind.name().to_string(),
            kind_version: stage.kind.version(),
            params: params_json(&stage.params),
            deps,
            inputs: inputs
                .iter()
                .map(|(k, t)| (k.clone(), t.digest.clone()))
                .collect(),
            seed: self.spec.seed,
            backend: match stage.kind.uses_accelerator() {
                false => None,
                true => Some(self.backend.clone().map_err(|reason| PlanError::Backend {
                    stage: stage.name.clone(),
                    reason,
                })?),
            },
        };
        let key = preimage.key();
        Ok(StageKey {
            preimage,
            key,
            inputs,
        })
    }

    /// Every stage's state, in pipeline order.
    pub fn status(&self) -> Vec<StageStatus> {
        let mut out: Vec<StageStatus> = Vec::new();
        for stage in &self.spec.stages {
            let blocked: Vec<Reason> = stage
                .deps
                .iter()
                .filter_map(|d| out.iter().find(|s| &s.name == d))
                .filter(|s| s.state != State::Fresh)
                .map(|s| {
                    let text = format!("upstream `{}` is {}", s.name, s.state.as_str());
                    Reason::new(
                        Change::Upstream {
                            stage: s.name.clone(),
                        },
                        text,
                    )
                })
                .collect();
            if !blocked.is_empty() {
                out.push(StageStatus {
                    name: stage.name.clone(),
                    state: State::Blocked,
                    key: None,
                    reasons: blocked,
                    artifact: None,
                });
                continue;
            }
            let deps = stage
                .deps
                .iter()
                .filter_map(|d| out.iter().find(|s| &s.name == d))
                .filter_map(|s| {
                    s.artifact
                        .as_ref()
                        .map(|a| (s.name.clone(), a.manifest.content.clone()))
                })
                .collect();
            let previous = self.cache.read_ref(&self.pipeline_id, &stage.name);
            let status = match self.key(stage, deps) {
                Err(e) => {
                    let state = if previous.is_some() {
                        State::Stale
                    } else {
                        State::Missing
                    };
                    StageStatus {
                        name: stage.name.clone(),
                        state,
                        key: None,
                        reasons: vec![Reason::other(e.to_string())],
                        artifact: None,
                    }
                }
                Ok(keyed) => match self.cache.artifact(&keyed.key) {
                    Some(a) => StageStatus {
                        name: stage.name.clone(),
                        state: State::Fresh,
                        key: Some(keyed.key.clone()),
                        reasons: vec![],
                        artifact: Some(a),
                    },
                    None => {
                        let (state, reasons) = match previous {
                            Some(prev) => (State::Stale, self.explain(&prev, &keyed)),
                            None => (
                                State::Missing,
                                vec![Reason::new(Change::NeverRun, "never run")],
                            ),
                        };
                        StageStatus {
                            name: stage.name.clone(),
                            state,
                            key: Some(keyed.key.clone()),
                            reasons,
                            artifact: None,
                        }
                    }
                },
            };
            out.push(status);
        }
        out
    }

    /// Why `current` differs from the artifact with key `previous`.
    pub fn explain(&self, previous: &str, current: &StageKey) -> Vec<Reason> {
        let Some(old) = self.cache.preimage(previous) else {
            return vec![Reason::other(format!(
                "the previous artifact ({}) is no longer in the cache",
                short(previous)
            ))];
        };
        let new = &current.preimage;
        let mut reasons = Vec::new();
        let mut push = |change: Change, text: String| reasons.push(Reason::new(change, text));
        if old.scheme != new.scheme {
            push(
                Change::Code,
                format!("cache scheme {} → {}", old.scheme, new.scheme),
            );
        }
        if old.kind != new.kind {
            push(Change::Code, format!("kind {} → {}", old.kind, new.kind));
        } else if old.kind_version != new.kind_version {
            push(
                Change::Code,
                format!(
                    "`{}` stage code changed (version {} → {})",
                    new.kind, old.kind_version, new.kind_version
                ),
            );
        }
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        flatten_values(&old.params, "", &mut a);
        flatten_values(&new.params, "", &mut b);
        let param =
            |key: &str, old: Option<&serde_json::Value>, new: Option<&serde_json::Value>| {
                Change::Param {
                    key: key.to_string(),
                    old: old.cloned(),
                    new: new.cloned(),
                }
            };
        for (k, v) in &b {
            match a.get(k) {
                Some(o) if o != v => {
                    push(param(k, Some(o), Some(v)), format!("param {k}: {o} → {v}"))
                }
                None => push(param(k, None, Some(v)), format!("param {k} added (= {v})")),
                _ => {}
            }
        }
        for (k, o) in &a {
            if !b.contains_key(k) {
                push(
                    param(k, Some(o), None),
                    format!("param {k} removed (was {o})"),
                );
            }
        }
        if old.seed != new.seed {
            push(
                param(
                    "pipeline.seed",
                    Some(&old.seed.into()),
                    Some(&new.seed.into()),
                ),
                format!("pipeline.seed: {} → {}", old.seed, new.seed),
            );
        }
        if old.backend != new.backend {
            push(
                param(
                    "pipeline.backend",
                    Some(&old.backend.clone().into()),
                    Some(&new.backend.clone().into()),
                ),
                format!(
                    "backend: {} → {}",
                    old.backend.as_deref().unwrap_or("-"),
                    new.backend.as_deref().unwrap_or("-")
                ),
            );
        }
        let upstream = |dep: &str| Change::Upstream {
            stage: dep.to_string(),
        };
        for (dep, digest) in &new.deps {
            match old.deps.get(dep) {
                Some(o) if o != digest => push(upstream(dep), format!("upstream `{dep}` changed")),
                None => push(upstream(dep), format!("new upstream `{dep}`")),
                _ => {}
            }
        }
        for dep in old.deps.keys().filter(|d| !new.deps.contains_key(*d)) {
            push(upstream(dep), format!("no longer depends on `{dep}`"));
        }
        let old_trees = self.cache.input_trees(previous).unwrap_or_default();
        let input = |path: &str| Change::Input {
            path: path.to_string(),
        };
        for (path, digest) in &new.inputs {
            match old.inputs.get(path) {
                Some(o) if o != digest => push(
                    input(path),
                    input_change(path, old_trees.get(path), current.inputs.get(path)),
                ),
                None => push(input(path), format!("new input {path}")),
                _ => {}
            }
        }
        for path in old.inputs.keys().filter(|p| !new.inputs.contains_key(*p)) {
            push(input(path), format!("input {path} no longer used"));
        }
        if reasons.is_empty() {
            reasons.push(Reason::other("inputs changed"));
        }
        reasons
    }
}

fn input_change(path: &str, old: Option<&Tree>, new: Option<&Tree>) -> String {
    let (Some(old), Some(new)) = (old, new) else {
        return format!("input {path} changed");
    };
    if new.entries.len() == 1 && new.entries[0].path.is_empty() {
        return format!("input {path} changed");
    }
    let (changed, added, removed) = hash::diff(&old.entries, &new.entries);
    let mut parts = Vec::new();
    for (list, verb) in [
        (&changed, "changed"),
        (&added, "added"),
        (&removed, "removed"),
    ] {
        if !list.is_empty() {
            let mut names: Vec<&str> = list.iter().take(3).map(String::as_str).collect();
            if list.len() > 3 {
                names.push("…");
            }
            let noun = if list.len() == 1 { "file" } else { "files" };
            parts.push(format!(
                "{} {noun} {verb} ({})",
                list.len(),
                names.join(", ")
            ));
        }
    }
    format!("input {path} changed: {}", parts.join(", "))
}

/// A path as the user wrote it: relative to the pipeline's directory when inside it.
/// Identifies a pipeline file inside a shared cache (refs, run records, tries): a digest of
/// its path.
pub fn pipeline_id(spec: &Spec) -> String {
    blake3::hash(spec.file.to_string_lossy().as_bytes()).to_hex()[..16].to_string()
}

pub fn display_path(path: &Path, base: &Path) -> String {
    let p: PathBuf = path
        .strip_prefix(base)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf);
    p.to_string_lossy().into_owned()
}
