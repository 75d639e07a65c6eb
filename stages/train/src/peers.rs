//! Data-parallel training: `train.devices = N` peers, one thread each, on the backend's
//! devices (on the CPU every peer shares the one device). Each micro-batch's images are split
//! among the peers, all of an image's captions on one peer; each peer runs forward and backward
//! on its share and keeps its gradients; at the optimizer step Burn's collective all-reduce
//! (`burn-collective`, its local tree strategy) sums them, and every peer clips and takes the
//! same AdamW step, so the peers' weights stay equal. Peer 0 is the caller's thread: validation,
//! checkpoints and progress are its alone.
//!
//! The sum equals one device with the whole micro-batch: a peer's loss is its share's *summed*
//! token loss divided by the token count of the whole micro-batch (counted on the host before
//! the forward pass), so the peers' gradients add up to the gradient of the micro-batch's mean
//! (a mean of per-peer means would weight a peer's tokens by how few it had).
//!
//! Every peer takes part in every collective operation, or none would return: a peer that
//! fails (or panics) in its forward or backward pass says so before the step's all-reduce, and
//! then no peer enters it. A micro-batch with fewer images than peers gives the idle peers the
//! first image with weight 0: gradients of exactly zero, and the same set of them, which the
//! all-reduce needs.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};

use burn::collective::{
    AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation, finish_collective, register,
    reset_collective,
};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use pipe_blip::loss::summed_loss;
use pipe_data::collate::Collated;
use pipe_features::Features;

use crate::data::{load_batch, scored_tokens};
use crate::error::TrainError;
use crate::lora::{LoraSpec, Trainable, mix_seed};
use crate::loss::batch_logits;
use crate::optim::{GroupedAdamW, clip_global_norm};

/// What every peer reads besides its own model: the data and how the loss is taken.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    pub col: &'a Collated,
    pub features: Option<&'a Features>,
    pub spec: Option<&'a LoraSpec>,
    pub label_smoothing: f64,
    pub grad_accum: usize,
}

/// One peer's state: its copy of the model and optimizer, its device and its gradients.
struct Peer<B: AutodiffBackend> {
    id: usize,
    trainable: Trainable<B>,
    optim: GroupedAdamW<B>,
    device: B::Device,
    accum: GradientsAccumulator<Trainable<B>>,
    /// The all-reduced gradients between [`Command::Reduce`] and [`Command::Step`].
    reduced: Option<GradientsParams>,
}

/// What peer 0 tells the others, in the order it does the same itself.
enum Command {
    /// Join the collective (sent once every worker's thread has started, so none waits for a
    /// peer that never came).
    Join,
    /// Forward and backward on `share` (weight 0: the gradients' shape only).
    Micro(Share),
    /// All-reduce the accumulated gradients.
    Reduce,
    /// Clip the reduced gradients and take the optimizer step.
    Step { lr: f64, max_grad_norm: f64 },
}

#[derive(Clone)]
struct Share {
    images: Vec<usize>,
    weight: f32,
    /// Scored tokens in the whole micro-batch, all peers' shares together.
    tokens: usize,
    dropout_seed: u64,
}

/// A worker's answer: its share's summed loss (micro-batches), 0 otherwise.
type Reply = Result<f64, TrainError>;

struct Worker<'scope> {
    commands: Sender<Command>,
    replies: Receiver<Reply>,
    thread: ScopedJoinHandle<'scope, ()>,
}

/// One data-parallel training collective per process at a time: Burn's local collective
/// server is one per backend type, shared by every thread of the process (a sweep trains
/// several points at once).
static COLLECTIVE: Mutex<()> = Mutex::new(());

/// The peers of one training run: peer 0 here, the others on their threads.
pub struct Peers<'scope, B: AutodiffBackend> {
    own: Peer<B>,
    workers: Vec<Worker<'scope>>,
    shared: Shared<'scope>,
    _collective: Option<std::sync::MutexGuard<'static, ()>>,
    /// Set when a worker failed: the collective is reset instead of finished.
    broken: bool,
}

