//! A sliding window at work: the history every breaker decision reads.

use crate::Report;
use resile::window::{CountWindow, Outcome};

pub(crate) fn run(report: &mut Report) {
    let window = CountWindow::new(10).expect("valid window");
    let mut last = window.snapshot();
    for i in 0..20 {
        let outcome = if i % 4 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        last = window.record(outcome);
    }
    report.row(
        "sliding window",
        "last 10 of 20 calls, every 4th failing",
        "failure rate",
        format!("{:.0}%", last.failure_rate() * 100.0),
    );
}
