//! The `evaluate` stage kind: a captioning model scored on a held-out split.
//!
//! ```toml
//! [stages.evaluate]
//! kind = "evaluate"
//! deps = ["collate", "train"]     # the collate artifact and a train artifact (its model/)
//! # model = "models/blip"         # instead of a train dep: a model directory or Hub id
//! # collate = "collate"           # which dep is the collate artifact, when ambiguous
//! # train = "train"               # which dep holds the model, when ambiguous
//! # prep = "prep"                 # a prep dep to take the reference captions from
//! split = "test"
//! num_beams = 3
//! max_new_tokens = 20
//! batch_size = 8
//! meteor = "auto"                 # auto | official | approx | skip
//! # meteor_jar = "tools/meteor-1.5.jar"
//! ```
//!
//! The work, per batch of images: the vision encoder runs once; its output feeds both the
//! teacher-forced test loss over every reference caption of those images and beam search.
//!
//! Files written into the artifact:
//!
//! * `predictions.jsonl` — `{"image", "caption"}` per test image, in the split's order;
//! * `references.jsonl` — `{"image", "captions"}`: every original caption of the image;
//! * `metrics.json` — `test_loss`, the metrics report ([`pipe_metrics::Report::to_json`]:
//!   `BLEU-1`..`BLEU-4`, `METEOR` or `METEOR~approx`, `ROUGE-L`, `CIDEr`, `single_ref`, ...),
//!   the decoding settings and the model;
//! * `metrics.md` — Metric | Single-ref | Multi-ref, with the test loss;
//! * `train_vs_val_loss.png` — when the model comes with a `loss_history.json`: train (raw
//!   and smoothed) and validation loss on a log axis, the learning rate on a second axis;
//! * `report.html` + `report/` — the metrics table, the loss plot (inline SVG), then every
//!   image with its references, prediction and CIDEr-D, the ten worst first.

mod decode;
mod error;
mod loss;
mod metrics_md;
mod overlay;
mod params;
mod plot;
mod report_html;
mod stage;

pub use error::EvaluateError;
pub use loss::masked_caption_loss;
pub use overlay::{Curve, color, draw_overlay_png, overlay_svg};
pub use params::{MeteorParam, Params};
/// The workspace's one HTML escaper (re-exported for the experiments page).
pub use pipe_stage_api::html_escape;
pub use plot::{LossHistory, TrainPoint, ValPoint, draw_loss_plot, loss_plot_svg};
pub use stage::Evaluate;

use pipe_stage_api::StageKind;

/// The stage kinds this crate provides, for the orchestrator's registry.
pub fn kinds() -> Vec<Box<dyn StageKind>> {
    vec![Box::new(Evaluate)]
}
