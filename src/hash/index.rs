//! The stat cache: for each input root hashed, its files in walk order, each with the
//! (size, mtime, ctime, inode) it had when hashed and its hash, so an unchanged file costs a
//! `stat`, not a read. The ctime (as git's index keeps it) catches an edit whose mtime was put
//! back (`touch -r`, `cp -p`, an editor or a build tool that restores it): nothing but the
//! kernel sets the ctime.
//!
//! On disk it is one flat binary file, written by hand rather than through serde: a no-op
//! status at 120,000 files reads all of it, and a serde map (JSON, then MessagePack) spent most
//! of that time allocating a path and a string per file. Here a root's records are found by
//! skipping over lengths, parsed only when that root is hashed, and matched against the walk
//! in order (the walk and the index share one order), so the lookup hashes no path. Layout,
//! little-endian: the magic, then per root `u32 len, root path, i64 used_ns, u64 count` and
//! `count` records of `u32 len, relative path, u64 size, i64 mtime_ns, i64 ctime_ns, u64 ino,
//! i64 hashed_ns, [u8; 32] blake3`. A file that does not parse is an empty cache (it is only a
//! cache).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::FileStat;

const MAGIC: &[u8] = b"pipe-stat-index-1\n";
/// Roots last used longest ago are dropped once the index holds more files than this.
const MAX_FILES: u64 = 2_000_000;

/// One file as last hashed, its path borrowed from the index's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Indexed<'a> {
    /// UTF-8 when written; not checked again when read (it is only compared).
    pub rel: &'a [u8],
    pub stat: FileStat,
    pub hashed_ns: i64,
    pub hash: [u8; 32],
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct StatCache {
    /// The file as read, and where each root's record lies in it.
    disk: Vec<u8>,
    on_disk: HashMap<PathBuf, Stored>,
    /// Roots hashed by this process, their files' records as written to disk: they replace
    /// what is on disk.
    fresh: HashMap<PathBuf, Fresh>,
}

#[derive(Debug)]
struct Fresh {
    used_ns: i64,
    count: u64,
    files: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Stored {
    /// The whole record, root path included, for copying it over unchanged.
    record: Range<usize>,
    /// Its files' records.
    files: Range<usize>,
    used_ns: i64,
    count: u64,
}

impl StatCache {
    /// Parse a stat cache file's bytes (anything else is an empty cache).
    pub fn from_bytes(disk: Vec<u8>) -> StatCache {
        match scan(&disk) {
            Some(on_disk) => StatCache {
                disk,
                on_disk,
                fresh: HashMap::new(),
            },
            None => StatCache::default(),
        }
    }

    /// Whether this process learned something worth saving.
    pub fn is_dirty(&self) -> bool {
        !self.fresh.is_empty()
    }

    /// `root`'s files as last hashed, in walk order.
    pub(super) fn files_of(&self, root: &Path) -> Vec<Indexed<'_>> {
        let found = match self.fresh.get(root) {
            Some(f) => parse_files(&f.files, f.count),
            None => self
                .on_disk
                .get(root)
                .and_then(|s| parse_files(&self.disk[s.files.clone()], s.count)),
        };
        found.unwrap_or_default()
    }

    /// Record `root`'s files as just hashed.
    pub(super) fn replace<'a>(
        &mut self,
        root: PathBuf,
        used_ns: i64,
        files: impl Iterator<Item = Indexed<'a>>,
    ) {
        let mut bytes = Vec::new();
        let mut count = 0;
        for f in files {
            put_bytes(&mut bytes, f.rel);
            bytes.extend_from_slice(&f.stat.size.to_le_bytes());
            bytes.extend_from_slice(&f.stat.mtime_ns.to_le_bytes());
            bytes.extend_from_slice(&f.stat.ctime_ns.to_le_bytes());
            bytes.extend_from_slice(&f.stat.ino.to_le_bytes());
            bytes.extend_from_slice(&f.hashed_ns.to_le_bytes());
            bytes.extend_from_slice(&f.hash);
            count += 1;
        }
        let fresh = Fresh {
            used_ns,
            count,
            files: bytes,
        };
        self.fresh.insert(root, fresh);
    }

    /// The file to write: what this process hashed, over `disk` (the file as it is now, which
    /// another process may have written since this one read it), the least recently used
    /// roots dropped beyond [`MAX_FILES`].
    pub fn to_bytes(&self, disk: StatCache) -> Vec<u8> {
        enum Source<'a> {
            Fresh(&'a Fresh),
            Disk(&'a Stored),
        }
        let mut roots: Vec<(i64, &Path, u64, Source)> = Vec::new();
        for (root, fresh) in &self.fresh {
            roots.push((fresh.used_ns, root, fresh.count, Source::Fresh(fresh)));
        }
        for (root, stored) in &disk.on_disk {
            if !self.fresh.contains_key(root) {
                roots.push((stored.used_ns, root, stored.count, Source::Disk(stored)));
            }
        }
        roots.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut out = MAGIC.to_vec();
        let mut total = 0u64;
        for (used, root, count, source) in roots {
            total += count;
            if total > MAX_FILES && out.len() > MAGIC.len() {
                break;
            }
            match source {
                Source::Disk(stored) => out.extend_from_slice(&disk.disk[stored.record.clone()]),
                Source::Fresh(fresh) => {
                    // A root that is not UTF-8 is not remembered (its files are hashed again).
                    let Some(root) = root.to_str() else { continue };
                    put_bytes(&mut out, root.as_bytes());
                    out.extend_from_slice(&used.to_le_bytes());
                    out.extend_from_slice(&count.to_le_bytes());
                    out.extend_from_slice(&fresh.files);
                }
            }
        }
        out
    }
}

