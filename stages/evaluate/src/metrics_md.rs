//! `metrics.md`: the metrics table a person reads (Metric | Single-ref | Multi-ref).

use pipe_metrics::{MeteorSource, Report, Scores};

/// One row of the metrics table: the metric's name, its single-ref and multi-ref values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricRow {
    pub name: String,
    pub single: Option<f64>,
    pub multi: Option<f64>,
}

/// The metrics table's rows (what `metrics.md` and `report.html` show): the test loss, then
/// every metric.
pub(crate) fn metric_rows(report: &Report, test_loss: Option<f64>) -> Vec<MetricRow> {
    let single = report.single_ref.as_ref();
    let mut rows: Vec<(String, Option<f64>, Option<f64>)> = Vec::new();
    rows.push(("Test loss".into(), None, test_loss));
    for k in 0..4 {
        rows.push((
            format!("BLEU-{}", k + 1),
            single.map(|s| s.bleu[k]),
            Some(report.multi_ref.bleu[k]),
        ));
    }
    match report.meteor_source {
        MeteorSource::NotComputed => {}
        MeteorSource::Approximation => rows.push((
            "METEOR~approx (native approximation, not the official jar)".into(),
            single.and_then(|s| s.meteor),
            report.multi_ref.meteor,
        )),
        MeteorSource::Official(_) => rows.push((
            "METEOR".into(),
            single.and_then(|s| s.meteor),
            report.multi_ref.meteor,
        )),
    }
    let pick = |f: fn(&Scores) -> f64| (single.map(f), Some(f(&report.multi_ref)));
    let (s, m) = pick(|s| s.rouge_l);
    rows.push(("ROUGE-L".into(), s, m));
    let (s, m) = pick(|s| s.cider);
    rows.push(("CIDEr".into(), s, m));
    rows.into_iter()
        .map(|(name, single, multi)| MetricRow {
            name,
            single,
            multi,
        })
        .collect()
}

/// A table cell: four decimals, or a dash when there is no value.
pub(crate) fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.4}"))
}

/// What the table's two protocols mean (under the table in both `metrics.md` and
/// `report.html`).
pub(crate) const PROTOCOLS: &str = "Multi-ref (each prediction scored against all the \
    references of its image at once) is what papers report; single-ref scores each reference \
    caption as its own pair (usually lower). The test loss is the teacher-forced cross entropy \
    per caption token over every reference caption, the same for both protocols.";

/// The markdown table, with the test loss and the note on the two protocols.
pub(crate) fn metrics_markdown(
    report: &Report,
    test_loss: Option<f64>,
    split: &str,
    model: &str,
) -> String {
    let mut out = format!(
        "# Evaluation on the {split} split\n\nModel: `{model}`. {} images, {} reference captions.\n\n\
         | Metric | Single-ref | Multi-ref |\n|---|---:|---:|\n",
        report.images, report.references
    );
    for r in metric_rows(report, test_loss) {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            r.name,
            cell(r.single),
            cell(r.multi)
        ));
    }
    out.push_str(&format!("\n{PROTOCOLS}\n"));
    if !matches!(report.meteor_source, MeteorSource::NotComputed) {
        out.push_str(&format!("\nMETEOR: {}.\n", report.meteor_source.describe()));
    }
    out
}
