//! Resumable training state in the stage's work dir, one complete epoch at a time.
//!
//! `work_dir/checkpoint/` holds `state.json` (epoch, step, history, early-stopping state, a
//! fingerprint of the parameters), `trainable.bin` (what training changes: the adapter alone
//! with LoRA, whose base model is frozen and reloaded from its source; else model + adapter),
//! `optim.bin` and `optim_plain.bin` (AdamW's moments, with and without weight decay) and `best.bin` (the best epoch's, likewise), all f32 exact. It is written
//! as `checkpoint.tmp/` and renamed into place, so a kill leaves either the previous epoch's
//! checkpoint or the new one, never a mix. Every file is fsynced before the rename, and
//! `state.json` records each tensor file's blake3 digest: a checkpoint whose files do not
//! match (a disk error, a truncation, an edit) is discarded with a warning and training
//! starts over, rather than blocking the stage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::lora::Trainable;
use crate::optim::GroupedAdamW;

/// One optimizer step's training loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    pub epoch: usize,
    pub step: usize,
    pub loss: f64,
    /// The learning rate of the step (absent from histories written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

/// One validation loss: at an epoch's end, or every `val_every_steps` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValPoint {
    pub epoch: usize,
    /// Optimizer steps taken when it was measured.
    pub step: usize,
    pub loss: f64,
}

/// `loss_history.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub train: Vec<TrainPoint>,
    pub val: Vec<ValPoint>,
    /// Validation loss of the model before any step.
    pub initial_val_loss: Option<f64>,
    pub best_epoch: Option<usize>,
    /// The step of the best validation (the kept model).
    pub best_step: Option<usize>,
    pub stopped_early: bool,
}

/// Everything besides tensors needed to continue after a completed epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Parameters + seed + data, so a checkpoint is never resumed under other settings.
    pub fingerprint: String,
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub step: usize,
    pub history: History,
    pub best_val: Option<f64>,
    pub bad_epochs: usize,
    pub finished: bool,
    /// File name → blake3 of its bytes, for every tensor file of the checkpoint.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// The tensor files of a checkpoint.
const FILES: [&str; 4] = ["trainable.bin", "optim.bin", "optim_plain.bin", "best.bin"];

/// Flush a file (or directory) to the disk.
fn sync(path: &Path) -> Result<(), TrainError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(TrainError::io("sync", path))
}

/// The blake3 digest of a file, fsyncing it on the way.
fn digest_synced(path: &Path) -> Result<String, TrainError> {
    sync(path)?;
    let bytes = std::fs::read(path).map_err(TrainError::io("read", path))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Why the files of a checkpoint cannot be trusted, if they cannot.
fn damage(live: &Path, state: &TrainState) -> Option<String> {
    for name in FILES {
        let Some(want) = state.files.get(name) else {
            return Some(format!(
                "it records no digest of {name} (made by an older pipe)"
            ));
        };
        let path = live.join(name);
        match std::fs::read(&path) {
            Ok(bytes) if blake3::hash(&bytes).to_hex().as_str() == want => {}
            Ok(_) => return Some(format!("{name} does not match its recorded digest")),
            Err(e) => return Some(format!("{name} cannot be read: {e}")),
        }
    }
    None
}

fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::new()
}

fn ckpt_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(burn::record::RecorderError) -> TrainError {
    let path = path.to_path_buf();
    move |e| TrainError::Checkpoint {
        action,
        path,
        message: e.to_string(),
    }
}

/// The checkpoint directory inside `work_dir`.
pub fn dir(work_dir: &Path) -> PathBuf {
    work_dir.join("checkpoint")
}

/// What a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// The LoRA adapter only (the model is frozen).
    Adapter,
    /// Model and adapter.
    Everything,
}

/// Save `t` (or its adapter) to `path` (the recorder adds `.bin`).
fn save_trainable<B: burn::tensor::backend::Backend>(
    t: &Trainable<B>,
    contents: Contents,
    path: PathBuf,
) -> Result<(), TrainError> {
    let rec = recorder();
    match contents {
        Contents::Adapter => t.lora.clone().save_file(path.clone(), &rec),
        Contents::Everything => t.clone().save_file(path.clone(), &rec),
    }
    .map_err(ckpt_err("save", &path))
}

/// Load into `t` (or its adapter) from `path` (the recorder adds `.bin`).
fn load_trainable<B: burn::tensor::backend::Backend>(
    mut t: Trainable<B>,
    contents: Contents,
    path: PathBuf,
    device: &B::Device,
) -> Result<Trainable<B>, TrainError> {
    let rec = recorder();
    let shown = path.with_extension("bin");
    match contents {
        Contents::Adapter => {
            t.lora = t
                .lora
                .load_file(path, &rec, device)
                .map_err(ckpt_err("load", &shown))?;
            Ok(t)
        }
        Contents::Everything => t
            .load_file(path, &rec, device)
            .map_err(ckpt_err("load", &shown)),
    }
}

