//! The capacity drop: a dependency that serves 100 calls at once loses four fifths of its
//! workers for 20 s, then recovers. A static limit is a guess that is wrong on one side of the
//! change: 100 lets a queue build at the dependency until calls outlive their timeout, 20 turns
//! away work the healthy dependency could serve. An adaptive bulkhead (the crate's Gradient2)
//! finds each capacity from the calls' latencies.
//!
//! Simulated time, in 1 ms ticks, for 40 s: 5 requests arrive each millisecond (5 000 a second,
//! needing 50 calls at once); a call takes 5 to 15 ms of a worker (10 on average, drawn from a
//! seeded generator, the same in every run); the dependency has 100 workers,
//! 20 from t = 10 s to t = 30 s, and queues the calls it cannot start, oldest first. A caller
//! gives up after 40 ms (the dependency drops a call it has not started by then); a call the
//! bulkhead refuses is answered at once.

use crate::Scenario;
use crate::timeline::{DB_FAILURES, REFUSED_BULKHEAD, REQUESTS, SUCCEEDED, Timeline};
use resile::bulkhead::adaptive::Gradient2;
use resile::bulkhead::{Bulkhead, BulkheadPermit};
use resile::clock::ManualClock;
use std::collections::VecDeque;
use std::time::Duration;

const TICKS: u64 = 40_000;
const PER_MS: u64 = 5;
/// A call's work: 5 to 15 ms, from a xorshift generator.
fn work_ms(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    5 + *rng % 11
}
const TIMEOUT_MS: u64 = 40;
const CAPACITY: u32 = 100;
const DEGRADED: u32 = 20;
const DROP: std::ops::Range<u64> = 10_000..30_000;

fn workers(now: u64) -> usize {
    if DROP.contains(&now) {
        DEGRADED as usize
    } else {
        CAPACITY as usize
    }
}

/// A call in flight: when it arrived, and its bulkhead slot.
struct Call<'b> {
    arrived: u64,
    permit: BulkheadPermit<'b, ManualClock>,
}

#[derive(Default)]
struct Stats {
    /// Latency (ms) of every call answered within its timeout.
    answered: Vec<u64>,
    /// How long (ms) every admitted caller waited: its answer, or its timeout.
    waited: Vec<u64>,
    timed_out: u64,
    refused: u64,
    /// The limit at each tick while degraded, and at the end.
    degraded_limits: Vec<u32>,
    final_limit: u32,
}

/// One run through `bulkhead`.
fn simulate(clock: &ManualClock, bulkhead: &Bulkhead<ManualClock>, tl: &mut Timeline) -> Stats {
    let mut stats = Stats::default();
    // Every call in flight, by id; the dependency's queue and workers hold ids.
    let mut calls: Vec<Option<Call<'_>>> = Vec::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut busy: Vec<(u64, usize)> = Vec::new(); // (done at, id)
    let mut waiting: VecDeque<(u64, usize)> = VecDeque::new(); // (gives up at, id)
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;

    for now in 0..TICKS {
        clock.set(now * 1_000_000);
        let secs = now as f64 / 1e3;
        // Workers finish: the caller, if still waiting, gets its answer.
        let mut i = 0;
        while i < busy.len() {
            let (done, id) = busy[i];
            if done > now {
                i += 1;
                continue;
            }
            busy.swap_remove(i);
            if let Some(call) = calls[id].take() {
                stats.answered.push(now - call.arrived);
                stats.waited.push(now - call.arrived);
                tl.count(SUCCEEDED, secs);
                call.permit.success();
            }
        }
        // Callers give up after their timeout; the dependency drops their calls from its queue
        // (a call already on a worker runs on, for nobody).
        while let Some(&(at, id)) = waiting.front() {
            if at > now {
                break;
            }
            waiting.pop_front();
            if let Some(call) = calls[id].take() {
                stats.timed_out += 1;
                stats.waited.push(TIMEOUT_MS);
                tl.count(DB_FAILURES, secs);
                call.permit.dropped();
            }
        }
        // New requests: a slot, or a refusal at once.
        for _ in 0..PER_MS {
            tl.count(REQUESTS, secs);
            match bulkhead.try_acquire() {
                Ok(permit) => {
                    let id = calls.len();
                    calls.push(Some(Call {
                        arrived: now,
                        permit,
                    }));
                    queue.push_back(id);
                    waiting.push_back((now + TIMEOUT_MS, id));
                }
                Err(_) => {
                    stats.refused += 1;
                    tl.count(REFUSED_BULKHEAD, secs);
                }
            }
        }
        // Free workers start the oldest calls still wanted.
        while busy.len() < workers(now) {
            let Some(id) = queue.pop_front() else { break };
            if calls[id].is_some() {
                busy.push((now + work_ms(&mut rng), id));
            }
        }
        if DROP.contains(&now) {
            stats.degraded_limits.push(bulkhead.limit());
        }
    }
    stats.final_limit = bulkhead.limit();
    // The calls still in flight at the end are dropped with `calls`, releasing their slots.
    stats.answered.sort_unstable();
    stats.waited.sort_unstable();
    stats.degraded_limits.sort_unstable();
    stats
}

