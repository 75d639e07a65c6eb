//! The training loop, top to bottom: per epoch shuffle the training images (seeded by epoch,
//! so a resumed run sees the same order), micro-batches of `batch_size` images with all their
//! captions, `grad_accum` of them per AdamW step (global-norm clipped, scheduled lr), then the
//! validation loss, early stopping, and a checkpoint. With `val_every_steps` the validation
//! loss is also taken every N steps; any validation can become the best model, and patience
//! counts epochs in which none did. With several devices each micro-batch is spread over
//! [`Peers`]; everything else happens once, here.

use std::path::Path;

use burn::module::AutodiffModule;
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
use crate::lora::{LoraSpec, Trainable, mix_seed};
use crate::loss::batch_logits;
use crate::optim::GroupedAdamW;
use crate::params::TrainParams;
use crate::peers::{Peers, Shared};
use crate::schedule::lr_at;
use crate::watch::Watch;
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

/// How many micro-batches and optimizer steps the run takes.
struct StepPlan {
    micro_per_epoch: usize,
    total_steps: usize,
    warmup_steps: usize,
}

impl StepPlan {
    fn new(p: &TrainParams, train_images: usize) -> Self {
        let micro_per_epoch = train_images.div_ceil(p.batch_size);
        let steps_per_epoch = micro_per_epoch.div_ceil(p.grad_accum);
        let planned = steps_per_epoch * p.epochs;
        let total_steps = p.max_steps.map_or(planned, |m| m.min(planned));
        let warmup_steps = (p.warmup * total_steps as f64).round() as usize;
        Self {
            micro_per_epoch,
            total_steps,
            warmup_steps,
        }
    }
}

/// What a checkpoint holds: the model and adapter being trained, the optimizer, the best model
/// so far and the loop's counters.
struct LoopState<B: AutodiffBackend> {
    trainable: Trainable<B>,
    optim: GroupedAdamW<B>,
    best: Trainable<B::InnerBackend>,
    state: TrainState,
}

/// The loop's state while it runs: the model and optimizer live with the peers.
struct Running<'s, B: AutodiffBackend> {
    peers: Peers<'s, B>,
    best: Trainable<B::InnerBackend>,
    state: TrainState,
}

/// The validation split and what `validate` reads besides the model.
struct Validation<'a> {
    cfg: &'a FitConfig<'a>,
    col: &'a Collated,
    idx: Vec<usize>,
}

impl Validation<'_> {
    fn loss<B: Backend>(&self, t: &Trainable<B>, device: &B::Device) -> Result<f64, TrainError> {
        validate(t, self.cfg, self.col, &self.idx, device)
    }
}

/// Train `trainable` on `col`'s train split, validating on its val split, data-parallel over
/// `devices` (one peer each; the first validates).
pub fn fit<B: AutodiffBackend>(
    trainable: Trainable<B>,
    col: &Collated,
    cfg: &FitConfig<'_>,
    devices: Vec<B::Device>,
) -> Result<Fitted<B::InnerBackend>, TrainError> {
    let device = &devices.first().cloned().ok_or(TrainError::NoDevice)?;
    let p = cfg.params;
    let train_idx = col.split_indices(Split::Train);
    let val = Validation {
        cfg,
        col,
        idx: col.split_indices(Split::Val),
    };
    if train_idx.is_empty() {
        return Err(TrainError::EmptySplit("train"));
    }
    if val.idx.is_empty() {
        return Err(TrainError::EmptySplit("val"));
    }
    let plan = StepPlan::new(p, train_idx.len());
    tracing::info!(
        train_images = train_idx.len(),
        val_images = val.idx.len(),
        steps_per_epoch = plan.micro_per_epoch.div_ceil(p.grad_accum),
        total_steps = plan.total_steps,
        warmup_steps = plan.warmup_steps,
        "training"
    );

    // With LoRA the model is frozen: checkpoints hold the adapter alone.
    let contents = if cfg.spec.is_some() {
        Contents::Adapter
    } else {
        Contents::Everything
    };
    let (start, resumed_from_epoch) = resume_or_start(trainable, contents, &val, device)?;
    let watch = Watch::new(cfg.progress, cfg.work_dir, p.epochs, p.patience);
    let shared = Shared {
        col,
        features: cfg.features,
        spec: cfg.spec,
        label_smoothing: p.label_smoothing,
        grad_accum: p.grad_accum,
    };
    std::thread::scope(|scope| {
        let peers = Peers::start(scope, devices, start.trainable, start.optim, shared)?;
        let mut run = Running {
            peers,
            best: start.best,
            state: start.state,
        };
        epochs(&mut run, contents, &train_idx, &plan, &val, &watch, device)?;
        let Running { peers, best, state } = run;
        peers.finish()?;
        Ok(Fitted {
            best,
            best_val: state.best_val.unwrap_or(f64::NAN),
            epochs_run: state.epochs_done,
            steps: state.step,
            history: state.history,
            resumed_from_epoch,
        })
    })
}

