//! What a user watches while train runs: a status beside the progress bar after every step
//! (`loss 0.5312 · val 0.5401 · best 0.5350 @ep19 · patience 1/3`), one line per epoch, and
//! the same numbers appended to `metrics.jsonl` in the stage's work directory as they happen
//! (another terminal can `tail -f` it; the work directory goes when the artifact is published,
//! whose `loss_history.json` keeps the whole history).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use pipe_stage_api::Progress;
use serde_json::json;

use crate::checkpoint::TrainState;

/// The file in the work directory the numbers stream to.
pub const METRICS_FILE: &str = "metrics.jsonl";

pub struct Watch<'a> {
    progress: &'a dyn Progress,
    /// `None` when the file cannot be opened (said once; training goes on).
    file: Option<Mutex<File>>,
    epochs: usize,
    patience: usize,
}

impl<'a> Watch<'a> {
    pub fn new(
        progress: &'a dyn Progress,
        work_dir: &Path,
        epochs: usize,
        patience: usize,
    ) -> Self {
        let path = work_dir.join(METRICS_FILE);
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::warn!("cannot write {}: {e}", path.display()))
            .ok()
            .map(Mutex::new);
        Self {
            progress,
            file,
            epochs,
            patience,
        }
    }

    /// After an optimizer step: `loss` is the running mean of this epoch's steps.
    pub fn step(&self, epoch: usize, step: usize, loss: f64, lr: f64, state: &TrainState) {
        self.progress
            .status(&format!("loss {}{}", sig(loss), self.standing(state)));
        self.append(json!({"event": "step", "epoch": epoch, "step": step, "loss": loss, "lr": lr}));
    }

    /// After a mid-epoch validation (`val_every_steps`), once `state` has recorded it; an
    /// epoch's own validation is in its `epoch` line.
    pub fn validation(&self, epoch: usize, step: usize, val: f64, state: &TrainState) {
        self.append(json!({
            "event": "validation",
            "epoch": epoch,
            "step": step,
            "val_loss": val,
            "best_val_loss": state.best_val,
            "best_epoch": state.history.best_epoch,
        }));
    }

    /// At an epoch's end: the line the user keeps.
    pub fn epoch(&self, epoch: usize, train_loss: f64, state: &TrainState, seconds: f64) {
        let line = format!(
            "epoch {epoch}/{} · loss {}{} · {seconds:.1} s",
            self.epochs,
            sig(train_loss),
            self.standing(state)
        );
        self.progress.note(&line);
        self.append(json!({
            "event": "epoch",
            "epoch": epoch,
            "epochs": self.epochs,
            "train_loss": train_loss,
            "val_loss": state.history.val.last().map(|v| v.loss),
            "best_val_loss": state.best_val,
            "best_epoch": state.history.best_epoch,
            "bad_epochs": state.bad_epochs,
            "seconds": seconds,
        }));
    }

    /// ` · val … · best … @epN · patience k/n`, as far as known.
    fn standing(&self, state: &TrainState) -> String {
        let mut text = String::new();
        if let Some(last) = state.history.val.last() {
            text.push_str(&format!(" · val {}", sig(last.loss)));
        }
        if let (Some(best), Some(at)) = (state.best_val, state.history.best_epoch) {
            text.push_str(&format!(" · best {} @ep{at}", sig(best)));
        }
        if self.patience > 0 {
            text.push_str(&format!(
                " · patience {}/{}",
                state.bad_epochs, self.patience
            ));
        }
        text
    }

    fn append(&self, value: serde_json::Value) {
        let Some(file) = &self.file else { return };
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(file, "{value}") {
            tracing::debug!("cannot append to {METRICS_FILE}: {e}");
        }
    }
}

/// `x` with 4 significant digits (`0.5312`, `12.35`, `1235`), or as Rust writes it when it is
/// not finite.
pub fn sig(x: f64) -> String {
    pipe_stage_api::significant(x, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_significant_digits() {
        assert_eq!(sig(0.531_234), "0.5312");
        assert_eq!(sig(12.3456), "12.35");
        assert_eq!(sig(1234.56), "1235");
        assert_eq!(sig(0.000_123_46), "0.0001235");
        assert_eq!(sig(0.0), "0");
        assert_eq!(sig(f64::NAN), "NaN");
    }
}
