//! The train stage's parameters (its table in pipeline.toml), with defaults and validation.

use pipe_stage_api::{DeviceCount, ParamError, parse_params};
use serde::{Deserialize, Serialize};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Low-rank adapters on the targeted Linear layers; the base model stays frozen.
    Lora,
    /// Every parameter (except the vision encoder's when `freeze_vision`).
    Full,
}

/// Learning-rate decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

/// `[stages.train.lora]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraParams {
    /// Rank of A·B.
    pub r: usize,
    /// Scale is alpha / r.
    pub alpha: f64,
    /// PEFT's lora_dropout (recorded in adapter_config.json; see the crate notes).
    pub dropout: f64,
    /// HF-style module names: a Linear is targeted when its name equals a target or ends with
    /// `.target` (PEFT's list semantics).
    pub targets: Vec<String>,
}

impl Default for LoraParams {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: vec!["query".into(), "value".into()],
        }
    }
}

/// The train stage's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// A checkpoint directory (relative to pipeline.toml) or Hub id in the local HF cache, or
    /// `"scratch"`: random initialisation from `config`.
    pub model: String,
    /// With `model = "scratch"`: a directory holding config.json, tokenizer.json and
    /// preprocessor_config.json.
    #[serde(default)]
    pub config: Option<String>,
    /// The collate dep's name when the stage has several deps.
    #[serde(default)]
    pub collate: Option<String>,
    /// The encode dep's name, when several deps hold vision features (one is found by itself).
    #[serde(default)]
    pub encode: Option<String>,
    #[serde(default = "default_method")]
    pub method: Method,
    #[serde(default = "default_true")]
    pub freeze_vision: bool,
    #[serde(default)]
    pub lora: LoraParams,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Images per micro-batch; each brings all its captions.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "default_one")]
    pub grad_accum: usize,
    /// Warmup as a fraction of all optimizer steps (0 ≤ warmup < 1).
    #[serde(default = "default_warmup")]
    pub warmup: f64,
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    /// Epochs without a val-loss improvement of at least `min_delta` before stopping.
    #[serde(default = "default_patience")]
    pub patience: usize,
    #[serde(default)]
    pub min_delta: f64,
    #[serde(default)]
    pub label_smoothing: f64,
    /// Global gradient-norm clipping; 0 disables it.
    #[serde(default = "default_one_f")]
    pub max_grad_norm: f64,
    /// Stop after this many optimizer steps in all (the schedule then spans them).
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Also take the validation loss every N optimizer steps (besides each epoch's end).
    #[serde(default)]
    pub val_every_steps: Option<usize>,
    /// Data-parallel peers: each micro-batch's images are split among them and their
    /// gradients all-reduced. A number, or `"all"` (every device the pool gives; on the CPU,
    /// where peers share the one device, 1). Part of the key: the gradients' sums are taken
    /// in another order, so the trained bytes differ in the last bits.
    #[serde(default)]
    pub devices: DeviceCount,
}

fn default_method() -> Method {
    Method::Lora
}
fn default_true() -> bool {
    true
}
fn default_lr() -> f64 {
    1e-4
}
fn default_wd() -> f64 {
    0.01
}
fn default_epochs() -> usize {
    5
}
fn default_batch_size() -> usize {
    4
}
fn default_one() -> usize {
    1
}
fn default_one_f() -> f64 {
    1.0
}
fn default_warmup() -> f64 {
    0.05
}
fn default_schedule() -> Schedule {
    Schedule::Cosine
}
fn default_patience() -> usize {
    2
}

pub use pipe_blip::SCRATCH;

impl TrainParams {
    /// Parse and validate a stage table.
    pub fn parse(table: &toml::Table) -> Result<Self, ParamError> {
        let p: TrainParams = parse_params(table)?;
        p.validate()?;
        Ok(p)
    }

    pub fn is_scratch(&self) -> bool {
        self.model == SCRATCH
    }

