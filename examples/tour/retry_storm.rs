//! The retry budget scenario: a dependency fails for 10 s out of 30 s while 100 requests a second
//! arrive, each retried up to 3 times (4 attempts). Without a budget every failure turns into 4
//! calls; with one, retries stop once the budget is spent and the dependency sees little more
//! than the original load. Time is a `ManualClock`; the backoff sleeps move a per-request offset
//! (a second `ManualClock`, the retry's timer).

use crate::Scenario;
use crate::timeline::{CALLS, DB_FAILURES, REFUSED_BUDGET, REQUESTS, Timeline};
use resile::backoff::Backoff;
use resile::budget::RetryBudget;
use resile::clock::{Clock, ManualClock};
use resile::retry::Retry;
use std::cell::Cell;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

const REQUESTS_PER_SEC: u64 = 100;
const ATTEMPTS: u32 = 4;
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
    let refused_so_far = {
        let budget = budget.clone();
        move || budget.as_ref().map_or(0, |b| b.metrics().retries_refused)
    };
    let offset = ManualClock::new();
    let mut b = Retry::builder()
        .max_attempts(ATTEMPTS)
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
        tl.borrow_mut().count(REQUESTS, arrival as f64 / 1e9);
        offset.set(0);
        let refused_before = refused_so_far();
        let out = retry.run(|| {
            let t = arrival + offset.now();
            calls.set(calls.get() + 1);
            tl.borrow_mut().count(CALLS, t as f64 / 1e9);
            if OUTAGE.contains(&t) {
                tl.borrow_mut().count(DB_FAILURES, t as f64 / 1e9);
                outage_calls.set(outage_calls.get() + 1);
                Err("unavailable")
            } else {
                Ok(())
            }
        });
        failed += u64::from(out.is_err());
        // A refused retry: at the time of the attempt whose failure asked for it.
        let refused = refused_so_far() - refused_before;
        let last_attempt = (arrival + offset.now()) as f64 / 1e9;
        tl.borrow_mut()
            .add(REFUSED_BUDGET, last_attempt, refused as f64);
    }
    Outcome {
        calls: calls.get(),
        outage_calls: outage_calls.get(),
        outage_requests,
        failed,
    }
}

pub(crate) fn run() -> Scenario {
    let total = REQUESTS_PER_SEC * SECONDS;
    let mut s = Scenario::new(
        "retry storm",
        format!(
            "retry storm: {} s of failures, {REQUESTS_PER_SEC} req/s, {ATTEMPTS} attempts",
            (OUTAGE.end - OUTAGE.start) / 1_000_000_000
        ),
    );
    let timeline = |variant: &str| RefCell::new(Timeline::new(variant, 0.5));
    let mut runs = Vec::new();

    let clock = ManualClock::new();
    let fixed = Arc::new(
        RetryBudget::builder()
            .max_retries(100)
            .window(Duration::from_secs(60))
            .clock(clock.clone())
            .build()
            .expect("valid budget"),
    );
    let ratio_clock = ManualClock::new();
    let ratio = Arc::new(
        RetryBudget::builder()
            .ratio(0.2)
            .min_per_sec(10)
            .window(Duration::from_secs(10))
            .clock(ratio_clock.clone())
            .build()
            .expect("valid budget"),
    );
    for (variant, clock, budget) in [
        ("retries unbounded", ManualClock::new(), None),
        ("budget 100 / minute", clock, Some(fixed)),
        ("budget 20% + 10/s", ratio_clock, Some(ratio)),
    ] {
        let tl = timeline(variant);
        let o = simulate(&clock, budget.clone(), &tl);
        s.key_row(
            variant,
            "load multiplier during the outage (calls / requests)",
            format!("{:.2}x", o.outage_calls as f64 / o.outage_requests as f64),
        );
        s.row(
            variant,
            &format!("load multiplier over {SECONDS} s"),
            format!("{:.2}x", o.calls as f64 / total as f64),
        );
        s.row(
            variant,
            "requests failed",
            format!("{} of {total}", o.failed),
        );
        let refused = budget.map(|b| b.metrics().retries_refused);
        if let Some(r) = refused {
            s.row(variant, "retries refused by the budget", r);
        }
        s.timeline(tl.into_inner());
        runs.push((o, refused));
    }
    let unbounded = &runs[0].0;
    let mult = |o: &Outcome| format!("{:.2}x", o.outage_calls as f64 / o.outage_requests as f64);
    let budgeted: Vec<String> = runs[1..].iter().map(|(o, _)| mult(o)).collect();
    let most_failed = runs[1..].iter().map(|(o, _)| o.failed).max().unwrap_or(0);
    s.notice(format!(
        "unbounded retries hit the failing database {} as hard as the requests alone and still \
         fail {} of the {} requests that arrived during the outage; the budgets hold that to {} \
         for at most {} more failed requests",
        mult(unbounded),
        unbounded.failed,
        unbounded.outage_requests,
        budgeted.join(" and "),
        most_failed.saturating_sub(unbounded.failed),
    ));
    s
}