impl<'scope, B: AutodiffBackend> Peers<'scope, B> {
    /// Start `devices.len()` peers (at least one) from `trainable` and `optim` (peer 0's, which
    /// stay here; the others get copies on their devices). With one device nothing is spawned
    /// and no collective is formed.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        devices: Vec<B::Device>,
        trainable: Trainable<B>,
        optim: GroupedAdamW<B>,
        shared: Shared<'scope>,
    ) -> Result<Self, TrainError>
    where
        B::Device: Send,
    {
        let n = devices.len().max(1);
        let mut devices = devices.into_iter();
        let device = devices.next().ok_or(TrainError::NoDevice)?;
        let guard = (n > 1).then(|| {
            let guard = COLLECTIVE.lock().unwrap_or_else(PoisonError::into_inner);
            reset_collective::<B::InnerBackend>();
            guard
        });
        let config = CollectiveConfig::default()
            .with_num_devices(n)
            .with_local_all_reduce_strategy(AllReduceStrategy::Tree(2));
        let mut workers = Vec::new();
        for (k, device) in devices.enumerate() {
            let id = k + 1;
            let peer = Peer {
                id,
                trainable: trainable.clone().fork(&device),
                optim: optim.clone(),
                device: device.clone(),
                accum: GradientsAccumulator::new(),
                reduced: None,
            };
            let (commands, inbox) = channel();
            let (outbox, replies) = channel();
            let config = config.clone();
            let thread = std::thread::Builder::new()
                .name(format!("train-peer-{id}"))
                .spawn_scoped(scope, move || {
                    serve(peer, n, config, shared, &inbox, &outbox)
                })
                .map_err(|e| TrainError::Peer {
                    peer: id,
                    message: format!("cannot start its thread: {e}"),
                })?;
            workers.push(Worker {
                commands,
                replies,
                thread,
            });
        }
        let own = Peer {
            id: 0,
            trainable,
            optim,
            device,
            accum: GradientsAccumulator::new(),
            reduced: None,
        };
        let mut peers = Self {
            own,
            workers,
            shared,
            _collective: guard,
            broken: false,
        };
        if n > 1 {
            for w in &peers.workers {
                let _ = w.commands.send(Command::Join);
            }
            let own =
                register::<B::InnerBackend>(PeerId::from(0), peers.own.device.clone(), config)
                    .map(|()| 0.0)
                    .map_err(|e| collective_error(0, "register", e));
            peers.gather(own)?;
            tracing::info!(peers = n, "data-parallel training");
        }
        Ok(peers)
    }

    /// How many peers train.
    pub fn len(&self) -> usize {
        self.workers.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Peer 0's model: every peer's, the weights being equal.
    pub fn trainable(&self) -> &Trainable<B> {
        &self.own.trainable
    }

    pub fn optim(&self) -> &GroupedAdamW<B> {
        &self.own.optim
    }

    /// Forward and backward of the micro-batch `images` spread over the peers, its gradients
    /// (divided by `grad_accum`) kept by each; returns the micro-batch's mean loss per scored
    /// token. `dropout_seed` seeds its LoRA dropout (each peer mixes in its id).
    pub fn micro_batch(&mut self, images: &[usize], dropout_seed: u64) -> Result<f64, TrainError> {
        let tokens = scored_tokens(self.shared.col, images).max(1);
        let shares = split(images, self.len());
        let mut shares = shares.into_iter().map(|(images, weight)| Share {
            images,
            weight,
            tokens,
            dropout_seed,
        });
        let own = shares.next().ok_or(TrainError::NoDevice)?;
        for (w, share) in self.workers.iter().zip(shares) {
            let _ = w.commands.send(Command::Micro(share));
        }
        let own = self.own.micro(own, self.shared);
        let mut sum = self.gather(own)?;
        if !sum.is_finite() {
            // Said after gathering, so no worker is left mid-step.
            return Err(TrainError::Diverged((sum / tokens as f64) as f32));
        }
        sum /= tokens as f64;
        Ok(sum)
    }

    /// The step's gradients, all-reduced across the peers (peer 0's copy; every peer holds the
    /// same). Kept for [`Self::step`]. With one peer, its own.
    pub fn reduce(&mut self) -> Result<&GradientsParams, TrainError> {
        for w in &self.workers {
            let _ = w.commands.send(Command::Reduce);
        }
        let own = self.own.reduce(self.len());
        self.gather(own)?;
        self.own.reduced.as_ref().ok_or(TrainError::NoDevice)
    }

    /// Clip the reduced gradients to `max_grad_norm` (0: no clipping) and take the optimizer
    /// step at `lr` on every peer; returns the norm before clipping.
    pub fn step(&mut self, lr: f64, max_grad_norm: f64) -> Result<f64, TrainError> {
        for w in &self.workers {
            let _ = w.commands.send(Command::Step { lr, max_grad_norm });
        }
        let own = self.own.step(lr, max_grad_norm);
        self.gather(own)
    }

    /// Peer 0's own result and every worker's, the first failure (by peer) winning; the sum of
    /// the values. A worker that stopped answering failed.
    fn gather(&mut self, own: Reply) -> Result<f64, TrainError> {
        let (mut first, mut sum) = match own {
            Ok(v) => (None, v),
            Err(e) => (Some(e), 0.0),
        };
        for (k, w) in self.workers.iter().enumerate() {
            match w.replies.recv() {
                Ok(Ok(v)) => sum += v,
                Ok(Err(e)) => {
                    first.get_or_insert(e);
                }
                Err(_) => {
                    first.get_or_insert(TrainError::Peer {
                        peer: k + 1,
                        message: "its thread stopped".into(),
                    });
                }
            }
        }
        match first {
            Some(e) => {
                self.broken = true;
                Err(e)
            }
            None => Ok(sum),
        }
    }

    /// Stop the workers and leave the collective (reset when a peer failed).
    pub fn finish(mut self) -> Result<(), TrainError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), TrainError> {
        let workers = std::mem::take(&mut self.workers);
        let n = workers.len();
        for w in workers {
            drop(w.commands);
            let _ = w.thread.join();
        }
        if n > 0 {
            if self.broken {
                reset_collective::<B::InnerBackend>();
            } else if let Err(e) = finish_collective::<B::InnerBackend>(PeerId::from(0)) {
                reset_collective::<B::InnerBackend>();
                return Err(collective_error(0, "finish", e));
            }
        }
        Ok(())
    }
}

