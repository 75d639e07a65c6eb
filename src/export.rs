//! `pipe export STAGE DIR`: a stage's artifact copied out of the cache as plain, writable
//! files, for a place the cache does not own (another machine, a model hub upload).
//!
//! All or nothing: the files are written into a temporary sibling of `DIR` and renamed into
//! place, so a failed export leaves nothing half-written. A link inside the artifact is copied
//! as what it points to, and only when that stays inside the artifact.

use std::path::{Path, PathBuf};

use crate::cache::Artifact;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{dir} exists and is not an empty directory; export into a new or empty one")]
    NotEmpty { dir: PathBuf },
    #[error("the artifact holds {path}, a link that leads outside it; nothing was exported")]
    OutsideLink { path: PathBuf },
    #[error("cannot export {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub files: u64,
    pub bytes: u64,
}

/// Copy `artifact`'s files into `dir` (which must not exist, or be empty); `extra` then adds
/// files of its own (a model card) to the staging directory before it becomes `dir`.
pub fn export(
    artifact: &Artifact,
    dir: &Path,
    extra: impl FnOnce(&Path) -> Result<(), ExportError>,
) -> Result<Exported, ExportError> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => false,
    };
    if !empty {
        return Err(ExportError::NotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(at(&parent))?;
    let staging = parent.join(format!(".{name}.export-{}", std::process::id()));
    let result = copy_out(&artifact.out(), &staging).and_then(|n| {
        extra(&staging)?;
        if dir.exists() {
            std::fs::remove_dir(dir).map_err(at(dir))?;
        }
        std::fs::rename(&staging, dir).map_err(at(dir))?;
        Ok(n)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Copy the tree at `src` into `dst` (created), resolving links that stay inside `src`.
fn copy_out(src: &Path, dst: &Path) -> Result<Exported, ExportError> {
    let root = src.canonicalize().map_err(at(src))?;
    std::fs::create_dir_all(dst).map_err(at(dst))?;
    let mut done = Exported { files: 0, bytes: 0 };
    for entry in walkdir::WalkDir::new(&root).follow_links(true).min_depth(1) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(&root).to_path_buf();
            at(&path)(std::io::Error::other(e))
        })?;
        let path = entry.path();
        let real = path.canonicalize().map_err(at(path))?;
        if !real.starts_with(&root) {
            return Err(ExportError::OutsideLink {
                path: path.strip_prefix(&root).unwrap_or(path).to_path_buf(),
            });
        }
        let rel = path.strip_prefix(&root).unwrap_or(path);
        let target = dst.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).map_err(at(&target))?;
        } else {
            done.bytes += std::fs::copy(path, &target).map_err(at(&target))?;
            done.files += 1;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))
                .map_err(at(&target))?;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Manifest;

    fn artifact(dir: &Path) -> Artifact {
        let out = dir.join("out");
        std::fs::create_dir_all(out.join("model")).expect("mkdir");
        std::fs::write(out.join("model/config.json"), "{}").expect("write");
        std::fs::write(out.join("summary.json"), "[1]").expect("write");
        Artifact {
            dir: dir.to_path_buf(),
            manifest: Manifest {
                scheme: 1,
                key: "k".into(),
                stage: "train".into(),
                kind: "train".into(),
                content: "c".into(),
                files: 2,
                bytes: 5,
                started: 0.0,
                duration_s: 0.0,
                metrics: Default::default(),
                results: vec![],
                pipe_version: "0".into(),
            },
        }
    }

    #[test]
    fn an_export_is_plain_writable_files_plus_what_the_caller_adds() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = artifact(&tmp.path().join("cache"));
        let dir = tmp.path().join("out/exported");
        let done = export(&a, &dir, |staging| {
            std::fs::write(staging.join("README.md"), "card").map_err(at(staging))
        })
        .expect("export");
        assert_eq!(done, Exported { files: 2, bytes: 5 });
        assert_eq!(
            std::fs::read_to_string(dir.join("model/config.json")).expect("read"),
            "{}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("README.md")).expect("read"),
            "card"
        );
        let meta = std::fs::symlink_metadata(dir.join("summary.json")).expect("meta");
        assert!(meta.is_file() && !meta.permissions().readonly());
        // Nothing else is left beside it.
        let siblings: Vec<_> = std::fs::read_dir(tmp.path().join("out"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(siblings, ["exported"]);
    }

    #[test]
    fn a_full_directory_or_an_escaping_link_is_refused_with_nothing_written() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = artifact(&tmp.path().join("cache"));
        let full = tmp.path().join("full");
        std::fs::create_dir_all(&full).expect("mkdir");
        std::fs::write(full.join("mine.txt"), "keep").expect("write");
        let e = export(&a, &full, |_| Ok(())).expect_err("not empty");
        assert!(matches!(e, ExportError::NotEmpty { .. }), "{e}");
        assert_eq!(
            std::fs::read_to_string(full.join("mine.txt")).expect("read"),
            "keep"
        );

        std::fs::write(tmp.path().join("secret"), "x").expect("write");
        std::os::unix::fs::symlink(tmp.path().join("secret"), a.out().join("leak")).expect("link");
        let dir = tmp.path().join("new");
        let e = export(&a, &dir, |_| Ok(())).expect_err("escaping link");
        assert!(e.to_string().contains("leak"), "{e}");
        assert!(!dir.exists());
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("export"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
