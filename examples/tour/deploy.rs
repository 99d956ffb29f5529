//! The drainer scenario: a rolling restart while requests are in flight.
//!
//! One instance receives a request every millisecond; each takes 20 to 400 ms. At t = 2 s the
//! instance is told to restart. The load balancer health-checks every 100 ms, so it keeps routing
//! here for up to 100 ms after `/ready` turns 503.
//!
//! - Without draining the process exits at the signal: every request in flight fails, and so does
//!   every request the balancer still routes here until its next health check.
//! - With draining but no not-ready delay, refusals start at the signal: requests the balancer
//!   still routes here are refused before admission (503, retried elsewhere), none fails.
//! - With draining and the delay: `/ready` turns 503 at once while work is still admitted, draining starts after
//!   the configured not-ready delay (150 ms, longer than the health-check interval), any late
//!   arrival is refused before admission (503: the client retries elsewhere), and the process exits
//!   when the last request finishes (or at a 10 s deadline, reporting what it abandons).

use crate::Scenario;
use crate::timeline::{
    DRAINING, NOT_READY, REFUSED_DRAIN, REQUESTS, REQUESTS_FAILED, SUCCEEDED, Timeline,
};
use resile::clock::ManualClock;
use resile::drain::Drainer;
use std::time::Duration;

const SIGNAL_MS: u64 = 2_000;
const HEALTH_CHECK_MS: u64 = 100;
const NOT_READY_DELAY_MS: u64 = 150;
const DEADLINE_MS: u64 = 10_000;

/// Request durations: a fixed pseudo-random sequence (the same on every run).
fn duration_ms(i: u64) -> u64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    20 + x % 381
}

#[derive(Default)]
struct Outcome {
    ok: u64,
    failed: u64,
    refused: u64,
    drain_ms: Option<u64>,
    abandoned: u64,
}

fn simulate(draining: bool, not_ready_delay_ms: u64, tl: &mut Timeline) -> Outcome {
    let clock = ManualClock::new();
    let drainer = Drainer::builder()
        .clock(clock.clone())
        .not_ready_delay(Duration::from_millis(not_ready_delay_ms))
        .build()
        .expect("valid config");
    let mut out = Outcome::default();
    // (finish time, guard)
    let mut running = Vec::new();
    // The balancer's view of `/ready`, refreshed at each health check.
    let mut routed = true;
    let mut next_request = 0u64;
    for t in 0..SIGNAL_MS + DEADLINE_MS {
        clock.set(t * 1_000_000);
        let secs = t as f64 / 1e3;
        // Finished requests succeed and drop their guards.
        running.retain(|&(end, _): &(u64, _)| {
            if end <= t {
                out.ok += 1;
                tl.count(SUCCEEDED, secs);
                false
            } else {
                true
            }
        });
        if t % HEALTH_CHECK_MS == 0 {
            routed = drainer.is_ready();
        }
        if t == SIGNAL_MS {
            if !draining {
                // The process exits: everything in flight fails.
                let running_at_exit = running.len();
                out.failed += running_at_exit as u64;
                running.clear();
                // Until the balancer's next health check it still routes here: refused
                // connections, which the client sees as failures.
                let until_check = HEALTH_CHECK_MS - t % HEALTH_CHECK_MS;
                out.failed += until_check;
                tl.add(REQUESTS_FAILED, secs, running_at_exit as f64);
                for late in 0..until_check {
                    let at = (t + late) as f64 / 1e3;
                    tl.count(REQUESTS, at);
                    tl.count(REQUESTS_FAILED, at);
                }
                break;
            }
            drainer.mark_not_ready();
        }
        if draining && t == SIGNAL_MS + not_ready_delay_ms {
            drainer.start_draining();
        }
        if draining && t >= SIGNAL_MS {
            tl.shade(
                if t < SIGNAL_MS + not_ready_delay_ms {
                    NOT_READY
                } else {
                    DRAINING
                },
                secs,
            );
        }
        if routed {
            tl.count(REQUESTS, secs);
            match drainer.enter() {
                Ok(g) => running.push((t + duration_ms(next_request), g)),
                Err(_) => {
                    out.refused += 1;
                    tl.count(REFUSED_DRAIN, secs);
                }
            }
            next_request += 1;
        }
        if drainer.is_drained() {
            out.drain_ms = drainer
                .blocking_wait_timeout(Duration::ZERO)
                .ok()
                .map(|d| d.elapsed().as_millis() as u64);
            break;
        }
    }
    if draining && !drainer.is_drained() {
        out.abandoned = drainer.in_flight();
        out.failed += out.abandoned;
        tl.add(
            REQUESTS_FAILED,
            (SIGNAL_MS + DEADLINE_MS) as f64 / 1e3,
            out.abandoned as f64,
        );
    }
    out
}

pub(crate) fn run() -> Scenario {
    let mut s = Scenario::new(
        "deploy",
        format!("deploy: restart with requests in flight, health check every {HEALTH_CHECK_MS} ms"),
    );
    let mut runs = Vec::new();
    for (variant, draining, delay) in [
        ("without draining", false, 0),
        ("draining, no not-ready delay", true, 0),
        ("draining + not-ready delay", true, NOT_READY_DELAY_MS),
    ] {
        let mut tl = Timeline::new(variant, 0.05);
        let o = simulate(draining, delay, &mut tl);
        s.row(variant, "requests succeeded", o.ok);
        s.key_row(variant, "requests failed", o.failed);
        s.row(
            variant,
            "refused before admission (retried elsewhere)",
            o.refused,
        );
        if draining {
            s.row(
                variant,
                "drain time after refusals began (ms)",
                o.drain_ms
                    .map_or("deadline".to_owned(), |ms| ms.to_string()),
            );
            s.row(variant, "abandoned at deadline", o.abandoned);
        }
        s.timeline(tl);
        runs.push(o);
    }
    let (exit, no_delay, delay) = (&runs[0], &runs[1], &runs[2]);
    s.notice(format!(
        "exiting at the signal fails {} requests; draining without a not-ready delay fails {} but \
         refuses the {} requests the balancer still sends (503, retried elsewhere); with a \
         {NOT_READY_DELAY_MS} ms delay the balancer stops routing first: {} failed, {} refused, \
         {} served",
        exit.failed, no_delay.failed, no_delay.refused, delay.failed, delay.refused, delay.ok,
    ));
    s
}
