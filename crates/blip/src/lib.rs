//! BLIP image captioning (transformers' `BlipForConditionalGeneration`) in Burn.
//!
//! - [`config`]: `config.json` as typed structs; every size comes from it.
//! - [`vision`], [`text`], [`model`]: the modules, named after the checkpoint's tensors.
//! - [`load`]: finding a checkpoint and loading `model.safetensors` through burn-store.
//! - [`decode`]: greedy and beam search with transformers' semantics.
//! - [`caption`]: [`Captioner`], the entry point.
//! - [`loss`]: the captioning loss (teacher forcing).

pub mod act;
pub mod caption;
pub mod config;
pub mod decode;
mod layers;
pub mod load;
pub mod loss;
pub mod model;
pub mod text;
pub mod vision;

pub use caption::{Caption, CaptionError, Captioner};
pub use config::BlipConfig;
pub use decode::{DecodeParams, EarlyStopping, GenerationConfig};
pub use load::{LoadError, ModelDir};
pub use model::Blip;

/// The model source that means "no checkpoint: random initialisation" (train from scratch).
pub const SCRATCH: &str = "scratch";
