//! The noisy neighbour: a slow admin operation floods a shared pool of 20 database connections,
//! and the read path waits behind it. With bulkheads (admin 2, reads 18) the admin flood is
//! refused at its own bulkhead and reads keep their latency.
//!
//! Simulated time, in 1 ms ticks: reads arrive 2 per ms and each holds a connection for 2 ms;
//! from t = 100 ms an admin job arrives every 10 ms and holds a connection for 500 ms. Callers
//! that find no free connection queue for one, oldest first.

use crate::Scenario;
use crate::timeline::{ADMIN, READS, READS_IN_TIME, READS_LATE, REFUSED_BULKHEAD, Timeline};
use resile::bulkhead::{Bulkhead, BulkheadPermit};
use resile::clock::ManualClock;
use std::collections::VecDeque;
use std::time::Duration;

const TICKS: u64 = 2_000;
const POOL: u32 = 20;
const READ_MS: u64 = 2;
const ADMIN_MS: u64 = 500;
/// A read served later than this (after its arrival) counts as late in the timeline.
const LATE_MS: u64 = 100;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Admin,
}

/// One run; `bulkheads` gives each kind its own bulkhead in front of the pool.
fn simulate(bulkheads: bool, tl: &mut Timeline) -> (Vec<u64>, u64) {
    let clock = ManualClock::new();
    let build = |name, limit| {
        Bulkhead::builder()
            .name(name)
            .limit(limit)
            .clock(clock.clone())
            .build()
            .expect("valid bulkhead")
    };
    let pool = build("connections", POOL);
    let reads = build("reads", POOL - 2);
    let admin = build("admin", 2);

    // Work in progress: (finishes at, the connection, the bulkhead slot if any).
    type Running<'a> = (
        u64,
        BulkheadPermit<'a, ManualClock>,
        Option<BulkheadPermit<'a, ManualClock>>,
    );
    let mut running: Vec<Running<'_>> = Vec::new();
    // Callers waiting for a connection: (kind, arrived at, bulkhead slot).
    let mut queued: VecDeque<(Kind, u64, Option<BulkheadPermit<'_, ManualClock>>)> =
        VecDeque::new();
    let mut read_latencies = Vec::new();
    let mut admin_refused = 0;

    for now in 0..TICKS {
        clock.set(now * 1_000_000);
        running.retain(|(end, _, _)| *end > now); // finished work releases its permits

        let mut arrivals = vec![(Kind::Read, now), (Kind::Read, now)];
        if now >= 100 && now % 10 == 0 {
            arrivals.push((Kind::Admin, now));
        }
        let secs = now as f64 / 1e3;
        for (kind, at) in arrivals {
            if kind == Kind::Read {
                tl.count(READS, secs);
            }
            let slot = if bulkheads {
                let b = if kind == Kind::Read { &reads } else { &admin };
                match b.try_acquire() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        if kind == Kind::Admin {
                            admin_refused += 1;
                        }
                        tl.count(REFUSED_BULKHEAD, secs);
                        continue; // shed at its own bulkhead: the pool never sees it
                    }
                }
            } else {
                None
            };
            queued.push_back((kind, at, slot));
        }

        // Serve the queue in order while connections are free.
        while let Some((kind, at, slot)) = queued.pop_front() {
            let Ok(conn) = pool.try_acquire() else {
                queued.push_front((kind, at, slot));
                break;
            };
            let work = if kind == Kind::Read {
                READ_MS
            } else {
                ADMIN_MS
            };
            if kind == Kind::Read {
                let waited = now - at;
                read_latencies.push(waited + work);
                tl.count(
                    if waited + work > LATE_MS {
                        READS_LATE
                    } else {
                        READS_IN_TIME
                    },
                    secs,
                );
            } else {
                tl.count(ADMIN, secs);
            }
            running.push((now + work, conn, slot));
        }
    }
    read_latencies.sort_unstable();
    (read_latencies, admin_refused)
}

pub(crate) fn run() -> Scenario {
    let mut s = Scenario::new(
        "noisy neighbour",
        format!("noisy neighbour: admin flood on a {POOL}-connection pool"),
    );
    let mut runs = Vec::new();
    for (bulkheads, variant) in [
        (false, "shared pool, no bulkheads"),
        (true, "bulkheads: admin 2, reads 18"),
    ] {
        let mut tl = Timeline::new(variant, 0.05);
        let (lat, refused) = simulate(bulkheads, &mut tl);
        let ms = |v| crate::ms(Duration::from_millis(v));
        let (p50, p99) = (crate::percentile(&lat, 0.5), crate::percentile(&lat, 0.99));
        s.key_row(
            variant,
            "read latency p50 / p99",
            format!("{} / {}", ms(p50), ms(p99)),
        );
        s.row(
            variant,
            &format!("reads served in {} s", TICKS / 1000),
            lat.len(),
        );
        s.row(variant, "admin jobs refused (bulkhead full)", refused);
        s.timeline(tl);
        runs.push((lat.len(), p99, refused));
    }
    let ((shared_served, shared_p99, _), (bh_served, bh_p99, bh_refused)) = (runs[0], runs[1]);
    s.notice(format!(
        "in a shared pool the admin flood takes the connections and reads queue behind it (p99 \
         {shared_p99} ms, {shared_served} reads served); with bulkheads {bh_refused} admin jobs \
         are refused at their own bulkhead and reads keep a p99 of {bh_p99} ms ({bh_served} \
         served)"
    ));
    s
}
