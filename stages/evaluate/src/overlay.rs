//! The validation losses of several tries on one plot (`pipe exp show --html`): one line per
//! try against the epoch, a log-scale loss axis, a legend naming each try. The same drawing
//! goes to an SVG string (inlined in the experiments page) and to a PNG file.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::EvaluateError;
use crate::plot::{
    FAMILY, LossHistory, SIZE, draw_legend, line_sample, log_ticks, loss_label, register_font,
    render_png, span, x_of,
};

/// More legend entries than this would hide the lines; the rest are named by the page's table.
const LEGEND_MAX: usize = 20;

/// One try's curve: its name and its (epoch, validation loss) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    /// The validation losses of a train stage's `loss_history.json`, by epoch; points that
    /// cannot be drawn on a log axis (not finite, not positive) are dropped.
    pub fn from_history(name: &str, history: &LossHistory) -> Self {
        let points = history
            .val
            .iter()
            .map(|p| (p.epoch, p.loss))
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
            .collect();
        Self {
            name: name.to_string(),
            points,
        }
    }
}

/// The colour of the `i`-th curve (matplotlib's tab10, repeating), as `#rrggbb` too so the
/// page's table can show the same swatch.
pub fn color(i: usize) -> (u8, u8, u8) {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    TAB10[i % TAB10.len()]
}

/// The overlay as an SVG document; `None` when no curve has a point.
pub fn overlay_svg(curves: &[Curve]) -> Result<Option<String>, EvaluateError> {
    if curves.iter().all(|c| c.points.is_empty()) {
        return Ok(None);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(root, curves).map_err(|message| EvaluateError::Plot {
            path: "the experiments page".into(),
            message,
        })?;
    }
    Ok(Some(svg))
}

/// The overlay as a PNG at `path`. Returns false (and writes nothing) when no curve has a
/// point.
pub fn draw_overlay_png(curves: &[Curve], path: &Path) -> Result<bool, EvaluateError> {
    if curves.iter().all(|c| c.points.is_empty()) {
        return Ok(false);
    }
    render_png(path, |root| draw(root, curves))?;
    Ok(true)
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, curves: &[Curve]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let text = register_font();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let all = curves.iter().flat_map(|c| c.points.iter());
    let (x0, x1) = span(all.clone().map(|p| p.0));
    let (y0, y1) = span(all.map(|p| p.1));
    // A log axis needs a positive range; widen it a little so no line sits on the frame.
    let (y0, y1) = ((y0 * 0.95).max(f64::MIN_POSITIVE), y1 * 1.05);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if text {
        builder
            .caption("validation loss per try", (FAMILY, 22))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    // Whole epochs on x (an integer axis), round losses on y (a log axis alone ticks only at
    // powers of ten).
    let (x0, mut x1) = (x_of(x0.floor()), x_of(x1.ceil()));
    if x1 <= x0 {
        x1 = x0 + 1;
    }
    let mut chart = builder
        .build_cartesian_2d(
            x0..x1,
            (y0..y1).log_scale().with_key_points(log_ticks(y0, y1)),
        )
        .map_err(|e| err(&e))?;
    let loss_ticks = |v: &f64| loss_label(*v);
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("epoch")
            .y_desc("validation loss (log)")
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .y_label_formatter(&loss_ticks);
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw().map_err(|e| err(&e))?;
    for (i, curve) in curves.iter().enumerate() {
        if curve.points.is_empty() {
            continue;
        }
        let (r, g, b) = color(i);
        let style = RGBColor(r, g, b);
        let series = chart
            .draw_series(LineSeries::new(
                curve.points.iter().map(|&(x, y)| (x_of(x), y)),
                style.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        if text && i < LEGEND_MAX {
            series.label(curve.name.clone()).legend(line_sample(style));
        }
        chart
            .draw_series(
                curve
                    .points
                    .iter()
                    .map(|&(x, y)| Circle::new((x_of(x), y), 3, style.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    if text {
        draw_legend(&mut chart)?;
    }
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::ValPoint;

    fn history(losses: &[f64]) -> LossHistory {
        LossHistory {
            val: losses
                .iter()
                .enumerate()
                .map(|(i, &loss)| ValPoint {
                    epoch: (i + 1) as f64,
                    step: None,
                    loss,
                })
                .collect(),
            ..LossHistory::default()
        }
    }

    #[test]
    fn curves_keep_only_points_a_log_axis_can_show() {
        let c = Curve::from_history("a", &history(&[2.0, f64::NAN, 0.0, -1.0, 1.5]));
        assert_eq!(c.points, vec![(1.0, 2.0), (5.0, 1.5)]);
    }

    #[test]
    fn the_svg_names_every_try_and_draws_one_line_each() {
        let curves = vec![
            Curve::from_history("lr=0.001", &history(&[3.0, 2.0, 1.5])),
            Curve::from_history("lr=0.002", &history(&[3.2, 1.8, 1.1, 0.9])),
        ];
        let svg = overlay_svg(&curves).expect("draws").expect("has points");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        let legend = |name: &str| svg.contains(&format!(">\n{name}\n</text>"));
        assert!(legend("lr=0.001") && legend("lr=0.002"), "{svg}");
        assert!(svg.contains("validation loss (log)"));
        // Whole epochs (1 to 4, no "2.0") and round losses (0.9 to 3.2: 0.9 under 1 too).
        if register_font() {
            for tick in ["1", "2", "3", "4", "0.9"] {
                assert!(
                    svg.contains(&format!(">\n{tick}\n</text>")),
                    "no tick {tick}"
                );
            }
            assert!(!svg.contains(">\n2.0\n</text>"), "fractional epoch labels");
        }
        // Each curve's line is a polyline in its own colour (and its legend sample another).
        for (i, _) in curves.iter().enumerate() {
            let (r, g, b) = color(i);
            let stroke = format!("stroke=\"#{r:02X}{g:02X}{b:02X}\"");
            assert!(svg.matches(&stroke).count() >= 2, "no line in {stroke}");
        }
    }

    #[test]
    fn nothing_to_draw_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let png = dir.path().join("o.png");
        let empty = vec![Curve::from_history("a", &history(&[f64::NAN]))];
        assert!(!draw_overlay_png(&empty, &png).expect("no error"));
        assert!(!png.exists());
        assert_eq!(overlay_svg(&empty).expect("no error"), None);
        let one = vec![Curve::from_history("a", &history(&[2.0, 1.0]))];
        assert!(draw_overlay_png(&one, &png).expect("draws"));
        let img = image::open(&png).expect("a PNG");
        assert_eq!((img.width(), img.height()), SIZE);
    }
}
