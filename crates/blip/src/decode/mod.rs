//! Caption decoding with transformers' `generate()` semantics (5.x): greedy search when
//! `num_beams == 1`, beam search otherwise, and the logits processors the options switch on.
//!
//! The model work (one decoder step for all rows) runs on the backend; the bookkeeping (token
//! histories, penalties, top-k over beams × vocabulary) runs on the host over one `[R, V]` block
//! of scores per step.

pub mod beam;
pub mod greedy;
pub mod sample;

pub use sample::Sampling;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::text::{CrossKv, KvCache, TextDecoder};

/// Decoding options, named and defaulted as transformers' `GenerationConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// 1: greedy search; more: beam search.
    pub num_beams: usize,
    /// Tokens generated after the prompt at most (the `[SEP]` included).
    pub max_new_tokens: usize,
    /// `[SEP]` is forbidden until this many tokens have been generated.
    pub min_new_tokens: usize,
    /// Finished beams score `sum log p / generated_len ^ length_penalty`.
    pub length_penalty: f32,
    /// An n-gram of this size may occur once per sequence (0: off).
    pub no_repeat_ngram_size: usize,
    /// Scores of tokens already in the sequence are divided (if positive) or multiplied (if
    /// negative) by this (1.0: off).
    pub repetition_penalty: f32,
    /// When beam search stops (transformers' `early_stopping`: false, true or "never").
    pub early_stopping: EarlyStopping,
    /// Token ids after `[DEC]` that every caption starts with (e.g. "a picture of"); they are
    /// part of the returned tokens, as in transformers.
    pub prompt_ids: Vec<u32>,
    /// Draw each token (`do_sample`) instead of taking the most likely one; greedy only.
    pub sampling: Option<Sampling>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            num_beams: 1,
            max_new_tokens: 20,
            min_new_tokens: 0,
            length_penalty: 1.0,
            no_repeat_ngram_size: 0,
            repetition_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            prompt_ids: Vec::new(),
            sampling: None,
        }
    }
}

/// The decoding options a user sets, under the same names everywhere: the `infer` and
/// `evaluate` stage tables of pipeline.toml (keys at the top of the table), `pipe caption` and
/// `pipe serve`. [`GenerationConfig`] less the prompt, whose ids come from the tokenizer.
///
/// Defaults: 3 beams and 20 new tokens (what BLIP's authors evaluate with), otherwise
/// transformers' (`pipe serve` answers greedily by default: it sets `num_beams = 1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeParams {
    /// 1: greedy search; more: beam search.
    pub num_beams: usize,
    /// Tokens generated after the prompt at most (the `[SEP]` included).
    pub max_new_tokens: usize,
    /// `[SEP]` is forbidden until this many tokens have been generated.
    pub min_new_tokens: usize,
    /// Finished beams score `sum log p / generated_len ^ length_penalty`.
    pub length_penalty: f32,
    /// An n-gram of this size may occur once per sequence (0: off).
    pub no_repeat_ngram_size: usize,
    /// Scores of tokens already in the sequence are divided (if positive) or multiplied (if
    /// negative) by this (1.0: off).
    pub repetition_penalty: f32,
    /// When beam search stops (`false`, `true` or `"never"`).
    pub early_stopping: EarlyStopping,
    /// Draw each token from the model's distribution instead of taking the most likely one
    /// (greedy only: `num_beams = 1`), shaped by `temperature`, `top_k` and `top_p`, from
    /// `seed`.
    pub do_sample: bool,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
}

impl Default for DecodeParams {
    fn default() -> Self {
        let g = GenerationConfig::default();
        let s = Sampling::default();
        Self {
            num_beams: 3,
            max_new_tokens: g.max_new_tokens,
            min_new_tokens: g.min_new_tokens,
            length_penalty: g.length_penalty,
            no_repeat_ngram_size: g.no_repeat_ngram_size,
            repetition_penalty: g.repetition_penalty,
            early_stopping: g.early_stopping,
            do_sample: false,
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            seed: s.seed,
        }
    }
}

