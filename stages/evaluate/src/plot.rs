//! The loss plot: `train_vs_val_loss.png`, and the same drawing as SVG for `report.html`.
//!
//! The train loss per logged step (raw, and smoothed over it when there are enough steps), the
//! validation loss (from the one measured before the first step, at step 0), the best
//! validation point, on a log-scale loss axis with integer step (or epoch) ticks; the learning
//! rate per step on a second axis when the history records it. Drawn with plotters and an
//! embedded font (DejaVu Sans Mono, see `assets/DejaVuSansMono-LICENSE.txt`), so no system
//! font or font-kit is needed.

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
    /// The validation loss before any step (drawn at step 0).
    pub initial_val_loss: Option<f64>,
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
    /// The step's learning rate, when the history records it.
    #[serde(default)]
    pub lr: Option<f64>,
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

    /// The x of each train point: its step (or its position).
    fn train_x(&self) -> Vec<f64> {
        self.train
            .iter()
            .enumerate()
            .map(|(i, p)| p.step.unwrap_or((i + 1) as f64))
            .collect()
    }

    /// The x of a validation point: its step when it has one and the plot is by step, else
    /// its epoch's end.
    fn val_x(&self, p: &ValPoint, train_x: &[f64]) -> f64 {
        match p.step {
            Some(step) if !train_x.is_empty() => step,
            _ => self.epoch_x(p.epoch, train_x),
        }
    }

    /// The x of an epoch's end: the last train step logged in it, else a linear map of the
    /// epoch onto the steps (or the epoch itself when there is no train point).
    fn epoch_x(&self, epoch: f64, train_x: &[f64]) -> f64 {
        let in_epoch = self
            .train
            .iter()
            .zip(train_x)
            .filter(|(p, x)| p.epoch == epoch && x.is_finite())
            .map(|(_, &x)| x)
            .fold(f64::NAN, f64::max);
        if in_epoch.is_finite() {
            return in_epoch;
        }
        let max_epoch = self.train.iter().map(|p| p.epoch).fold(f64::NAN, f64::max);
        let max_x = train_x.iter().copied().fold(f64::NAN, f64::max);
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

/// What the plot shows, on one x axis (steps when known, else epochs). Losses that a log axis
/// cannot show (not finite, not positive) are left out.
#[derive(Debug, Clone, PartialEq)]
struct PlotPoints {
    /// Train (x, loss) as logged.
    train: Vec<(f64, f64)>,
    /// The train losses smoothed; empty when there are too few to need it.
    smooth: Vec<(f64, f64)>,
    /// How many steps the smoothing's moving mean spans.
    window: usize,
    /// Validation (x, loss): the loss before training at x = 0 first, when recorded.
    val: Vec<(f64, f64)>,
    /// The best validation point: (x, loss, epoch).
    best: Option<(f64, f64, f64)>,
    /// (x, learning rate) of the train steps that record it.
    lr: Vec<(f64, f64)>,
    /// Whether x is the step (else the epoch).
    by_step: bool,
}

/// A loss a log axis can show.
fn drawable(x: f64, y: f64) -> bool {
    x.is_finite() && y.is_finite() && y > 0.0
}

impl LossHistory {
    fn plot_points(&self) -> PlotPoints {
        let train_x = self.train_x();
        let train: Vec<(f64, f64)> = self
            .train
            .iter()
            .zip(&train_x)
            .map(|(p, &x)| (x, p.loss))
            .filter(|&(x, y)| drawable(x, y))
            .collect();
        let lr: Vec<(f64, f64)> = self
            .train
            .iter()
            .zip(&train_x)
            .filter_map(|(p, &x)| Some((x, p.lr?)))
            .filter(|(x, lr)| x.is_finite() && lr.is_finite() && *lr >= 0.0)
            .collect();
        let initial = self
            .initial_val_loss
            .map(|loss| (0.0, loss))
            .filter(|&(x, y)| drawable(x, y));
        let val: Vec<(f64, f64)> = initial
            .into_iter()
            .chain(self.val.iter().map(|p| (self.val_x(p, &train_x), p.loss)))
            .filter(|&(x, y)| drawable(x, y))
            .collect();
        let best = self.best_epoch.and_then(|b| {
            self.val
                .iter()
                .rev()
                .find(|p| {
                    p.epoch == b
                        && drawable(0.0, p.loss)
                        && (self.best_step.is_none() || p.step == self.best_step)
                })
                .map(|p| (self.val_x(p, &train_x), p.loss, b))
        });
        let window = smoothing_window(train.len());
        let smooth = if window > 1 {
            smoothed(&train, window)
        } else {
            Vec::new()
        };
        PlotPoints {
            by_step: !train_x.is_empty(),
            train,
            smooth,
            window,
            val,
            best,
            lr,
        }
    }
}

/// The smoothing window for `n` train points, odd: about 4 % of the run, at most 51 steps; 1
/// (no smoothing) up to 25 points.
fn smoothing_window(n: usize) -> usize {
    n.div_ceil(25).clamp(1, 51) | 1
}

/// A centred moving mean over `window` points (fewer at the ends, where the window is cut
/// short): unlike an exponential average it does not lag behind a falling loss.
fn smoothed(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let half = window / 2;
    let mut prefix = Vec::with_capacity(points.len() + 1);
    prefix.push(0.0);
    for &(_, y) in points {
        prefix.push(prefix[prefix.len() - 1] + y);
    }
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, _))| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(points.len());
            (x, (prefix[hi] - prefix[lo]) / (hi - lo) as f64)
        })
        .collect()
}

