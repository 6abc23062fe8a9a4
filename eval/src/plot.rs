//! PNG charts for the evaluation report, drawn with `plotters` on its bitmap backend.
//!
//! Three kinds, each written to one PNG of [`WIDTH`] × [`HEIGHT`] pixels:
//!
//! - [`line_chart`]: one line per [`Series`], points marked, optional text next to each
//!   point (HR@K curves per method; the creation/consumption trade-off as a weight varies);
//! - [`bar_chart`]: grouped bars, one bar per group in each category (steering compliance
//!   before/after);
//! - [`histogram`]: overlaid semi-transparent histograms on shared bins (session lengths
//!   with and without throttles).
//!
//! Text is drawn with DejaVu Sans, which `scripts/setup.sh` puts in the set-up cache
//! (`$STEERFEED_CACHE/fonts/DejaVuSans.ttf`, else `~/.cache/steerfeed/fonts/`); nothing
//! is looked up among the system fonts and nothing is downloaded at run time. A missing
//! font is a [`PlotError::Font`], and every bad input (no series, an empty series, NaN,
//! lengths that do not match, no bins) is a [`PlotError`] raised before any file is written.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width of every chart in pixels.
pub const WIDTH: u32 = 960;
/// Height of every chart in pixels.
pub const HEIGHT: u32 = 600;
/// File name of the font in the `fonts/` folder of the set-up cache.
pub const FONT_FILE: &str = "DejaVuSans.ttf";
/// Opacity of the bars of [`histogram`] (their outlines are opaque).
pub const HISTOGRAM_ALPHA: f64 = 0.45;
/// Colours given to series, groups and histograms in order (matplotlib's "tab10"); the
/// eleventh series takes the first colour again.
pub const PALETTE: [(u8, u8, u8); 10] = [
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

const FAMILY: &str = "sans-serif";

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The font is missing or is not a font.
    #[error("font {path}: {reason} (run scripts/setup.sh to fetch it)")]
    Font {
        /// Where the font was looked for.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Nothing to draw, or a series / group / category without data.
    #[error("nothing to plot: {0}")]
    Empty(String),
    /// A value is NaN or infinite.
    #[error("{what} is not a finite number ({value})")]
    NotFinite {
        /// Which value.
        what: String,
        /// The value.
        value: f64,
    },
    /// Lengths that must agree do not.
    #[error("{what}: {got} values where {expected} are expected")]
    Mismatch {
        /// Which list.
        what: String,
        /// Its length.
        got: usize,
        /// The length it must have.
        expected: usize,
    },
    /// Another argument out of its range.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// `plotters` failed to draw or to write the file.
    #[error("drawing {path} failed: {message}")]
    Draw {
        /// The output file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

/// One line of a [`line_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Name shown in the legend.
    pub name: String,
    /// Points `(x, y)`, drawn in this order.
    pub points: Vec<(f64, f64)>,
    /// Text drawn next to each point (e.g. the weight that produced it); empty for none,
    /// else exactly one per point.
    pub labels: Vec<String>,
}

impl Series {
    /// A series without point labels.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            labels: Vec::new(),
        }
    }

    /// The same series with one text per point.
    #[must_use]
    pub fn with_labels(mut self, labels: Vec<String>) -> Self {
        self.labels = labels;
        self
    }
}

/// Where the font is expected: `fonts/DejaVuSans.ttf` in the set-up cache.
pub fn font_path() -> PathBuf {
    steerfeed::steer::config::cache_dir()
        .join("fonts")
        .join(FONT_FILE)
}

/// Reads and parses the font at `path` (without registering it).
///
/// Returns the bytes, leaked to `'static` as `plotters` requires.
fn read_font(path: &Path) -> Result<&'static [u8], PlotError> {
    let font_err = |reason: String| PlotError::Font {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| font_err(format!("cannot read it: {e}")))?;
    if !looks_like_font(&bytes) {
        return Err(font_err("not a TrueType/OpenType font".to_string()));
    }
    Ok(Box::leak(bytes.into_boxed_slice()))
}

