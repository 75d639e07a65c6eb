//! Caption metrics that reproduce the COCO caption toolkit (pycocoevalcap).
//!
//! * [`tokenize`]: Stanford PTB tokenization as coco-caption applies it
//!   (a native reimplementation of CoreNLP 3.4.1's lexer; no Java).
//! * BLEU-1..4, ROUGE-L and CIDEr-D identical to pycocoevalcap's (golden
//!   tests compare within 1e-6).
//! * METEOR 1.5 through the official jar when available, otherwise a native
//!   approximation reported as `METEOR~approx` (see [`meteor`]).
//! * [`score`] / [`score_files`] produce a [`Report`] with multi-reference
//!   (what papers report) and single-reference scores.
//!
//! ```no_run
//! use pipe_metrics::{ScoreOptions, score_files};
//! let report = score_files("preds.jsonl".as_ref(), "refs.jsonl".as_ref(), &ScoreOptions::default())?;
//! println!("{}", report.to_text());
//! # Ok::<(), pipe_metrics::MetricsError>(())
//! ```

mod bleu;
mod cider;
mod error;
pub mod io;
pub mod meteor;
mod ngrams;
mod report;
mod rouge;
mod score;
pub mod tokenize;

pub use error::{MetricsError, quoted_ids};
pub use io::{Format, detect_format, read_predictions, read_references};
pub use meteor::{MeteorMode, MeteorOptions, MeteorSource};
pub use report::{ImageScores, Keys, Report, Scores};
pub use score::{LeftOut, ScoreOptions, check_alignment, keep_common, score, score_files};