/// Draw the history into a PNG at `path`. Returns false (and writes nothing) when the history
/// holds no drawable loss.
pub fn draw_loss_plot(history: &LossHistory, path: &Path) -> Result<bool, EvaluateError> {
    let points = history.plot_points();
    if points.train.is_empty() && points.val.is_empty() {
        return Ok(false);
    }
    render_png(path, |root| draw(root, history, &points))?;
    Ok(true)
}

/// The same plot as an SVG document (for `report.html`); `None` when the history holds no
/// drawable loss.
pub fn loss_plot_svg(history: &LossHistory) -> Result<Option<String>, EvaluateError> {
    let points = history.plot_points();
    if points.train.is_empty() && points.val.is_empty() {
        return Ok(None);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(root, history, &points).map_err(|message| EvaluateError::Plot {
            path: "report.html".into(),
            message,
        })?;
    }
    Ok(Some(svg))
}

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const LR: RGBColor = RGBColor(44, 160, 44);

/// A loss axis label: the tick's value, up to three significant digits (1, 1.5, 0.25, 2.17).
pub(crate) fn loss_label(v: f64) -> String {
    let digits = (2 - v.log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Ticks for a log axis over `lo..hi`: the sparsest of 1, {1, 2, 5}, {1, 2, 3, 5} and every
/// 1–9 (with 1.5) × 10ⁿ that gives four ticks or more; else (a range narrower than that) five
/// ticks evenly spaced in log, to three significant digits.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const SETS: [&[f64]; 4] = [
        &[1.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 2.0, 3.0, 5.0],
        &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ];
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Vec::new();
    }
    let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    for set in SETS {
        let ticks: Vec<f64> = (e0..=e1)
            .flat_map(|e| set.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect();
        if ticks.len() >= 4 {
            return ticks;
        }
    }
    (0..5)
        .map(|i| {
            let v = lo * (hi / lo).powf((f64::from(i) + 0.5) / 5.0);
            let scale = 10f64.powi(2 - v.log10().floor() as i32);
            (v * scale).round() / scale
        })
        .collect()
}

/// An x (a step or an epoch) as the axes place it: the nearest integer.
pub(crate) fn x_of(x: f64) -> i64 {
    x.round() as i64
}

