//! The manifest: written last into a finished artifact; its presence means "complete".

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub scheme: u32,
    pub key: String,
    /// The stage that produced it (artifacts are shared by identical stages).
    pub stage: String,
    pub kind: String,
    /// Content digest of `out/`: what downstream keys are built from.
    pub content: String,
    pub files: u64,
    pub bytes: u64,
    /// Unix seconds when the run started.
    pub started: f64,
    pub duration_s: f64,
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Paths inside `out/` that `results/` shows (empty: everything at the top level).
    #[serde(default)]
    pub results: Vec<String>,
    pub pipe_version: String,
}
