//! Per-scenario timelines (counts per time bucket, and when the breaker was open) and their SVG
//! plots (`--plot DIR`), drawn with `plotters`' SVG backend.

use plotters::prelude::*;
use std::path::Path;

/// Counts per bucket of simulated time, one series per name, and the buckets in which a breaker
/// was open.
pub(crate) struct Timeline {
    pub(crate) variant: String,
    bucket_secs: f64,
    series: Vec<(&'static str, Vec<f64>)>,
    open: Vec<bool>,
}

impl Timeline {
    pub(crate) fn new(variant: &str, bucket_secs: f64) -> Self {
        Self {
            variant: variant.to_owned(),
            bucket_secs,
            series: Vec::new(),
            open: Vec::new(),
        }
    }

    fn bucket(&self, t_secs: f64) -> usize {
        (t_secs / self.bucket_secs).max(0.0) as usize
    }

    /// Adds one event of `series` at `t_secs` (simulated seconds).
    pub(crate) fn count(&mut self, series: &'static str, t_secs: f64) {
        let b = self.bucket(t_secs);
        let i = match self.series.iter().position(|(n, _)| *n == series) {
            Some(i) => i,
            None => {
                self.series.push((series, Vec::new()));
                self.series.len() - 1
            }
        };
        let v = &mut self.series[i].1;
        if v.len() <= b {
            v.resize(b + 1, 0.0);
        }
        v[b] += 1.0;
    }

    /// Marks the breaker open during the bucket holding `t_secs`.
    pub(crate) fn open_at(&mut self, t_secs: f64) {
        let b = self.bucket(t_secs);
        if self.open.len() <= b {
            self.open.resize(b + 1, false);
        }
        self.open[b] = true;
    }

    fn len(&self) -> usize {
        self.series
            .iter()
            .map(|(_, v)| v.len())
            .chain([self.open.len()])
            .max()
            .unwrap_or(0)
    }
}

/// Series names in colour order, so a series keeps its colour across panels and plots.
const NAMES: [&str; 4] = [
    "requests",
    "calls reaching the database",
    "failures",
    "requests failed",
];

const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// Writes `dir/<slug>.svg`: one panel per variant, stacked, sharing the axes.
pub(crate) fn plot(
    dir: &Path,
    scenario: &str,
    timelines: &[Timeline],
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let slug = scenario
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let path = dir.join(format!("{slug}.svg"));
    let height = 60 + 280 * timelines.len() as u32;
    let root = SVGBackend::new(&path, (1000, height)).into_drawing_area();
    draw(&root, scenario, timelines)?;
    drop(root);
    Ok(path)
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    scenario: &str,
    timelines: &[Timeline],
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(50);
    title.titled(scenario, ("sans-serif", 26))?;
    let panels = body.split_evenly((timelines.len(), 1));
    let buckets = timelines
        .iter()
        .map(Timeline::len)
        .max()
        .unwrap_or(1)
        .max(1);
    let bucket_secs = timelines.first().map_or(1.0, |t| t.bucket_secs);
    let x_max = buckets as f64 * bucket_secs;
    let y_max = timelines
        .iter()
        .flat_map(|t| t.series.iter().flat_map(|(_, v)| v.iter().copied()))
        .fold(1.0f64, f64::max)
        / bucket_secs
        * 1.45; // headroom for the legend
    for (panel, tl) in panels.iter().zip(timelines) {
        let mut chart = ChartBuilder::on(panel)
            .caption(&tl.variant, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc("per second")
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        // Breaker open: shaded columns behind the lines.
        let shade = RGBColor(255, 160, 160).mix(0.35).filled();
        chart
            .draw_series(
                tl.open
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| **o)
                    .map(|(i, _)| {
                        let x0 = i as f64 * bucket_secs;
                        Rectangle::new([(x0, 0.0), (x0 + bucket_secs, y_max)], shade)
                    }),
            )?
            .label("breaker open")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], shade));
        for (name, v) in &tl.series {
            let k = NAMES.iter().position(|n| n == name).unwrap_or(NAMES.len());
            let colour = COLOURS[k % COLOURS.len()];
            let points = (0..buckets).map(|i| {
                let y = v.get(i).copied().unwrap_or(0.0) / bucket_secs;
                (i as f64 * bucket_secs, y)
            });
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