/// Write the state after an epoch (atomically replacing the previous one).
pub fn save<B: AutodiffBackend>(
    work_dir: &Path,
    contents: Contents,
    state: &TrainState,
    trainable: &Trainable<B>,
    optim: &GroupedAdamW<B>,
    best: &Trainable<B::InnerBackend>,
) -> Result<(), TrainError> {
    let tmp = work_dir.join("checkpoint.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(TrainError::io("remove", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(TrainError::io("create", &tmp))?;
    let rec = recorder();
    save_trainable(trainable, contents, tmp.join("trainable"))?;
    for (name, o) in [("optim", &optim.decay), ("optim_plain", &optim.plain)] {
        let p = tmp.join(name);
        Recorder::<B>::record(&rec, o.to_record(), p.clone()).map_err(ckpt_err("save", &p))?;
    }
    save_trainable(best, contents, tmp.join("best"))?;
    let mut state = state.clone();
    state.files = FILES
        .iter()
        .map(|name| Ok((name.to_string(), digest_synced(&tmp.join(name))?)))
        .collect::<Result<_, TrainError>>()?;
    let p = tmp.join("state.json");
    let json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::Checkpoint {
        action: "serialise",
        path: p.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&p, json).map_err(TrainError::io("write", &p))?;
    sync(&p)?;
    sync(&tmp)?;

    let live = dir(work_dir);
    let old = work_dir.join("checkpoint.old");
    if live.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(TrainError::io("remove", &old))?;
        }
        std::fs::rename(&live, &old).map_err(TrainError::io("rename", &live))?;
    }
    std::fs::rename(&tmp, &live).map_err(TrainError::io("rename", &tmp))?;
    sync(work_dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(TrainError::io("remove", &old))?;
    }
    Ok(())
}

/// A loaded checkpoint.
pub struct Resumed<B: AutodiffBackend> {
    pub state: TrainState,
    pub trainable: Trainable<B>,
    pub optim: GroupedAdamW<B>,
    pub best: Trainable<B::InnerBackend>,
}

/// Load the last completed epoch's state when it exists, matches `fingerprint` and is intact;
/// the modules passed in give the structure (and which parameters require gradients). A
/// damaged checkpoint is removed with a warning: training then starts over.
pub fn load<B: AutodiffBackend>(
    work_dir: &Path,
    contents: Contents,
    fingerprint: &str,
    trainable: Trainable<B>,
    optim: GroupedAdamW<B>,
    device: &B::Device,
) -> Result<Option<Resumed<B>>, TrainError> {
    let mut live = dir(work_dir);
    if !live.join("state.json").is_file() {
        // A kill between the two renames of `save` leaves only the previous checkpoint.
        live = work_dir.join("checkpoint.old");
        if !live.join("state.json").is_file() {
            return Ok(None);
        }
    }
    let p = live.join("state.json");
    let text = std::fs::read(&p).map_err(TrainError::io("read", &p))?;
    let state: TrainState = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "ignoring an unreadable checkpoint");
            return Ok(None);
        }
    };
    if state.fingerprint != fingerprint {
        tracing::warn!(path = %p.display(), "ignoring a checkpoint made with other settings");
        return Ok(None);
    }
    let why = match damage(&live, &state) {
        Some(why) => why,
        None => match load_tensors(&live, contents, state, trainable, optim, device) {
            Ok(resumed) => return Ok(Some(resumed)),
            // Digests matched, so this is a file pipe itself cannot read back.
            Err(e) => e.to_string(),
        },
    };
    tracing::warn!(
        path = %live.display(),
        "discarding a damaged checkpoint ({why}); training starts over"
    );
    std::fs::remove_dir_all(&live).map_err(TrainError::io("remove", &live))?;
    Ok(None)
}

/// The tensors of an intact checkpoint.
fn load_tensors<B: AutodiffBackend>(
    live: &Path,
    contents: Contents,
    state: TrainState,
    trainable: Trainable<B>,
    mut optim: GroupedAdamW<B>,
    device: &B::Device,
) -> Result<Resumed<B>, TrainError> {
    let rec = recorder();
    let best = load_trainable(trainable.valid(), contents, live.join("best"), device)?;
    let trainable = load_trainable(trainable, contents, live.join("trainable"), device)?;
    let p = live.join("optim.bin");
    let record = Recorder::<B>::load(&rec, p.clone(), device).map_err(ckpt_err("load", &p))?;
    optim.decay = optim.decay.load_record(record);
    let p = live.join("optim_plain.bin");
    let record = Recorder::<B>::load(&rec, p.clone(), device).map_err(ckpt_err("load", &p))?;
    optim.plain = optim.plain.load_record(record);
    Ok(Resumed {
        state,
        trainable,
        optim,
        best,
    })
}
