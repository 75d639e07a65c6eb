//! `gc` (delete what no root names) and `verify` (re-hash, evict what no longer matches).

use std::collections::BTreeSet;

use super::{Cache, CacheError, io_at, remove_tree};
use crate::hash::hash_tree_uncached;

#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// (key, bytes) of artifacts removed (or that would be, with dry-run).
    pub removed: Vec<(String, u64)>,
    pub kept: usize,
    pub work_dirs_removed: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct VerifyProblem {
    pub key: String,
    pub stage: String,
    pub problem: String,
}

impl Cache {
    /// Delete every artifact and work dir whose key is not in `roots`.
    pub fn gc(&self, roots: &BTreeSet<String>, dry_run: bool) -> Result<GcReport, CacheError> {
        let _lock = self.meta_lock()?;
        let mut report = GcReport::default();
        for key in self.keys()? {
            if roots.contains(&key) {
                report.kept += 1;
                continue;
            }
            let bytes = self.artifact(&key).map_or(0, |a| a.manifest.bytes);
            if !dry_run {
                self.evict(&key)?;
            }
            report.removed.push((key, bytes));
        }
        let work = self.root.join("work");
        for item in std::fs::read_dir(&work).map_err(io_at(&work))?.flatten() {
            let key = item.file_name().to_string_lossy().into_owned();
            if roots.contains(&key) {
                continue;
            }
            // A work dir in use has its execution lock held: leave it alone.
            let lock = self.root.join("locks").join(format!("{key}.lock"));
            if is_locked(&lock) {
                continue;
            }
            if !dry_run {
                remove_tree(&item.path()).map_err(io_at(&item.path()))?;
            }
            report.work_dirs_removed += 1;
        }
        if !dry_run {
            self.clean_dead_scratch();
        }
        Ok(report)
    }

    /// Re-hash every artifact; evict (unless `dry_run`) those whose bytes or key no longer match.
    pub fn verify(&self, dry_run: bool) -> Result<(usize, Vec<VerifyProblem>), CacheError> {
        let mut problems = Vec::new();
        let keys = self.keys()?;
        for key in &keys {
            let problem = match self.artifact(key) {
                None => Some((
                    String::new(),
                    "incomplete or unreadable manifest".to_string(),
                )),
                Some(a) => {
                    let stage = a.manifest.stage.clone();
                    match hash_tree_uncached(&a.out()) {
                        Err(e) => Some((stage, format!("cannot re-hash: {e}"))),
                        Ok(tree) if tree.digest != a.manifest.content => Some((
                            stage,
                            "content changed since it was written (corrupt or edited)".to_string(),
                        )),
                        Ok(_) => match self.preimage(key) {
                            Some(p) if p.key() == *key => None,
                            _ => Some((
                                stage,
                                "pre-image missing or does not hash to the key".to_string(),
                            )),
                        },
                    }
                }
            };
            if let Some((stage, problem)) = problem {
                if !dry_run {
                    self.evict(key)?;
                }
                problems.push(VerifyProblem {
                    key: key.clone(),
                    stage,
                    problem,
                });
            }
        }
        Ok((keys.len(), problems))
    }
}

fn is_locked(path: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::options().read(true).write(true).open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}
