//! The `prep` and `collate` stage kinds: a captioning dataset in whatever layout the user has,
//! out as exactly the tokens and pixels a BLIP model consumes.
//!
//! * [`Prep`] (`kind = "prep"`) reads a dataset (Flickr8k in its original or Kaggle layout,
//!   Karpathy's split JSON, a JSONL/CSV table or a Hugging Face imagefolder, or the embedded
//!   synthetic generator), validates every image once, fixes the split by image and writes a
//!   self-describing artifact; see [`prep`] for its files.
//! * [`Collate`] (`kind = "collate"`) turns that artifact into token ids from the model's own
//!   `tokenizer.json` and resized RGB8 pixel shards made exactly as the model's
//!   `preprocessor_config.json` says; see [`collate`] for its files and for the loaders the
//!   training stages use ([`collate::Collated`], [`collate::preprocess_image`]).

pub mod collate;
pub mod prep;

pub use collate::Collate;
pub use prep::Prep;

use pipe_stage_api::StageKind;

/// The stage kinds this crate provides, for the orchestrator's registry.
pub fn kinds() -> Vec<Box<dyn StageKind>> {
    vec![Box::new(Prep), Box::new(Collate)]
}
