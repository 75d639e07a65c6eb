//! `gc` (delete what no root names) and `verify` (re-hash, evict what no longer matches).

use std::collections::BTreeSet;

use super::lock::Taken;
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

#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Artifacts re-hashed.
    pub checked: usize,
    /// Those that did not match (evicted unless dry-run).
    pub problems: Vec<VerifyProblem>,
    /// (key, holder) of artifacts a run was producing at the time: neither checked nor touched.
    pub in_use: Vec<(String, String)>,
}

impl Cache {
    /// Delete every artifact and work dir whose key is not in `roots` and that no run is
    /// producing (its execution lock is free).
    pub fn gc(&self, roots: &BTreeSet<String>, dry_run: bool) -> Result<GcReport, CacheError> {
        let _lock = self.meta_lock()?;
        let mut report = GcReport::default();
        for key in self.keys()? {
            if roots.contains(&key) {
                report.kept += 1;
                continue;
            }
            // A run publishing this key right now holds its lock: leave it alone.
            let Taken::Mine(_key_lock) = self.try_exec_lock(&key, "gc")? else {
                report.kept += 1;
                continue;
            };
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
            let Taken::Mine(_key_lock) = self.try_exec_lock(&key, "gc")? else {
                continue;
            };
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

    /// Re-hash every artifact; evict (unless `dry_run`) those whose bytes or key no longer
    /// match. Each key is checked under its execution lock, so an artifact a run is replacing
    /// (`--force`) is never mistaken for a corrupt one: a key whose lock is held is skipped and
    /// reported as in use.
    pub fn verify(&self, dry_run: bool) -> Result<VerifyReport, CacheError> {
        let mut report = VerifyReport::default();
        for key in self.keys()? {
            let _key_lock = match self.try_exec_lock(&key, "verify")? {
                Taken::Mine(lock) => lock,
                Taken::Held(holder) => {
                    report.in_use.push((key, holder));
                    continue;
                }
            };
            report.checked += 1;
            if let Some((stage, problem)) = self.check(&key) {
                if !dry_run {
                    self.evict(&key)?;
                }
                report.problems.push(VerifyProblem {
                    key,
                    stage,
                    problem,
                });
            }
        }
        Ok(report)
    }

    /// What is wrong with `key`'s artifact, if anything: (its stage, the problem).
    fn check(&self, key: &str) -> Option<(String, String)> {
        let Some(a) = self.artifact(key) else {
            return Some((
                String::new(),
                "incomplete or unreadable manifest".to_string(),
            ));
        };
        let stage = a.manifest.stage.clone();
        let problem = match hash_tree_uncached(&a.out()) {
            Err(e) => format!("cannot re-hash: {e}"),
            Ok(tree) if tree.digest != a.manifest.content => {
                "content changed since it was written (corrupt or edited)".to_string()
            }
            Ok(_) => match self.preimage(key) {
                Some(p) if p.key() == *key => return None,
                _ => "pre-image missing or does not hash to the key".to_string(),
            },
        };
        Some((stage, problem))
    }
}
