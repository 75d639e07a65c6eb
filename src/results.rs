//! `results/`: the human-facing view of the current artifacts. Each fresh stage gets
//! `results/<stage>/` with copies of the files it marked as results (folders and large files as
//! relative links into the cache, which always keeps the real copy). Folders of stages that are not fresh
//! are removed, so `results/` always matches `pipe status`. Only folders carrying pipe's marker
//! file are ever touched.

use std::path::{Path, PathBuf};

use crate::cache::{Artifact, short};
use crate::spec::Spec;

const MARKER: &str = ".pipe-artifact";
/// Files larger than this are linked, not copied.
const COPY_LIMIT: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
#[error("cannot update results folder {path}")]
pub struct ResultsError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError {
        path: path.to_path_buf(),
        source,
    }
}

/// Make each stage's results folder show `fresh[stage]`, or remove it when the stage is not fresh.
pub fn update(spec: &Spec, fresh: &[(&str, &Artifact)]) -> Result<(), ResultsError> {
    for stage in &spec.stages {
        let target = &stage.results;
        match fresh.iter().find(|(name, _)| *name == stage.name) {
            Some((_, artifact)) => mirror(target, artifact)?,
            None => remove_ours(target)?,
        }
    }
    Ok(())
}

/// Make `dir/<stage>/` show each of `fresh` (a try's results, `results/tries/NAME/`), and
/// remove the folders there of stages that are not in it.
pub fn update_try(dir: &Path, fresh: &[(&str, &Artifact)]) -> Result<(), ResultsError> {
    for (stage, artifact) in fresh {
        mirror(&dir.join(stage), artifact)?;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !fresh.iter().any(|(stage, _)| name == **stage) {
                remove_ours(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// Remove a try's results folder, `results/tries/NAME/`: the stage folders pipe made, then
/// the folder itself if nothing else is left in it.
pub fn remove_try(dir: &Path) -> Result<(), ResultsError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        remove_ours(&entry.path())?;
    }
    let _ = std::fs::remove_dir(dir); // kept when the user put something of theirs there
    Ok(())
}

fn is_ours(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

fn remove_ours(dir: &Path) -> Result<(), ResultsError> {
    if is_ours(dir) {
        std::fs::remove_dir_all(dir).map_err(at(dir))?;
    }
    Ok(())
}

fn mirror(target: &Path, artifact: &Artifact) -> Result<(), ResultsError> {
    let marker = format!("{}\n", artifact.manifest.key);
    if std::fs::read_to_string(target.join(MARKER)).is_ok_and(|m| m == marker) {
        return Ok(()); // already shows this artifact
    }
    if target.exists() && !is_ours(target) {
        tracing::warn!(
            "not touching {}: it exists and was not made by pipe",
            target.display()
        );
        return Ok(());
    }
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(at(parent))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(at(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(at(&tmp))?;
    let out = artifact.out();
    let entries: Vec<PathBuf> = if artifact.manifest.results.is_empty() {
        std::fs::read_dir(&out)
            .map_err(at(&out))?
            .flatten()
            .map(|e| PathBuf::from(e.file_name()))
            .collect()
    } else {
        artifact
            .manifest
            .results
            .iter()
            .map(PathBuf::from)
            .collect()
    };
    for rel in entries {
        place(
            &out.join(&rel),
            &tmp.join(&rel),
            target.join(&rel).as_path(),
        )?;
    }
    std::fs::write(tmp.join(MARKER), marker).map_err(at(&tmp))?;
    if target.exists() {
        std::fs::remove_dir_all(target).map_err(at(target))?;
    }
    std::fs::rename(&tmp, target).map_err(at(target))?;
    tracing::debug!("results/{name} now shows {}", short(&artifact.manifest.key));
    Ok(())
}

/// Show `src` at `dst`: a directory or a file too large to copy as a relative link into the
/// cache (which keeps the real copy; a model folder then loads from `results/` as it is), a
/// small file as a copy. `final_path` is where `dst` will live after the folder is renamed into
/// place (for relative links).
fn place(src: &Path, dst: &Path, final_path: &Path) -> Result<(), ResultsError> {
    let meta = std::fs::metadata(src).map_err(at(src))?;
    if let Some(p) = dst.parent() {
        std::fs::create_dir_all(p).map_err(at(p))?;
    }
    if meta.is_dir() || meta.len() > COPY_LIMIT {
        let link = relative(src, final_path.parent().unwrap_or(Path::new(".")));
        std::os::unix::fs::symlink(link, dst).map_err(at(dst))?;
    } else {
        std::fs::copy(src, dst).map_err(at(dst))?;
        // The copy is the user's: writable, unlike the cache object.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o644)).map_err(at(dst))?;
    }
    Ok(())
}

/// `target` expressed relative to directory `from` (both absolute).
fn relative(target: &Path, from: &Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let f: Vec<_> = from.components().collect();
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    rel
}
