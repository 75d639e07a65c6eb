//! `report.html` and its thumbnails under `report/`: every evaluated image with its
//! references, prediction and CIDEr-D, the ten worst first.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::EvaluateError;
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

/// The order of the report: the `WORST` lowest CIDEr (ascending, ties by position), then the
/// others in their split order.
pub(crate) fn report_order(cider: &[f64]) -> Vec<usize> {
    let mut by_score: Vec<usize> = (0..cider.len()).collect();
    by_score.sort_by(|&a, &b| cider[a].total_cmp(&cider[b]).then(a.cmp(&b)));
    let worst: Vec<usize> = by_score.into_iter().take(WORST).collect();
    let rest = (0..cider.len()).filter(|i| !worst.contains(i));
    worst.iter().copied().chain(rest).collect()
}

/// Write `report.html` and `report/NNNNN.png` into `out`.
pub(crate) fn write_report(
    out: &Path,
    rows: &[Row<'_>],
    title: &str,
    summary_md: &str,
) -> Result<(), EvaluateError> {
    let dir = out.join("report");
    std::fs::create_dir_all(&dir).map_err(EvaluateError::write(&dir))?;
    let cider: Vec<f64> = rows.iter().map(|r| r.cider).collect();
    let order = report_order(&cider);

    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\
         body{{font-family:sans-serif;margin:1.5em;max-width:70em}}\
         table.m{{border-collapse:collapse}}table.m td,table.m th{{border:1px solid #ccc;padding:2px 8px}}\
         .img{{display:flex;gap:1em;border-bottom:1px solid #ddd;padding:.6em 0}}\
         .img img{{width:{THUMB}px;height:auto;image-rendering:pixelated;flex:none}}\
         .pred{{font-weight:bold}}.cider{{color:#555}}ul{{margin:.2em 0}}</style>\n\
         <h1>{t}</h1>\n<pre>{s}</pre>\n",
        t = escape(title),
        s = escape(summary_md),
    );
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

/// HTML text and attribute escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
