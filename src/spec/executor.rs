//! `[executor]`: where stages run (this machine, or Slurm jobs), and each stage's `executor`
//! and `resources`. None of it is part of a key: a stage run on Slurm has the key and bytes of
//! a local run.
//!
//! ```toml
//! [executor]
//! kind = "slurm"                      # or "local" (the default)
//! partition = "gpu"                   # account, qos: likewise passed to sbatch
//! sbatch_args = ["--constraint=a100"]
//! resubmit = 1                        # a preempted job or a failed node: submit again, N times
//!
//! [stages.train]
//! resources = { cpus = 8, mem = "32G", gpus = 1, time = "12:00:00" }
//! [stages.notify]
//! executor = "local"                  # stays on the submitting host
//! ```

use super::{Validator, did_you_mean};

/// Where a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

impl ExecutorKind {
    pub const NAMES: [&'static str; 2] = ["local", "slurm"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "local" => Some(Self::Local),
            "slurm" => Some(Self::Slurm),
            _ => None,
        }
    }
}

/// `[executor]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Executor {
    pub kind: ExecutorKind,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Passed to sbatch after pipe's own options.
    pub sbatch_args: Vec<String>,
    /// How many times a job that ended through no fault of the stage (preempted, node failure,
    /// boot failure) is submitted again.
    pub resubmit: u32,
}

/// A stage's `resources`: what its Slurm job asks for. Unset: the partition's defaults (and
/// one GPU for a stage that uses an accelerator backend that was asked for by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpus: Option<u32>,
    /// As sbatch's `--mem` takes it: a number of megabytes, or with a K/M/G/T suffix.
    pub mem: Option<String>,
    pub gpus: Option<u32>,
    /// As sbatch's `--time` takes it: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM:SS`.
    pub time: Option<String>,
}

/// `[pipeline] devices`: the accelerator devices stages of one run (or sweep) are spread over,
/// one stage per device at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Devices {
    /// Every device of the resolved backend (one slot on the CPU).
    #[default]
    Auto,
    /// These ordinals (`["cuda:0", "cuda:1"]` or `[0, 1]`).
    List(Vec<usize>),
}

const EXECUTOR_KEYS: &[&str] = &[
    "kind",
    "partition",
    "account",
    "qos",
    "sbatch_args",
    "resubmit",
];
const RESOURCE_KEYS: &[&str] = &["cpus", "mem", "gpus", "time"];
/// sbatch options pipe sets itself: a job must write where pipe reads and run what pipe says.
const OWN_SBATCH_OPTIONS: &[&str] = &[
    "--parsable",
    "--output",
    "-o",
    "--error",
    "-e",
    "--wrap",
    "--job-name",
    "-J",
    "--chdir",
    "-D",
    "--requeue",
];

