//! Circuit breaker: the closed success path, a closed call with 1 in 8 failures, and the open
//! refusal, for resile, mutex baselines of the same logic, and the peers failsafe 1.3 and recloser 1.4 (configured as in
//! research/peer-bench.md).

use crate::{Case, Pool, Role};
use failsafe::CircuitBreaker as _;
use resile::breaker::CircuitBreaker;
use resile::clock::{Clock, CoarseClock, SystemClock};
use std::hint::black_box;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// resile

fn resile_count<C: Clock>(clock: C) -> CircuitBreaker<C> {
    CircuitBreaker::builder()
        .clock(clock)
        .count_window(100)
        .minimum_calls(100)
        .failure_rate_threshold(0.5)
        .open_for(Duration::from_secs(3600))
        .build()
        .expect("valid config")
}

fn resile_time<C: Clock>(clock: C) -> CircuitBreaker<C> {
    CircuitBreaker::builder()
        .clock(clock)
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(100)
        .failure_rate_threshold(0.5)
        .open_for(Duration::from_secs(3600))
        .build()
        .expect("valid config")
}

/// Warm: fills the window, as a breaker in service would be.
fn warm<C: Clock>(b: CircuitBreaker<C>) -> CircuitBreaker<C> {
    for _ in 0..200 {
        b.try_acquire().expect("closed").success();
    }
    b
}

fn tripped<C: Clock>(b: CircuitBreaker<C>) -> CircuitBreaker<C> {
    while b.state() == resile::breaker::State::Closed {
        b.try_acquire().expect("closed").failure();
    }
    b
}

/// A call through a closed breaker: it must be let through (a refusal would time the wrong path).
fn resile_op<C: Clock>(b: &CircuitBreaker<C>) {
    b.try_acquire().expect("closed: let through").success();
}

/// A call to an open breaker: it must be refused.
fn resile_refused<C: Clock>(b: &CircuitBreaker<C>) {
    black_box(b.try_acquire().expect_err("open: refused"));
}

fn resile_closed_count(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(
        threads,
        iters,
        warm(resile_count(SystemClock::new())),
        resile_op,
    )
}

fn resile_closed_time_coarse(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(
        threads,
        iters,
        warm(resile_time(CoarseClock::new())),
        resile_op,
    )
}

fn resile_open_coarse(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(
        threads,
        iters,
        tripped(resile_count(CoarseClock::new())),
        resile_refused,
    )
}

fn resile_closed_time_recent(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(
        threads,
        iters,
        warm(resile_time(crate::recent_clock())),
        resile_op,
    )
}

fn resile_open_recent(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(
        threads,
        iters,
        tripped(resile_count(crate::recent_clock())),
        resile_refused,
    )
}

fn resile_open_system(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(
        threads,
        iters,
        tripped(resile_count(SystemClock::new())),
        resile_refused,
    )
}

// ---------------------------------------------------------------------------------------------
// Mutex baselines: a mutex around {state, [bool; 100] ring, position, failure count}; trips at
// >= 50 failures of the last 100; locked once for the permit and once to record; reads its clock
// (the same clock types resile reads) only when open.

#[derive(Clone, Copy)]
enum MState {
    Closed,
    Open(u64),
}

struct Inner<C> {
    clock: C,
    state: MState,
    ring: [bool; 100],
    pos: usize,
    failures: u32,
}

impl<C: Clock> Inner<C> {
    fn new(clock: C) -> Self {
        Self {
            clock,
            state: MState::Closed,
            ring: [false; 100],
            pos: 0,
            failures: 0,
        }
    }

    fn permit(&mut self) -> bool {
        match self.state {
            MState::Closed => true,
            MState::Open(until) => self.clock.now() >= until,
        }
    }

    fn record(&mut self, failed: bool) {
        let old = std::mem::replace(&mut self.ring[self.pos], failed);
        self.pos = (self.pos + 1) % 100;
        self.failures = self.failures - u32::from(old) + u32::from(failed);
        if self.failures >= 50 {
            self.state = MState::Open(self.clock.now() + HOUR.as_nanos() as u64);
        }
    }
}

trait Locked<C>: Send + Sync + 'static {
    fn with<R>(&self, f: impl FnOnce(&mut Inner<C>) -> R) -> R;
}

