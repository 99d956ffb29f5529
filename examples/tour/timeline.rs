//! Per-scenario timelines (events per bucket of simulated time, or a level sampled per bucket, and
//! the buckets in which a primitive was in a state worth shading) and their SVG plots
//! (`--plot DIR`), drawn with `plotters`' SVG backend.
//!
//! Every series has a fixed style, the same in every plot: the load (requests, calls reaching the
//! dependency) in cool colours, failures (the dependency failing or timing out, a caller getting
//! an error) in solid red and purple, and refusals (a primitive answering at once without calling
//! the dependency) as dashed lines in warm colours, so a refusal never reads as a failure.

use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// How a series is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    /// The arriving load: a wide, pale band beneath the other lines, which often run along it.
    Base,
    /// Calls, successes, failures: a solid line.
    Solid,
    /// A refusal: dashed, so it stands apart from the failures.
    Dashed,
    /// A reference (a threshold): thin and grey.
    Reference,
}

/// A named series and its style.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Series {
    name: &'static str,
    colour: RGBColor,
    line: Line,
}

const fn series(name: &'static str, colour: (u8, u8, u8), line: Line) -> Series {
    Series {
        name,
        colour: RGBColor(colour.0, colour.1, colour.2),
        line,
    }
}

/// Every series in drawing (and legend) order: the load, then the outcomes, then the refusals, so
/// a series keeps its place across panels and plots.
const ORDER: [Series; 17] = [
    REQUESTS,
    READS,
    CALLS,
    ADMIN,
    SUCCEEDED,
    READS_IN_TIME,
    READS_LATE,
    DB_FAILURES,
    REQUESTS_FAILED,
    FAILURE_RATE,
    THRESHOLD,
    REFUSED_BREAKER,
    REFUSED_CACHE,
    REFUSED_BUDGET,
    REFUSED_BULKHEAD,
    REFUSED_DRAIN,
    // The last place: a series missing from the list above sorts after every other.
    series("", (0, 0, 0), Line::Solid),
];

fn rank(s: &Series) -> usize {
    ORDER.iter().position(|o| o == s).unwrap_or(ORDER.len() - 1)
}

pub(crate) const REQUESTS: Series = series("requests", (31, 119, 180), Line::Base);
pub(crate) const CALLS: Series = series("calls reaching the database", (23, 190, 207), Line::Solid);
pub(crate) const SUCCEEDED: Series = series("requests succeeded", (44, 160, 44), Line::Solid);
pub(crate) const DB_FAILURES: Series = series(
    "failed at the database (error or timeout)",
    (214, 39, 40),
    Line::Solid,
);
pub(crate) const REQUESTS_FAILED: Series = series(
    "requests failed (the caller got an error)",
    (148, 103, 189),
    Line::Solid,
);
pub(crate) const REFUSED_BREAKER: Series =
    series("refused: breaker open", (255, 127, 14), Line::Dashed);
pub(crate) const REFUSED_CACHE: Series = series(
    "refused: breaker open, answered from cache",
    (255, 127, 14),
    Line::Dashed,
);
pub(crate) const REFUSED_BUDGET: Series =
    series("refused: retry budget spent", (188, 189, 34), Line::Dashed);
pub(crate) const REFUSED_BULKHEAD: Series =
    series("refused: bulkhead full", (227, 119, 194), Line::Dashed);
pub(crate) const REFUSED_DRAIN: Series =
    series("refused: draining (503)", (140, 86, 75), Line::Dashed);
pub(crate) const READS: Series = series("reads arriving", (31, 119, 180), Line::Base);
pub(crate) const READS_IN_TIME: Series =
    series("reads served within 100 ms", (44, 160, 44), Line::Solid);
pub(crate) const READS_LATE: Series = series(
    "reads served after waiting over 100 ms",
    (214, 39, 40),
    Line::Solid,
);
pub(crate) const ADMIN: Series =
    series("admin jobs reaching the pool", (23, 190, 207), Line::Solid);
pub(crate) const FAILURE_RATE: Series =
    series("failure rate the window shows", (214, 39, 40), Line::Solid);
pub(crate) const THRESHOLD: Series = series("breaker threshold", (100, 100, 100), Line::Reference);

/// A state shaded behind the lines.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shade {
    name: &'static str,
    colour: RGBColor,
}

