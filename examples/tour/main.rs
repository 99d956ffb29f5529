//! A tour of resile: the guide's scenarios against a simulated dependency, each with and without
//! the pattern, measured. Run it with `cargo run --release --example tour`.
//!
//! Each scenario lives in its own module and adds rows to one [`Report`], printed at the end as a
//! single table. Time in the scenarios is simulated (a `ManualClock`), so the tour is fast and its
//! numbers are the same on every machine.

mod deploy;
mod noisy_neighbour;
mod outage;
mod retry_storm;
mod window;

/// The tour's one table: a row per (scenario, variant, measure).
#[derive(Default)]
pub(crate) struct Report {
    rows: Vec<[String; 4]>,
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
    let mut report = Report::default();
    window::run(&mut report);
    outage::run(&mut report);
    retry_storm::run(&mut report);
    noisy_neighbour::run(&mut report);
    deploy::run(&mut report);
    println!();
    report.print();
}