impl<C: Clock> Locked<C> for std::sync::Mutex<Inner<C>> {
    fn with<R>(&self, f: impl FnOnce(&mut Inner<C>) -> R) -> R {
        f(&mut self.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<C: Clock> Locked<C> for parking_lot::Mutex<Inner<C>> {
    fn with<R>(&self, f: impl FnOnce(&mut Inner<C>) -> R) -> R {
        f(&mut self.lock())
    }
}

/// One call through a mutex breaker; whether it was let through.
fn mutex_op<C: Clock, M: Locked<C>>(m: &M) -> bool {
    if m.with(Inner::permit) {
        black_box(());
        m.with(|i| i.record(false));
        true
    } else {
        false
    }
}

fn trip_mutex<C: Clock, M: Locked<C>>(m: M) -> M {
    for _ in 0..100 {
        m.with(|i| i.record(true));
    }
    m
}

fn std_closed(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = std::sync::Mutex::new(Inner::new(SystemClock::new()));
    pool.run_op(threads, iters, m, |m| {
        assert!(mutex_op(m), "closed: let through")
    })
}

fn pl_closed(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = parking_lot::Mutex::new(Inner::new(SystemClock::new()));
    pool.run_op(threads, iters, m, |m| {
        assert!(mutex_op(m), "closed: let through")
    })
}

fn refused<C: Clock, M: Locked<C>>(m: &M) {
    assert!(!mutex_op(m), "open: refused");
}

fn std_open(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = trip_mutex(std::sync::Mutex::new(Inner::new(SystemClock::new())));
    pool.run_op(threads, iters, m, refused)
}

fn pl_open(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = trip_mutex(parking_lot::Mutex::new(Inner::new(SystemClock::new())));
    pool.run_op(threads, iters, m, refused)
}

fn pl_open_coarse(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = trip_mutex(parking_lot::Mutex::new(Inner::new(CoarseClock::new())));
    pool.run_op(threads, iters, m, refused)
}

fn pl_open_recent(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = trip_mutex(parking_lot::Mutex::new(Inner::new(crate::recent_clock())));
    pool.run_op(threads, iters, m, refused)
}

// ---------------------------------------------------------------------------------------------
// Closed calls with failures present: every thread's 8th call fails, so the window of 100 holds
// about 12 failures and never trips (each row asserts every call was let through).

/// Runs `op(state, failed)` for each thread's calls, the `i`-th failing when `i % 8 == 7`.
fn run_mixed<S: Send + Sync + 'static>(
    pool: &Pool,
    threads: usize,
    iters: u64,
    state: S,
    op: fn(&S, bool),
) -> Duration {
    let state = std::sync::Arc::new(state);
    pool.run(threads, move |_| {
        for i in 0..iters {
            op(&state, black_box(i % 8 == 7));
        }
    })
}

fn resile_mixed_count(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = warm(resile_count(SystemClock::new()));
    run_mixed(pool, threads, iters, b, |b, failed| {
        let p = b.try_acquire().expect("closed: let through");
        if failed { p.failure() } else { p.success() }
    })
}

fn mutex_mixed<C: Clock, M: Locked<C>>(m: &M, failed: bool) {
    assert!(m.with(Inner::permit), "closed: let through");
    black_box(());
    m.with(|i| i.record(failed));
}

fn std_mixed(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = std::sync::Mutex::new(Inner::new(SystemClock::new()));
    run_mixed(pool, threads, iters, m, mutex_mixed)
}

fn pl_mixed(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = parking_lot::Mutex::new(Inner::new(SystemClock::new()));
    run_mixed(pool, threads, iters, m, mutex_mixed)
}

// ---------------------------------------------------------------------------------------------
// Peers

fn failsafe_breaker() -> impl failsafe::CircuitBreaker + Send + Sync + 'static {
    failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            5,
            failsafe::backoff::constant(HOUR),
        ))
        .build()
}

fn failsafe_op(b: &(impl failsafe::CircuitBreaker + Send + Sync)) {
    let _ = black_box(b.call(|| Ok::<_, ()>(())));
}

fn failsafe_closed(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, failsafe_breaker(), failsafe_op)
}