impl Validator<'_> {
    pub(super) fn executor(&mut self, doc: &toml::Table) -> Executor {
        let mut executor = Executor::default();
        let Some(value) = doc.get("executor") else {
            return executor;
        };
        let Some(t) = value.as_table() else {
            self.report(
                &["executor"],
                "must be a table, e.g. `[executor]` with `kind = \"slurm\"`",
                None,
            );
            return executor;
        };
        self.unknown_keys(t, &["executor"], EXECUTOR_KEYS);
        if let Some(kind) = self.executor_kind(t, &["executor", "kind"]) {
            executor.kind = kind;
        }
        executor.partition = self.slurm_word(t, &["executor", "partition"]);
        executor.account = self.slurm_word(t, &["executor", "account"]);
        executor.qos = self.slurm_word(t, &["executor", "qos"]);
        executor.resubmit = self
            .whole(t, &["executor", "resubmit"], 0, 100)
            .unwrap_or(0);
        match t.get("sbatch_args") {
            None => {}
            Some(toml::Value::Array(items)) => {
                for item in items {
                    let Some(arg) = item.as_str() else {
                        self.report(
                            &["executor", "sbatch_args"],
                            "must be an array of strings, e.g. [\"--constraint=a100\"]",
                            None,
                        );
                        break;
                    };
                    let option = arg.split('=').next().unwrap_or(arg);
                    if OWN_SBATCH_OPTIONS.contains(&option) {
                        self.report(
                            &["executor", "sbatch_args"],
                            format!(
                                "`{arg}`: pipe sets {option} itself (each job writes its output \
                                 where pipe reads it and runs one stage)"
                            ),
                            None,
                        );
                    } else {
                        executor.sbatch_args.push(arg.to_string());
                    }
                }
            }
            Some(_) => self.report(
                &["executor", "sbatch_args"],
                "must be an array of strings, e.g. [\"--constraint=a100\"]",
                None,
            ),
        }
        executor
    }

    /// `[pipeline] devices = "auto" | ["cuda:0", "cuda:1", …] | [0, 1, …]`.
    pub(super) fn devices(&mut self, pipeline: &toml::Table) -> Devices {
        let at = ["pipeline", "devices"];
        let expected = "expected \"auto\" or a list of devices, e.g. [\"cuda:0\", \"cuda:1\"]";
        match pipeline.get("devices") {
            None => Devices::Auto,
            Some(toml::Value::String(s)) if s == "auto" => Devices::Auto,
            Some(toml::Value::Array(items)) if !items.is_empty() => {
                let mut list = Vec::new();
                for item in items {
                    let ordinal = match item {
                        toml::Value::Integer(i) => usize::try_from(*i).ok(),
                        toml::Value::String(s) => {
                            let n = s
                                .strip_prefix("cuda:")
                                .or_else(|| s.strip_prefix("wgpu:"))
                                .unwrap_or(s);
                            n.parse().ok()
                        }
                        _ => None,
                    };
                    match ordinal.filter(|o| *o < 1024) {
                        Some(o) if list.contains(&o) => {
                            self.report(&at, format!("device {o} is listed twice"), None);
                        }
                        Some(o) => list.push(o),
                        None => {
                            self.report(&at, format!("`{item}`: {expected}"), None);
                        }
                    }
                }
                Devices::List(list)
            }
            Some(other) => {
                self.report(&at, format!("`{other}`: {expected}"), None);
                Devices::Auto
            }
        }
    }

    /// A stage's `executor`: where it runs, whatever `[executor]` says.
    pub(super) fn stage_executor(
        &mut self,
        name: &str,
        table: &toml::Table,
    ) -> Option<ExecutorKind> {
        self.executor_kind(table, &["stages", name, "executor"])
    }

    fn executor_kind(&mut self, table: &toml::Table, at: &[&str]) -> Option<ExecutorKind> {
        let name = self.string(table, at)?;
        let kind = ExecutorKind::parse(&name);
        if kind.is_none() {
            let help = did_you_mean(&name, ExecutorKind::NAMES);
            self.report(
                at,
                format!("unknown executor `{name}`: expected \"local\" or \"slurm\""),
                help,
            );
        }
        kind
    }

    /// A stage's `resources = { cpus, mem, gpus, time }`.
    pub(super) fn resources(&mut self, name: &str, table: &toml::Table) -> Resources {
        let mut r = Resources::default();
        let Some(value) = table.get("resources") else {
            return r;
        };
        let at = ["stages", name, "resources"];
        let Some(t) = value.as_table() else {
            self.report(
                &at,
                "must be a table, e.g. resources = { cpus = 8, mem = \"32G\", gpus = 1, time = \"12:00:00\" }",
                None,
            );
            return r;
        };
        self.unknown_keys(t, &at, RESOURCE_KEYS);
        r.cpus = self.whole(t, &["stages", name, "resources", "cpus"], 1, 4096);
        r.gpus = self.whole(t, &["stages", name, "resources", "gpus"], 0, 64);
        r.mem = self.slurm_amount(
            t,
            &["stages", name, "resources", "mem"],
            memory_ok,
            "megabytes, or a number with K, M, G or T, e.g. \"32G\"",
        );
        r.time = self.slurm_amount(
            t,
            &["stages", name, "resources", "time"],
            time_ok,
            "minutes, or \"HH:MM:SS\", \"D-HH:MM:SS\" as sbatch --time takes it",
        );
        r
    }

    /// A whole number in `min..=max` at `at`.
    fn whole(&mut self, table: &toml::Table, at: &[&str], min: i64, max: i64) -> Option<u32> {
        let key = at.last().copied().unwrap_or_default();
        match table.get(key)? {
            toml::Value::Integer(i) if (min..=max).contains(i) => u32::try_from(*i).ok(),
            _ => {
                self.report(
                    at,
                    format!("expected a whole number from {min} to {max}"),
                    None,
                );
                None
            }
        }
    }

    /// A Slurm amount written as a string or a whole number, checked by `ok`.
    fn slurm_amount(
        &mut self,
        table: &toml::Table,
        at: &[&str],
        ok: fn(&str) -> bool,
        expected: &str,
    ) -> Option<String> {
        let key = at.last().copied().unwrap_or_default();
        let text = match table.get(key)? {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) if *i > 0 => i.to_string(),
            _ => String::new(),
        };
        if ok(&text) {
            return Some(text);
        }
        self.report(at, format!("expected {expected}"), None);
        None
    }

    /// A partition, account or QOS name: one word sbatch takes as it is.
    fn slurm_word(&mut self, table: &toml::Table, at: &[&str]) -> Option<String> {
        let word = self.string(table, at)?;
        let fine = !word.is_empty()
            && word.len() <= 128
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.,".contains(c));
        if fine {
            return Some(word);
        }
        self.report(
            at,
            "expected a Slurm name (letters, digits, `_`, `-`, `.`, `,`)",
            None,
        );
        None
    }
}

/// `1024`, `500M`, `32G`, `1T`.
fn memory_ok(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    (s.len() - digits.len()) <= 1
        && !digits.is_empty()
        && digits.len() <= 12
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.bytes().any(|b| b != b'0')
}

/// sbatch's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn time_ok(s: &str) -> bool {
    let number = |p: &str| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(number) && parts.len() <= 3 && parts.iter().all(|p| number(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_amounts_are_checked_as_sbatch_reads_them() {
        for good in ["1024", "500M", "32G", "1t"] {
            assert!(memory_ok(good), "{good}");
        }
        for bad in ["", "0", "32GB", "-1", "1.5G", "G"] {
            assert!(!memory_ok(bad), "{bad}");
        }
        for good in ["30", "10:00", "12:00:00", "2-00", "2-12:30", "1-00:00:00"] {
            assert!(time_ok(good), "{good}");
        }
        for bad in ["", "1h", "1:2:3:4", "-5", "1-", "a-1", "1 day"] {
            assert!(!time_ok(bad), "{bad}");
        }
    }
}
