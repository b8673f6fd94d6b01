//! ROC and reliability plots as PNG files.
//!
//! Text is rendered with the DejaVu Sans font compiled into the binary (plotters'
//! `ab_glyph` backend), so plotting needs no fontconfig or system font.

use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::classification::{ReliabilityTable, RocCurve};
use crate::error::{MetricError, Result};

const SIZE: (u32, u32) = (720, 640);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF shipped by the `dejavu` crate; failure would be a build bug.
        let ok = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        debug_assert!(ok.is_ok(), "embedded DejaVu Sans failed to parse");
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> MetricError {
    MetricError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Curves one chart can tell apart: series beyond this repeat colours.
pub const DISTINCT_COLOURS: usize = 10;

fn series_color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; DISTINCT_COLOURS] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// What every chart here shares: a white PNG canvas with a title, axes over `x` and `y` with
/// their descriptions, whatever `draw` adds, and the legend boxed at `legend`.
fn png_chart(
    path: &Path,
    title: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
    legend: SeriesLabelPosition,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<()>,
) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    draw(&mut chart)?;
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// Series `i` as a line in its palette colour, with `label` in the legend.
fn labelled_line(
    chart: &mut Chart<'_, '_>,
    path: &Path,
    i: usize,
    label: String,
    points: impl IntoIterator<Item = (f64, f64)>,
) -> Result<()> {
    let color = series_color(i);
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))
        .map_err(|e| plot_err(path, e))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    Ok(())
}

/// The y = x line: chance for ROC curves, perfect calibration for reliability diagrams.
fn diagonal(chart: &mut Chart<'_, '_>, path: &Path) -> Result<()> {
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
        .map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// Draws one or more ROC curves (labelled, e.g. with their AUROC) on the unit square,
/// with the chance diagonal, and writes a PNG to `path`.
pub fn roc_plot_png(path: &Path, title: &str, curves: &[(&str, &RocCurve)]) -> Result<()> {
    png_chart(
        path,
        title,
        (0.0..1.0, 0.0..1.0),
        ("False positive rate", "True positive rate"),
        SeriesLabelPosition::LowerRight,
        |chart| {
            diagonal(chart, path)?;
            for (i, (label, curve)) in curves.iter().enumerate() {
                let points = curve.fpr.iter().copied().zip(curve.tpr.iter().copied());
                labelled_line(chart, path, i, label.to_string(), points)?;
            }
            Ok(())
        },
    )
}

/// Draws reliability diagrams (mean score against fraction positive for each non-empty
/// bin, with the perfect-calibration diagonal) and writes a PNG to `path`.
pub fn reliability_plot_png(
    path: &Path,
    title: &str,
    tables: &[(&str, &ReliabilityTable)],
) -> Result<()> {
    png_chart(
        path,
        title,
        (0.0..1.0, 0.0..1.0),
        ("Mean predicted probability", "Fraction positive"),
        SeriesLabelPosition::UpperLeft,
        |chart| {
            diagonal(chart, path)?;
            for (i, (label, table)) in tables.iter().enumerate() {
                let points: Vec<(f64, f64)> = table
                    .bins
                    .iter()
                    .filter_map(|b| Some((b.mean_score?, b.fraction_positive?)))
                    .collect();
                let label = format!("{label} (ECE {:.3})", table.ece);
                labelled_line(chart, path, i, label, points.iter().copied())?;
                let color = series_color(i);
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| plot_err(path, e))?;
            }
            Ok(())
        },
    )
}

/// Draws line series over a shared x axis (a training curve: loss and validation AUROC
/// per epoch) and writes a PNG to `path`. The y range covers every finite point.
pub fn line_plot_png(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    series: &[(&str, &[(f64, f64)])],
) -> Result<()> {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in series
        .iter()
        .flat_map(|(_, s)| s.iter())
        .filter(|p| finite(p))
    {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    // A flat series still needs a drawable range.
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    png_chart(
        path,
        title,
        (x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad)),
        axes,
        SeriesLabelPosition::UpperRight,
        |chart| {
            for (i, (label, points)) in series.iter().enumerate() {
                let points = points.iter().copied().filter(finite);
                labelled_line(chart, path, i, label.to_string(), points)?;
            }
            Ok(())
        },
    )
}

/// One estimate of a dot-and-whisker chart: its label, the point, and its interval where
/// there is one.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// Shown under its dot.
    pub label: String,
    /// The point estimate.
    pub value: f64,
    /// The interval's ends, drawn as the whisker.
    pub interval: Option<(f64, f64)>,
}

/// Draws one dot per estimate, left to right in the given order, each with its interval as
/// a whisker, on a y axis over `y` described by `y_desc`, and writes a PNG to `path`.
/// Non-finite values are left out (their label stays, so the order still reads).
pub fn dot_whisker_png(
    path: &Path,
    title: &str,
    y_desc: &str,
    y: std::ops::Range<f64>,
    estimates: &[Estimate],
) -> Result<()> {
    register_font();
    let n = estimates.len().max(1);
    // Room for a label of about 16 characters under each dot.
    let width = (160 + 130 * n as u32).max(SIZE.0);
    let root = BitMapBackend::new(path, (width, SIZE.1)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let labels: Vec<String> = estimates.iter().map(|e| e.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), y)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 13))
        .y_max_light_lines(1)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    let color = series_color(0);
    for (i, e) in estimates.iter().enumerate() {
        let x = i as f64;
        if let Some((lo, hi)) = e
            .interval
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
        {
            chart
                .draw_series([
                    PathElement::new([(x, lo), (x, hi)], color.stroke_width(2)),
                    PathElement::new([(x - 0.12, lo), (x + 0.12, lo)], color.stroke_width(2)),
                    PathElement::new([(x - 0.12, hi), (x + 0.12, hi)], color.stroke_width(2)),
                ])
                .map_err(|e| plot_err(path, e))?;
        }
        if e.value.is_finite() {
            chart
                .draw_series([Circle::new((x, e.value), 6, color.filled())])
                .map_err(|e| plot_err(path, e))?;
        }
    }
    root.present().map_err(|e| plot_err(path, e))
}