impl<B: AutodiffBackend> Drop for Peers<'_, B> {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.broken = true;
            let _ = self.stop();
        }
    }
}

/// A worker's loop: join the collective when told, then answer each command until the
/// channel closes.
fn serve<B: AutodiffBackend>(
    mut peer: Peer<B>,
    n: usize,
    config: CollectiveConfig,
    shared: Shared<'_>,
    inbox: &Receiver<Command>,
    outbox: &Sender<Reply>,
) {
    let mut config = Some(config);
    let mut joined = false;
    while let Ok(command) = inbox.recv() {
        let reply = match command {
            Command::Join => match config.take() {
                Some(c) => {
                    let id = PeerId::from(peer.id as u32);
                    let r = register::<B::InnerBackend>(id, peer.device.clone(), c);
                    joined = r.is_ok();
                    r.map(|()| 0.0)
                        .map_err(|e| collective_error(peer.id, "register", e))
                }
                None => Ok(0.0),
            },
            Command::Micro(share) => peer.micro(share, shared),
            Command::Reduce => peer.reduce(n),
            Command::Step { lr, max_grad_norm } => peer.step(lr, max_grad_norm),
        };
        if outbox.send(reply).is_err() {
            break;
        }
    }
    if joined {
        let _ = finish_collective::<B::InnerBackend>(PeerId::from(peer.id as u32));
    }
}

