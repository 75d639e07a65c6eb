//! The training loop, top to bottom: per epoch shuffle the training images (seeded by epoch,
//! so a resumed run sees the same order), micro-batches of `batch_size` images with all their
//! captions, `grad_accum` of them per AdamW step (global-norm clipped, scheduled lr), then the
//! validation loss, early stopping, and a checkpoint. With `val_every_steps` the validation
//! loss is also taken every N steps; any validation can become the best model, and patience
//! counts epochs in which none did.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::ElementConversion;
use burn::tensor::backend::{AutodiffBackend, Backend};
use pipe_data::collate::Collated;
use pipe_data::prep::Split;
use pipe_stage_api::Progress;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};

use crate::checkpoint::{self, Contents, History, TrainPoint, TrainState, ValPoint};
use crate::data::load_batch;
use crate::error::TrainError;
use crate::lora::{LoraSpec, Trainable};
use crate::loss::batch_logits;
use crate::optim::{GroupedAdamW, clip_global_norm};
use crate::params::TrainParams;
use crate::schedule::lr_at;
use pipe_blip::loss::summed_loss;
use pipe_features::Features;

/// What the loop needs besides the model and data.
pub struct FitConfig<'a> {
    pub params: &'a TrainParams,
    /// The adapter's layout; `None`: full fine-tuning.
    pub spec: Option<&'a LoraSpec>,
    pub seed: u64,
    pub work_dir: &'a Path,
    /// Identifies the settings a checkpoint was made with.
    pub fingerprint: String,
    pub progress: &'a dyn Progress,
    /// Test hook: return [`TrainError::Interrupted`] after this epoch's checkpoint.
    pub stop_after_epoch: Option<usize>,
    /// The encode stage's vision features; `None` runs the vision encoder.
    pub features: Option<&'a Features>,
}

/// The loop's result: the best epoch's model and adapter (no autodiff), and the history.
pub struct Fitted<B: Backend> {
    pub best: Trainable<B>,
    pub best_val: f64,
    pub history: History,
    pub epochs_run: usize,
    pub steps: usize,
    pub resumed_from_epoch: Option<usize>,
}

