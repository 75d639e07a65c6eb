//! The prep artifact's format (see [`artifact`] for its files), the splits, and prep's errors.

pub mod artifact;
pub mod error;
pub mod split;

pub use artifact::{
    DatasetInfo, ImageRecord, ImagesBase, PrepArtifact, RowIssue, Skipped, SplitCounts, Summary,
};
pub use error::PrepError;
pub use split::{Split, SplitFractions, hash_split};
