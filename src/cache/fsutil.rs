//! Durable, atomic file operations: write a temp file, fsync, rename, fsync the directory.

use std::io::{self, Write};
use std::path::Path;

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Write `bytes` to `path` so that readers see either the old file or the whole new one. The
/// file keeps the permissions it had (a new one is readable by all, like `create`'s under the
/// usual umask), not the temp file's owner-only ones.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let permissions = match std::fs::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => default_permissions(),
    };
    let mut tmp = tempfile::Builder::new()
        .permissions(permissions)
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fsync_dir(dir)
}

fn default_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o644)
}

pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<T> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// fsync every file below `dir` and the directories themselves, then mark files read-only.
pub fn seal_tree(dir: &Path) -> io::Result<()> {
    for item in walkdir::WalkDir::new(dir).contents_first(true) {
        let item = item.map_err(io::Error::other)?;
        let ft = item.file_type();
        if ft.is_file() {
            let f = std::fs::File::open(item.path())?;
            f.sync_all()?;
            let mut perms = f.metadata()?.permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(item.path(), perms)?;
        } else if ft.is_dir() {
            fsync_dir(item.path())?;
        }
    }
    Ok(())
}

/// Remove a directory tree, even where files were made read-only.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
