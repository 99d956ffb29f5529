//! The retry budget scenario: a dependency fails for 10 s out of 30 s while 100 requests a second
//! arrive, each retried up to 3 times (4 attempts). Without a budget every failure turns into 4
//! calls; with one, retries stop once the budget is spent and the dependency sees little more
//! than the original load. Time is a `ManualClock`; the backoff sleeps move a per-request offset
//! (a second `ManualClock`, the retry's timer).

use crate::Report;
use crate::timeline::Timeline;
use resile::backoff::Backoff;
use resile::budget::RetryBudget;
use resile::clock::{Clock, ManualClock};
use resile::retry::Retry;
use std::cell::Cell;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

const REQUESTS_PER_SEC: u64 = 100;
const SECONDS: u64 = 30;
const OUTAGE: std::ops::Range<u64> = 5_000_000_000..15_000_000_000;

struct Outcome {
    calls: u64,
    outage_calls: u64,
    outage_requests: u64,
    failed: u64,
}

fn simulate(
    clock: &ManualClock,
    budget: Option<Arc<RetryBudget<ManualClock>>>,
    tl: &RefCell<Timeline>,
) -> Outcome {
    let offset = ManualClock::new();
    let mut b = Retry::builder()
        .max_attempts(4)
        .backoff(
            Backoff::builder()
                .exponential(Duration::from_millis(50), 2)
                .cap(Duration::from_secs(1))
                .build()
                .expect("valid backoff"),
        )
        .clock(clock.clone())
        // Each request's backoff sleeps advance its own offset from its arrival, not the shared
        // clock, so the budget's window sees arrival times only.
        .timer(offset.clone())
        .rng_seed(7);
    if let Some(budget) = budget {
        b = b.budget(budget);
    }
    let retry = b.build().expect("valid retry");
    let (calls, outage_calls) = (Cell::new(0), Cell::new(0));
    let (mut outage_requests, mut failed) = (0, 0);
    let step = 1_000_000_000 / REQUESTS_PER_SEC;
    for i in 0..REQUESTS_PER_SEC * SECONDS {
        let arrival = i * step;
        clock.set(arrival);
        outage_requests += u64::from(OUTAGE.contains(&arrival));
        tl.borrow_mut().count("requests", arrival as f64 / 1e9);
        offset.set(0);
        let out = retry.run(|| {
            let t = arrival + offset.now();
            calls.set(calls.get() + 1);
            tl.borrow_mut()
                .count("calls reaching the database", t as f64 / 1e9);
            if OUTAGE.contains(&t) {
                tl.borrow_mut().count("failures", t as f64 / 1e9);
                outage_calls.set(outage_calls.get() + 1);
                Err("unavailable")
            } else {
                Ok(())
            }
        });
        failed += u64::from(out.is_err());
    }
    Outcome {
        calls: calls.get(),
        outage_calls: outage_calls.get(),
        outage_requests,
        failed,
    }
}

pub(crate) fn run(report: &mut Report) {
    const S: &str = "retry storm";
    let total = REQUESTS_PER_SEC * SECONDS;
    let mut row = |variant: &str, o: Outcome, refused: Option<u64>| {
        report.row(
            S,
            variant,
            "load multiplier during the outage (calls / requests)",
            format!("{:.2}x", o.outage_calls as f64 / o.outage_requests as f64),
        );
        report.row(
            S,
            variant,
            "load multiplier over 30 s",
            format!("{:.2}x", o.calls as f64 / total as f64),
        );
        report.row(
            S,
            variant,
            "requests failed",
            format!("{} of {total}", o.failed),
        );
        if let Some(r) = refused {
            report.row(S, variant, "retries refused by the budget", r);
        }
    };

    let mut timelines = Vec::new();
    let timeline = |variant: &str| RefCell::new(Timeline::new(variant, 0.5));

    let clock = ManualClock::new();
    let tl = timeline("retries unbounded (4 attempts)");
    row(
        "retries unbounded (4 attempts)",
        simulate(&clock, None, &tl),
        None,
    );
    timelines.push(tl.into_inner());

    let clock = ManualClock::new();
    let fixed = Arc::new(
        RetryBudget::builder()
            .max_retries(100)
            .window(Duration::from_secs(60))
            .clock(clock.clone())
            .build()
            .expect("valid budget"),
    );
    let tl = timeline("budget 100 / minute");
    let o = simulate(&clock, Some(fixed.clone()), &tl);
    timelines.push(tl.into_inner());
    row(
        "budget 100 / minute",
        o,
        Some(fixed.metrics().retries_refused),
    );

    let clock = ManualClock::new();
    let ratio = Arc::new(
        RetryBudget::builder()
            .ratio(0.2)
            .min_per_sec(10)
            .window(Duration::from_secs(10))
            .clock(clock.clone())
            .build()
            .expect("valid budget"),
    );
    let tl = timeline("budget 20% + 10/s");
    let o = simulate(&clock, Some(ratio.clone()), &tl);
    timelines.push(tl.into_inner());
    row(
        "budget 20% + 10/s",
        o,
        Some(ratio.metrics().retries_refused),
    );
    debug_assert!(clock.now() > 0);
    report.timelines(S, timelines);
}
