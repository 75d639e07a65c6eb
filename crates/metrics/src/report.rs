//! Score reports: JSON and a text table.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::meteor::MeteorSource;

/// How the metrics are named in the JSON keys and the text table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Keys {
    /// `BLEU-1`..`BLEU-4`, `METEOR`, `ROUGE-L`, `CIDEr`.
    #[default]
    Pipe,
    /// As pycocoevalcap's `COCOEvalCap.eval`: `Bleu_1`..`Bleu_4`, `METEOR`, `ROUGE_L`,
    /// `CIDEr`. The METEOR approximation stays `METEOR~approx`: it is never named as the
    /// official number.
    Coco,
}

impl Keys {
    fn bleu(self, n: usize) -> String {
        match self {
            Keys::Pipe => format!("BLEU-{n}"),
            Keys::Coco => format!("Bleu_{n}"),
        }
    }

    fn rouge_l(self) -> &'static str {
        match self {
            Keys::Pipe => "ROUGE-L",
            Keys::Coco => "ROUGE_L",
        }
    }
}

/// Corpus scores of one protocol (multi- or single-reference).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// BLEU-1..4 as fractions.
    pub bleu: [f64; 4],
    /// METEOR (official or approximation, see [`Report::meteor_source`]).
    pub meteor: Option<f64>,
    /// ROUGE-L as a fraction.
    pub rouge_l: f64,
    /// CIDEr-D on its usual scale (×10 inside, e.g. 0.82).
    pub cider: f64,
}

/// Multi-reference scores of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageScores {
    /// Sentence BLEU-1..4 as pycocoevalcap reports them per image.
    pub bleu: [f64; 4],
    /// METEOR of this image, if computed.
    pub meteor: Option<f64>,
    /// ROUGE-L of this image.
    pub rouge_l: f64,
    /// CIDEr-D of this image (depends on the whole set through the IDF).
    pub cider: f64,
}

/// The result of scoring a caption set.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// All references per image: the numbers papers report.
    pub multi_ref: Scores,
    /// Each reference caption scored as its own (prediction, reference) pair.
    pub single_ref: Option<Scores>,
    /// Where the METEOR numbers come from.
    pub meteor_source: MeteorSource,
    /// Per-image multi-reference scores.
    pub per_image: BTreeMap<String, ImageScores>,
    /// Number of images scored.
    pub images: usize,
    /// Number of reference captions.
    pub references: usize,
}

impl Report {
    /// Per-image CIDEr-D (multi-reference), for the evaluate stage's report.
    pub fn per_image_cider(&self) -> BTreeMap<&str, f64> {
        self.per_image
            .iter()
            .map(|(k, v)| (k.as_str(), v.cider))
            .collect()
    }

    /// CIDEr-D of one image.
    pub fn image_cider(&self, image: &str) -> Option<f64> {
        self.per_image.get(image).map(|s| s.cider)
    }

    fn scores_json(&self, s: &Scores, keys: Keys) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in s.bleu.iter().enumerate() {
            m.insert(keys.bleu(k + 1), json!(v));
        }
        if let Some(v) = s.meteor {
            m.insert(self.meteor_source.key().to_string(), json!(v));
        }
        m.insert(keys.rouge_l().into(), json!(s.rouge_l));
        m.insert("CIDEr".into(), json!(s.cider));
        m
    }

    /// The scores as one JSON object: multi-reference metrics at the top
    /// level (`BLEU-1`..`BLEU-4`, `METEOR` or `METEOR~approx`, `ROUGE-L`,
    /// `CIDEr`), plus `single_ref`, `meteor_source`, `images`, `references`.
    pub fn to_json(&self) -> Value {
        self.to_json_keys(Keys::Pipe)
    }

    /// [`Report::to_json`] with the metrics named as `keys` says (in `single_ref` too).
    pub fn to_json_keys(&self, keys: Keys) -> Value {
        let mut m = self.scores_json(&self.multi_ref, keys);
        if let Some(s) = &self.single_ref {
            m.insert(
                "single_ref".into(),
                Value::Object(self.scores_json(s, keys)),
            );
        }
        m.insert("meteor_source".into(), json!(self.meteor_source.describe()));
        m.insert("images".into(), json!(self.images));
        m.insert("references".into(), json!(self.references));
        Value::Object(m)
    }

    /// A text table: Metric | Single-ref | Multi-ref.
    pub fn to_text(&self) -> String {
        self.to_text_keys(Keys::Pipe)
    }

    /// [`Report::to_text`] with the metrics named as `keys` says.
    pub fn to_text_keys(&self, keys: Keys) -> String {
        let meteor_label = match self.meteor_source {
            MeteorSource::Approximation => "METEOR (approximation, not the official jar)",
            _ => "METEOR",
        };
        let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        let single = self.single_ref.as_ref();
        let mut rows: Vec<(String, Option<f64>, Option<f64>)> = Vec::new();
        for k in 0..4 {
            rows.push((
                keys.bleu(k + 1),
                single.map(|s| s.bleu[k]),
                Some(self.multi_ref.bleu[k]),
            ));
        }
        if self.meteor_source != MeteorSource::NotComputed {
            rows.push((
                meteor_label.to_string(),
                single.and_then(|s| s.meteor),
                self.multi_ref.meteor,
            ));
        }
        rows.push((
            keys.rouge_l().into(),
            single.map(|s| s.rouge_l),
            Some(self.multi_ref.rouge_l),
        ));
        rows.push((
            "CIDEr".into(),
            single.map(|s| s.cider),
            Some(self.multi_ref.cider),
        ));
        let w = rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut out = format!(
            "{:<w$} | {:>10} | {:>10}\n",
            "Metric", "Single-ref", "Multi-ref"
        );
        out.push_str(&format!(
            "{}-|-{}-|-{}\n",
            "-".repeat(w),
            "-".repeat(10),
            "-".repeat(10)
        ));
        for (name, s, m) in rows {
            out.push_str(&format!("{name:<w$} | {:>10} | {:>10}\n", fmt(s), fmt(m)));
        }
        out.push_str(&format!(
            "\n{} images, {} reference captions. Multi-ref (every reference of an image at once) \
             is what papers report; single-ref scores each reference as its own pair.\n",
            self.images, self.references
        ));
        if let MeteorSource::Official(_) | MeteorSource::Approximation = self.meteor_source {
            out.push_str(&format!("METEOR: {}.\n", self.meteor_source.describe()));
        }
        out
    }
}
