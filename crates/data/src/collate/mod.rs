//! The collate artifact: captions as token ids from the model's own `tokenizer.json`
//! ([`tokenize`]), images resized once into RGB8 shards ([`resize`], [`pixels`]) exactly as
//! the model's `preprocessor_config.json` says ([`config`]), kept grouped by image so training
//! runs the vision encoder once per image. Its files and reader: see [`shards`].

pub mod config;
pub mod error;
pub mod pixels;
pub mod resize;
pub mod shards;
pub mod tokenize;

pub use config::{ImageSize, PreprocessorConfig, SpecialTokens};
pub use error::CollateError;
pub use pixels::{Normalizer, preprocess_file, preprocess_image, preprocess_rgb8, resize_for};
pub use resize::{Arithmetic, Filter, resize_rgb8, resize_rgb8_with};
pub use shards::{CollateMeta, Collated, CollatedImage, ShardInfo};
pub use tokenize::{Batch, CaptionTokenizer, IGNORE_INDEX, TokenizedCaption, pad_batch};
