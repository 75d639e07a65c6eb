//! `report.html` and its thumbnails under `report/`: the metrics table, the loss plot (inline
//! SVG) when the model came with a history, then every evaluated image with its references,
//! prediction and CIDEr-D, the ten worst first.

use std::fmt::Write as _;
use std::path::Path;

use pipe_stage_api::html_escape as escape;

use crate::error::EvaluateError;
use crate::metrics_md::{MetricRow, cell};
use crate::plot::write_png;

/// How many of the lowest-CIDEr images head the report.
pub(crate) const WORST: usize = 10;
/// Longest side of a thumbnail, in pixels.
const THUMB: u32 = 160;

/// One image of the report.
pub(crate) struct Row<'a> {
    pub id: &'a str,
    pub prediction: &'a str,
    pub references: &'a [String],
    pub cider: f64,
    /// RGB8 pixels, HWC, `width × height`.
    pub rgb: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// What heads the report: its title, a line on what was evaluated, the metrics table with
/// its notes, and the loss plot.
pub(crate) struct Summary<'a> {
    pub title: &'a str,
    /// What was evaluated (the model, how many images and references), as text.
    pub about: &'a str,
    pub metrics: &'a [MetricRow],
    /// Paragraphs under the table, as text.
    pub notes: &'a [String],
    /// The loss plot as an SVG document, inlined as is (plotters escapes the text it writes).
    pub loss_svg: Option<&'a str>,
}

/// The order of the report: the `WORST` lowest CIDEr (ascending, ties by position), then the
/// others in their split order.
pub(crate) fn report_order(cider: &[f64]) -> Vec<usize> {
    let mut by_score: Vec<usize> = (0..cider.len()).collect();
    by_score.sort_by(|&a, &b| cider[a].total_cmp(&cider[b]).then(a.cmp(&b)));
    let worst: Vec<usize> = by_score.into_iter().take(WORST).collect();
    let rest = (0..cider.len()).filter(|i| !worst.contains(i));
    worst.iter().copied().chain(rest).collect()
}

