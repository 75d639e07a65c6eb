//! A shared artifact cache on object storage (S3 and S3-compatible servers, GCS, Azure, a
//! local or shared directory), through the `object_store` crate.
//!
//! ```text
//! <prefix>/
//!   cas/<blake3>       every file's bytes, stored once whichever artifacts hold it
//!   ac/<key>.json      one record per stage key: its metadata and its files with their hashes
//! ```
//! A record is written last, with a conditional put (create only if absent): it is the commit
//! point, as the local cache's atomic rename is. A push killed midway leaves blobs but no record,
//! hence no hit; two pushers of one key write the same record, and the second's put is a no-op.
//! Every pulled blob is blake3-checked as it streams in, and a record naming a path outside its
//! artifact is refused before anything is written. `gc` removes the records no root names, then
//! the blobs no remaining record uses, sparing what is younger than a grace period.
//!
//! The API is blocking: a [`Remote`] owns the tokio runtime its transfers run on.

mod error;
mod gc;
mod record;
mod store;
#[cfg(test)]
mod testing;
mod transfer;

pub use error::RemoteError;
pub use gc::GcReport;
pub use record::{FileEntry, Record, SCHEME};
pub use store::{DEFAULT_JOBS, Remote, RemoteConfig};
pub use transfer::{PullReport, PushReport};
