//! The one-node Slurm cluster that `.ci/slurm-up.sh` brings up on this machine, for the Slurm
//! executor tests: whether it answers.

use std::process::Command;
use std::sync::OnceLock;

/// Whether a Slurm node answers (`sinfo` shows it idle, mixed or allocated). `false` with a
/// note on stderr when none does, unless `PIPE_REQUIRE_SLURM` is set (as CI sets it): then a
/// panic, so the tests cannot be skipped there.
pub fn cluster() -> bool {
    static UP: OnceLock<bool> = OnceLock::new();
    *UP.get_or_init(|| {
        let states = Command::new("sinfo")
            .args(["-h", "-o", "%t"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let up = states
            .lines()
            .any(|s| s.starts_with("idle") || s.starts_with("mix") || s.starts_with("alloc"));
        if !up && std::env::var_os("PIPE_REQUIRE_SLURM").is_some() {
            panic!("PIPE_REQUIRE_SLURM is set but no Slurm node answers (bash .ci/slurm-up.sh)");
        }
        if !up {
            eprintln!(
                "NOT RUN: the Slurm tests need a running Slurm (bash .ci/slurm-up.sh starts a \
                 one-node cluster); CI sets PIPE_REQUIRE_SLURM so they cannot be skipped there"
            );
        }
        up
    })
}

/// The state of job `id` (`RUNNING`, `CANCELLED`…), or `None` once Slurm forgot it.
pub fn job_state(id: &str) -> Option<String> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix("JobState="))
        .map(str::to_string)
}

/// The ids of the jobs named `name` that Slurm has queued or running.
pub fn jobs_named(name: &str) -> Vec<String> {
    Command::new("squeue")
        .args(["-h", "-n", name, "-o", "%i %T"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.ends_with("RUNNING"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
