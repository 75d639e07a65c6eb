//! Errors of the metrics crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading inputs or scoring.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a JSONL input is not what it should be.
    #[error("{path}:{line}: {message}")]
    MalformedLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// An entry of a COCO results or annotations file is not what it should be.
    #[error("{path}: {entry}: {message}")]
    MalformedEntry {
        /// The file.
        path: PathBuf,
        /// Where in the document: `[3]` (results), `annotations[3]`.
        entry: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file in none of the layouts read (JSONL, COCO results, COCO annotations), or in the
    /// layout of the other kind of captions.
    #[error("{path}: {message}")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What it is, and what was expected.
        message: String,
    },
    /// The same image id appears twice in one file.
    #[error("{path}:{line}: duplicate image id {id:?} (first seen on line {first_line})")]
    DuplicateId {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the repeat.
        line: usize,
        /// 1-based line number of the first occurrence.
        first_line: usize,
        /// The id.
        id: String,
    },
    /// Predictions for images that have no references.
    #[error("{} prediction(s) for images without references: {}", .ids.len(), list_ids(.ids))]
    UnknownImages {
        /// The offending ids.
        ids: Vec<String>,
    },
    /// Images with references but no prediction.
    #[error("{} image(s) have references but no prediction: {}", .ids.len(), list_ids(.ids))]
    MissingPredictions {
        /// The offending ids.
        ids: Vec<String>,
    },
    /// An image has an empty reference list.
    #[error("image {id:?} has no reference captions")]
    NoReferences {
        /// The image id.
        id: String,
    },
    /// `--allow-missing` found no image with both a prediction and references.
    #[error(
        "no image has both a prediction and references ({predictions} prediction(s), \
         {references} image(s) with references)"
    )]
    NothingInCommon {
        /// Images with a prediction.
        predictions: usize,
        /// Images with references.
        references: usize,
    },
    /// Nothing to score.
    #[error("no images to score")]
    Empty,
    /// The tokenizer failed to build (a bug, not an input problem).
    #[error("PTB tokenizer: {0}")]
    Tokenizer(String),
    /// Running the official METEOR jar failed.
    #[error("METEOR jar {jar}: {message}")]
    Meteor {
        /// The jar that was run.
        jar: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The first `shown` image ids, quoted and comma-separated (for messages naming images).
pub fn quoted_ids(ids: &[String], shown: usize) -> String {
    ids.iter()
        .take(shown)
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// First ten ids, then how many more.
fn list_ids(ids: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = quoted_ids(ids, SHOWN);
    if ids.len() > SHOWN {
        s.push_str(&format!(" … and {} more", ids.len() - SHOWN));
    }
    s
}