/// A TrueType file starts with 0x00010000 or "true", an OpenType one with "OTTO", a
/// collection with "ttcf": anything else is rejected before its bytes are leaked.
/// (`plotters` parses the font fully when it is registered.)
fn looks_like_font(bytes: &[u8]) -> bool {
    matches!(
        bytes.get(..4),
        Some([0, 1, 0, 0] | b"true" | b"OTTO" | b"ttcf")
    )
}

/// Checks that the file at `path` is a font `plotters` can draw with and makes it the
/// font of every chart drawn afterwards in this process.
pub fn load_font(path: &Path) -> Result<(), PlotError> {
    let bytes = read_font(path)?;
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| {
        PlotError::Font {
            path: path.to_path_buf(),
            reason: "plotters cannot parse it as a font".to_string(),
        }
    })?;
    // A successful registration is remembered so later charts skip the file.
    let _ = FONT_READY.set(());
    Ok(())
}

static FONT_READY: OnceLock<()> = OnceLock::new();

/// Loads the cache's font once per process.
fn ensure_font() -> Result<(), PlotError> {
    if FONT_READY.get().is_some() {
        return Ok(());
    }
    load_font(&font_path())
}

fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

fn finite(what: impl FnOnce() -> String, value: f64) -> Result<f64, PlotError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(PlotError::NotFinite {
            what: what(),
            value,
        })
    }
}

/// `[lo, hi]` widened by `pad` of its span on each side; a single value gets ±0.5.
fn padded(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    let span = hi - lo;
    if span <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        return (lo - 0.5, hi + 0.5);
    }
    (lo - span * pad, hi + span * pad)
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// What a chart drawing closure may fail with; turned into [`PlotError::Draw`].
type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn render(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
) -> Result<(), PlotError> {
    ensure_font()?;
    let draw_err = |message: String| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    };
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
    draw(&root).map_err(|e| draw_err(e.to_string()))?;
    root.present().map_err(|e| draw_err(e.to_string()))?;
    Ok(())
}

fn legend_box<'a>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 16))
        .draw()?;
    Ok(())
}

/// Draws one line per series (points marked with circles, each point's label next to
/// it when the series has labels) with a legend, into the PNG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), PlotError> {
    if series.is_empty() {
        return Err(PlotError::Empty("no series".to_string()));
    }
    for s in series {
        if s.points.is_empty() {
            return Err(PlotError::Empty(format!(
                "series {:?} has no points",
                s.name
            )));
        }
        if !s.labels.is_empty() && s.labels.len() != s.points.len() {
            return Err(PlotError::Mismatch {
                what: format!("labels of series {:?}", s.name),
                got: s.labels.len(),
                expected: s.points.len(),
            });
        }
        for (i, &(x, y)) in s.points.iter().enumerate() {
            finite(|| format!("x of point {i} of series {:?}", s.name), x)?;
            finite(|| format!("y of point {i} of series {:?}", s.name), y)?;
        }
    }
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    let (x0, x1) = bounds(all().map(|p| p.0)).map_or((0.0, 1.0), |(a, b)| padded(a, b, 0.05));
    // Extra room on top keeps the legend (upper right) off the highest points.
    let (y0, y1) = bounds(all().map(|p| p.1)).map_or((0.0, 1.0), |(a, b)| {
        let (lo, hi) = padded(a, b, 0.1);
        (lo, hi + (hi - lo) * 0.15)
    });

    render(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                });
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
            if !s.labels.is_empty() {
                chart.draw_series(s.points.iter().zip(&s.labels).map(|(&p, text)| {
                    EmptyElement::at(p)
                        + Text::new(text.clone(), (6, -18), (FAMILY, 13).into_font().color(&c))
                }))?;
            }
        }
        legend_box(&mut chart)
    })
}

