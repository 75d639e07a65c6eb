//! Captions → token ids with the model's own `tokenizer.json` (for BLIP, bert-base-uncased's
//! WordPiece plus `[DEC]`), framed the way BLIP trains and generates: `[DEC]` (the config's
//! `bos_token_id`, in place of the tokenizer's leading `[CLS]`) + prompt + caption + `[SEP]`,
//! truncated to `max_length` tokens in all. Labels equal the ids except -100 on the `[DEC]`,
//! on the prompt and on padding (the model shifts them by one position itself).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::config::SpecialTokens;
use super::error::CollateError;

/// The label value the loss ignores.
pub const IGNORE_INDEX: i64 = -100;

/// One caption's ids, unpadded: `[bos, prompt.., caption.., sep]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizedCaption {
    pub text: String,
    pub ids: Vec<u32>,
    /// How many leading ids (the bos and the prompt) are excluded from the loss.
    pub prompt_len: usize,
}

impl TokenizedCaption {
    /// Labels aligned with `ids`: the ids, -100 on the first `prompt_len` positions.
    pub fn labels(&self) -> Vec<i64> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                if i < self.prompt_len {
                    IGNORE_INDEX
                } else {
                    i64::from(id)
                }
            })
            .collect()
    }
}

/// A padded batch, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub labels: Vec<i64>,
}

/// Pad captions to the longest of them (or to `pad_to` when longer): `pad` ids, mask 0 and
/// label -100 on padding.
pub fn pad_batch(captions: &[&TokenizedCaption], pad: u32, pad_to: Option<usize>) -> Batch {
    let longest = captions.iter().map(|c| c.ids.len()).max().unwrap_or(0);
    let seq_len = pad_to.map_or(longest, |p| p.max(longest));
    let n = captions.len() * seq_len;
    let mut b = Batch {
        batch: captions.len(),
        seq_len,
        input_ids: vec![i64::from(pad); n],
        attention_mask: vec![0; n],
        labels: vec![IGNORE_INDEX; n],
    };
    for (row, c) in captions.iter().enumerate() {
        let at = row * seq_len;
        for (i, (&id, label)) in c.ids.iter().zip(c.labels()).enumerate() {
            b.input_ids[at + i] = i64::from(id);
            b.attention_mask[at + i] = 1;
            b.labels[at + i] = label;
        }
    }
    b
}

/// The model's tokenizer, framing and truncation.
pub struct CaptionTokenizer {
    tokenizer: Tokenizer,
    special: SpecialTokens,
    max_length: usize,
    prompt: String,
    prompt_ids: usize,
}

impl CaptionTokenizer {
    /// Load `tokenizer.json` and `config.json` from a model directory.
    pub fn from_model_dir(
        dir: &Path,
        max_length: usize,
        prompt: &str,
    ) -> Result<Self, CollateError> {
        let special = SpecialTokens::from_config(&dir.join("config.json"))?;
        Self::new(&dir.join("tokenizer.json"), special, max_length, prompt)
    }

    pub fn new(
        tokenizer_json: &Path,
        special: SpecialTokens,
        max_length: usize,
        prompt: &str,
    ) -> Result<Self, CollateError> {
        let mut tokenizer =
            Tokenizer::from_file(tokenizer_json).map_err(|e| CollateError::Tokenizer {
                path: tokenizer_json.to_path_buf(),
                message: e.to_string(),
            })?;
        // Framing, truncation and padding are ours, whatever the file says.
        tokenizer
            .with_truncation(None)
            .map_err(|e| CollateError::Tokenizer {
                path: tokenizer_json.to_path_buf(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let mut me = Self {
            tokenizer,
            special,
            max_length,
            prompt: prompt.to_string(),
            prompt_ids: 0,
        };
        me.prompt_ids = if prompt.is_empty() {
            0
        } else {
            me.body(prompt)?.len()
        };
        if 1 + me.prompt_ids + 1 >= max_length {
            return Err(CollateError::Tokenizer {
                path: tokenizer_json.to_path_buf(),
                message: format!(
                    "the prompt {prompt:?} takes {} tokens, leaving no room for a caption within max_length {max_length}",
                    me.prompt_ids
                ),
            });
        }
        Ok(me)
    }

    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    /// Ids of the bos and the prompt, which carry label -100.
    pub fn prompt_len(&self) -> usize {
        1 + self.prompt_ids
    }

    /// Ids without any special token.
    fn body(&self, text: &str) -> Result<Vec<u32>, CollateError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| CollateError::Encode {
                text: text.to_string(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// `[bos] + ids(prompt + caption)[..max_length - 2] + [sep]`, as
    /// `tokenizer(prompt + caption, truncation=True, max_length=...)` with `[CLS]` → bos.
    pub fn encode(&self, caption: &str) -> Result<TokenizedCaption, CollateError> {
        let text = format!("{}{}", self.prompt, caption);
        let mut body = self.body(&text)?;
        body.truncate(self.max_length.saturating_sub(2));
        let mut ids = Vec::with_capacity(body.len() + 2);
        ids.push(self.special.bos);
        ids.extend(body);
        ids.push(self.special.sep);
        Ok(TokenizedCaption {
            text: caption.to_string(),
            ids,
            prompt_len: self.prompt_len(),
        })
    }

    /// Whether `encode` would cut this caption.
    pub fn truncates(&self, caption: &str) -> Result<bool, CollateError> {
        Ok(self.body(&format!("{}{}", self.prompt, caption))?.len()
            > self.max_length.saturating_sub(2))
    }

    /// Ids back to text (special tokens dropped), for galleries and checks.
    pub fn decode(&self, ids: &[u32]) -> Result<String, CollateError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| CollateError::Encode {
                text: format!("{ids:?}"),
                message: e.to_string(),
            })
    }
}
