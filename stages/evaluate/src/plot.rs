//! `train_vs_val_loss.png`: the train loss per logged step and the validation loss per epoch,
//! drawn with plotters' bitmap backend and an embedded font (DejaVu Sans Mono, see
//! `assets/DejaVuSansMono-LICENSE.txt`), so no system font or font-kit is needed.

use std::path::Path;
use std::sync::OnceLock;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use crate::error::EvaluateError;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
pub(crate) const FAMILY: &str = "sans-serif";
/// Every chart's size in pixels (SVG units for the experiments page).
pub(crate) const SIZE: (u32, u32) = (900, 540);

/// `loss_history.json` as the train stage writes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LossHistory {
    pub train: Vec<TrainPoint>,
    pub val: Vec<ValPoint>,
    pub best_epoch: Option<f64>,
    pub best_step: Option<f64>,
    pub stopped_early: Option<bool>,
}

/// One logged training loss.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainPoint {
    pub epoch: f64,
    #[serde(default)]
    pub step: Option<f64>,
    pub loss: f64,
}

/// One validation loss: at an epoch's end, or mid-epoch at a known step.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ValPoint {
    pub epoch: f64,
    #[serde(default)]
    pub step: Option<f64>,
    pub loss: f64,
}

impl LossHistory {
    /// Read `loss_history.json`.
    pub fn read(path: &Path) -> Result<Self, EvaluateError> {
        let err = |message: String| EvaluateError::LossHistory {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))
    }

    /// (x, loss) of the train points; x is the step (or the point's position).
    fn train_xy(&self) -> Vec<(f64, f64)> {
        self.train
            .iter()
            .enumerate()
            .map(|(i, p)| (p.step.unwrap_or((i + 1) as f64), p.loss))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    }

    /// The x of a validation point: its step when it has one and the plot is by step, else
    /// its epoch's end.
    fn val_x(&self, p: &ValPoint, train: &[(f64, f64)]) -> f64 {
        match p.step {
            Some(step) if !train.is_empty() => step,
            _ => self.epoch_x(p.epoch, train),
        }
    }

    /// The x of an epoch's end: the last train step logged in it, else a linear map of the
    /// epoch onto the steps (or the epoch itself when there is no train point).
    fn epoch_x(&self, epoch: f64, train: &[(f64, f64)]) -> f64 {
        let in_epoch = self
            .train
            .iter()
            .zip(train)
            .filter(|(p, _)| p.epoch == epoch)
            .map(|(_, xy)| xy.0)
            .fold(f64::NAN, f64::max);
        if in_epoch.is_finite() {
            return in_epoch;
        }
        let max_epoch = self.train.iter().map(|p| p.epoch).fold(f64::NAN, f64::max);
        let max_x = train.iter().map(|p| p.0).fold(f64::NAN, f64::max);
        if max_epoch.is_finite() && max_epoch > 0.0 && max_x.is_finite() {
            epoch * max_x / max_epoch
        } else {
            epoch
        }
    }
}

pub(crate) fn register_font() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok())
}

/// What the plot shows: train and validation (x, loss), and the best validation point with
/// its epoch.
struct PlotPoints {
    train: Vec<(f64, f64)>,
    val: Vec<(f64, f64)>,
    best: Option<(f64, f64, f64)>,
}

impl LossHistory {
    /// The finite points to draw, placed on one x axis (steps when known, else epochs).
    fn plot_points(&self) -> PlotPoints {
        let train = self.train_xy();
        let val: Vec<(f64, f64)> = self
            .val
            .iter()
            .map(|p| (self.val_x(p, &train), p.loss))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let best = self.best_epoch.and_then(|b| {
            self.val
                .iter()
                .rev()
                .find(|p| {
                    p.epoch == b
                        && p.loss.is_finite()
                        && (self.best_step.is_none() || p.step == self.best_step)
                })
                .map(|p| (self.val_x(p, &train), p.loss, b))
        });
        PlotPoints { train, val, best }
    }
}

/// Draw the history into a PNG at `path`. Returns false (and writes nothing) when the history
/// holds no finite loss.
pub fn draw_loss_plot(history: &LossHistory, path: &Path) -> Result<bool, EvaluateError> {
    let points = history.plot_points();
    if points.train.is_empty() && points.val.is_empty() {
        return Ok(false);
    }
    render_png(path, |root| draw(root, history, &points))?;
    Ok(true)
}

/// Draw the chart on `root`; axis labels, title and legend only when the embedded font
/// registered.
fn draw(
    root: DrawingArea<BitMapBackend<'_>, Shift>,
    history: &LossHistory,
    points: &PlotPoints,
) -> Result<(), String> {
    let plot_err = |e: &dyn std::fmt::Display| e.to_string();
    let text = register_font();
    let PlotPoints { train, val, best } = points;
    let steps_known = !train.is_empty();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let all = train.iter().chain(val.iter());
    let (x0, x1) = span(all.clone().map(|p| p.0));
    let (y0, y1) = span(all.map(|p| p.1));
    let pad = (y1 - y0) * 0.05;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if text {
        let mut title = "train vs val loss".to_string();
        if history.stopped_early == Some(true) {
            title.push_str(" (stopped early)");
        }
        builder
            .caption(title, (FAMILY, 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| plot_err(&e))?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(if steps_known { "step" } else { "epoch" })
            .y_desc("loss");
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw().map_err(|e| plot_err(&e))?;

    let train_color = RGBColor(31, 119, 180);
    let val_color = RGBColor(255, 127, 14);
    if !train.is_empty() {
        let series = chart
            .draw_series(LineSeries::new(
                train.iter().copied(),
                train_color.stroke_width(2),
            ))
            .map_err(|e| plot_err(&e))?;
        if text {
            series.label("train").legend(line_sample(train_color));
        }
    }
    if !val.is_empty() {
        let series = chart
            .draw_series(LineSeries::new(
                val.iter().copied(),
                val_color.stroke_width(2),
            ))
            .map_err(|e| plot_err(&e))?;
        if text {
            series.label("val").legend(line_sample(val_color));
        }
        chart
            .draw_series(
                val.iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, val_color.filled())),
            )
            .map_err(|e| plot_err(&e))?;
    }
    if let Some((x, y, epoch)) = *best {
        let series = chart
            .draw_series(std::iter::once(Circle::new(
                (x, y),
                8,
                BLACK.stroke_width(2),
            )))
            .map_err(|e| plot_err(&e))?;
        if text {
            series
                .label(format!("best (epoch {epoch})"))
                .legend(|(x, y)| Circle::new((x + 10, y), 6, BLACK.stroke_width(2)));
        }
    }
    if text {
        draw_legend(&mut chart)?;
    }
    root.present().map_err(|e| plot_err(&e))
}

/// A legend entry's sample: a short line in the series' colour.
pub(crate) fn line_sample(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

/// The series labels in the upper right corner, on a translucent white box.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())
}

/// An RGB8 canvas of [`SIZE`] drawn by `draw`, written as a PNG file at `path`.
pub(crate) fn render_png(
    path: &Path,
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<(), EvaluateError> {
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    draw(BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area()).map_err(|message| {
        EvaluateError::Plot {
            path: path.display().to_string(),
            message,
        }
    })?;
    write_png(path, &buf, SIZE.0, SIZE.1)
}

/// (min, max) of finite values, widened when they are equal.
pub(crate) fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// RGB8 pixels → a PNG file.
pub(crate) fn write_png(path: &Path, rgb: &[u8], w: u32, h: u32) -> Result<(), EvaluateError> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| EvaluateError::Png {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    std::fs::write(path, png).map_err(EvaluateError::write(path))
}