/// Draws grouped bars: for each category, one bar per group (`groups[g].1[c]` is the
/// value of group `g` in category `c`), with a legend of the groups, into the PNG at `path`.
pub fn bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    groups: &[(String, Vec<f64>)],
) -> Result<(), PlotError> {
    if categories.is_empty() {
        return Err(PlotError::Empty("no categories".to_string()));
    }
    if groups.is_empty() {
        return Err(PlotError::Empty("no groups".to_string()));
    }
    for (name, values) in groups {
        if values.len() != categories.len() {
            return Err(PlotError::Mismatch {
                what: format!("values of group {name:?}"),
                got: values.len(),
                expected: categories.len(),
            });
        }
        for (c, &v) in values.iter().enumerate() {
            finite(
                || format!("value of group {name:?} in {:?}", categories[c]),
                v,
            )?;
        }
    }
    let values = || groups.iter().flat_map(|g| g.1.iter().copied());
    let (lo, hi) = bounds(values()).unwrap_or((0.0, 1.0));
    let (y0, y1) = {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
        (
            if lo < 0.0 { lo - span * 0.1 } else { 0.0 },
            if hi > 0.0 || lo >= 0.0 {
                hi + span * 0.1
            } else {
                0.0
            },
        )
    };
    let n = categories.len() as f64;
    let width = 0.8 / groups.len() as f64;

    render(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n, y0..y1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_desc(y_label)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (g, (name, values)) in groups.iter().enumerate() {
            let c = color(g);
            chart
                .draw_series(values.iter().enumerate().map(|(ci, &v)| {
                    let left = ci as f64 + 0.1 + g as f64 * width;
                    Rectangle::new([(left, 0.0), (left + width * 0.95, v)], c.filled())
                }))?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
        }
        // Category names under the axis, centred on their slot (drawn on the whole
        // image, since the plotting area clips everything below the axis).
        let style = (FAMILY, 15)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (ci, name) in categories.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(ci as f64 + 0.5, y0));
            root.draw(&Text::new(name.clone(), (px, py + 8), style.clone()))?;
        }
        legend_box(&mut chart)
    })
}

/// Draws one histogram per series over shared bins (`bins` equal bins spanning all the
/// values), overlaid with semi-transparent fill, with a legend, into the PNG at `path`.
/// The y axis counts values per bin.
pub fn histogram(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<f64>)],
    bins: usize,
) -> Result<(), PlotError> {
    if bins == 0 {
        return Err(PlotError::Invalid("bins must be at least 1".to_string()));
    }
    if series.is_empty() {
        return Err(PlotError::Empty("no series".to_string()));
    }
    for (name, values) in series {
        if values.is_empty() {
            return Err(PlotError::Empty(format!("series {name:?} has no values")));
        }
        for (i, &v) in values.iter().enumerate() {
            finite(|| format!("value {i} of series {name:?}"), v)?;
        }
    }
    let (lo, hi) = bounds(series.iter().flat_map(|s| s.1.iter().copied())).unwrap_or((0.0, 1.0));
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let step = (hi - lo) / bins as f64;
    let counts: Vec<Vec<usize>> = series
        .iter()
        .map(|(_, values)| {
            let mut c = vec![0usize; bins];
            for &v in values {
                // The top edge belongs to the last bin.
                let b = (((v - lo) / step).floor() as usize).min(bins - 1);
                c[b] += 1;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;

    render(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, 0.0..top * 1.1)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("count")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (s, ((name, _), c_counts)) in series.iter().zip(&counts).enumerate() {
            let c = color(s);
            let bar = |b: usize, n: usize| {
                let left = lo + b as f64 * step;
                [(left, 0.0), (left + step, n as f64)]
            };
            chart
                .draw_series(
                    c_counts
                        .iter()
                        .enumerate()
                        .filter(|&(_, &n)| n > 0)
                        .map(|(b, &n)| Rectangle::new(bar(b, n), c.mix(HISTOGRAM_ALPHA).filled())),
                )?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new(
                        [(x, y - 6), (x + 16, y + 6)],
                        c.mix(HISTOGRAM_ALPHA).filled(),
                    )
                });
            chart.draw_series(
                c_counts
                    .iter()
                    .enumerate()
                    .filter(|&(_, &n)| n > 0)
                    .map(|(b, &n)| Rectangle::new(bar(b, n), c.stroke_width(2))),
            )?;
        }
        legend_box(&mut chart)
    })
}