impl<B: AutodiffBackend> Peer<B> {
    /// Forward and backward on one share; its summed token loss (times its weight).
    fn micro(&mut self, share: Share, shared: Shared<'_>) -> Reply {
        let id = self.id;
        let run = AssertUnwindSafe(|| -> Reply {
            let batch = load_batch::<B>(shared.col, shared.features, &share.images, &self.device)?;
            let seed = mix_seed(share.dropout_seed, id as u64);
            let model = match shared.spec {
                Some(spec) => self.trainable.training_model(spec, seed),
                None => self.trainable.model.clone(),
            };
            let logits = batch_logits(&model, &batch);
            let (sum, _) = summed_loss(logits, batch.labels.clone(), shared.label_smoothing);
            let scale = f64::from(share.weight) / (share.tokens * shared.grad_accum) as f64;
            let value: f32 = sum.clone().into_scalar().elem();
            let grads = sum.mul_scalar(scale).backward();
            let grads = GradientsParams::from_grads(grads, &self.trainable);
            self.accum.accumulate(&self.trainable, grads);
            Ok(f64::from(value) * f64::from(share.weight))
        });
        std::panic::catch_unwind(run).unwrap_or_else(|_| {
            Err(TrainError::Peer {
                peer: id,
                message: "its forward or backward pass panicked".into(),
            })
        })
    }

    fn reduce(&mut self, peers: usize) -> Reply {
        let grads = self.accum.grads();
        let grads = if peers > 1 {
            grads
                .all_reduce::<B::InnerBackend>(PeerId::from(self.id as u32), ReduceOperation::Sum)
                .map_err(|e| collective_error(self.id, "all-reduce", e))?
        } else {
            grads
        };
        self.reduced = Some(grads);
        Ok(0.0)
    }

    fn step(&mut self, lr: f64, max_grad_norm: f64) -> Reply {
        let grads = self.reduced.take().ok_or_else(|| TrainError::Peer {
            peer: self.id,
            message: "an optimizer step without reduced gradients".into(),
        })?;
        let (grads, norm) = clip_global_norm(&self.trainable, grads, max_grad_norm);
        self.trainable = self.optim.step(lr, self.trainable.clone(), grads);
        // Every peer computes the same norm; only peer 0's is reported.
        Ok(if self.id == 0 { norm } else { 0.0 })
    }
}

/// `images` split into `peers` contiguous shares, as even as can be (the first ones larger by
/// one), each with its weight; a peer left without an image gets the first with weight 0.
fn split(images: &[usize], peers: usize) -> Vec<(Vec<usize>, f32)> {
    let (base, extra) = (images.len() / peers, images.len() % peers);
    let mut at = 0;
    (0..peers)
        .map(|k| {
            let len = base + usize::from(k < extra);
            let share = &images[at..at + len];
            at += len;
            if share.is_empty() {
                (images.iter().take(1).copied().collect(), 0.0)
            } else {
                (share.to_vec(), 1.0)
            }
        })
        .collect()
}

fn collective_error(peer: usize, what: &str, e: burn::collective::CollectiveError) -> TrainError {
    TrainError::Peer {
        peer,
        message: format!("collective {what} failed: {e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_even_contiguous_and_never_empty() {
        let s = split(&[10, 11, 12, 13, 14], 2);
        assert_eq!(s, vec![(vec![10, 11, 12], 1.0), (vec![13, 14], 1.0)]);
        let s = split(&[7], 3);
        assert_eq!(s, vec![(vec![7], 1.0), (vec![7], 0.0), (vec![7], 0.0)]);
        assert_eq!(split(&[1, 2], 1), vec![(vec![1, 2], 1.0)]);
    }
}
