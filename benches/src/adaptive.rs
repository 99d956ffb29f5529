//! Adaptive concurrency limit cases: a slot taken and given back with a success report (its RTT
//! read from the clock at both ends, summed into the window, the window closed once a second)
//! beside the static bulkhead's round trip and the same logic under a `parking_lot::Mutex`; and
//! one request through each crate's adaptive tower layer, beside tower-acc 0.1 and
//! tower-resilience-adaptive 0.14 (both a tokio semaphore plus a mutex around the algorithm).
//!
//! Every case's algorithm is AIMD with a limit far above the threads, so nothing is refused
//! (each case asserts it) and what is timed is the admission, the report and the window's close.

use crate::tower_layers::{Echo, request};
use crate::{Case, Pool, Role};
use resile::bulkhead::Bulkhead;
use resile::bulkhead::adaptive::Aimd;
use resile::clock::{Clock, CoarseClock, RecentClock, SystemClock};
use resile::tower::BulkheadLayer;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;
use tower::{Layer, Service};

/// The limit every case starts at and may reach: far above any thread count.
const LIMIT: u32 = 1000;

fn aimd() -> Aimd {
    Aimd::default()
        .initial_limit(LIMIT)
        .min_limit(LIMIT)
        .max_limit(LIMIT)
}

fn adaptive<C: Clock>(clock: C) -> Bulkhead<C> {
    Bulkhead::builder()
        .adaptive(aimd())
        .clock(clock)
        .build()
        .expect("valid config")
}

fn static_round_trip(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = Bulkhead::builder().limit(LIMIT).build().unwrap();
    pool.run_op(threads, iters, b, |b| {
        b.try_acquire().expect("a free slot").success();
    })
}

fn adaptive_recent(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, adaptive(crate::recent_clock()), |b| {
        b.try_acquire().expect("a free slot").success();
    })
}

fn adaptive_coarse(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, adaptive(CoarseClock::new()), |b| {
        b.try_acquire().expect("a free slot").success();
    })
}

fn adaptive_owned(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = Arc::new(adaptive(crate::recent_clock()));
    pool.run_op(threads, iters, b, |b| {
        b.try_acquire_owned().expect("a free slot").success();
    })
}

/// The same logic under one lock: admission against the limit, and on release the window's
/// sums, closed once a second by an AIMD step.
struct Locked {
    clock: RecentClock,
    state: parking_lot::Mutex<LockedState>,
}

struct LockedState {
    in_flight: u32,
    limit: u32,
    count: u64,
    rtt_sum: u64,
    rtt_min: u64,
    drops: u64,
    max_in_flight: u32,
    deadline: u64,
}

impl Locked {
    fn new() -> Self {
        let clock = crate::recent_clock();
        let deadline = clock.now() + 1_000_000_000;
        Self {
            clock,
            state: parking_lot::Mutex::new(LockedState {
                in_flight: 0,
                limit: LIMIT,
                count: 0,
                rtt_sum: 0,
                rtt_min: u64::MAX,
                drops: 0,
                max_in_flight: 0,
                deadline,
            }),
        }
    }

    fn acquire(&self) -> Option<u64> {
        let mut s = self.state.lock();
        if s.in_flight >= s.limit {
            return None;
        }
        s.in_flight += 1;
        drop(s);
        Some(self.clock.now())
    }

    fn success(&self, start: u64) {
        let now = self.clock.now();
        let rtt = now.saturating_sub(start);
        let mut s = self.state.lock();
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.in_flight -= 1;
        s.count += 1;
        s.rtt_sum = s.rtt_sum.saturating_add(rtt);
        s.rtt_min = s.rtt_min.min(rtt);
        if now >= s.deadline {
            // AIMD: back off on a drop, grow when the window used half the limit.
            s.limit = if s.drops > 0 {
                (s.limit * 9 / 10).max(LIMIT)
            } else if 2 * s.max_in_flight >= s.limit {
                (s.limit + 1).min(LIMIT)
            } else {
                s.limit
            };
            s.deadline = now + 1_000_000_000;
            (s.count, s.rtt_sum, s.rtt_min, s.drops, s.max_in_flight) = (0, 0, u64::MAX, 0, 0);
        }
    }
}