/// A decoding option that cannot work, and the key that set it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeParamError {
    /// The option at fault (`num_beams`, `max_new_tokens`, ...).
    pub key: &'static str,
    pub message: String,
}

impl DecodeParams {
    /// The generation settings, without a prompt.
    pub fn generation(&self) -> GenerationConfig {
        GenerationConfig {
            num_beams: self.num_beams,
            max_new_tokens: self.max_new_tokens,
            min_new_tokens: self.min_new_tokens,
            length_penalty: self.length_penalty,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            repetition_penalty: self.repetition_penalty,
            early_stopping: self.early_stopping,
            prompt_ids: Vec::new(),
            sampling: self.do_sample.then_some(Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            }),
        }
    }

    /// Check what can be checked without the model (its positions and vocabulary are checked
    /// by [`GenerationConfig::validate`] once it is loaded); the error names the key.
    pub fn check(&self) -> Result<(), DecodeParamError> {
        use GenerationError as G;
        self.generation()
            .validate(MAX_NEW_TOKENS, usize::MAX)
            .map_err(|e| DecodeParamError {
                key: match e {
                    G::NoBeams | G::TooManyBeams { .. } => "num_beams",
                    G::NoTokens | G::TooLong { .. } => "max_new_tokens",
                    G::PromptToken { .. } => "prompt",
                    G::MinAboveMax { .. } => "min_new_tokens",
                    G::Penalty(_) => "repetition_penalty",
                    G::BeamSampling => "do_sample",
                    G::Sampling { key, .. } => key,
                },
                message: e.to_string(),
            })?;
        if !self.length_penalty.is_finite() {
            return Err(DecodeParamError {
                key: "length_penalty",
                message: "must be a finite number".to_string(),
            });
        }
        Ok(())
    }
}

/// transformers' `early_stopping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "EarlyStoppingRepr", into = "EarlyStoppingRepr")]
pub enum EarlyStopping {
    /// `False`: stop when the best running beam, scored at its current length, cannot beat
    /// the worst finished one.
    #[default]
    Heuristic,
    /// `True`: stop as soon as `num_beams` hypotheses are finished.
    Done,
    /// `"never"`: the canonical beam search; with a positive length penalty the best running
    /// beam is scored at the maximum length.
    Never,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum EarlyStoppingRepr {
    Flag(bool),
    Word(NeverWord),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum NeverWord {
    Never,
}

impl From<EarlyStoppingRepr> for EarlyStopping {
    fn from(r: EarlyStoppingRepr) -> Self {
        match r {
            EarlyStoppingRepr::Flag(false) => EarlyStopping::Heuristic,
            EarlyStoppingRepr::Flag(true) => EarlyStopping::Done,
            EarlyStoppingRepr::Word(NeverWord::Never) => EarlyStopping::Never,
        }
    }
}

impl From<EarlyStopping> for EarlyStoppingRepr {
    fn from(e: EarlyStopping) -> Self {
        match e {
            EarlyStopping::Heuristic => EarlyStoppingRepr::Flag(false),
            EarlyStopping::Done => EarlyStoppingRepr::Flag(true),
            EarlyStopping::Never => EarlyStoppingRepr::Word(NeverWord::Never),
        }
    }
}

/// The most beams decoding accepts: memory grows with beams × batch × vocabulary, and
/// captioning gains nothing past a few (transformers' BLIP default is 3).
pub const MAX_BEAMS: usize = 64;

/// The most tokens a caption may have: BLIP's text decoder has 512 positions.
pub const MAX_NEW_TOKENS: usize = 512;

/// The largest batch (images per model call) a stage or command accepts.
pub const MAX_BATCH: usize = 1024;

/// A decoding option that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerationError {
    #[error("num_beams must be at least 1")]
    NoBeams,
    #[error("num_beams {beams} is above the maximum of {max}")]
    TooManyBeams { beams: usize, max: usize },
    #[error("max_new_tokens must be at least 1")]
    NoTokens,
    #[error("min_new_tokens {min} exceeds max_new_tokens {max}")]
    MinAboveMax { min: usize, max: usize },
    #[error("repetition_penalty must be positive, got {0}")]
    Penalty(f32),
    #[error(
        "the prompt ({prompt} tokens with [DEC]) plus max_new_tokens {new} exceeds the decoder's \
         {max} positions"
    )]
    TooLong {
        prompt: usize,
        new: usize,
        max: usize,
    },
    #[error("prompt token id {id} is outside the vocabulary of {vocab}")]
    PromptToken { id: u32, vocab: usize },
    #[error("do_sample draws with greedy search only: set num_beams = 1")]
    BeamSampling,
    #[error("{key} {message}")]
    Sampling { key: &'static str, message: String },
}

