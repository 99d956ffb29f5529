//! A tour of resile: the scenarios of the Resilience Patterns guide the crate grew from, against
//! a simulated dependency, each with and without the pattern, measured. Run it with
//! `cargo run --release --example tour`; `-- --plot DIR` also writes an SVG timeline per scenario,
//! `-- --readme` prints only the highlights table the README holds.
//!
//! Each scenario lives in its own module and returns a [`Scenario`]: its rows (variant, measure,
//! value), one line saying what to notice, and a timeline per variant. Time in the scenarios is
//! simulated (a `ManualClock`), so the tour is fast and its numbers are the same on every machine.

mod all_together;
mod capacity;
mod deploy;
mod noisy_neighbour;
mod outage;
mod retry_storm;
mod sim;
mod timeline;
mod window;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;
use timeline::Timeline;

/// A duration as whole milliseconds.
pub(crate) fn ms(d: std::time::Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// The value at quantile `q` of sorted samples (0 when there are none).
pub(crate) fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// One scenario's results: a row per (variant, measure), what to notice, and a timeline per
/// variant.
pub(crate) struct Scenario {
    /// Short name: the plot's file name.
    name: &'static str,
    /// What is simulated, in a few words (the section's heading and the README table's cell).
    title: String,
    rows: Vec<Row>,
    notice: String,
    timelines: Vec<Timeline>,
}

struct Row {
    variant: String,
    measure: String,
    value: String,
    /// Shown in the README's highlights table.
    highlight: bool,
}

impl Scenario {
    pub(crate) fn new(name: &'static str, title: impl Into<String>) -> Self {
        Self {
            name,
            title: title.into(),
            rows: Vec::new(),
            notice: String::new(),
            timelines: Vec::new(),
        }
    }

    /// Adds a row: the variant (e.g. "without breaker"), what was measured, and the value.
    pub(crate) fn row(&mut self, variant: &str, measure: &str, value: impl std::fmt::Display) {
        self.rows.push(Row {
            variant: variant.to_owned(),
            measure: measure.to_owned(),
            value: value.to_string(),
            highlight: false,
        });
    }

    /// Adds a row that the README's highlights table shows too.
    pub(crate) fn key_row(&mut self, variant: &str, measure: &str, value: impl std::fmt::Display) {
        self.row(variant, measure, value);
        if let Some(r) = self.rows.last_mut() {
            r.highlight = true;
        }
    }

    /// Sets the line printed under the rows: what to notice.
    pub(crate) fn notice(&mut self, line: impl Into<String>) {
        self.notice = line.into();
    }

    /// Adds a variant's timeline, plotted with `--plot DIR`.
    pub(crate) fn timeline(&mut self, tl: Timeline) {
        self.timelines.push(tl);
    }

    /// The section: a heading, the rows as a markdown table, and what to notice.
    fn section(&self) -> String {
        let rows: Vec<[&str; 3]> = self
            .rows
            .iter()
            .map(|r| [&*r.variant, &*r.measure, &*r.value])
            .collect();
        format!(
            "## {}\n\n{}\nNotice: {}\n",
            self.title,
            table(["variant", "measure", "value"], &rows, true),
            self.notice
        )
    }

    /// The scenario's highlighted rows, grouped by measure (every variant of a measure together,
    /// in the order the measures first appear).
    fn highlights(&self) -> Vec<&Row> {
        let mut measures: Vec<&str> = Vec::new();
        for r in self.rows.iter().filter(|r| r.highlight) {
            if !measures.contains(&&*r.measure) {
                measures.push(&r.measure);
            }
        }
        measures
            .iter()
            .flat_map(|m| {
                self.rows
                    .iter()
                    .filter(move |r| r.highlight && r.measure == *m)
            })
            .collect()
    }
}

/// A markdown table, its columns padded to their widest cell when `pad` (for a terminal), or as
/// compact as markdown allows (for the README).
fn table<const N: usize>(head: [&str; N], rows: &[[&str; N]], pad: bool) -> String {
    let mut w = [0; N];
    if pad {
        for r in rows.iter().chain([&head]) {
            for (wi, c) in w.iter_mut().zip(r) {
                *wi = (*wi).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let cells: Vec<String> = cells
            .iter()
            .zip(w)
            .map(|(c, wi)| match format!("{c:<wi$}") {
                c if c.is_empty() => " ".to_owned(),
                c => format!(" {c} "),
            })
            .collect();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "|{}|", cells.join("|"));
    };
    line(head);
    let dashes = w.map(|wi| "-".repeat(wi.max(3)));
    line(std::array::from_fn(|i| dashes[i].as_str()));
    for r in rows {
        line(*r);
    }
    out
}

/// Every scenario, in the guide's order.
fn tour() -> Vec<Scenario> {
    vec![
        window::run(),
        outage::run(),
        retry_storm::run(),
        noisy_neighbour::run(),
        capacity::run(),
        deploy::run(),
        all_together::run(),
    ]
}

/// The README's highlights table: each scenario's highlighted rows, its title in the first.
fn readme_table(scenarios: &[Scenario]) -> String {
    let rows: Vec<[&str; 4]> = scenarios
        .iter()
        .flat_map(|s| {
            s.highlights().into_iter().enumerate().map(|(i, r)| {
                let title = if i == 0 { s.title.as_str() } else { "" };
                [title, &*r.variant, &*r.measure, &*r.value]
            })
        })
        .collect();
    table(["scenario", "variant", "measure", "value"], &rows, false)
}

fn main() {
    let mut plot_dir = None;
    let mut readme = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plot" => match args.next() {
                Some(dir) => plot_dir = Some(PathBuf::from(dir)),
                None => usage("--plot needs a directory"),
            },
            "--readme" => readme = true,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }

    let started = Instant::now();
    let scenarios = tour();
    let took = started.elapsed();
    if readme {
        print!("{}", readme_table(&scenarios));
    } else {
        for s in &scenarios {
            println!();
            print!("{}", s.section());
        }
        println!();
        println!(
            "(simulated time on a ManualClock; the tour took {:.2} s of wall time)",
            took.as_secs_f64()
        );
    }

    if let Some(dir) = plot_dir {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            std::process::exit(1);
        }
        for s in &scenarios {
            match timeline::plot(&dir, s.name, &s.title, &s.timelines) {
                Ok(path) => eprintln!("wrote {}", path.display()),
                Err(e) => {
                    eprintln!("cannot plot {}: {e}", s.name);
                    std::process::exit(1);
                }
            }
        }
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("tour: {problem}");
    }
    eprintln!("usage: cargo run --release --example tour [-- [--plot DIR] [--readme]]");
    eprintln!("  --plot DIR  also write an SVG timeline per scenario into DIR");
    eprintln!("  --readme    print only the highlights table, as README.md holds it");
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table under README.md's "The tour" heading: the lines of its one markdown table.
    fn readme_tour_table() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md is readable");
        let section = readme
            .split("\n## ")
            .find(|s| s.starts_with("The tour\n"))
            .expect("README.md has a section \"## The tour\"");
        let lines: Vec<&str> = section.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.starts_with('|'))
            .expect("the tour section holds a table");
        let table: Vec<&str> = lines[start..]
            .iter()
            .take_while(|l| l.starts_with('|'))
            .copied()
            .collect();
        assert!(
            !lines[start + table.len()..]
                .iter()
                .any(|l| l.starts_with('|')),
            "the tour section holds one table"
        );
        table.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn readme_table_is_the_tours_output() {
        let scenarios = tour();
        let ours = readme_table(&scenarios);
        let readme = readme_tour_table();
        assert_eq!(
            readme, ours,
            "README.md's tour table is not the tour's output; replace it with the output of \
             `cargo run --release --example tour -- --readme`"
        );
        // The comparison is of a real table, not of two empty ones.
        assert!(ours.lines().count() > 10);
    }

    #[test]
    fn every_scenario_says_what_to_notice_and_plots_each_variant() {
        let scenarios = tour();
        let dir = std::env::temp_dir().join(format!("resile-tour-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for s in &scenarios {
            assert!(!s.notice.is_empty(), "{}: nothing to notice", s.name);
            let mut variants: Vec<&str> = s.rows.iter().map(|r| r.variant.as_str()).collect();
            variants.dedup();
            let plotted: Vec<&str> = s.timelines.iter().map(|t| t.variant.as_str()).collect();
            assert_eq!(plotted, variants, "{}: a timeline per variant", s.name);
            assert!(plotted.len() >= 2, "{}: with and without", s.name);
            // Every pattern but the window refuses work, and its plot draws the refusals.
            if s.name != "sliding window" {
                assert!(
                    s.timelines.iter().any(Timeline::has_refusals),
                    "{}: no refusal plotted",
                    s.name
                );
            }
            let path = timeline::plot(&dir, s.name, &s.title, &s.timelines).expect("plotted");
            let svg = std::fs::read_to_string(&path).expect("svg written");
            for t in &s.timelines {
                for name in t.names() {
                    assert!(svg.contains(name), "{}: {name} not in the plot", s.name);
                }
            }
        }
        std::fs::remove_dir_all(&dir).expect("temp dir removed");
    }

    #[test]
    fn the_tour_is_deterministic() {
        let a: Vec<String> = tour().iter().map(Scenario::section).collect();
        let b: Vec<String> = tour().iter().map(Scenario::section).collect();
        assert_eq!(a, b);
    }
}
