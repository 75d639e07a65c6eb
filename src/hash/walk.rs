//! The files under an input, in the order the tree digest lists them: depth first, each
//! directory's entries sorted by name (bytes), symlinks followed.
//!
//! Written by hand rather than with walkdir because at 120,000 files walkdir's costs dominated a
//! no-op status: its name sort re-parses each path's last component per comparison, and its
//! `metadata()` resolves every full path from the root again. Here each directory is read
//! through its open handle, names are sorted as bytes, and every entry is `stat`ed relative to
//! that handle, on all cores when the directory is large (rustix: std has no `fstatat`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rayon::prelude::*;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};

use super::{FileStat, HashError, Unreadable};

/// A directory with more entries than this has them `stat`ed in parallel.
const PARALLEL_STATS: usize = 64;

/// A regular file found by [`walk`].
pub(super) struct Found {
    /// Relative to the root, `/`-separated; empty when the root is the file.
    pub rel: String,
    pub stat: FileStat,
}

/// What [`walk`] found: the files, and what it could not read (relative path, why).
#[derive(Default)]
pub(super) struct Walked {
    pub files: Vec<Found>,
    pub skipped: Vec<(String, String)>,
}

/// Every regular file under `root` (itself, when it is one), following symlinks. Under
/// [`Unreadable::Skip`] what cannot be read below the root is listed in
/// [`Walked::skipped`]; under [`Unreadable::Refuse`] it is an error.
pub(super) fn walk(root: &Path, policy: Unreadable) -> Result<Walked, HashError> {
    let meta = std::fs::metadata(root).map_err(super::io_err(root))?;
    let mut out = Walked::default();
    if meta.is_file() {
        out.files.push(Found {
            rel: String::new(),
            stat: FileStat::of(&meta),
        });
        return Ok(out);
    }
    if !meta.is_dir() {
        use std::os::unix::fs::MetadataExt;
        return Err(HashError::Special {
            path: root.to_path_buf(),
            what: special_kind(FileType::from_raw_mode(meta.mode())),
        });
    }
    let fd = open_dir(rustix::fs::CWD, root).map_err(super::io_err(root))?;
    let here = rustix::fs::fstat(&fd).map_err(|e| super::io_err(root)(e.into()))?;
    let here = Seen::of(&here);
    let mut walker = Walker {
        root,
        policy,
        ancestors: vec![(here.dev, here.stat.ino)],
        out,
    };
    walker.visit(&fd, "")?;
    Ok(walker.out)
}

/// What the walk keeps of an entry's `stat` (a tenth of its size: a large directory's are
/// collected before they are looked at).
struct Seen {
    stat: FileStat,
    kind: FileType,
    dev: u64,
}

impl Seen {
    /// The field types differ between architectures, hence the cast.
    #[allow(clippy::unnecessary_cast)]
    fn of(stat: &Stat) -> Self {
        Seen {
            stat: FileStat::from_stat(stat),
            kind: FileType::from_raw_mode(stat.st_mode),
            dev: stat.st_dev as u64,
        }
    }
}

struct Walker<'a> {
    root: &'a Path,
    policy: Unreadable,
    /// (device, inode) of the directories above, to stop at a link back to one of them.
    ancestors: Vec<(u64, u64)>,
    out: Walked,
}

impl Walker<'_> {
    fn visit(&mut self, dir: &OwnedFd, rel: &str) -> Result<(), HashError> {
        let names = match list(dir) {
            Ok(names) => names,
            Err(source) => return self.unreadable(rel, source),
        };
        let stat = |name: &CString| {
            rustix::fs::statat(dir, name.as_c_str(), AtFlags::empty()).map(|s| Seen::of(&s))
        };
        let stats: Vec<rustix::io::Result<Seen>> = if names.len() > PARALLEL_STATS {
            names.par_iter().map(stat).collect()
        } else {
            names.iter().map(stat).collect()
        };
        self.out.files.reserve(names.len());
        for (name, stat) in names.iter().zip(stats) {
            // Checked as UTF-8 first: the lossy conversion's own scan is slower.
            let text = match name.to_str() {
                Ok(text) => std::borrow::Cow::Borrowed(text),
                Err(_) => name.to_string_lossy(),
            };
            let mut path = String::with_capacity(rel.len() + 1 + text.len());
            if !rel.is_empty() {
                path.push_str(rel);
                path.push('/');
            }
            path.push_str(&text);
            let rel = path;
            let stat = match stat {
                Ok(stat) => stat,
                Err(e) if e == rustix::io::Errno::NOENT => {
                    self.skip(rel, "a dangling symlink".to_string())?;
                    continue;
                }
                Err(e) => {
                    let e = io::Error::from(e);
                    self.skip(rel, format!("unreadable ({e})"))?;
                    continue;
                }
            };
            match stat.kind {
                FileType::Directory => {
                    let id = (stat.dev, stat.stat.ino);
                    if self.ancestors.contains(&id) {
                        self.skip(rel, "a symlink loop".to_string())?;
                        continue;
                    }
                    let sub = match open_dir(dir, name.as_c_str()) {
                        Ok(sub) => sub,
                        Err(source) => {
                            self.unreadable(&rel, source)?;
                            continue;
                        }
                    };
                    self.ancestors.push(id);
                    let result = self.visit(&sub, &rel);
                    self.ancestors.pop();
                    result?;
                }
                FileType::RegularFile => self.out.files.push(Found {
                    rel,
                    stat: stat.stat,
                }),
                // Never opened: reading a FIFO would wait forever for a writer.
                kind => {
                    let what = special_kind(kind);
                    if self.policy == Unreadable::Refuse {
                        return Err(HashError::Special {
                            path: self.root.join(&rel),
                            what,
                        });
                    }
                    self.out.skipped.push((rel, format!("a {what}")));
                }
            }
        }
        Ok(())
    }

    /// Leave out what cannot be read (or refuse it), naming why.
    fn skip(&mut self, rel: String, why: String) -> Result<(), HashError> {
        if self.policy == Unreadable::Refuse {
            return Err(HashError::Io {
                path: self.root.join(&rel),
                source: io::Error::other(why),
            });
        }
        self.out.skipped.push((rel, why));
        Ok(())
    }

    /// A directory that cannot be listed: the root's is an error, one below it is skipped.
    fn unreadable(&mut self, rel: &str, source: io::Error) -> Result<(), HashError> {
        if rel.is_empty() || self.policy == Unreadable::Refuse {
            return Err(HashError::Io {
                path: self.root.join(rel),
                source,
            });
        }
        self.skip(rel.to_string(), format!("unreadable ({source})"))
    }
}

fn open_dir<P: rustix::path::Arg>(at: impl std::os::fd::AsFd, path: P) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// A directory's entries but `.` and `..`, sorted by name as bytes.
fn list(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    let mut entries = Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// What a file that is neither regular nor a directory is, for messages.
fn special_kind(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "FIFO (named pipe)",
        FileType::Socket => "socket",
        FileType::BlockDevice | FileType::CharacterDevice => "device node",
        _ => "special file",
    }
}
