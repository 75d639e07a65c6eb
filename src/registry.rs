//! What this build can run: its stage kinds and how it names the backend accelerator stages
//! run on. The binary builds one (`main.rs`) and hands it to [`crate::spec::load`]; the
//! orchestrator itself knows no kind and no model.

use pipe_stage_api::{BackendChoice, StageError, StageKind};

pub struct Registry {
    /// Every kind, in the order `pipe kinds` lists them.
    pub kinds: &'static [&'static dyn StageKind],
    /// The backend accelerator stages will run on, as recorded in their keys (`"cpu (flex)"`,
    /// `"cuda"`: what changes results, never a device ordinal), or why the pipeline's choice cannot be honoured by this build.
    pub backend: fn(BackendChoice) -> Result<String, StageError>,
    /// How many devices accelerator stages may be spread over for a backend choice (0 when it
    /// resolves to the CPU): the device pool of `[pipeline] devices = "auto"`.
    pub devices: fn(BackendChoice) -> usize,
}

impl Registry {
    pub fn find(&self, name: &str) -> Option<&'static dyn StageKind> {
        self.kinds.iter().copied().find(|k| k.name() == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name()).collect()
    }
}