impl GenerationConfig {
    /// Check the options against the decoder's limits.
    pub fn validate(&self, max_positions: usize, vocab: usize) -> Result<(), GenerationError> {
        if self.num_beams == 0 {
            return Err(GenerationError::NoBeams);
        }
        // Beams beyond the vocabulary could never all differ.
        let beams = MAX_BEAMS.min(vocab);
        if self.num_beams > beams {
            return Err(GenerationError::TooManyBeams {
                beams: self.num_beams,
                max: beams,
            });
        }
        if self.max_new_tokens == 0 {
            return Err(GenerationError::NoTokens);
        }
        if self.min_new_tokens > self.max_new_tokens {
            return Err(GenerationError::MinAboveMax {
                min: self.min_new_tokens,
                max: self.max_new_tokens,
            });
        }
        if self.repetition_penalty.is_nan() || self.repetition_penalty <= 0.0 {
            return Err(GenerationError::Penalty(self.repetition_penalty));
        }
        if let Some(&id) = self.prompt_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(GenerationError::PromptToken { id, vocab });
        }
        if let Some(s) = &self.sampling {
            if self.num_beams > 1 {
                return Err(GenerationError::BeamSampling);
            }
            if let Some((key, message)) = s.problem() {
                return Err(GenerationError::Sampling { key, message });
            }
        }
        let prompt = 1 + self.prompt_ids.len();
        // The last generated token is never fed back, so positions 0..prompt+new-1 are used.
        if prompt + self.max_new_tokens - 1 > max_positions {
            return Err(GenerationError::TooLong {
                prompt,
                new: self.max_new_tokens,
                max: max_positions,
            });
        }
        Ok(())
    }
}

/// Token ids decoding needs, from the model's text config.
#[derive(Debug, Clone, Copy)]
pub struct SpecialTokens {
    /// `[DEC]`, the first token of every caption.
    pub bos: u32,
    /// `[SEP]`, which ends a caption.
    pub eos: u32,
    /// `[PAD]`.
    pub pad: u32,
}

/// The logits processors of transformers that the options switch on, applied in transformers'
/// order to one row of scores (`[V]`) given that row's tokens so far.
pub(crate) struct Processors {
    repetition_penalty: f32,
    no_repeat_ngram_size: usize,
    min_new_tokens: usize,
    prompt_len: usize,
    eos: u32,
}

impl Processors {
    pub(crate) fn new(g: &GenerationConfig, prompt_len: usize, eos: u32) -> Self {
        Self {
            repetition_penalty: g.repetition_penalty,
            no_repeat_ngram_size: g.no_repeat_ngram_size,
            min_new_tokens: g.min_new_tokens,
            prompt_len,
            eos,
        }
    }

