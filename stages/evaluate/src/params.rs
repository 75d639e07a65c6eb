//! `[stages.<name>]` of kind `evaluate`: typed, defaulted and checked.

use std::path::PathBuf;

use pipe_blip::{DecodeParams, GenerationConfig};
use pipe_data::prep::Split;
use pipe_metrics::{MeteorMode, MeteorOptions, ScoreOptions};
use pipe_stage_api::{ParamError, parse_params_split};
use serde::{Deserialize, Serialize};

/// How METEOR is obtained (`meteor = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeteorParam {
    /// The official jar when Java and the jar are found, else the approximation
    /// (reported as `METEOR~approx`).
    #[default]
    Auto,
    /// The official jar or an error.
    Official,
    /// The native approximation.
    Approx,
    /// No METEOR.
    Skip,
}

impl MeteorParam {
    fn mode(self) -> MeteorMode {
        match self {
            MeteorParam::Auto => MeteorMode::Auto,
            MeteorParam::Official => MeteorMode::Official,
            MeteorParam::Approx => MeteorMode::Approximate,
            MeteorParam::Skip => MeteorMode::Skip,
        }
    }
}

/// The stage's parameters: these keys and the decoding options ([`DecodeParams`]), side by
/// side in the one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Which dep is the collate artifact (default: the only collate dep).
    pub collate: Option<String>,
    /// A model directory (relative to pipeline.toml) or Hub id; instead of a train dep.
    pub model: Option<String>,
    /// Which dep holds the model (`model/` or its top level) and its `loss_history.json`
    /// (default: the only train dep).
    pub train: Option<String>,
    /// Which dep is the prep artifact the references come from (default: the only prep dep,
    /// else the collate artifact's own copy of the captions).
    pub prep: Option<String>,
    /// Which dep is an encode artifact whose vision features stand in for the vision encoder
    /// (default: the only encode dep, if any). Used when they were computed
    /// by the evaluated model's vision encoder over this collate artifact; else ignored.
    pub encode: Option<String>,
    /// The split to evaluate: train, val or test.
    #[serde(default = "default_split")]
    pub split: String,
    /// Images per batch (the loss batch holds all their captions).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub meteor: MeteorParam,
    /// `meteor-1.5.jar` (relative to pipeline.toml); default: pycocoevalcap's, if installed.
    pub meteor_jar: Option<PathBuf>,
    /// `num_beams`, `max_new_tokens`, ...: the table's other keys.
    #[serde(skip)]
    pub decode: DecodeParams,
}

fn default_split() -> String {
    "test".to_string()
}
fn default_batch() -> usize {
    8
}

impl Params {
    /// Parse and check a parameter table; errors name the offending key.
    pub fn parse(table: &toml::Table) -> Result<Self, ParamError> {
        if let Some(v) = table.get("meteor") {
            let ok = v
                .as_str()
                .is_some_and(|s| ["auto", "official", "approx", "skip"].contains(&s));
            if !ok {
                return Err(ParamError::new(
                    ["meteor"],
                    format!("expected \"auto\", \"official\", \"approx\" or \"skip\", found {v}"),
                ));
            }
        }
        let (mut p, decode): (Params, DecodeParams) = parse_params_split(table)?;
        p.decode = decode;
        p.split()?;
        if p.batch_size == 0 || p.batch_size > pipe_blip::decode::MAX_BATCH {
            return Err(ParamError::new(
                ["batch_size"],
                format!("must be between 1 and {}", pipe_blip::decode::MAX_BATCH),
            ));
        }
        if p.model.is_some() && p.train.is_some() {
            return Err(ParamError::new(
                ["model"],
                "give either `model` (a directory) or `train` (a dep), not both",
            ));
        }
        if p.meteor_jar.is_some() && matches!(p.meteor, MeteorParam::Skip | MeteorParam::Approx) {
            return Err(ParamError::new(
                ["meteor_jar"],
                "is only used with meteor = \"auto\" or \"official\"",
            ));
        }
        for (key, name) in [
            ("collate", &p.collate),
            ("model", &p.model),
            ("train", &p.train),
            ("prep", &p.prep),
        ] {
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err(ParamError::new([key], "must not be empty"));
            }
        }
        p.decode
            .check()
            .map_err(|e| ParamError::new([e.key], e.message))?;
        Ok(p)
    }

    /// The split named by `split`.
    pub fn split(&self) -> Result<Split, ParamError> {
        Split::parse(&self.split).ok_or_else(|| {
            ParamError::new(
                ["split"],
                format!(
                    "unknown split `{}`; expected train, val or test",
                    self.split
                ),
            )
        })
    }

    /// The decoding options (without a prompt).
    pub fn generation(&self) -> GenerationConfig {
        self.decode.generation()
    }

    /// The scoring options, with `meteor_jar` resolved against pipeline.toml's directory.
    pub fn score_options(&self, pipeline_dir: &std::path::Path) -> ScoreOptions {
        ScoreOptions {
            meteor: MeteorOptions {
                jar: self.meteor_jar.as_ref().map(|j| pipeline_dir.join(j)),
                mode: self.meteor.mode(),
            },
            single_ref: true,
        }
    }

    /// The decoding settings as recorded in metrics.json.
    pub fn decoding_json(&self) -> serde_json::Value {
        let d = &self.decode;
        serde_json::json!({
            "num_beams": d.num_beams,
            "max_new_tokens": d.max_new_tokens,
            "min_new_tokens": d.min_new_tokens,
            "length_penalty": d.length_penalty,
            "no_repeat_ngram_size": d.no_repeat_ngram_size,
            "repetition_penalty": d.repetition_penalty,
            "early_stopping": d.early_stopping,
            "batch_size": self.batch_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ParamError {
        let t: toml::Table = toml::from_str(text).expect("toml");
        Params::parse(&t).expect_err("should be rejected")
    }

    #[test]
    fn defaults() {
        let p = Params::parse(&toml::Table::new()).expect("empty table is fine");
        assert_eq!(p.split().expect("split"), Split::Test);
        assert_eq!(
            (p.decode.num_beams, p.decode.max_new_tokens, p.batch_size),
            (3, 20, 8)
        );
        assert_eq!(p.meteor, MeteorParam::Auto);
    }

    #[test]
    fn errors_name_their_keys() {
        assert_eq!(err("num_beam = 3").path, ["num_beam"]);
        assert_eq!(err("split = \"dev2\"").path, ["split"]);
        assert_eq!(err("batch_size = 0").path, ["batch_size"]);
        assert_eq!(err("num_beams = 0").path, ["num_beams"]);
        assert_eq!(err("max_new_tokens = 0").path, ["max_new_tokens"]);
        assert_eq!(
            err("min_new_tokens = 9\nmax_new_tokens = 3").path,
            ["min_new_tokens"]
        );
        assert_eq!(err("repetition_penalty = 0.0").path, ["repetition_penalty"]);
        assert_eq!(err("model = \"m\"\ntrain = \"t\"").path, ["model"]);
        assert_eq!(err("collate = \"\"").path, ["collate"]);
        assert_eq!(
            err("meteor = \"skip\"\nmeteor_jar = \"x.jar\"").path,
            ["meteor_jar"]
        );
        let e = err("meteor = \"fast\"");
        assert_eq!(e.path, ["meteor"]);
        assert!(e.message.contains("fast"), "{}", e.message);
    }
}
