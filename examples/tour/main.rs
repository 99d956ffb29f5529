//! A tour of resile: the scenarios of the Resilience Patterns guide the crate grew from, against
//! a simulated dependency, each with and without the pattern, measured. Run it with `cargo run --release --example tour`.
//!
//! Each scenario lives in its own module and adds rows to one [`Report`], printed at the end as a
//! single table. Time in the scenarios is simulated (a `ManualClock`), so the tour is fast and its
//! numbers are the same on every machine.

mod all_together;
mod deploy;
mod noisy_neighbour;
mod outage;
mod retry_storm;
mod sim;
mod timeline;
mod window;

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

/// The tour's one table: a row per (scenario, variant, measure).
#[derive(Default)]
pub(crate) struct Report {
    rows: Vec<[String; 4]>,
    plots: Vec<(String, Vec<Timeline>)>,
}

impl Report {
    /// Adds a row: the scenario, the variant (e.g. "without breaker"), what was measured, and the
    /// value.
    pub(crate) fn row(
        &mut self,
        scenario: &str,
        variant: &str,
        measure: &str,
        value: impl std::fmt::Display,
    ) {
        self.rows.push([
            scenario.to_owned(),
            variant.to_owned(),
            measure.to_owned(),
            value.to_string(),
        ]);
    }

    /// Adds a scenario's timelines (one per variant), plotted with `--plot DIR`.
    pub(crate) fn timelines(&mut self, scenario: &str, timelines: Vec<Timeline>) {
        self.plots.push((scenario.to_owned(), timelines));
    }

    fn print(&self) {
        let head = ["scenario", "variant", "measure", "value"];
        let mut w = head.map(str::len);
        for r in &self.rows {
            for (wi, c) in w.iter_mut().zip(r) {
                *wi = (*wi).max(c.chars().count());
            }
        }
        let line = |cells: [&str; 4]| {
            let cells: Vec<String> = cells
                .iter()
                .zip(w)
                .map(|(c, wi)| format!("{c:<wi$}"))
                .collect();
            println!("| {} |", cells.join(" | "));
        };
        line(head);
        let dashes = w.map(|wi| "-".repeat(wi));
        line([&dashes[0], &dashes[1], &dashes[2], &dashes[3]]);
        for r in &self.rows {
            line([&r[0], &r[1], &r[2], &r[3]]);
        }
    }
}

fn main() {
    let mut plot_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plot" => match args.next() {
                Some(dir) => plot_dir = Some(PathBuf::from(dir)),
                None => usage("--plot needs a directory"),
            },
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }

    let started = Instant::now();
    let mut report = Report::default();
    window::run(&mut report);
    outage::run(&mut report);
    retry_storm::run(&mut report);
    noisy_neighbour::run(&mut report);
    deploy::run(&mut report);
    all_together::run(&mut report);
    println!();
    report.print();
    println!();
    println!(
        "(simulated time on a ManualClock; the tour took {:.2} s of wall time)",
        started.elapsed().as_secs_f64()
    );

    if let Some(dir) = plot_dir {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            std::process::exit(1);
        }
        for (scenario, timelines) in &report.plots {
            match timeline::plot(&dir, scenario, timelines) {
                Ok(path) => println!("wrote {}", path.display()),
                Err(e) => {
                    eprintln!("cannot plot {scenario}: {e}");
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
    eprintln!("usage: cargo run --release --example tour [-- --plot DIR]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}