    pub(crate) fn apply(&self, tokens: &[u32], scores: &mut [f32]) {
        // RepetitionPenaltyLogitsProcessor: every token present (prompt included), once.
        if self.repetition_penalty != 1.0 {
            let mut seen = tokens.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                let s = &mut scores[t as usize];
                *s = if *s < 0.0 {
                    *s * self.repetition_penalty
                } else {
                    *s / self.repetition_penalty
                };
            }
        }
        // NoRepeatNGramLogitsProcessor: ban the token that would complete an n-gram already seen.
        let n = self.no_repeat_ngram_size;
        if n > 0 && tokens.len() >= n {
            let prefix = &tokens[tokens.len() + 1 - n..]; // the last n-1 tokens
            for window in tokens.windows(n) {
                if &window[..n - 1] == prefix {
                    scores[window[n - 1] as usize] = f32::NEG_INFINITY;
                }
            }
        }
        // MinNewTokensLengthLogitsProcessor: no [SEP] before min_new_tokens.
        if tokens.len() - self.prompt_len < self.min_new_tokens {
            scores[self.eos as usize] = f32::NEG_INFINITY;
        }
    }
}

/// Numerically stable log-softmax of one row, in f32 like `torch.log_softmax`.
pub(crate) fn log_softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    let log_sum = sum.ln();
    for x in row.iter_mut() {
        *x = *x - max - log_sum;
    }
}

/// One decoder call: feed `tokens` (`R` rows of `T` new tokens each, row-major) and return the
/// logits at each row's last position as a host block `[R × V]`.
pub(crate) fn step_logits<B: Backend>(
    decoder: &TextDecoder<B>,
    cross: &[CrossKv<B>],
    rows_per_image: usize,
    cache: &mut KvCache<B>,
    tokens: Vec<u32>,
    rows: usize,
    device: &B::Device,
) -> Result<Vec<f32>, DecodeError> {
    let t = tokens.len() / rows;
    let ids: Vec<i64> = tokens.into_iter().map(i64::from).collect();
    let input =
        Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows * t]), device).reshape([rows, t]);
    let hidden = decoder.forward(input, cross, rows_per_image, cache, None); // [R, T, D]
    let last = hidden.narrow(1, t - 1, 1); // [R, 1, D]: only the next token is needed
    let logits = decoder.logits(last); // [R, 1, V]
    logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| DecodeError::Readback(format!("{e:?}")))
}

