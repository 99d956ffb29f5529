//! The breaker scenario: a dependency hangs for a minute. Every call to it waits out a 2 s
//! timeout and fails. Measured with and without the guide's breaker (open after 5 failures in
//! 60 s once 10 calls were seen; test again after 10 s): the time callers spent waiting, and the
//! calls that reached the dead dependency.
//!
//! Time is simulated with a `ManualClock`: one request every 100 ms for 3 minutes, the dependency
//! down from 30 s to 90 s. A healthy call takes 20 ms.

use crate::Report;
use resile::breaker::CircuitBreaker;
use resile::clock::{Clock, ManualClock};
use std::time::Duration;

const REQUESTS: u64 = 1_800;
const EVERY: Duration = Duration::from_millis(100);
const DOWN: std::ops::Range<u64> = 30_000_000_000..90_000_000_000;
const TIMEOUT: Duration = Duration::from_secs(2);
const HEALTHY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Tally {
    waited: Duration,
    reached_dead: u64,
    refused: u64,
    ok: u64,
}

/// One call to the dependency at `now`: how long the caller waits, and whether it worked.
fn dependency(now: u64) -> (Duration, Result<(), &'static str>) {
    if DOWN.contains(&now) {
        (TIMEOUT, Err("timed out"))
    } else {
        (HEALTHY, Ok(()))
    }
}

fn without_breaker() -> Tally {
    let clock = ManualClock::new();
    let mut t = Tally::default();
    for _ in 0..REQUESTS {
        let now = clock.now();
        let (wait, r) = dependency(now);
        t.waited += wait;
        t.reached_dead += u64::from(r.is_err());
        t.ok += u64::from(r.is_ok());
        clock.advance(EVERY);
    }
    t
}

fn with_breaker() -> Tally {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder()
        .name("dependency")
        .clock(clock.clone())
        .time_window(Duration::from_secs(60), 60)
        .minimum_calls(10)
        .failure_rate_threshold(None)
        .failure_count_threshold(5)
        .open_for(Duration::from_secs(10))
        .half_open_probes(1)
        .build()
        .expect("valid breaker");
    let mut t = Tally::default();
    for _ in 0..REQUESTS {
        let now = clock.now();
        let r = breaker.call(|| {
            let (wait, r) = dependency(now);
            t.waited += wait;
            t.reached_dead += u64::from(r.is_err());
            r
        });
        match r {
            Ok(()) => t.ok += 1,
            Err(resile::breaker::CallError::Refused(_)) => t.refused += 1,
            Err(resile::breaker::CallError::Inner(_)) => {}
        }
        clock.advance(EVERY);
    }
    t
}

pub(crate) fn run(report: &mut Report) {
    let scenario = "outage: dependency hangs 60 s";
    for (variant, t) in [
        ("without breaker", without_breaker()),
        ("with breaker", with_breaker()),
    ] {
        report.row(
            scenario,
            variant,
            "time callers spent waiting",
            format!("{:.1} s", t.waited.as_secs_f64()),
        );
        report.row(
            scenario,
            variant,
            "calls that reached the dead dependency",
            t.reached_dead,
        );
        report.row(scenario, variant, "calls refused at once", t.refused);
        report.row(scenario, variant, "calls served", t.ok);
    }
}