pub(crate) const BREAKER_OPEN: Shade = Shade {
    name: "breaker open or half-open",
    colour: RGBColor(255, 160, 160),
};
pub(crate) const WOULD_TRIP: Shade = Shade {
    name: "a breaker would open here",
    colour: RGBColor(255, 160, 160),
};
pub(crate) const NOT_READY: Shade = Shade {
    name: "not ready (/ready is 503), still admitting",
    colour: RGBColor(255, 221, 120),
};
pub(crate) const DRAINING: Shade = Shade {
    name: "draining (refusing new work)",
    colour: RGBColor(170, 190, 230),
};

/// One variant's timeline: values per bucket of the x axis, one vector per series, and the
/// buckets in which each shaded state held.
pub(crate) struct Timeline {
    pub(crate) variant: String,
    bucket: f64,
    /// Events per bucket, drawn per unit of x (per second); otherwise a level, drawn as is.
    rates: bool,
    x_desc: &'static str,
    y_desc: &'static str,
    series: Vec<(Series, Vec<f64>)>,
    shades: Vec<(Shade, Vec<bool>)>,
}

impl Timeline {
    /// A timeline of events counted per `bucket_secs` of simulated time, drawn per second.
    pub(crate) fn new(variant: &str, bucket_secs: f64) -> Self {
        Self {
            variant: variant.to_owned(),
            bucket: bucket_secs,
            rates: true,
            x_desc: "simulated time (s)",
            y_desc: "per second",
            series: Vec::new(),
            shades: Vec::new(),
        }
    }

    /// A timeline of levels (set with [`Timeline::level`]) along any x axis, in buckets of
    /// `bucket` x units.
    pub(crate) fn levels(
        variant: &str,
        bucket: f64,
        x_desc: &'static str,
        y_desc: &'static str,
    ) -> Self {
        Self {
            rates: false,
            x_desc,
            y_desc,
            ..Self::new(variant, bucket)
        }
    }

    fn bucket(&self, x: f64) -> usize {
        // The nudge keeps an x on a bucket's edge (0.15 s in 0.05 s buckets) from falling into
        // the bucket before through rounding.
        (x / self.bucket + 1e-9).max(0.0) as usize
    }

    fn values(&mut self, s: Series, len: usize) -> &mut Vec<f64> {
        let i = match self.series.iter().position(|(n, _)| *n == s) {
            Some(i) => i,
            None => {
                self.series.push((s, Vec::new()));
                self.series.len() - 1
            }
        };
        let v = &mut self.series[i].1;
        if v.len() < len {
            v.resize(len, 0.0);
        }
        v
    }

    /// Adds one event of `s` at `x` (simulated seconds).
    pub(crate) fn count(&mut self, s: Series, x: f64) {
        self.add(s, x, 1.0);
    }

    /// Adds `n` events of `s` at `x`.
    pub(crate) fn add(&mut self, s: Series, x: f64, n: f64) {
        let b = self.bucket(x);
        self.values(s, b + 1)[b] += n;
    }

    /// Sets the level of `s` in the bucket holding `x` (the highest level set in a bucket wins).
    pub(crate) fn level(&mut self, s: Series, x: f64, v: f64) {
        let b = self.bucket(x);
        let slot = &mut self.values(s, b + 1)[b];
        *slot = slot.max(v);
    }

    /// Marks `shade` as holding during the bucket holding `x`.
    pub(crate) fn shade(&mut self, shade: Shade, x: f64) {
        let b = self.bucket(x);
        let i = match self.shades.iter().position(|(s, _)| *s == shade) {
            Some(i) => i,
            None => {
                self.shades.push((shade, Vec::new()));
                self.shades.len() - 1
            }
        };
        let v = &mut self.shades[i].1;
        if v.len() <= b {
            v.resize(b + 1, false);
        }
        v[b] = true;
    }

    /// The names of the series and shades this timeline holds, in drawing order.
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.shades
            .iter()
            .map(|(s, _)| s.name)
            .chain(self.sorted().into_iter().map(|(s, _)| s.name))
            .collect()
    }

    /// Whether the timeline holds a refusal (a dashed series) that happened.
    #[cfg(test)]
    pub(crate) fn has_refusals(&self) -> bool {
        self.series
            .iter()
            .any(|(s, v)| s.line == Line::Dashed && v.iter().any(|&n| n > 0.0))
    }

    /// The series in drawing order.
    fn sorted(&self) -> Vec<&(Series, Vec<f64>)> {
        let mut v: Vec<_> = self.series.iter().collect();
        v.sort_by_key(|(s, _)| rank(s));
        v
    }

    fn len(&self) -> usize {
        self.series
            .iter()
            .map(|(_, v)| v.len())
            .chain(self.shades.iter().map(|(_, v)| v.len()))
            .max()
            .unwrap_or(0)
    }

    fn y(&self, v: f64) -> f64 {
        if self.rates { v / self.bucket } else { v }
    }
}