/// Epochs until the run is finished (or the test hook interrupts it).
fn epochs<B: AutodiffBackend>(
    run: &mut Running<'_, B>,
    contents: Contents,
    train_idx: &[usize],
    plan: &StepPlan,
    val: &Validation<'_>,
    watch: &Watch<'_>,
    device: &B::Device,
) -> Result<(), TrainError> {
    let cfg = val.cfg;
    let p = cfg.params;
    while !run.state.finished {
        let started = std::time::Instant::now();
        let epoch = run.state.epochs_done + 1;
        let mut order = train_idx.to_vec();
        order.shuffle(&mut StdRng::seed_from_u64(
            cfg.seed
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(epoch as u64),
        ));
        cfg.progress.begin_items(
            &format!("epoch {epoch}/{}", p.epochs),
            plan.micro_per_epoch as u64,
            "batches",
        );
        let (mut improved, train_loss) = train_epoch(run, epoch, &order, plan, val, watch, device)?;

        let valid = run.peers.trainable().valid();
        let loss = val.loss(&valid, device)?;
        if record_val(&mut run.state, p.min_delta, epoch, loss) {
            run.best = valid;
            improved = true;
        }
        let state = &mut run.state;
        if improved {
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
        }
        let patience_out = p.patience > 0 && state.bad_epochs >= p.patience;
        state.history.stopped_early =
            patience_out && epoch < p.epochs && state.step < plan.total_steps;
        state.finished = patience_out || epoch >= p.epochs || state.step >= plan.total_steps;
        state.epochs_done = epoch;
        watch.epoch(epoch, train_loss, state, started.elapsed().as_secs_f64());
        checkpoint::save(
            cfg.work_dir,
            contents,
            &run.state,
            run.peers.trainable(),
            run.peers.optim(),
            &run.best,
        )?;
        if !run.state.finished && cfg.stop_after_epoch == Some(epoch) {
            return Err(TrainError::Interrupted { epoch });
        }
    }
    Ok(())
}

/// The work dir's checkpoint if it matches the run's settings (and the epoch it was made
/// after), else a fresh start from `trainable` with the validation loss before training.
fn resume_or_start<B: AutodiffBackend>(
    trainable: Trainable<B>,
    contents: Contents,
    val: &Validation<'_>,
    device: &B::Device,
) -> Result<(LoopState<B>, Option<usize>), TrainError> {
    let cfg = val.cfg;
    let optim = GroupedAdamW::<B>::new(cfg.params.weight_decay);
    let resumed = checkpoint::load(
        cfg.work_dir,
        contents,
        &cfg.fingerprint,
        trainable.clone(),
        optim,
        device,
    )?;
    if let Some(r) = resumed {
        tracing::info!(
            epoch = r.state.epochs_done,
            "resuming from the work dir's checkpoint"
        );
        let epoch = r.state.epochs_done;
        let run = LoopState {
            trainable: r.trainable,
            optim: r.optim,
            best: r.best,
            state: r.state,
        };
        return Ok((run, Some(epoch)));
    }
    let optim = GroupedAdamW::<B>::new(cfg.params.weight_decay);
    let valid = trainable.valid();
    cfg.progress.begin("initial validation", None);
    let initial = val.loss(&valid, device)?;
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
    let run = LoopState {
        trainable,
        optim,
        best: valid,
        state,
    };
    Ok((run, None))
}

/// One epoch's micro-batches in `order`, `grad_accum` per optimizer step, with the mid-epoch
/// validations of `val_every_steps`; stops early at the run's last step. Whether a mid-epoch
/// validation became the best, and the mean of the epoch's step losses.
fn train_epoch<B: AutodiffBackend>(
    run: &mut Running<'_, B>,
    epoch: usize,
    order: &[usize],
    plan: &StepPlan,
    val: &Validation<'_>,
    watch: &Watch<'_>,
    device: &B::Device,
) -> Result<(bool, f64), TrainError> {
    let cfg = val.cfg;
    let p = cfg.params;
    let mut improved = false;
    let (mut epoch_sum, mut epoch_steps) = (0f64, 0usize);
    let (mut n_acc, mut loss_acc) = (0usize, 0f64);
    let chunks: Vec<&[usize]> = order.chunks(p.batch_size).collect();
    // One seed per micro-batch for the LoRA dropout masks (each peer mixes in its id): a
    // resumed run draws what an uninterrupted one does.
    let epoch_seed = mix_seed(cfg.seed, epoch as u64);
    for (k, chunk) in chunks.iter().enumerate() {
        let value = run
            .peers
            .micro_batch(chunk, mix_seed(epoch_seed, k as u64))?;
        n_acc += 1;
        loss_acc += value;
        cfg.progress.advance(1);
        if n_acc < p.grad_accum && k + 1 < chunks.len() {
            continue;
        }

        run.peers.reduce()?;
        let state = &mut run.state;
        let lr = lr_at(
            p.schedule,
            p.lr,
            state.step,
            plan.total_steps,
            plan.warmup_steps,
        );
        let norm = run.peers.step(lr, p.max_grad_norm)?;
        state.step += 1;
        let loss = loss_acc / n_acc as f64;
        (epoch_sum, epoch_steps) = (epoch_sum + loss, epoch_steps + 1);
        watch.step(epoch, state.step, epoch_sum / epoch_steps as f64, lr, state);
        tracing::debug!(epoch, step = state.step, loss, lr, grad_norm = norm, "step");
        state.history.train.push(TrainPoint {
            epoch,
            step: state.step,
            loss,
            lr: Some(lr),
        });
        (n_acc, loss_acc) = (0, 0.0);
        if state.step >= plan.total_steps {
            break;
        }
        let epoch_ends = k + 1 == chunks.len();
        if !epoch_ends
            && p.val_every_steps
                .is_some_and(|n| state.step.is_multiple_of(n))
        {
            let valid = run.peers.trainable().valid();
            let loss = val.loss(&valid, device)?;
            tracing::info!(epoch, step = run.state.step, val_loss = loss, "validation");
            if record_val(&mut run.state, p.min_delta, epoch, loss) {
                run.best = valid;
                improved = true;
            }
            watch.validation(epoch, run.state.step, loss, &run.state);
        }
    }
    Ok((improved, epoch_sum / epoch_steps.max(1) as f64))
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
        Some(spec) => t.merged(spec),
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
