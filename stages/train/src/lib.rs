//! The `train` stage kind: fine-tune BLIP (LoRA or full) on a `collate` artifact.
//!
//! - [`params`]: the stage's parameters, typed and validated.
//! - [`lora`]: LoRA adapters over the model's Linear layers, selected by HF-style names.
//! - [`init`]: random initialisation for training from scratch.
//! - [`data`]: batches of images with all their captions.
//! - [`loss`]: next-token cross entropy on collate's labels (-100 ignored).
//! - [`optim`]: AdamW and global gradient-norm clipping.
//! - [`schedule`]: warmup + cosine/linear learning rate.
//! - [`checkpoint`]: resumable per-epoch state in the stage's work dir.
//! - [`peers`]: data parallelism (`devices = N`): peers, shares, Burn's collective all-reduce.
//! - [`fit`]: the training loop (validation, early stopping, best model).
//! - [`watch`]: what a user sees as it trains (status, a line per epoch, metrics.jsonl).
//! - [`export`]: merged HF checkpoint and PEFT adapter.
//! - [`stage`]: the [`Train`] stage kind.

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod export;
pub mod fit;
pub mod init;
pub mod lora;
pub mod loss;
pub mod optim;
pub mod params;
pub mod peers;
pub mod schedule;
pub mod stage;
pub mod watch;

pub use error::TrainError;
pub use params::TrainParams;
pub use stage::{Train, run_stopping_after};
