//! The model worker: one thread owns the model and captions queued requests in micro-batches.
//!
//! Requests arrive already decoded and preprocessed (that runs in parallel on the async
//! runtime's blocking pool). The worker takes the oldest request, then keeps taking requests
//! with the same decoding options until it has `max_batch` of them or `batch_window` has
//! passed, and captions them in one model call. Requests whose client has gone (timed out,
//! disconnected) are dropped before the call.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use pipe_backend::{OnBackend, ResolvedBackend};
use pipe_blip::{Caption, Captioner, GenerationConfig};
use tokio::sync::oneshot;

use crate::error::ServeError;

/// One image to caption, and where its answer goes.
pub struct CaptionRequest {
    /// `3 × S × S` preprocessed pixels.
    pub pixels: Vec<f32>,
    pub generation: GenerationConfig,
    pub reply: oneshot::Sender<Result<Captioned, String>>,
}

/// A caption and how it was made.
#[derive(Debug, Clone)]
pub struct Captioned {
    pub caption: Caption,
    /// How many images shared the model call.
    pub batch_size: usize,
    /// How long the model call took.
    pub model_ms: f64,
}

/// What the loaded model is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelFacts {
    /// Side of the square images it takes.
    pub image_size: usize,
    /// Length of its text position table (bounds `max_new_tokens`).
    pub max_positions: usize,
    /// The backend it runs on, e.g. `cpu (flex)`.
    pub backend: String,
}

/// Counters of the worker's model calls.
#[derive(Debug, Default)]
pub struct Stats {
    batches: AtomicU64,
    images: AtomicU64,
    largest_batch: AtomicU64,
    failures: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Model calls made.
    pub batches: u64,
    /// Images captioned (or attempted) in them.
    pub images: u64,
    /// The most images in one call.
    pub largest_batch: u64,
    /// Model calls that failed.
    pub failures: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            images: self.images.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// How the worker batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max_batch: usize,
    pub window: Duration,
    pub queue_capacity: usize,
    pub debug_delay: Duration,
}

/// The running worker: its queue, counters and what it loaded.
pub struct Worker {
    pub queue: SyncSender<CaptionRequest>,
    pub stats: Arc<Stats>,
    pub facts: ModelFacts,
    pub thread: std::thread::JoinHandle<()>,
}

/// Start the worker thread and wait until the model is loaded.
pub fn spawn(
    model_dir: PathBuf,
    backend: ResolvedBackend,
    batching: Batching,
) -> Result<Worker, ServeError> {
    let (queue, requests) = mpsc::sync_channel(batching.queue_capacity.max(1));
    let (ready_tx, ready_rx) = mpsc::channel();
    let stats = Arc::new(Stats::default());
    let model_loop = ModelLoop {
        model_dir,
        backend_name: backend.describe(),
        batching,
        requests,
        ready: ready_tx,
        stats: Arc::clone(&stats),
    };
    let thread = std::thread::Builder::new()
        .name("pipe-serve-model".into())
        .spawn(move || backend.run(model_loop))
        .map_err(ServeError::Runtime)?;
    match ready_rx.recv() {
        Ok(Ok(facts)) => Ok(Worker {
            queue,
            stats,
            facts,
            thread,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ServeError::WorkerGone),
    }
}

struct ModelLoop {
    model_dir: PathBuf,
    backend_name: String,
    batching: Batching,
    requests: Receiver<CaptionRequest>,
    ready: mpsc::Sender<Result<ModelFacts, ServeError>>,
    stats: Arc<Stats>,
}

impl OnBackend for ModelLoop {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) {
        let captioner = match Captioner::<B>::load(&self.model_dir, &device) {
            Ok(c) => c,
            Err(e) => {
                let _ = self.ready.send(Err(e.into()));
                return;
            }
        };
        let facts = ModelFacts {
            image_size: captioner.image_size(),
            max_positions: captioner.model.text_decoder.max_positions(),
            backend: self.backend_name.clone(),
        };
        let size = facts.image_size;
        if self.ready.send(Ok(facts)).is_err() {
            return;
        }
        let mut pending = VecDeque::new();
        while let Some(batch) = next_batch(&self.requests, &mut pending, &self.batching) {
            let batch: Vec<CaptionRequest> =
                batch.into_iter().filter(|j| !j.reply.is_closed()).collect();
            if batch.is_empty() {
                continue;
            }
            if !self.batching.debug_delay.is_zero() {
                std::thread::sleep(self.batching.debug_delay);
            }
            run_batch(&captioner, &device, size, batch, &self.stats);
        }
        tracing::debug!("model worker stopped");
    }
}

