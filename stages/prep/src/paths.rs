//! Image paths as datasets write them, checked so none reaches outside the dataset root: no
//! absolute paths, no `..`, no symbolic link that resolves elsewhere.

use std::path::{Component, Path, PathBuf};

/// Normalise a dataset-relative path to `/`-separated components without `.`; refuse absolute
/// paths and `..`.
pub(crate) fn normalize_rel(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("empty image path".to_string());
    }
    let unified = raw.replace('\\', "/");
    let path = Path::new(&unified);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("path escapes the dataset root (`..`)".to_string()),
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "absolute path not allowed: image paths are relative to the dataset root"
                        .to_string(),
                );
            }
        }
    }
    if parts.is_empty() {
        return Err("empty image path".to_string());
    }
    Ok(parts.join("/"))
}

/// The images root, canonicalised once so each image can be checked against it.
#[derive(Debug, Clone)]
pub(crate) struct DatasetRoot {
    root: PathBuf,
    canonical: PathBuf,
}

impl DatasetRoot {
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: root.to_path_buf(),
            canonical: root.canonicalize()?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The file of a normalised id, or why it cannot be used.
    pub fn resolve(&self, id: &str) -> Result<PathBuf, String> {
        let full = self.root.join(id);
        let canonical = match full.canonicalize() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("image file missing".to_string());
            }
            Err(e) => return Err(format!("unreadable: {e}")),
        };
        if !canonical.starts_with(&self.canonical) {
            return Err(format!(
                "path escapes the dataset root (it resolves to {} through a symbolic link)",
                canonical.display()
            ));
        }
        if !canonical.is_file() {
            return Err("not a regular file".to_string());
        }
        Ok(canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_or_are_refused() {
        assert_eq!(normalize_rel("./a/b.jpg").as_deref(), Ok("a/b.jpg"));
        assert_eq!(normalize_rel("a\\b.jpg").as_deref(), Ok("a/b.jpg"));
        assert!(normalize_rel("../x.jpg").unwrap_err().contains(".."));
        assert!(normalize_rel("a/../../x.jpg").is_err());
        assert!(
            normalize_rel("/etc/passwd")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(normalize_rel("  ").is_err());
    }
}