/// The page's style: the metrics table, the plot scaled to the page, the image rows (their
/// thumbnails' width is [`THUMB`], added where the page is written).
const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;max-width:70em;color:#222}\
    table.m{border-collapse:collapse;margin:.5em 0}\
    table.m td,table.m th{border:1px solid #ccc;padding:3px 10px}\
    table.m thead th{background:#f3f3f3}table.m tbody th{text-align:left;font-weight:normal}\
    table.m td{text-align:right;font-variant-numeric:tabular-nums}\
    .note{color:#555;max-width:50em}\
    figure.loss{margin:.5em 0}figure.loss svg{display:block;max-width:100%;height:auto}\
    .img{display:flex;gap:1em;border-bottom:1px solid #ddd;padding:.6em 0}\
    .pred{font-weight:bold}.cider{color:#555}ul{margin:.2em 0}";

/// The metrics as an HTML table (Metric | Single-ref | Multi-ref), each value cell naming its
/// metric and protocol.
fn metrics_table(rows: &[MetricRow]) -> String {
    let mut html = String::from(
        "<table class=\"m\" id=\"metrics\">\n<thead><tr><th scope=\"col\">Metric</th>\
         <th scope=\"col\">Single-ref</th><th scope=\"col\">Multi-ref</th></tr></thead>\n<tbody>\n",
    );
    for r in rows {
        let _ = writeln!(
            html,
            "<tr><th scope=\"row\">{n}</th>\
             <td data-metric=\"{n}\" data-protocol=\"single\">{s}</td>\
             <td data-metric=\"{n}\" data-protocol=\"multi\">{m}</td></tr>",
            n = escape(&r.name),
            s = cell(r.single),
            m = cell(r.multi),
        );
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

/// Write `report.html` and `report/NNNNN.png` into `out`.
pub(crate) fn write_report(
    out: &Path,
    rows: &[Row<'_>],
    summary: &Summary<'_>,
) -> Result<(), EvaluateError> {
    let dir = out.join("report");
    std::fs::create_dir_all(&dir).map_err(EvaluateError::write(&dir))?;
    let cider: Vec<f64> = rows.iter().map(|r| r.cider).collect();
    let order = report_order(&cider);

    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<meta charset=\"utf-8\">\n<title>{t}</title>\n\
         <style>{STYLE}.img img{{width:{THUMB}px;height:auto;image-rendering:pixelated;flex:none}}\
         </style>\n<h1>{t}</h1>\n<p>{a}</p>\n<h2>Metrics</h2>\n{table}",
        t = escape(summary.title),
        a = escape(summary.about),
        table = metrics_table(summary.metrics),
    );
    for note in summary.notes {
        let _ = writeln!(html, "<p class=\"note\">{}</p>", escape(note));
    }
    if let Some(svg) = summary.loss_svg {
        let _ = writeln!(
            html,
            "<h2>Loss</h2>\n<figure class=\"loss\" id=\"loss-plot\">\n{svg}\n</figure>"
        );
    }
    for (pos, &i) in order.iter().enumerate() {
        if pos == 0 {
            let _ = writeln!(
                html,
                "<h2>The {} lowest CIDEr-D</h2>",
                WORST.min(rows.len())
            );
        } else if pos == WORST {
            let _ = writeln!(html, "<h2>All other images</h2>");
        }
        let r = &rows[i];
        let file = format!("{i:05}.png");
        let (tw, th, thumb) = thumbnail(&r.rgb, r.width, r.height);
        let path = dir.join(&file);
        write_png(&path, &thumb, tw, th)?;
        let _ = write!(
            html,
            "<div class=\"img\" data-image=\"{id}\" data-cider=\"{c:.6}\">\
             <img src=\"report/{file}\" alt=\"{id}\"><div><div>{id} \
             <span class=\"cider\">CIDEr-D {c:.4}</span></div>\
             <div class=\"pred\">{p}</div><ul>",
            id = escape(r.id),
            c = r.cider,
            p = escape(r.prediction),
        );
        for reference in r.references {
            let _ = write!(html, "<li>{}</li>", escape(reference));
        }
        let _ = writeln!(html, "</ul></div></div>");
    }
    html.push_str("</html>\n");
    let path = out.join("report.html");
    std::fs::write(&path, html).map_err(EvaluateError::write(&path))
}

/// Downscale RGB8 pixels so the longer side is at most `THUMB`.
fn thumbnail(rgb: &[u8], w: u32, h: u32) -> (u32, u32, Vec<u8>) {
    let longest = w.max(h);
    let Some(img) = image::RgbImage::from_raw(w, h, rgb.to_vec()) else {
        return (w, h, rgb.to_vec());
    };
    if longest <= THUMB {
        return (w, h, img.into_raw());
    }
    let tw = (w * THUMB / longest).max(1);
    let th = (h * THUMB / longest).max(1);
    let small = image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle);
    (tw, th, small.into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_ten_first_then_the_rest_in_order() {
        let cider: Vec<f64> = (0..14).map(|i| f64::from((i * 7) % 14)).collect();
        let order = report_order(&cider);
        assert_eq!(order.len(), 14);
        let head: Vec<f64> = order[..10].iter().map(|&i| cider[i]).collect();
        assert!(head.windows(2).all(|w| w[0] <= w[1]), "{head:?}");
        let tail = &order[10..];
        assert!(tail.windows(2).all(|w| w[0] < w[1]));
        assert!(tail.iter().all(|&i| cider[i] >= head[9]));
    }

    fn write(dir: &Path, loss_svg: Option<&str>) -> String {
        let refs = vec!["it's a dog".to_string(), "<b>bold</b> & more".to_string()];
        let rows = vec![Row {
            id: "o'brien.png",
            prediction: "a dog's \"ball\"",
            references: &refs,
            cider: 0.5,
            rgb: vec![200; 4 * 3 * 3],
            width: 4,
            height: 3,
        }];
        let metrics = vec![
            MetricRow {
                name: "Test loss".into(),
                single: None,
                multi: Some(2.0),
            },
            MetricRow {
                name: "BLEU-1".into(),
                single: Some(0.25),
                multi: Some(0.5),
            },
        ];
        let notes = vec!["Multi-ref is what papers report; it's <not> single-ref.".to_string()];
        let summary = Summary {
            title: "Evaluation on the test split",
            about: "Model: 'm'. 1 images, 2 reference captions.",
            metrics: &metrics,
            notes: &notes,
            loss_svg,
        };
        write_report(dir, &rows, &summary).expect("writes");
        std::fs::read_to_string(dir.join("report.html")).expect("html")
    }

    #[test]
    fn the_metrics_are_an_html_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let html = write(dir.path(), None);
        assert!(
            html.contains("<table class=\"m\" id=\"metrics\">"),
            "{html}"
        );
        assert!(html.contains(
            "<thead><tr><th scope=\"col\">Metric</th><th scope=\"col\">Single-ref</th>\
             <th scope=\"col\">Multi-ref</th></tr></thead>"
        ));
        assert!(html.contains(
            "<tr><th scope=\"row\">BLEU-1</th>\
             <td data-metric=\"BLEU-1\" data-protocol=\"single\">0.2500</td>\
             <td data-metric=\"BLEU-1\" data-protocol=\"multi\">0.5000</td></tr>"
        ));
        // No single-ref test loss: a dash, as in metrics.md.
        assert!(html.contains("<td data-metric=\"Test loss\" data-protocol=\"single\">—</td>"));
        assert!(html.contains("<p class=\"note\">Multi-ref is what papers report"));
        // The table comes before the images, and there is no plot without a history.
        assert!(html.find("id=\"metrics\"") < html.find("class=\"img\""));
        assert!(!html.contains("loss-plot") && !html.contains("<svg"));
    }

    #[test]
    fn every_text_is_escaped_apostrophes_included() {
        let dir = tempfile::tempdir().expect("tempdir");
        let html = write(dir.path(), None);
        // Nothing the page was given appears raw: no apostrophe, quote or markup of theirs.
        assert!(!html.contains('\''), "an unescaped apostrophe: {html}");
        for escaped in [
            "alt=\"o&#39;brien.png\"",
            "data-image=\"o&#39;brien.png\"",
            "a dog&#39;s &quot;ball&quot;",
            "<li>it&#39;s a dog</li>",
            "<li>&lt;b&gt;bold&lt;/b&gt; &amp; more</li>",
            "it&#39;s &lt;not&gt; single-ref.",
            "Model: &#39;m&#39;.",
        ] {
            assert!(html.contains(escaped), "{escaped} missing: {html}");
        }
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn the_loss_plot_is_inlined_svg() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svg = "<svg width=\"900\" height=\"540\" viewBox=\"0 0 900 540\" \
                   xmlns=\"http://www.w3.org/2000/svg\"><text>loss</text></svg>";
        let html = write(dir.path(), Some(svg));
        assert!(html.contains(&format!(
            "<h2>Loss</h2>\n<figure class=\"loss\" id=\"loss-plot\">\n{svg}\n</figure>"
        )));
        // Between the table and the images.
        let at = html.find("loss-plot");
        assert!(html.find("id=\"metrics\"") < at && at < html.find("class=\"img\""));
        assert!(dir.path().join("report/00000.png").is_file());
    }
}