/// The next batch: the oldest job and the compatible jobs that arrive within the window.
/// `None` when every sender is gone and nothing is pending.
fn next_batch(
    jobs: &Receiver<CaptionRequest>,
    pending: &mut VecDeque<CaptionRequest>,
    batching: &Batching,
) -> Option<Vec<CaptionRequest>> {
    let first = match pending.pop_front() {
        Some(job) => job,
        None => jobs.recv().ok()?,
    };
    let max = batching.max_batch.max(1);
    let mut batch = vec![first];
    // Compatible jobs held over from earlier batches first, oldest first.
    let mut i = 0;
    while i < pending.len() && batch.len() < max {
        if pending[i].generation == batch[0].generation {
            if let Some(job) = pending.remove(i) {
                batch.push(job);
            }
        } else {
            i += 1;
        }
    }
    let deadline = Instant::now() + batching.window;
    while batch.len() < max {
        let wait = deadline.saturating_duration_since(Instant::now());
        let next = if wait.is_zero() {
            jobs.try_recv().map_err(|_| RecvTimeoutError::Timeout)
        } else {
            jobs.recv_timeout(wait)
        };
        match next {
            Ok(job) if job.generation == batch[0].generation => batch.push(job),
            Ok(job) => pending.push_back(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn run_batch<B: Backend>(
    captioner: &Captioner<B>,
    device: &B::Device,
    size: usize,
    batch: Vec<CaptionRequest>,
    stats: &Stats,
) {
    let n = batch.len();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.images.fetch_add(n as u64, Ordering::Relaxed);
    stats.largest_batch.fetch_max(n as u64, Ordering::Relaxed);
    let plane = 3 * size * size;
    let mut data = Vec::with_capacity(n * plane);
    for job in &batch {
        data.extend_from_slice(&job.pixels);
    }
    let generation = batch[0].generation.clone();
    let start = Instant::now();
    let result = if data.len() != n * plane {
        Err(format!(
            "internal error: preprocessed images are not 3x{size}x{size}"
        ))
    } else {
        let pixels = Tensor::<B, 4>::from_data(TensorData::new(data, [n, 3, size, size]), device);
        match std::panic::catch_unwind(AssertUnwindSafe(|| captioner.caption(pixels, &generation)))
        {
            Ok(Ok(captions)) if captions.len() == n => Ok(captions),
            Ok(Ok(captions)) => Err(format!(
                "internal error: {} captions for {n} images",
                captions.len()
            )),
            Ok(Err(e)) => Err(format!("captioning failed: {e}")),
            Err(_) => Err("captioning failed: the model panicked".to_string()),
        }
    };
    let model_ms = start.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(batch = n, model_ms, "model call");
    match result {
        Ok(captions) => {
            for (job, caption) in batch.into_iter().zip(captions) {
                let _ = job.reply.send(Ok(Captioned {
                    caption,
                    batch_size: n,
                    model_ms,
                }));
            }
        }
        Err(message) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(batch = n, "{message}");
            for job in batch {
                let _ = job.reply.send(Err(message.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(beams: usize) -> (CaptionRequest, oneshot::Receiver<Result<Captioned, String>>) {
        let (reply, rx) = oneshot::channel();
        let generation = GenerationConfig {
            num_beams: beams,
            ..Default::default()
        };
        (
            CaptionRequest {
                pixels: Vec::new(),
                generation,
                reply,
            },
            rx,
        )
    }

    #[test]
    fn batches_group_compatible_jobs_and_keep_the_rest() {
        let (tx, rx) = mpsc::sync_channel(16);
        let mut receivers = Vec::new();
        for beams in [1, 3, 1, 1, 3] {
            let (j, r) = job(beams);
            receivers.push(r);
            assert!(tx.try_send(j).is_ok());
        }
        let batching = Batching {
            max_batch: 8,
            window: Duration::ZERO,
            queue_capacity: 16,
            debug_delay: Duration::ZERO,
        };
        let mut pending = VecDeque::new();
        let first = next_batch(&rx, &mut pending, &batching).unwrap_or_default();
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|j| j.generation.num_beams == 1));
        let second = next_batch(&rx, &mut pending, &batching).unwrap_or_default();
        assert_eq!(second.len(), 2);
        assert!(second.iter().all(|j| j.generation.num_beams == 3));
        drop(tx);
        assert!(next_batch(&rx, &mut pending, &batching).is_none());
    }

    #[test]
    fn max_batch_is_respected() {
        let (tx, rx) = mpsc::sync_channel(16);
        let mut receivers = Vec::new();
        for _ in 0..5 {
            let (j, r) = job(1);
            receivers.push(r);
            assert!(tx.try_send(j).is_ok());
        }
        let batching = Batching {
            max_batch: 2,
            window: Duration::from_millis(1),
            queue_capacity: 16,
            debug_delay: Duration::ZERO,
        };
        let mut pending = VecDeque::new();
        let sizes: Vec<usize> = (0..3)
            .map(|_| next_batch(&rx, &mut pending, &batching).map_or(0, |b| b.len()))
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
    }
}
