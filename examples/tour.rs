//! A tour of resile: the guide's scenarios, measured. Each pattern's work adds a scenario.

use resile::window::{CountWindow, Outcome};

fn main() {
    let window = CountWindow::new(10).expect("valid window");
    for i in 0..20 {
        let outcome = if i % 4 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let t = window.record(outcome);
        println!(
            "call {i:2}: {:?}: window holds {} calls, {} failures ({:.0}%)",
            outcome,
            t.calls,
            t.failures,
            t.failure_rate() * 100.0
        );
    }
}