    fn validate(&self) -> Result<(), ParamError> {
        let err = |k: &[&str], m: String| Err(ParamError::new(k.iter().copied(), m));
        if self.is_scratch() && self.config.is_none() {
            return err(
                &["config"],
                "model = \"scratch\" needs `config = DIR` (config.json, tokenizer.json, preprocessor_config.json)".into(),
            );
        }
        if !self.is_scratch() && self.config.is_some() {
            return err(
                &["config"],
                "`config` is only used with model = \"scratch\"".into(),
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return err(&["lr"], format!("lr must be positive, got {}", self.lr));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return err(&["weight_decay"], "weight_decay must be ≥ 0".into());
        }
        for (k, v) in [
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
        ] {
            if v == 0 {
                return err(&[k], format!("{k} must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return err(
                &["warmup"],
                format!("warmup is a fraction in [0, 1), got {}", self.warmup),
            );
        }
        if self.min_delta.is_nan() || self.min_delta < 0.0 {
            return err(&["min_delta"], "min_delta must be ≥ 0".into());
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return err(
                &["label_smoothing"],
                "label_smoothing must be in [0, 1)".into(),
            );
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            return err(&["max_grad_norm"], "max_grad_norm must be ≥ 0".into());
        }
        if self.devices == DeviceCount::Count(0) {
            return err(
                &["devices"],
                "devices must be at least 1 (or \"all\")".into(),
            );
        }
        if self.max_steps == Some(0) {
            return err(&["max_steps"], "max_steps must be at least 1".into());
        }
        if self.val_every_steps == Some(0) {
            return err(
                &["val_every_steps"],
                "val_every_steps must be at least 1".into(),
            );
        }
        if self.method == Method::Lora {
            if self.lora.r == 0 {
                return err(&["lora", "r"], "r must be at least 1".into());
            }
            if self.lora.alpha.is_nan() || self.lora.alpha <= 0.0 {
                return err(&["lora", "alpha"], "alpha must be positive".into());
            }
            if !(0.0..1.0).contains(&self.lora.dropout) {
                return err(&["lora", "dropout"], "dropout must be in [0, 1)".into());
            }
            if self.lora.targets.is_empty() {
                return err(
                    &["lora", "targets"],
                    "targets must name at least one module".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TrainParams, ParamError> {
        TrainParams::parse(&toml::from_str(s).expect("toml"))
    }

    /// `pipe kinds train` prints the defaults: pasted back, they parse to what no key gives.
    #[test]
    fn the_kinds_template_holds_the_defaults() {
        use pipe_stage_api::StageKind;
        let text = crate::Train.template().expect("a template");
        let table: toml::Table = toml::from_str(&text).expect("TOML");
        assert_eq!(
            TrainParams::parse(&table).expect("parses"),
            parse("model = 'MODEL'").expect("defaults")
        );
        for optional in [
            "config",
            "collate",
            "encode",
            "max_steps",
            "val_every_steps",
        ] {
            assert!(
                text.contains(&format!("\n# {optional} ")),
                "{optional}:\n{text}"
            );
        }
    }

    #[test]
    fn defaults() {
        let p = parse("model = 'm'").expect("parses");
        assert_eq!(p.method, Method::Lora);
        assert_eq!(p.lora, LoraParams::default());
        assert!(p.freeze_vision);
        assert_eq!(
            (p.epochs, p.batch_size, p.grad_accum, p.patience),
            (5, 4, 1, 2)
        );
    }

    #[test]
    fn errors_are_located() {
        assert_eq!(
            parse("model = 'scratch'").expect_err("no config").path,
            ["config"]
        );
        assert_eq!(parse("model = 'm'\nlr = 0").expect_err("lr").path, ["lr"]);
        assert_eq!(
            parse("model = 'm'\n[lora]\nr = 0").expect_err("r").path,
            ["lora", "r"]
        );
        assert_eq!(
            parse("model = 'm'\nlrr = 1").expect_err("unknown").path,
            ["lrr"]
        );
        let e = parse("model = 'm'\ndevices = 0").expect_err("no peers");
        assert_eq!(e.path, ["devices"]);
        assert!(e.message.contains("at least 1"), "{}", e.message);
        let e = parse("model = 'm'\ndevices = 'some'").expect_err("a word");
        assert_eq!(e.path, ["devices"]);
        assert!(e.message.contains("\"all\""), "{}", e.message);
        let e = parse("model = 'm'\ndevices = -2").expect_err("negative");
        assert_eq!(e.path, ["devices"]);
    }

    #[test]
    fn devices_is_a_count_or_all() {
        assert_eq!(
            parse("model = 'm'").expect("default").devices,
            DeviceCount::Count(1)
        );
        assert_eq!(
            parse("model = 'm'\ndevices = 2").expect("two").devices,
            DeviceCount::Count(2)
        );
        assert_eq!(
            parse("model = 'm'\ndevices = 'all'").expect("all").devices,
            DeviceCount::All
        );
    }
}
