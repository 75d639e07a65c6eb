//! `metrics.md`: the metrics table a person reads (Metric | Single-ref | Multi-ref).

use pipe_metrics::{MeteorSource, Report, Scores};

/// The markdown table, with the test loss and the note on the two protocols.
pub(crate) fn metrics_markdown(
    report: &Report,
    test_loss: Option<f64>,
    split: &str,
    model: &str,
) -> String {
    let fmt = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.4}"));
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

    let mut out = format!(
        "# Evaluation on the {split} split\n\nModel: `{model}`. {} images, {} reference captions.\n\n\
         | Metric | Single-ref | Multi-ref |\n|---|---:|---:|\n",
        report.images, report.references
    );
    for (name, s, m) in rows {
        out.push_str(&format!("| {name} | {} | {} |\n", fmt(s), fmt(m)));
    }
    out.push_str(
        "\nMulti-ref (each prediction scored against all the references of its image at once) is \
         what papers report; single-ref scores each reference caption as its own pair (usually \
         lower). The test loss is the teacher-forced cross entropy per caption token over every \
         reference caption, the same for both protocols.\n",
    );
    if !matches!(report.meteor_source, MeteorSource::NotComputed) {
        out.push_str(&format!("\nMETEOR: {}.\n", report.meteor_source.describe()));
    }
    out
}
