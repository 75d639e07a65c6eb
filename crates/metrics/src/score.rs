//! Scoring a caption set end to end: validation, tokenization, metrics.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::MetricsError;
use crate::meteor::{self, MeteorMode, MeteorOptions, MeteorSource};
use crate::ngrams::Vocab;
use crate::report::{ImageScores, Report, Scores};
use crate::tokenize::tokenize_stream;
use crate::{bleu, cider, io, rouge};

/// What to compute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreOptions {
    /// METEOR settings.
    pub meteor: MeteorOptions,
    /// Also compute the single-reference protocol.
    pub single_ref: bool,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            meteor: MeteorOptions::default(),
            single_ref: true,
        }
    }
}

/// Reads both files (JSONL or the COCO formats, see [`io`]) and scores them (see [`score`]).
pub fn score_files(
    predictions: &Path,
    references: &Path,
    opts: &ScoreOptions,
) -> Result<Report, MetricsError> {
    let preds = io::read_predictions(predictions)?;
    let refs = io::read_references(references)?;
    score(&preds, &refs, opts)
}

/// Checks that predictions and references cover the same images.
pub fn check_alignment(
    preds: &BTreeMap<String, String>,
    refs: &BTreeMap<String, Vec<String>>,
) -> Result<(), MetricsError> {
    let unknown: Vec<String> = preds
        .keys()
        .filter(|k| !refs.contains_key(*k))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(MetricsError::UnknownImages { ids: unknown });
    }
    let missing: Vec<String> = refs
        .keys()
        .filter(|k| !preds.contains_key(*k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(MetricsError::MissingPredictions { ids: missing });
    }
    if let Some((id, _)) = refs.iter().find(|(_, r)| r.is_empty()) {
        return Err(MetricsError::NoReferences { id: id.clone() });
    }
    if preds.is_empty() {
        return Err(MetricsError::Empty);
    }
    Ok(())
}

/// The images [`keep_common`] left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// Images with references but no prediction, in id order.
    pub unpredicted: Vec<String>,
    /// Images with a prediction but no references, in id order.
    pub unreferenced: Vec<String>,
}

impl LeftOut {
    /// How many images were left out.
    pub fn len(&self) -> usize {
        self.unpredicted.len() + self.unreferenced.len()
    }