/// Train `trainable` on `col`'s train split, validating on its val split.
pub fn fit<B: AutodiffBackend>(
    trainable: Trainable<B>,
    col: &Collated,
    cfg: &FitConfig<'_>,
    device: &B::Device,
) -> Result<Fitted<B::InnerBackend>, TrainError> {
    let p = cfg.params;
    let train_idx = col.split_indices(Split::Train);
    let val_idx = col.split_indices(Split::Val);
    if train_idx.is_empty() {
        return Err(TrainError::EmptySplit("train"));
    }
    if val_idx.is_empty() {
        return Err(TrainError::EmptySplit("val"));
    }
    let micro_per_epoch = train_idx.len().div_ceil(p.batch_size);
    let steps_per_epoch = micro_per_epoch.div_ceil(p.grad_accum);
    let planned = steps_per_epoch * p.epochs;
    let total_steps = p.max_steps.map_or(planned, |m| m.min(planned));
    let warmup_steps = (p.warmup * total_steps as f64).round() as usize;
    tracing::info!(
        train_images = train_idx.len(),
        val_images = val_idx.len(),
        steps_per_epoch,
        total_steps,
        warmup_steps,
        "training"
    );

    // With LoRA the model is frozen: checkpoints hold the adapter alone.
    let contents = if cfg.spec.is_some() {
        Contents::Adapter
    } else {
        Contents::Everything
    };
    let optim = GroupedAdamW::<B>::new(p.weight_decay);
    let (mut trainable, mut optim, mut best, mut state, resumed_from_epoch) =
        match checkpoint::load(
            cfg.work_dir,
            contents,
            &cfg.fingerprint,
            trainable.clone(),
            optim,
            device,
        )? {
            Some(r) => {
                tracing::info!(
                    epoch = r.state.epochs_done,
                    "resuming from the work dir's checkpoint"
                );
                let e = r.state.epochs_done;
                (r.trainable, r.optim, r.best, r.state, Some(e))
            }
            None => {
                let optim = GroupedAdamW::<B>::new(p.weight_decay);
                let valid = trainable.valid();
                cfg.progress.begin("initial validation", None);
                let initial = validate(&valid, cfg, col, &val_idx, device)?;
                tracing::info!(val_loss = initial, "before training");
                let state = TrainState {
                    fingerprint: cfg.fingerprint.clone(),
                    epochs_done: 0,
                    step: 0,
                    history: History {
                        initial_val_loss: Some(initial),
                        ..History::default()
                    },
                    best_val: None,
                    bad_epochs: 0,
                    finished: false,
                    files: Default::default(),
                };
                (trainable, optim, valid, state, None)
            }
        };

    while !state.finished {
        let epoch = state.epochs_done + 1;
        // Dropout draws from the backend's RNG: seeded per epoch, so a resumed run draws
        // what an uninterrupted one does.
        B::seed(device, cfg.seed.wrapping_add(epoch as u64));
        let mut order = train_idx.clone();
        order.shuffle(&mut StdRng::seed_from_u64(
            cfg.seed
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(epoch as u64),
        ));
        cfg.progress.begin(
            &format!("epoch {epoch}/{}", p.epochs),
            Some(micro_per_epoch as u64),
        );

        let mut improved_in_epoch = false;
        let mut accum = GradientsAccumulator::<Trainable<B>>::new();
        let (mut n_acc, mut loss_acc) = (0usize, 0f64);
        let chunks: Vec<&[usize]> = order.chunks(p.batch_size).collect();
        for (k, chunk) in chunks.iter().enumerate() {
            let batch = load_batch::<B>(col, cfg.features, chunk, device)?;
            let model = match cfg.spec {
                Some(spec) => trainable.training_model(spec),
                None => trainable.model.clone(),
            };
            let logits = batch_logits(&model, &batch);
            let (sum, count) = summed_loss(logits, batch.labels.clone(), p.label_smoothing);
            let loss = sum / count.clamp_min(1.0);
            let value: f32 = loss.clone().into_scalar().elem();
            if !value.is_finite() {
                return Err(TrainError::Diverged(value));
            }
            let grads = loss.div_scalar(p.grad_accum as f64).backward();
            accum.accumulate(&trainable, GradientsParams::from_grads(grads, &trainable));
            n_acc += 1;
            loss_acc += f64::from(value);
            cfg.progress.advance(1);

            if n_acc == p.grad_accum || k + 1 == chunks.len() {
                let (grads, norm) = clip_global_norm(&trainable, accum.grads(), p.max_grad_norm);
                let lr = lr_at(p.schedule, p.lr, state.step, total_steps, warmup_steps);
                trainable = optim.step(lr, trainable, grads);
                state.step += 1;
                let loss = loss_acc / n_acc as f64;
                tracing::debug!(epoch, step = state.step, loss, lr, grad_norm = norm, "step");
                state.history.train.push(TrainPoint {
                    epoch,
                    step: state.step,
                    loss,
                });
                (n_acc, loss_acc) = (0, 0.0);
                if state.step >= total_steps {
                    break;
                }
                let epoch_ends = k + 1 == chunks.len();
                if !epoch_ends && p.val_every_steps.is_some_and(|n| state.step % n == 0) {
                    let valid = trainable.valid();
                    let val = validate(&valid, cfg, col, &val_idx, device)?;
                    tracing::info!(epoch, step = state.step, val_loss = val, "validation");
                    if record_val(&mut state, p.min_delta, epoch, val) {
                        best = valid;
                        improved_in_epoch = true;
                    }
                }
            }
        }

        let valid = trainable.valid();
        let val = validate(&valid, cfg, col, &val_idx, device)?;
        if record_val(&mut state, p.min_delta, epoch, val) {
            best = valid;
            improved_in_epoch = true;
        }
        if improved_in_epoch {
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
        }
        let patience_out = p.patience > 0 && state.bad_epochs >= p.patience;
        state.history.stopped_early = patience_out && epoch < p.epochs && state.step < total_steps;
        state.finished = patience_out || epoch >= p.epochs || state.step >= total_steps;
        state.epochs_done = epoch;
        tracing::info!(epoch, val_loss = val, best = ?state.best_val, steps = state.step, "epoch done");
        checkpoint::save(cfg.work_dir, contents, &state, &trainable, &optim, &best)?;
        if !state.finished && cfg.stop_after_epoch == Some(epoch) {
            return Err(TrainError::Interrupted { epoch });
        }
    }

    let best_val = state.best_val.unwrap_or(f64::NAN);
    Ok(Fitted {
        best,
        best_val,
        epochs_run: state.epochs_done,
        steps: state.step,
        history: state.history,
        resumed_from_epoch,
    })
}

/// Record a validation loss; true when it beats the best so far by more than `min_delta` (it
/// then becomes the best).
fn record_val(state: &mut TrainState, min_delta: f64, epoch: usize, val: f64) -> bool {
    state.history.val.push(ValPoint {
        epoch,
        step: state.step,
        loss: val,
    });
    let improved = state.best_val.is_none_or(|b| val < b - min_delta);
    if improved {
        state.best_val = Some(val);
        state.history.best_epoch = Some(epoch);
        state.history.best_step = Some(state.step);
    }
    improved
}

/// Mean validation loss per scored token.
fn validate<B: Backend>(
    t: &Trainable<B>,
    cfg: &FitConfig<'_>,
    col: &Collated,
    idx: &[usize],
    device: &B::Device,
) -> Result<f64, TrainError> {
    let model = match cfg.spec {
        Some(spec) => t.effective(spec),
        None => t.model.clone(),
    };
    let (mut sum, mut count) = (0f64, 0f64);
    for chunk in idx.chunks(cfg.params.batch_size.max(8)) {
        let batch = load_batch::<B>(col, cfg.features, chunk, device)?;
        let logits = batch_logits(&model, &batch);
        let (s, c) = summed_loss(logits, batch.labels, cfg.params.label_smoothing);
        sum += f64::from(s.into_scalar().elem::<f32>());
        count += f64::from(c.into_scalar().elem::<f32>());
    }
    Ok(sum / count.max(1.0))
}