fn fixed(clock: &ManualClock, limit: u32) -> Bulkhead<ManualClock> {
    Bulkhead::builder()
        .name("dependency")
        .limit(limit)
        .clock(clock.clone())
        .build()
        .expect("valid bulkhead")
}

/// Gradient2, starting at the cautious 20, taking each window's estimate whole (smoothing 1)
/// and shrinking once the window's RTT is 10% over the long average (Netflix's default
/// tolerance of 50% lets a queue of half the work build before it acts).
fn adaptive(clock: &ManualClock) -> Bulkhead<ManualClock> {
    Bulkhead::builder()
        .name("dependency")
        .adaptive(
            Gradient2::default()
                .initial_limit(DEGRADED)
                .min_limit(5)
                .max_limit(200)
                .smoothing(1.0)
                .rtt_tolerance(1.1),
        )
        .adaptive_window(Duration::from_millis(100))
        .clock(clock.clone())
        .build()
        .expect("valid bulkhead")
}

pub(crate) fn run() -> Scenario {
    let mut s = Scenario::new(
        "capacity drop",
        format!(
            "capacity drop: {CAPACITY} concurrent calls, {DEGRADED} for {} s, then {CAPACITY}",
            (DROP.end - DROP.start) / 1000
        ),
    );
    let variants = [
        format!("static limit {CAPACITY}"),
        format!("static limit {DEGRADED}"),
        "adaptive (Gradient2)".to_owned(),
    ];
    let mut runs = Vec::new();
    for (i, variant) in variants.iter().enumerate() {
        let clock = ManualClock::new();
        let bulkhead = match i {
            0 => fixed(&clock, CAPACITY),
            1 => fixed(&clock, DEGRADED),
            _ => adaptive(&clock),
        };
        let mut tl = Timeline::new(variant, 0.25);
        let stats = simulate(&clock, &bulkhead, &mut tl);
        s.timeline(tl);
        runs.push(stats);
    }
    // The latency bound every variant is held to: the limit-20 run's p99.
    let bound = crate::percentile(&runs[1].waited, 0.99);
    let ms = |v: u64| crate::ms(Duration::from_millis(v));
    let secs = TICKS / 1000;
    for (variant, r) in variants.iter().zip(&runs) {
        let within = r.answered.iter().filter(|&&l| l <= bound).count() as u64;
        s.key_row(
            variant,
            &format!("goodput: answered within {} (per s)", ms(bound)),
            within / secs,
        );
        s.key_row(
            variant,
            "latency p99 (a timeout counts as its 40 ms)",
            ms(crate::percentile(&r.waited, 0.99)),
        );
        s.row(
            variant,
            &format!("answered within the {} timeout", ms(TIMEOUT_MS)),
            r.answered.len(),
        );
        s.row(variant, "gave up (timed out)", r.timed_out);
        s.row(variant, "refused (bulkhead full)", r.refused);
    }
    let a = &runs[2];
    let median = |v: &[u32]| v.get(v.len() / 2).copied().unwrap_or(0);
    s.row(
        &variants[2],
        "limit while degraded (median), at the end",
        format!("{}, {}", median(&a.degraded_limits), a.final_limit),
    );
    let good = |r: &Stats| r.answered.iter().filter(|&&l| l <= bound).count() as u64 / secs;
    s.notice(format!(
        "a limit of {CAPACITY} lets a queue build at the degraded dependency, so {} calls \
         outlive their timeout; a limit of {DEGRADED} refuses {} requests the healthy dependency \
         could serve; the adaptive limit follows the capacity down (a median of {} while \
         degraded) and back up ({} at the end), and answers {} a second within {} (the limit-{} \
         row's p99) against {} and {}, with a p99 of {}",
        runs[0].timed_out,
        runs[1].refused,
        median(&a.degraded_limits),
        a.final_limit,
        good(a),
        ms(bound),
        DEGRADED,
        good(&runs[0]),
        good(&runs[1]),
        ms(crate::percentile(&a.waited, 0.99)),
    ));
    s
}
