//! Locks on files (flock through std's `File::lock`): the kernel drops them when the holder
//! dies, so a killed run never leaves a stuck lock. The file records the holder for messages.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::CacheError;

pub struct Lock {
    file: File,
}

impl Lock {
    /// Take the lock, waiting for the current holder (named in the log) if there is one.
    pub fn acquire(path: &Path, what: &str) -> Result<Self, CacheError> {
        Self::acquire_telling(path, what, &|_| {})
    }

    /// [`Lock::acquire`], telling `waiting` who holds the lock before waiting for them (only
    /// when someone does).
    pub fn acquire_telling(
        path: &Path,
        what: &str,
        waiting: &dyn Fn(&str),
    ) -> Result<Self, CacheError> {
        match Self::take(path, what, Some(waiting))? {
            Taken::Mine(lock) => Ok(lock),
            // `take` waits when told to: it never answers "held".
            Taken::Held(holder) => Err(CacheError::Lock {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!("held by {holder}")),
            }),
        }
    }

    /// Take the lock if nobody holds it; otherwise say who does.
    pub fn try_acquire(path: &Path, what: &str) -> Result<Taken, CacheError> {
        Self::take(path, what, None)
    }

    /// Take the lock; when it is held, wait for it if told whom to tell (`wait`), else say
    /// who holds it.
    fn take(path: &Path, what: &str, wait: Option<&dyn Fn(&str)>) -> Result<Taken, CacheError> {
        let err = |source| CacheError::Lock {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                };
                let Some(waiting) = wait else {
                    return Ok(Taken::Held(holder));
                };
                waiting(&holder);
                tracing::warn!("{what} is locked by {holder}; waiting for it to finish");
                file.lock().map_err(err)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        let me = format!("pid {} ({what})", std::process::id());
        file.set_len(0).map_err(err)?;
        file.rewind().map_err(err)?;
        file.write_all(me.as_bytes()).map_err(err)?;
        Ok(Taken::Mine(Self { file }))
    }
}

/// What [`Lock::try_acquire`] found.
pub enum Taken {
    Mine(Lock),
    /// Someone else holds it: who, as the lock file says.
    Held(String),
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