    /// Whether predictions and references covered the same images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps only the images that have both a prediction and references (what `pipe score
/// --allow-missing` scores), and says which were left out; an error when none is left although
/// there were some on both sides. [`score`] alone requires the same images on both sides.
pub fn keep_common(
    preds: &mut BTreeMap<String, String>,
    refs: &mut BTreeMap<String, Vec<String>>,
) -> Result<LeftOut, MetricsError> {
    let (predictions, references) = (preds.len(), refs.len());
    let left_out = LeftOut {
        unpredicted: refs
            .keys()
            .filter(|k| !preds.contains_key(*k))
            .cloned()
            .collect(),
        unreferenced: preds
            .keys()
            .filter(|k| !refs.contains_key(*k))
            .cloned()
            .collect(),
    };
    for id in &left_out.unpredicted {
        refs.remove(id);
    }
    for id in &left_out.unreferenced {
        preds.remove(id);
    }
    if preds.is_empty() && predictions > 0 && references > 0 {
        return Err(MetricsError::NothingInCommon {
            predictions,
            references,
        });
    }
    Ok(left_out)
}

/// Tokenized captions, aligned by image (in id order).
struct Tokenized {
    ids: Vec<String>,
    preds: Vec<String>,
    refs: Vec<Vec<String>>,
    /// Predictions tokenized as the single-reference batch sees them (each
    /// repeated once per reference), flattened.
    single_preds: Option<Vec<String>>,
}

fn tokenize_all(
    preds: &BTreeMap<String, String>,
    refs: &BTreeMap<String, Vec<String>>,
    single_ref: bool,
) -> Result<Tokenized, MetricsError> {
    let ids: Vec<String> = refs.keys().cloned().collect();
    let pred_raw: Vec<&str> = ids.iter().map(|k| preds[k].as_str()).collect();
    let ref_raw: Vec<&str> = ids
        .iter()
        .flat_map(|k| refs[k].iter().map(String::as_str))
        .collect();
    let pred_tok = tokenize_stream(&pred_raw)?;
    let ref_tok_flat = tokenize_stream(&ref_raw)?;
    let mut it = ref_tok_flat.into_iter();
    let ref_tok: Vec<Vec<String>> = ids
        .iter()
        .map(|k| it.by_ref().take(refs[k].len()).collect())
        .collect();
    let single_preds = if single_ref {
        let repeated: Vec<&str> = ids
            .iter()
            .flat_map(|k| std::iter::repeat_n(preds[k].as_str(), refs[k].len()))
            .collect();
        Some(tokenize_stream(&repeated)?)
    } else {
        None
    };
    Ok(Tokenized {
        ids,
        preds: pred_tok,
        refs: ref_tok,
        single_preds,
    })
}

/// Scores of one protocol over tokenized (hypothesis, references) pairs.
struct Protocol {
    scores: Scores,
    bleu: Vec<[f64; 4]>,
    rouge: Vec<f64>,
    cider: Vec<f64>,
    meteor: Option<Vec<f64>>,
}

fn run_protocol(
    pairs: &[(&str, &[String])],
    meteor: &mut MeteorChoice,
) -> Result<Protocol, MetricsError> {
    let mut vocab = Vocab::default();
    let ids: Vec<(Vec<u32>, Vec<Vec<u32>>)> = pairs
        .iter()
        .map(|(h, rs)| (vocab.words(h), rs.iter().map(|r| vocab.words(r)).collect()))
        .collect();
    let (bleu_total, bleu_per) = bleu::bleu(&ids);
    let rouge_per: Vec<f64> = pairs.iter().map(|(h, rs)| rouge::rouge_l(h, rs)).collect();
    let (cider_total, cider_per) = cider::cider(&ids);
    let meteor_res = match meteor {
        MeteorChoice::Jar(_, jar) => Some(jar.score(pairs)?),
        MeteorChoice::Approx => Some(meteor::approx::Approx::new().score(pairs)),
        MeteorChoice::Skip => None,
    };
    Ok(Protocol {
        scores: Scores {
            bleu: bleu_total,
            meteor: meteor_res.as_ref().map(|m| m.0),
            rouge_l: cider::mean(&rouge_per),
            cider: cider_total,
        },
        bleu: bleu_per,
        rouge: rouge_per,
        cider: cider_per,
        meteor: meteor_res.map(|m| m.1),
    })
}

enum MeteorChoice {
    Jar(std::path::PathBuf, meteor::jar::MeteorJar),
    Approx,
    Skip,
}

fn choose_meteor(opts: &MeteorOptions) -> Result<MeteorChoice, MetricsError> {
    Ok(match opts.mode {
        MeteorMode::Skip => MeteorChoice::Skip,
        MeteorMode::Approximate => MeteorChoice::Approx,
        MeteorMode::Auto => match meteor::find_jar(opts) {
            Some(j) => {
                let process = meteor::jar::MeteorJar::start(&j)?;
                MeteorChoice::Jar(j, process)
            }
            None => {
                // Once per process: the tables label the column anyway, and a run scores
                // several times (single- and multi-reference, sweep points).
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "official METEOR jar unavailable; reporting the native approximation as METEOR~approx"
                    )
                });
                MeteorChoice::Approx
            }
        },
        MeteorMode::Official => match meteor::find_jar(opts) {
            Some(j) => {
                let process = meteor::jar::MeteorJar::start(&j)?;
                MeteorChoice::Jar(j, process)
            }
            None => {
                return Err(MetricsError::Meteor {
                    jar: opts.jar.clone().unwrap_or_else(|| "meteor-1.5.jar".into()),
                    message: "the official jar (or java) is not available".into(),
                });
            }
        },
    })
}

/// Scores predictions (image id → caption) against references (image id →
/// captions) as pycocoevalcap would, in image-id order.
pub fn score(
    preds: &BTreeMap<String, String>,
    refs: &BTreeMap<String, Vec<String>>,
    opts: &ScoreOptions,
) -> Result<Report, MetricsError> {
    check_alignment(preds, refs)?;
    let tok = tokenize_all(preds, refs, opts.single_ref)?;
    let mut choice = choose_meteor(&opts.meteor)?;
    let meteor_source = match &choice {
        MeteorChoice::Jar(j, _) => MeteorSource::Official(j.clone()),
        MeteorChoice::Approx => MeteorSource::Approximation,
        MeteorChoice::Skip => MeteorSource::NotComputed,
    };
    let multi_pairs: Vec<(&str, &[String])> = tok
        .preds
        .iter()
        .zip(&tok.refs)
        .map(|(p, r)| (p.as_str(), r.as_slice()))
        .collect();
    let multi = run_protocol(&multi_pairs, &mut choice)?;
    let single = match &tok.single_preds {
        Some(sp) => {
            let singles: Vec<[String; 1]> =
                tok.refs.iter().flatten().map(|r| [r.clone()]).collect();
            let pairs: Vec<(&str, &[String])> = sp
                .iter()
                .zip(&singles)
                .map(|(p, r)| (p.as_str(), r.as_slice()))
                .collect();
            Some(run_protocol(&pairs, &mut choice)?.scores)
        }
        None => None,
    };
    let per_image = tok
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                ImageScores {
                    bleu: multi.bleu[i],
                    meteor: multi.meteor.as_ref().map(|m| m[i]),
                    rouge_l: multi.rouge[i],
                    cider: multi.cider[i],
                },
            )
        })
        .collect();
    Ok(Report {
        multi_ref: multi.scores,
        single_ref: single,
        meteor_source,
        per_image,
        images: tok.ids.len(),
        references: tok.refs.iter().map(Vec::len).sum(),
    })
}
