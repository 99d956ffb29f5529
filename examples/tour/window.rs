//! A sliding window at work: the history every breaker decision reads. 300 calls, one in 20
//! failing, with a burst of 40 failing calls in the middle. A window of the last 20 calls sees
//! the burst and forgets it; a window as long as the whole run (every call so far) dilutes it in
//! the calls before, and would never let a 50% breaker open.

use crate::Scenario;
use crate::timeline::{FAILURE_RATE, THRESHOLD, Timeline, WOULD_TRIP};
use resile::window::{CountWindow, Outcome};

const CALLS: u32 = 300;
const BURST: std::ops::Range<u32> = 150..190;
const RECENT: u32 = 20;
/// The breaker's threshold, and its minimum calls (a window's worth) before it decides.
const THRESHOLD_RATE: f64 = 0.5;
/// How long after the burst the rate is read again.
const AFTER: u32 = 20;

struct Seen {
    peak: f64,
    /// Failing calls of the burst before the rate reached the threshold.
    to_trip: Option<u32>,
    after_burst: f64,
}

fn simulate(size: u32, tl: &mut Timeline) -> Seen {
    let window = CountWindow::new(size).expect("valid window");
    let mut seen = Seen {
        peak: 0.0,
        to_trip: None,
        after_burst: 0.0,
    };
    for i in 0..CALLS {
        let outcome = if BURST.contains(&i) || i % 20 == 19 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let tally = window.record(outcome);
        let rate = tally.failure_rate();
        let x = f64::from(i);
        tl.level(FAILURE_RATE, x, rate * 100.0);
        tl.level(THRESHOLD, x, THRESHOLD_RATE * 100.0);
        if tally.calls >= RECENT {
            seen.peak = seen.peak.max(rate);
            if rate >= THRESHOLD_RATE {
                tl.shade(WOULD_TRIP, x);
                if seen.to_trip.is_none() && BURST.contains(&i) {
                    seen.to_trip = Some(i - BURST.start + 1);
                }
            }
        }
        if i == BURST.end - 1 + AFTER {
            seen.after_burst = rate;
        }
    }
    seen
}

fn pct(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

pub(crate) fn run() -> Scenario {
    let mut s = Scenario::new(
        "sliding window",
        format!(
            "sliding window: {CALLS} calls, 1 in 20 failing, a burst of {} failures",
            BURST.len()
        ),
    );
    let variants = [
        (format!("every call so far (a window of {CALLS})"), CALLS),
        (format!("the last {RECENT} calls"), RECENT),
    ];
    let mut seen = Vec::new();
    for (variant, size) in &variants {
        let mut tl = Timeline::levels(variant, 1.0, "call", "failure rate (%)");
        let o = simulate(*size, &mut tl);
        s.row(variant, "peak failure rate", pct(o.peak));
        s.row(
            variant,
            &format!(
                "failing calls of the burst before the rate reaches {}",
                pct(THRESHOLD_RATE)
            ),
            o.to_trip.map_or("never".to_owned(), |n| n.to_string()),
        );
        s.row(
            variant,
            &format!("failure rate {AFTER} calls after the burst"),
            pct(o.after_burst),
        );
        s.timeline(tl);
        seen.push(o);
    }
    let (all, recent) = (&seen[0], &seen[1]);
    let reach = |o: &Seen| match o.to_trip {
        Some(n) => format!("reaches {} after {n} failing calls", pct(THRESHOLD_RATE)),
        None => format!("never reaches {}", pct(THRESHOLD_RATE)),
    };
    s.notice(format!(
        "the last {RECENT} calls show the burst ({} at its peak, {}) and are back to {} \
         {AFTER} calls after it; counted over every call, the rate peaks at {}, {}, and still \
         reads {} after the burst",
        pct(recent.peak),
        reach(recent),
        pct(recent.after_burst),
        pct(all.peak),
        reach(all),
        pct(all.after_burst),
    ));
    s
}