/// Draw the chart on `root`; axis labels, title and legend only when the embedded font
/// registered.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    history: &LossHistory,
    points: &PlotPoints,
) -> Result<(), String> {
    let plot_err = |e: &dyn std::fmt::Display| e.to_string();
    let text = register_font();
    let PlotPoints {
        train,
        smooth,
        window,
        val,
        best,
        lr,
        by_step,
    } = points;
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let all = train.iter().chain(val.iter());
    let (x0, x1) = span(all.clone().map(|p| p.0));
    let (x0, mut x1) = (x_of(x0.floor()), x_of(x1.ceil()));
    if x1 <= x0 {
        x1 = x0 + 1;
    }
    let (y0, y1) = span(all.map(|p| p.1));
    // A log axis needs a positive range; widen it a little so no line sits on the frame.
    let (y0, y1) = ((y0 * 0.9).max(f64::MIN_POSITIVE), y1 * 1.1);
    let lr_max = lr.iter().map(|p| p.1).fold(0.0, f64::max);
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
            .y_label_area_size(70);
        if lr_max > 0.0 {
            builder.right_y_label_area_size(80);
        }
    }
    let mut chart = builder
        .build_cartesian_2d(
            x0..x1,
            (y0..y1).log_scale().with_key_points(log_ticks(y0, y1)),
        )
        .map_err(|e| plot_err(&e))?
        .set_secondary_coord(x0..x1, 0.0..(lr_max * 1.05).max(f64::MIN_POSITIVE));
    let loss_ticks = |v: &f64| loss_label(*v);
    let lr_ticks = |v: &f64| format!("{v:.1e}");
    let mut mesh = chart.configure_mesh();
    mesh.max_light_lines(2);
    if text {
        mesh.x_desc(if *by_step { "step" } else { "epoch" })
            .y_desc("loss (log scale)")
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .y_label_formatter(&loss_ticks);
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw().map_err(|e| plot_err(&e))?;
    if text && lr_max > 0.0 {
        chart
            .configure_secondary_axes()
            .y_desc("learning rate")
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .y_label_formatter(&lr_ticks)
            .draw()
            .map_err(|e| plot_err(&e))?;
    }

    let line = |pts: &[(f64, f64)]| pts.iter().map(|&(x, y)| (x_of(x), y)).collect::<Vec<_>>();
    if !lr.is_empty() && lr_max > 0.0 {
        let series = chart
            .draw_secondary_series(DashedLineSeries::new(line(lr), 6, 4, LR.stroke_width(1)))
            .map_err(|e| plot_err(&e))?;
        if text {
            series.label("learning rate").legend(line_sample(LR));
        }
    }
    if !train.is_empty() {
        // Under a smoothed curve the raw one is pale and thin.
        let raw_style = if smooth.is_empty() {
            TRAIN.stroke_width(2)
        } else {
            TRAIN.mix(0.3).stroke_width(1)
        };
        let series = chart
            .draw_series(LineSeries::new(line(train), raw_style))
            .map_err(|e| plot_err(&e))?;
        if text {
            let label = if smooth.is_empty() {
                "train"
            } else {
                "train (raw)"
            };
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], raw_style));
        }
    }
    if !smooth.is_empty() {
        let series = chart
            .draw_series(LineSeries::new(line(smooth), TRAIN.stroke_width(2)))
            .map_err(|e| plot_err(&e))?;
        if text {
            series
                .label(format!("train (mean of {window} steps)"))
                .legend(line_sample(TRAIN));
        }
    }
    if !val.is_empty() {
        let series = chart
            .draw_series(LineSeries::new(line(val), VAL.stroke_width(2)))
            .map_err(|e| plot_err(&e))?;
        if text {
            series.label("val").legend(line_sample(VAL));
        }
        chart
            .draw_series(
                line(val)
                    .into_iter()
                    .map(|p| Circle::new(p, 4, VAL.filled())),
            )
            .map_err(|e| plot_err(&e))?;
    }
    if let Some((x, y, epoch)) = *best {
        let series = chart
            .draw_series(std::iter::once(Circle::new(
                (x_of(x), y),
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
        draw_legend(&mut *chart)?;
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
        .label_font((FAMILY, 14))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn train(points: &[(f64, f64, Option<f64>)]) -> Vec<TrainPoint> {
        points
            .iter()
            .map(|&(step, loss, lr)| TrainPoint {
                epoch: 1.0,
                step: Some(step),
                loss,
                lr,
            })
            .collect()
    }

    #[test]
    fn train_s_history_reads_with_and_without_lr_and_the_initial_loss() {
        let new: LossHistory = serde_json::from_str(
            r#"{"train": [{"epoch": 1, "step": 1, "loss": 3.0, "lr": 0.001}],
                "val": [{"epoch": 1, "step": 1, "loss": 2.5}],
                "initial_val_loss": 3.5, "best_epoch": 1, "best_step": 1,
                "stopped_early": false}"#,
        )
        .expect("reads");
        assert_eq!(new.train[0].lr, Some(0.001));
        assert_eq!(new.initial_val_loss, Some(3.5));
        let old: LossHistory =
            serde_json::from_str(r#"{"train": [{"epoch": 1, "step": 1, "loss": 3.0}], "val": []}"#)
                .expect("an older history reads too");
        assert_eq!(old.train[0].lr, None);
        assert_eq!(old.initial_val_loss, None);
        assert!(old.plot_points().lr.is_empty());
    }

    #[test]
    fn the_loss_before_training_is_the_val_point_at_step_0() {
        let h = LossHistory {
            train: train(&[
                (1.0, 3.0, Some(1e-4)),
                (2.0, 2.0, None),
                (3.0, 1.5, Some(5e-5)),
            ]),
            val: vec![ValPoint {
                epoch: 1.0,
                step: Some(3.0),
                loss: 1.8,
            }],
            initial_val_loss: Some(3.9),
            best_epoch: Some(1.0),
            ..LossHistory::default()
        };
        let p = h.plot_points();
        assert_eq!(p.val, vec![(0.0, 3.9), (3.0, 1.8)]);
        assert_eq!(p.best, Some((3.0, 1.8, 1.0)));
        assert_eq!(
            p.lr,
            vec![(1.0, 1e-4), (3.0, 5e-5)],
            "steps without lr are skipped"
        );
        assert!(p.by_step);
        // Losses a log axis cannot show are left out, the initial one included.
        let h = LossHistory {
            train: train(&[(1.0, 0.0, None), (2.0, f64::NAN, None), (3.0, 1.5, None)]),
            initial_val_loss: Some(-1.0),
            ..LossHistory::default()
        };
        let p = h.plot_points();
        assert_eq!(p.train, vec![(3.0, 1.5)]);
        assert!(p.val.is_empty());
    }

    #[test]
    fn the_smoothed_curve_keeps_the_level_and_drops_the_noise() {
        assert_eq!(smoothing_window(25), 1);
        assert_eq!(smoothing_window(200), 9);
        assert_eq!(smoothing_window(100_000), 51);
        // Loss 2 ± 0.5, alternating: the raw curve spans 1, the smoothed one far less, around 2.
        let noisy: Vec<(f64, f64)> = (0..200)
            .map(|i| (f64::from(i + 1), if i % 2 == 0 { 2.5 } else { 1.5 }))
            .collect();
        let s = smoothed(&noisy, smoothing_window(noisy.len()));
        assert_eq!(s.len(), noisy.len());
        assert!(s.iter().zip(&noisy).all(|(a, b)| a.0 == b.0), "same steps");
        let lo = s.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = s.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        assert!(lo >= 1.9 - 1e-9 && hi <= 2.1 + 1e-9, "{lo}..{hi}");
        // Where the window is whole, ±0.5 / 9 at most.
        assert!(s[4..196].iter().all(|p| (p.1 - 2.0).abs() < 0.06), "{s:?}");
        // No lag: a falling straight line is its own mean wherever the window is whole (an
        // exponential average would sit above it), and a constant stays constant to the ends.
        let line: Vec<(f64, f64)> = (0..100)
            .map(|i| (f64::from(i), 5.0 - 0.01 * f64::from(i)))
            .collect();
        let m = smoothed(&line, 9);
        assert!(
            m[4..96]
                .iter()
                .zip(&line[4..96])
                .all(|(a, b)| (a.1 - b.1).abs() < 1e-12)
        );
        let flat = smoothed(&[(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)], 9);
        assert!(flat.iter().all(|p| (p.1 - 3.0).abs() < 1e-12), "{flat:?}");
        // Drawn only when there are enough steps to need it.
        let few = LossHistory {
            train: train(&[(1.0, 3.0, None), (2.0, 2.0, None)]),
            ..LossHistory::default()
        };
        assert!(few.plot_points().smooth.is_empty());
        let many = LossHistory {
            train: train(&noisy.iter().map(|&(x, y)| (x, y, None)).collect::<Vec<_>>()),
            ..LossHistory::default()
        };
        assert_eq!(many.plot_points().smooth, s);
    }

    #[test]
    fn log_ticks_are_round_values_and_enough_of_them() {
        let close = |got: Vec<f64>, want: &[f64]| {
            got.len() == want.len() && got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12)
        };
        // A quickstart run: 4.3 down to 0.44.
        let t = log_ticks(0.44, 4.3);
        assert!(close(t.clone(), &[0.5, 1.0, 2.0, 3.0]), "{t:?}");
        let t = log_ticks(0.06, 12.0);
        assert!(
            close(t.clone(), &[0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]),
            "{t:?}"
        );
        // A fine-tuning run's narrow range: five ticks in log steps, rounded.
        for (lo, hi) in [(1.7, 2.6), (1.9, 2.3)] {
            let t = log_ticks(lo, hi);
            assert_eq!(t.len(), 5, "{t:?}");
            assert!(
                t.windows(2).all(|w| w[0] < w[1]) && t[0] > lo && t[4] < hi,
                "{t:?}"
            );
            assert!(
                t.iter()
                    .all(|v| (v * 100.0 - (v * 100.0).round()).abs() < 1e-9),
                "{t:?}"
            );
        }
        assert!(log_ticks(0.0, 1.0).is_empty());
        assert_eq!(loss_label(2.0), "2");
        assert_eq!(loss_label(1.5), "1.5");
        assert_eq!(loss_label(0.25), "0.25");
        assert_eq!(loss_label(2.17), "2.17");
        assert_eq!(loss_label(12.0), "12");
    }

    /// The `<text>` elements of an SVG: (x, y, text-anchor, content).
    fn texts(svg: &str) -> Vec<(f64, f64, String, String)> {
        let attr = |tag: &str, name: &str| {
            tag.split(&format!(" {name}=\""))
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let (tag, rest) = t.split_once('>')?;
                let content = rest.split("</text>").next()?.trim().to_string();
                Some((
                    attr(tag, "x").parse().ok()?,
                    attr(tag, "y").parse().ok()?,
                    attr(tag, "text-anchor"),
                    content,
                ))
            })
            .collect()
    }

    /// Three steps of loss from 8 down to 0.6, with the learning rate.
    fn three_steps() -> LossHistory {
        LossHistory {
            train: train(&[
                (1.0, 8.0, Some(2e-4)),
                (2.0, 2.0, Some(1e-4)),
                (3.0, 0.6, Some(0.0)),
            ]),
            val: vec![ValPoint {
                epoch: 1.0,
                step: Some(3.0),
                loss: 0.9,
            }],
            initial_val_loss: Some(7.5),
            best_epoch: Some(1.0),
            ..LossHistory::default()
        }
    }

    #[test]
    fn the_svg_has_integer_step_ticks_a_log_loss_axis_and_the_lr_axis() {
        if !register_font() {
            eprintln!("skipped: the embedded font did not register, so no text is drawn");
            return;
        }
        let svg = loss_plot_svg(&three_steps())
            .expect("draws")
            .expect("points");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        let texts = texts(&svg);
        let has = |s: &str| texts.iter().any(|t| t.3 == s);
        for label in ["step", "loss (log scale)", "learning rate", "val", "train"] {
            assert!(has(label), "no {label:?} in {texts:?}");
        }
        // Steps 0..3 on the x axis (step 0: the loss before training), and no fraction of one.
        for step in ["0", "1", "2", "3"] {
            assert!(has(step), "no tick {step}: {texts:?}");
        }
        for fraction in ["0.5", "1.5", "2.5"] {
            assert!(!has(fraction), "a fractional step tick {fraction}");
        }
        // The loss axis' labels (right-aligned, left of the plot) sit at heights linear in
        // the log of their values, not in the values.
        let ticks: Vec<(f64, f64)> = texts
            .iter()
            .filter(|t| t.2 == "end" && t.0 < 100.0)
            .filter_map(|t| Some((t.1, t.3.parse::<f64>().ok()?)))
            .collect();
        assert!(ticks.len() >= 3, "loss ticks {ticks:?}");
        let (a, b, c) = (ticks[0], ticks[1], ticks[ticks.len() - 1]);
        let per_log = (b.0 - a.0) / (b.1.ln() - a.1.ln());
        let predicted = a.0 + per_log * (c.1.ln() - a.1.ln());
        assert!((predicted - c.0).abs() < 2.0, "not log: {ticks:?}");
        let per_unit = (b.0 - a.0) / (b.1 - a.1);
        let linear = a.0 + per_unit * (c.1 - a.1);
        assert!((linear - c.0).abs() > 5.0, "linear: {ticks:?}");
    }

    #[test]
    fn the_png_and_the_svg_draw_the_same_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let png = dir.path().join("p.png");
        assert!(draw_loss_plot(&three_steps(), &png).expect("draws"));
        let img = image::open(&png).expect("a PNG");
        assert_eq!((img.width(), img.height()), SIZE);
        let empty = LossHistory::default();
        assert_eq!(loss_plot_svg(&empty).expect("no error"), None);
        assert!(!draw_loss_plot(&empty, &dir.path().join("none.png")).expect("no error"));
        assert!(!dir.path().join("none.png").exists());
    }
}
