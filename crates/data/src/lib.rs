//! The data artifacts the stages hand one another, and how an image becomes model pixels.
//!
//! * [`prep`]: the prep artifact (`images.jsonl`, `summary.json`, splits) — its writer for the
//!   `prep` kind and its reader for everything downstream.
//! * [`collate`]: the collate artifact (token ids and RGB8 pixel shards grouped by image) and
//!   the model's own tokenizer and image processor it is made with.
//! * [`images`]: decoding image files within limits, upright and in RGB8.

pub mod collate;
pub mod images;
pub mod prep;
