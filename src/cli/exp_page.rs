//! `results/experiments.html`: the tries table of `pipe exp show`, the validation-loss curves
//! of the tries overlaid (an inline SVG, log-scale loss, a legend naming each try), and each
//! try's link to its evaluate report; `results/experiments.png` is the same overlay. Written
//! by `pipe exp show --html` and after every run when the pipeline has tries.

use std::path::{Component, Path, PathBuf};

use pipe::cache::Cache;
use pipe::plan::display_path;
use pipe::spec::Spec;
use pipe::tries::{self, Row, WORKSPACE};
use pipe_evaluate::{Curve, LossHistory, color, draw_overlay_png, html_escape as esc, overlay_svg};

use super::CliError;
use super::exp::Cell;

pub const PAGE: &str = "experiments.html";
pub const PLOT: &str = "experiments.png";

/// What a train stage writes next to its model, and what evaluate writes for people.
const LOSS_HISTORY: &str = "loss_history.json";
const REPORT: &str = "report.html";

/// Write the page and the plot into `spec.results_dir`; the page's path.
pub fn write(
    spec: &Spec,
    cache: &Cache,
    rows: &[Row],
    header: &[String],
    table: &[Vec<Cell>],
    written_at: &str,
) -> Result<PathBuf, CliError> {
    let curves: Vec<Curve> = rows.iter().map(|r| curve(r, cache)).collect();
    let svg = overlay_svg(&curves).map_err(CliError::Page)?;
    let dir = &spec.results_dir;
    std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
        path: dir.clone(),
        source,
    })?;
    let plot = dir.join(PLOT);
    let has_plot = draw_overlay_png(&curves, &plot).map_err(CliError::Page)?;
    if !has_plot {
        let _ = std::fs::remove_file(&plot); // an old one would show curves no longer there
    }
    let links: Vec<Option<String>> = rows.iter().map(|r| report_link(spec, cache, r)).collect();
    let html = render(spec, header, table, &links, svg.as_deref(), written_at);
    let path = dir.join(PAGE);
    pipe::cache::write_atomic(&path, html.as_bytes()).map_err(|source| CliError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// A row's validation losses: from the `loss_history.json` of the first of its stages that
/// has one (a train stage); none for rows without.
fn curve(row: &Row, cache: &Cache) -> Curve {
    let history = row.keys.values().find_map(|key| {
        let path = cache.artifact(key)?.out().join(LOSS_HISTORY);
        path.is_file()
            .then(|| LossHistory::read(&path))
            .and_then(|h| h.map_err(|e| tracing::warn!("experiments page: {e}")).ok())
    });
    history.map_or_else(
        || Curve {
            name: row.name.clone(),
            points: Vec::new(),
        },
        |h| Curve::from_history(&row.name, &h),
    )
}

/// The row's evaluate report as shown under results/, relative to the page: the
/// workspace's in the stage's results folder, a try's in `tries/NAME/STAGE/`.
fn report_link(spec: &Spec, cache: &Cache, row: &Row) -> Option<String> {
    let (stage, _) = row.keys.iter().find(|(_, key)| {
        cache
            .artifact(key)
            .is_some_and(|a| a.out().join(REPORT).is_file())
    })?;
    let shown: PathBuf = if row.name == WORKSPACE {
        spec.stages
            .iter()
            .find(|s| &s.name == stage)?
            .results
            .clone()
    } else {
        tries::results_dir(spec, &row.name).join(stage)
    };
    let report = shown.join(REPORT);
    report.is_file().then(|| href(&report, &spec.results_dir))
}

/// `path` as a link from a page in `dir`: relative when it is below it, else absolute.
fn href(path: &Path, dir: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(percent(&s.to_string_lossy())),
            _ => None,
        })
        .collect();
    let joined = parts.join("/");
    if rel.is_absolute() {
        format!("file:///{joined}")
    } else {
        joined
    }
}

/// Percent-encode what a URL path segment may not hold as is.
fn percent(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~=+".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn render(
    spec: &Spec,
    header: &[String],
    table: &[Vec<Cell>],
    links: &[Option<String>],
    svg: Option<&str>,
    written_at: &str,
) -> String {
    let file = display_path(&spec.file, &spec.dir);
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str(&format!(
        "<title>{}: tries</title>\n<style>{STYLE}</style></head><body>\n",
        esc(&spec.name)
    ));
    h.push_str(&format!(
        "<h1>{}: {} tries</h1>\n<p>Written {} by <code>pipe</code>. <code>workspace</code> is \
         {} as written; the best value of each metric is in bold. <code>pipe exp apply NAME</code> \
         makes a try the file's config.</p>\n",
        esc(&spec.name),
        table.len().saturating_sub(1),
        esc(written_at),
        esc(&file),
    ));
    h.push_str("<table>\n<tr>");
    for (i, name) in header.iter().enumerate() {
        let class = if i == 0 { "" } else { " class=\"num\"" };
        h.push_str(&format!("<th{class}>{}</th>", esc(name)));
    }
    h.push_str("<th>report</th></tr>\n");
    for (i, (cells, link)) in table.iter().zip(links).enumerate() {
        let (r, g, b) = color(i);
        h.push_str("<tr>");
        for (c, cell) in cells.iter().enumerate() {
            let text = esc(&cell.text);
            let text = if cell.best {
                format!("<b>{text}</b>")
            } else {
                text
            };
            if c == 0 {
                h.push_str(&format!(
                    "<td><span class=\"swatch\" style=\"background:#{r:02x}{g:02x}{b:02x}\"></span>{text}</td>"
                ));
            } else {
                h.push_str(&format!("<td>{text}</td>"));
            }
        }
        match link {
            Some(href) => h.push_str(&format!("<td><a href=\"{}\">evaluate</a></td>", esc(href))),
            None => h.push_str("<td>-</td>"),
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<h2>Validation loss</h2>\n");
    match svg {
        Some(svg) => {
            h.push_str("<figure>");
            h.push_str(svg.trim_start_matches(|c: char| c != '<'));
            h.push_str(&format!(
                "<figcaption>One line per try, by epoch; the colours are the table's. \
                 <a href=\"{PLOT}\">{PLOT}</a></figcaption></figure>\n"
            ));
        }
        None => h.push_str("<p>No try has a validation loss yet (a train stage writes one).</p>\n"),
    }
    h.push_str("</body></html>\n");
    h
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;font-size:14px}\
th,td{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;white-space:nowrap}\
th{background:#f4f4f4}\
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle}\
figure{margin:1em 0}figcaption{font-size:13px;color:#555}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_below_the_page_and_encoded() {
        let dir = Path::new("/p/results");
        assert_eq!(
            href(
                Path::new("/p/results/tries/lr=0.1/evaluate/report.html"),
                dir
            ),
            "tries/lr=0.1/evaluate/report.html"
        );
        assert_eq!(
            href(Path::new("/elsewhere/my report.html"), dir),
            "file:///elsewhere/my%20report.html"
        );
    }
}