/// A failure while decoding on the backend.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Options(#[from] GenerationError),
    #[error("cannot read the logits back from the device: {0}")]
    Readback(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bounded_before_anything_is_allocated() {
        // Before: num_beams = 100000000 aborted a run on a 2.4 GB allocation.
        let check = |d: DecodeParams| d.check().map_err(|e| (e.key, e.message));
        let (key, message) = check(DecodeParams {
            num_beams: 100_000_000,
            ..DecodeParams::default()
        })
        .expect_err("too many beams");
        assert_eq!(key, "num_beams");
        assert!(message.contains("above the maximum of 64"), "{message}");
        let ok = DecodeParams {
            num_beams: MAX_BEAMS,
            max_new_tokens: MAX_NEW_TOKENS,
            ..DecodeParams::default()
        };
        assert_eq!(check(ok.clone()), Ok(()));
        let (key, _) = check(DecodeParams {
            max_new_tokens: 100_000,
            ..ok
        })
        .expect_err("too long");
        assert_eq!(key, "max_new_tokens");
        // With a model: no more beams than its vocabulary.
        let g = GenerationConfig {
            num_beams: 10,
            ..GenerationConfig::default()
        };
        assert_eq!(
            g.validate(512, 8),
            Err(GenerationError::TooManyBeams { beams: 10, max: 8 })
        );
    }

    #[test]
    fn decode_params_defaults_and_checks_name_their_key() {
        let d: DecodeParams = serde_json::from_str("{}").expect("all defaulted");
        assert_eq!(d, DecodeParams::default());
        assert_eq!((d.num_beams, d.max_new_tokens), (3, 20));
        let g = d.generation();
        assert_eq!(
            g,
            GenerationConfig {
                num_beams: 3,
                ..GenerationConfig::default()
            }
        );
        let key = |d: DecodeParams| d.check().expect_err("rejected").key;
        let base = DecodeParams::default;
        assert_eq!(
            key(DecodeParams {
                num_beams: 0,
                ..base()
            }),
            "num_beams"
        );
        assert_eq!(
            key(DecodeParams {
                max_new_tokens: 0,
                ..base()
            }),
            "max_new_tokens"
        );
        assert_eq!(
            key(DecodeParams {
                min_new_tokens: 21,
                ..base()
            }),
            "min_new_tokens"
        );
        assert_eq!(
            key(DecodeParams {
                repetition_penalty: 0.0,
                ..base()
            }),
            "repetition_penalty"
        );
        assert_eq!(
            key(DecodeParams {
                length_penalty: f32::NAN,
                ..base()
            }),
            "length_penalty"
        );
        let e = serde_json::from_str::<DecodeParams>(r#"{"num_beam": 2}"#).expect_err("typo");
        assert!(e.to_string().contains("unknown field `num_beam`"), "{e}");
    }

    fn procs(rep: f32, ngram: usize, min_new: usize) -> Processors {
        let g = GenerationConfig {
            repetition_penalty: rep,
            no_repeat_ngram_size: ngram,
            min_new_tokens: min_new,
            ..Default::default()
        };
        Processors::new(&g, 1, 4)
    }

    #[test]
    fn repetition_penalty_divides_positive_multiplies_negative() {
        let mut s = vec![2.0, -2.0, 2.0, 1.0, 0.0];
        procs(2.0, 0, 0).apply(&[0, 1, 1], &mut s);
        assert_eq!(s, vec![1.0, -4.0, 2.0, 1.0, 0.0]);
    }

    #[test]
    fn no_repeat_ngram_bans_completions() {
        // tokens 1 2 3 1 2 → bigram prefix [2]; trigram prefix [1, 2] → ban 3.
        let mut s = vec![0.0; 5];
        procs(1.0, 3, 0).apply(&[1, 2, 3, 1, 2], &mut s);
        assert_eq!(s[3], f32::NEG_INFINITY);
        assert!(s.iter().enumerate().all(|(i, &x)| i == 3 || x == 0.0));
        // unigram: every seen token is banned.
        let mut s = vec![0.0; 5];
        procs(1.0, 1, 0).apply(&[1, 2], &mut s);
        assert_eq!(s, vec![0.0, f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0, 0.0]);
    }

    #[test]
    fn min_new_tokens_bans_eos() {
        let mut s = vec![0.0; 5];
        procs(1.0, 0, 2).apply(&[0, 1], &mut s); // one new token so far
        assert_eq!(s[4], f32::NEG_INFINITY);
        let mut s = vec![0.0; 5];
        procs(1.0, 0, 2).apply(&[0, 1, 2], &mut s);
        assert_eq!(s[4], 0.0);
    }

    #[test]
    fn early_stopping_parses_like_transformers() {
        let parse = |s: &str| serde_json::from_str::<GenerationConfig>(s).map(|g| g.early_stopping);
        assert_eq!(
            parse(r#"{"early_stopping": false}"#).ok(),
            Some(EarlyStopping::Heuristic)
        );
        assert_eq!(
            parse(r#"{"early_stopping": true}"#).ok(),
            Some(EarlyStopping::Done)
        );
        assert_eq!(
            parse(r#"{"early_stopping": "never"}"#).ok(),
            Some(EarlyStopping::Never)
        );
        assert!(parse(r#"{"early_stopping": "sometimes"}"#).is_err());
    }

    #[test]
    fn validate_limits() {
        let g = GenerationConfig {
            max_new_tokens: 64,
            ..Default::default()
        };
        assert!(g.validate(64, 10).is_ok());
        let g = GenerationConfig {
            max_new_tokens: 66,
            ..Default::default()
        };
        assert!(matches!(
            g.validate(64, 10),
            Err(GenerationError::TooLong { .. })
        ));
        let g = GenerationConfig {
            min_new_tokens: 30,
            ..Default::default()
        };
        assert!(matches!(
            g.validate(64, 10),
            Err(GenerationError::MinAboveMax { .. })
        ));
    }
}