/// An axis label: a number without trailing zeros (5, 2.5, 0.25).
fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The file a scenario's plot is written to: `dir/<slug>.svg`.
pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    let slug = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    dir.join(format!("{slug}.svg"))
}

/// Writes `dir/<slug of name>.svg`: one panel per variant, stacked, sharing the axes.
pub(crate) fn plot(
    dir: &Path,
    name: &str,
    title: &str,
    timelines: &[Timeline],
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = path(dir, name);
    let height = 60 + 280 * timelines.len() as u32;
    let root = SVGBackend::new(&path, (1200, height)).into_drawing_area();
    draw(&root, title, timelines)?;
    drop(root);
    Ok(path)
}

const LEGEND_WIDTH: u32 = 330;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    timelines: &[Timeline],
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(50);
    head.titled(title, ("sans-serif", 24))?;
    let panels = body.split_evenly((timelines.len(), 1));
    let buckets = timelines
        .iter()
        .map(Timeline::len)
        .max()
        .unwrap_or(1)
        .max(1);
    let bucket = timelines.first().map_or(1.0, |t| t.bucket);
    let x_max = buckets as f64 * bucket;
    let y_max = timelines
        .iter()
        .flat_map(|t| t.series.iter().flat_map(|(_, v)| v.iter().map(|&y| t.y(y))))
        .fold(1.0f64, f64::max)
        * 1.08;
    let (width, _) = root.dim_in_pixel();
    for (panel, tl) in panels.iter().zip(timelines) {
        let (plot_area, legend) = panel.split_horizontally(width - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(&tl.variant, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc(tl.x_desc)
            .y_desc(tl.y_desc)
            .x_label_formatter(&|v| number(*v))
            .y_label_formatter(&|v| number(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (shade, held) in &tl.shades {
            let style = shade.colour.mix(0.45).filled();
            chart.draw_series(held.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| {
                let x0 = i as f64 * bucket;
                Rectangle::new([(x0, 0.0), (x0 + bucket, y_max)], style)
            }))?;
        }
        for (s, v) in tl.sorted() {
            let points: Vec<(f64, f64)> = (0..buckets)
                .map(|i| {
                    let y = tl.y(v.get(i).copied().unwrap_or(0.0));
                    // A rate is drawn at its bucket's middle, a level at the point it was taken.
                    let x = if tl.rates {
                        (i as f64 + 0.5) * bucket
                    } else {
                        i as f64 * bucket
                    };
                    (x, y)
                })
                .collect();
            match s.line {
                Line::Base => {
                    chart
                        .draw_series(LineSeries::new(points, s.colour.mix(0.35).stroke_width(7)))?;
                }
                Line::Solid => {
                    chart.draw_series(LineSeries::new(points, s.colour.stroke_width(2)))?;
                }
                Line::Dashed => {
                    chart.draw_series(DashedLineSeries::new(
                        points,
                        9,
                        5,
                        s.colour.stroke_width(3),
                    ))?;
                }
                Line::Reference => {
                    chart.draw_series(LineSeries::new(points, s.colour.stroke_width(1)))?;
                }
            }
        }
        draw_legend(&legend, tl)?;
    }
    root.present()?;
    Ok(())
}

/// The panel's legend, beside the chart: its shades, then its series.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    tl: &Timeline,
) -> Result<(), Box<dyn std::error::Error>> {
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    let mut y = 48;
    for (shade, _) in &tl.shades {
        let style = shade.colour.mix(0.45).filled();
        area.draw(&Rectangle::new([(4, y - 6), (30, y + 6)], style))?;
        area.draw(&Text::new(shade.name, (38, y - 7), font.clone()))?;
        y += 22;
    }
    for (s, _) in tl.sorted() {
        let ends = [(4, y), (30, y)];
        match s.line {
            Line::Base => area.draw(&PathElement::new(ends, s.colour.mix(0.35).stroke_width(7)))?,
            Line::Solid => area.draw(&PathElement::new(ends, s.colour.stroke_width(2)))?,
            Line::Dashed => {
                for x in [4, 17] {
                    area.draw(&PathElement::new(
                        [(x, y), (x + 9, y)],
                        s.colour.stroke_width(3),
                    ))?;
                }
            }
            Line::Reference => area.draw(&PathElement::new(ends, s.colour.stroke_width(1)))?,
        }
        area.draw(&Text::new(s.name, (38, y - 7), font.clone()))?;
        y += 22;
    }
    Ok(())
}
