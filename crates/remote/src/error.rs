use std::path::PathBuf;

/// What can go wrong talking to a remote. Messages name the remote and where it is (its URL
/// and endpoint without credentials), never a credential.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote `{remote}`: {why}")]
    Config { remote: String, why: String },
    #[error("remote `{remote}` ({at}): {what}")]
    Store {
        remote: String,
        at: String,
        what: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("remote `{remote}` ({at}) did not answer within {secs} s ({what})")]
    Timeout {
        remote: String,
        at: String,
        what: String,
        secs: u64,
    },
    #[error(
        "remote `{remote}`: object {object} is corrupt (blake3 {actual}, {size} bytes; the record \
         says blake3 {expected}, {expected_size} bytes): refused"
    )]
    Corrupt {
        remote: String,
        object: String,
        expected: String,
        expected_size: u64,
        actual: String,
        size: u64,
    },
    #[error("remote `{remote}`: record {object} is invalid: {why}")]
    BadRecord {
        remote: String,
        object: String,
        why: String,
    },
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the transfer runtime")]
    Runtime(#[source] std::io::Error),
}

pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RemoteError + '_ {
    move |source| RemoteError::Io {
        path: path.to_path_buf(),
        source,
    }
}