fn parking_lot_adaptive(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, Locked::new(), |l| {
        let start = l.acquire().expect("a free slot");
        l.success(black_box(start));
    })
}

/// Runs `iters` requests per thread, each thread through its own clone of `svc` (the clones
/// share the limiter, as one layer's services do for resile).
fn run_clones<S>(pool: &Pool, threads: usize, iters: u64, svc: S) -> Duration
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
{
    // A peer's service need not be `Sync`: each thread takes its clone under a lock, once.
    let svc = std::sync::Mutex::new(svc);
    pool.run(threads, move |_| {
        let mut svc = svc.lock().expect("not poisoned").clone();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..iters {
            request(&mut svc, &mut cx);
        }
    })
}

fn resile_layer(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = Arc::new(adaptive(crate::recent_clock()));
    run_clones(pool, threads, iters, BulkheadLayer::new(b).layer(Echo))
}

/// The same clock as the peers: they read `std::time::Instant` at both ends of each request.
fn resile_layer_system(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = Arc::new(adaptive(SystemClock::new()));
    run_clones(pool, threads, iters, BulkheadLayer::new(b).layer(Echo))
}

fn tower_acc(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let algorithm = tower_acc::Aimd::builder()
        .initial_limit(LIMIT as usize)
        .min_limit(LIMIT as usize)
        .max_limit(LIMIT as usize)
        .build();
    run_clones(
        pool,
        threads,
        iters,
        tower_acc::ConcurrencyLimit::new(Echo, algorithm),
    )
}

fn tower_resilience(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let algorithm = tower_resilience_adaptive::Aimd::builder()
        .initial_limit(LIMIT as usize)
        .min_limit(LIMIT as usize)
        .max_limit(LIMIT as usize)
        .latency_threshold(Duration::from_secs(5))
        .build()
        .expect("valid config");
    let layer = tower_resilience_adaptive::AdaptiveLimiterLayer::new(algorithm);
    run_clones(pool, threads, iters, layer.layer(Echo))
}

/// The adaptive cases.
pub fn cases() -> Vec<Case> {
    let direct = "adaptive bulkhead acquire + success report";
    let layer = "adaptive limit tower layer request";
    let c = |group, name, role, run| Case {
        group,
        name,
        role,
        run,
    };
    vec![
        c(
            direct,
            "resile adaptive (AIMD) + RecentClock",
            Role::Resile,
            adaptive_recent as _,
        ),
        c(
            direct,
            "resile adaptive (AIMD) + RecentClock, owned permit",
            Role::Resile,
            adaptive_owned as _,
        ),
        c(
            direct,
            "resile adaptive (AIMD) + CoarseClock",
            Role::Resile,
            adaptive_coarse as _,
        ),
        c(
            direct,
            "resile static bulkhead (the round trip to match)",
            Role::Floor,
            static_round_trip as _,
        ),
        c(
            direct,
            "parking_lot::Mutex adaptive limit + RecentClock",
            Role::ParkingLot,
            parking_lot_adaptive as _,
        ),
        c(
            layer,
            "resile BulkheadLayer, adaptive (AIMD) + RecentClock",
            Role::Resile,
            resile_layer as _,
        ),
        c(
            layer,
            "resile BulkheadLayer, adaptive (AIMD) + SystemClock (the peers' clock)",
            Role::Resile,
            resile_layer_system as _,
        ),
        c(
            layer,
            "tower-acc 0.1 ConcurrencyLimit (AIMD)",
            Role::Peer,
            tower_acc as _,
        ),
        c(
            layer,
            "tower-resilience-adaptive 0.14 (AIMD)",
            Role::Peer,
            tower_resilience as _,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_serves_its_calls() {
        let pool = Pool::new(2);
        for case in cases() {
            (case.run)(&pool, 2, 100);
        }
    }
}