/// Bytes of one file's record after its path.
const FILE_FIXED: usize = 8 * 5 + 32;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over the file that fails (None) instead of reading past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn sized(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.array()?);
        self.take(usize::try_from(len).ok()?)
    }
}

/// Where each root's record is, checking every length on the way.
fn scan(bytes: &[u8]) -> Option<HashMap<PathBuf, Stored>> {
    let mut r = Reader {
        bytes,
        at: MAGIC.len(),
    };
    if bytes.get(..MAGIC.len())? != MAGIC {
        return None;
    }
    let mut roots = HashMap::new();
    while r.at < bytes.len() {
        let start = r.at;
        let root = PathBuf::from(std::str::from_utf8(r.sized()?).ok()?);
        let used_ns = r.i64()?;
        let count = r.u64()?;
        let files_start = r.at;
        for _ in 0..count {
            r.sized()?;
            r.take(FILE_FIXED)?;
        }
        let stored = Stored {
            record: start..r.at,
            files: files_start..r.at,
            used_ns,
            count,
        };
        roots.insert(root, stored);
    }
    Some(roots)
}

fn parse_files(bytes: &[u8], count: u64) -> Option<Vec<Indexed<'_>>> {
    let mut r = Reader { bytes, at: 0 };
    // Each record takes at least FILE_FIXED bytes: a damaged count cannot reserve more.
    let mut files = Vec::with_capacity(usize::try_from(count).ok()?.min(bytes.len() / FILE_FIXED));
    for _ in 0..count {
        let rel = r.sized()?;
        let stat = FileStat {
            size: r.u64()?,
            mtime_ns: r.i64()?,
            ctime_ns: r.i64()?,
            ino: r.u64()?,
        };
        files.push(Indexed {
            rel,
            stat,
            hashed_ns: r.i64()?,
            hash: r.array()?,
        });
    }
    Some(files)
}

/// Finds a walked file's last record: the next one in order when the tree is unchanged, else
/// through a map built on the first miss.
pub(super) struct Lookup<'a> {
    known: &'a [Indexed<'a>],
    next: usize,
    by_rel: Option<HashMap<&'a [u8], usize>>,
}

impl<'a> Lookup<'a> {
    pub fn new(known: &'a [Indexed<'a>]) -> Self {
        Self {
            known,
            next: 0,
            by_rel: None,
        }
    }

    pub fn find(&mut self, rel: &str) -> Option<&'a Indexed<'a>> {
        if let Some(e) = self.known.get(self.next)
            && e.rel == rel.as_bytes()
        {
            self.next += 1;
            return Some(e);
        }
        let known = self.known;
        let map = self
            .by_rel
            .get_or_insert_with(|| known.iter().enumerate().map(|(i, e)| (e.rel, i)).collect());
        let i = *map.get(rel.as_bytes())?;
        self.next = i + 1;
        Some(&known[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, n: u64) -> Indexed<'_> {
        Indexed {
            rel: rel.as_bytes(),
            stat: FileStat {
                size: n,
                mtime_ns: 1,
                ctime_ns: 2,
                ino: n,
            },
            hashed_ns: 3,
            hash: [n as u8; 32],
        }
    }

    #[test]
    fn roots_survive_a_round_trip_and_another_process_keeps_its_roots() {
        let mut ours = StatCache::default();
        ours.replace("/a".into(), 10, [file("x", 1), file("y/z", 2)].into_iter());
        let mut theirs = StatCache::default();
        theirs.replace("/b".into(), 5, [file("w", 3)].into_iter());
        theirs.replace("/a".into(), 4, [file("old", 9)].into_iter());
        let theirs = StatCache::from_bytes(theirs.to_bytes(StatCache::default()));
        let merged = StatCache::from_bytes(ours.to_bytes(theirs));
        assert_eq!(
            merged.files_of(Path::new("/a")),
            vec![file("x", 1), file("y/z", 2)]
        );
        assert_eq!(merged.files_of(Path::new("/b")), vec![file("w", 3)]);
        assert!(!merged.is_dirty());
        assert_eq!(
            ours.files_of(Path::new("/a")),
            vec![file("x", 1), file("y/z", 2)]
        );
    }

    #[test]
    fn a_damaged_file_is_an_empty_cache() {
        let mut c = StatCache::default();
        c.replace("/a".into(), 1, [file("x", 1)].into_iter());
        let bytes = c.to_bytes(StatCache::default());
        for cut in [0, 5, MAGIC.len() + 3, bytes.len() - 1] {
            let damaged = StatCache::from_bytes(bytes[..cut].to_vec());
            assert!(damaged.files_of(Path::new("/a")).is_empty(), "cut at {cut}");
        }
        let mut huge_len = bytes.clone();
        huge_len[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(StatCache::from_bytes(huge_len).on_disk.is_empty());
    }

    #[test]
    fn lookup_follows_the_order_and_finds_out_of_order_names() {
        let known = vec![file("a", 1), file("b", 2), file("c", 3)];
        let mut l = Lookup::new(&known);
        assert_eq!(l.find("a").map(|e| e.stat.size), Some(1));
        assert_eq!(l.find("new"), None);
        assert_eq!(l.find("c").map(|e| e.stat.size), Some(3));
        assert_eq!(l.find("b").map(|e| e.stat.size), Some(2));
    }
}