fn failsafe_open(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = failsafe_breaker();
    for _ in 0..10 {
        let _ = b.call(|| Err::<(), _>(()));
    }
    pool.run_op(threads, iters, b, failsafe_op)
}

fn recloser_breaker() -> recloser::Recloser {
    recloser::Recloser::custom()
        .closed_len(100)
        .error_rate(0.5)
        .open_wait(HOUR)
        .build()
}

fn recloser_op(b: &recloser::Recloser) {
    let _ = black_box(b.call(|| Ok::<_, ()>(())));
}

fn recloser_closed(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, recloser_breaker(), recloser_op)
}

fn recloser_open(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = recloser_breaker();
    for _ in 0..200 {
        let _ = b.call(|| Err::<(), _>(()));
    }
    pool.run_op(threads, iters, b, recloser_op)
}

/// The breaker cases: the closed success path and the open refusal.
pub fn cases() -> Vec<Case> {
    let closed = "breaker closed success";
    let open = "breaker open refusal";
    let mixed = "breaker closed call, 1 in 8 failures";
    vec![
        Case {
            group: closed,
            name: "resile count window",
            role: Role::Resile,
            run: resile_closed_count,
        },
        Case {
            group: closed,
            name: "resile time window + CoarseClock",
            role: Role::Resile,
            run: resile_closed_time_coarse,
        },
        Case {
            group: closed,
            name: "resile time window + RecentClock",
            role: Role::Resile,
            run: resile_closed_time_recent,
        },
        Case {
            group: closed,
            name: "std::Mutex breaker",
            role: Role::StdMutex,
            run: std_closed,
        },
        Case {
            group: closed,
            name: "parking_lot::Mutex breaker",
            role: Role::ParkingLot,
            run: pl_closed,
        },
        Case {
            group: closed,
            name: "failsafe 1.3",
            role: Role::Peer,
            run: failsafe_closed,
        },
        Case {
            group: closed,
            name: "recloser 1.4",
            role: Role::Peer,
            run: recloser_closed,
        },
        Case {
            group: mixed,
            name: "resile count window",
            role: Role::Resile,
            run: resile_mixed_count,
        },
        Case {
            group: mixed,
            name: "std::Mutex breaker",
            role: Role::StdMutex,
            run: std_mixed,
        },
        Case {
            group: mixed,
            name: "parking_lot::Mutex breaker",
            role: Role::ParkingLot,
            run: pl_mixed,
        },
        Case {
            group: open,
            name: "resile + CoarseClock",
            role: Role::Resile,
            run: resile_open_coarse,
        },
        Case {
            group: open,
            name: "resile + RecentClock",
            role: Role::Resile,
            run: resile_open_recent,
        },
        Case {
            group: open,
            name: "resile + SystemClock",
            role: Role::Resile,
            run: resile_open_system,
        },
        Case {
            group: open,
            name: "std::Mutex breaker + SystemClock",
            role: Role::StdMutex,
            run: std_open,
        },
        Case {
            group: open,
            name: "parking_lot::Mutex breaker + SystemClock",
            role: Role::ParkingLot,
            run: pl_open,
        },
        Case {
            group: open,
            name: "parking_lot::Mutex breaker + CoarseClock",
            role: Role::ParkingLot,
            run: pl_open_coarse,
        },
        Case {
            group: open,
            name: "parking_lot::Mutex breaker + RecentClock",
            role: Role::ParkingLot,
            run: pl_open_recent,
        },
        Case {
            group: open,
            name: "failsafe 1.3",
            role: Role::Peer,
            run: failsafe_open,
        },
        Case {
            group: open,
            name: "recloser 1.4",
            role: Role::Peer,
            run: recloser_open,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_runs_and_the_open_cases_are_open() {
        let pool = Pool::new(2);
        for case in cases() {
            (case.run)(&pool, 2, 10);
        }
        assert!(
            tripped(resile_count(CoarseClock::new()))
                .try_acquire()
                .is_err()
        );
        assert!(
            !trip_mutex(parking_lot::Mutex::new(Inner::new(CoarseClock::new())))
                .with(Inner::permit)
        );
        let f = failsafe_breaker();
        for _ in 0..10 {
            let _ = f.call(|| Err::<(), _>(()));
        }
        assert!(!f.is_call_permitted());
    }
}
