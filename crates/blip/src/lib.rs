//! BLIP image captioning (transformers' `BlipForConditionalGeneration`) in Burn.
//!
//! - [`config`]: `config.json` as typed structs; every size comes from it.
//! - [`vision`], [`text`], [`model`]: the modules, named after the checkpoint's tensors.
//! - [`weights`]: loading `model.safetensors` through burn-store, and the checkpoint names of
//!   the module tree (one rename table, both directions). Finding a checkpoint (a directory or
//!   a Hub id) is `pipe_hub`'s.
//! - [`decode`]: greedy and beam search with transformers' semantics.
//! - [`caption`]: [`Captioner`], the entry point.
//! - [`loss`]: the captioning loss (teacher forcing).
//! - [`lora`]: [`lora::LoraLinear`], a frozen Linear with an optional LoRA branch.

pub mod act;
pub mod caption;
pub mod checkpoint;
pub mod config;
pub mod decode;
mod layers;
pub mod lora;
pub mod loss;
pub mod model;
pub mod text;
pub mod vision;
pub mod weights;

pub use caption::{Caption, CaptionError, Captioner};
pub use config::BlipConfig;
pub use decode::{DecodeParams, EarlyStopping, GenerationConfig};
pub use model::Blip;
pub use weights::LoadError;

/// The model source that means "no checkpoint: random initialisation" (train from scratch).
pub const SCRATCH: &str = "scratch";
