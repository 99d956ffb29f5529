//! The sliding windows: record cost of resile's lock-free windows beside `std::sync::Mutex` and
//! `parking_lot::Mutex` baselines of the same logic, and the cost of reading each clock.
//!
//! - `count window success (full of successes)`: the closed breaker's healthy path, recording a
//!   plain success into a window of 100 plain successes.
//! - `count window mixed (1 in 8 failures)`: a window of 100 that always holds failures; about a
//!   quarter of the records change the ring. Every row takes a breaker's decision on the totals
//!   each record returns (a failure rate of 50 %); resile's first row records successes as the
//!   breaker does, deferred while the totals as they stand breach nothing, its second row with
//!   the exact totals after every record.
//! - `count window mixed (1 in 100 failures)`: the same with a failure every 100th call, so the
//!   window holds about one per thread and most records replace a success by a success.
//! - `time window record (CoarseClock)`: 10 s in 10 buckets, `now` read from a coarse clock by
//!   every implementation alike.
//!
//! Each row checks, untimed, that its operation did what the row says: the mixed rows that the
//! failures were recorded (some record returned a tally with a failure), the time rows that the
//! calls were counted.
//! - `clock read`: one `now()` of each clock.

use crate::{Case, Pool, Role};
use resile::clock::{Clock, CoarseClock, ManualClock, SystemClock};
use resile::window::{CountWindow, Lanes, Outcome, Tally, TimeWindow};
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const SIZE: u32 = 100;

/// Runs `op(state, i)` for `i in 0..iters` on each of `threads` threads; returns the time and the
/// largest value any `op` returned (what the row's check reads).
fn run_max<S, F>(pool: &Pool, threads: usize, iters: u64, state: S, op: F) -> (Duration, u32)
where
    S: Send + Sync + 'static,
    F: Fn(&S, u64) -> u32 + Send + Sync + 'static,
{
    let state = Arc::new(state);
    let seen = Arc::new(std::sync::Mutex::new(0u32));
    let out = seen.clone();
    let time = pool.run(threads, move |_| {
        let mut max = 0u32;
        for i in 0..iters {
            max = max.max(op(&state, i));
        }
        let mut s = out.lock().unwrap_or_else(|p| p.into_inner());
        *s = (*s).max(max);
    });
    let max = *seen.lock().unwrap_or_else(|p| p.into_inner());
    (time, max)
}

/// The `i`-th outcome of a thread: a failure every `every`-th call.
fn mixed(i: u64, every: u64) -> Outcome {
    if i % every == every - 1 {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// A mixed row: times `record` of [`mixed`] outcomes, and checks that the failures went in. The
/// check asks for a tally showing a failure once each thread has recorded a few: a record that
/// adds a failure returns the totals just after it, which can miss it only if racing recorders
/// evicted it in between, and cannot do so for every failure of every thread.
fn run_mixed<S, F>(
    pool: &Pool,
    threads: usize,
    iters: u64,
    every: u64,
    state: S,
    record: F,
) -> Duration
where
    S: Send + Sync + 'static,
    F: Fn(&S, Outcome) -> Tally + Send + Sync + 'static,
{
    let (time, failures) = run_max(pool, threads, iters, state, move |s, i| {
        let t = record(s, black_box(mixed(i, every)));
        // The decision a breaker takes on every record, alike in every row: at 1 in 8 failures
        // or fewer it never trips.
        assert!(!breach(&t), "the mixed row breached: {t:?}");
        t.failures
    });
    if iters >= 8 * every {
        assert!(failures > 0, "the mixed row recorded no failure");
    }
    time
}

/// A breaker's trip decision on a window of [`SIZE`]: a failure rate of 50 % or more.
fn breach(t: &Tally) -> bool {
    t.calls == SIZE && 2 * t.failures >= t.calls
}

/// The count window's logic, for the mutex baselines.
struct Ring {
    size: usize,
    ring: VecDeque<Outcome>,
    tally: Tally,
}

impl Ring {
    fn new(size: u32) -> Self {
        Self {
            size: size as usize,
            ring: VecDeque::with_capacity(size as usize),
            tally: Tally::default(),
        }
    }

    fn record(&mut self, o: Outcome) -> Tally {
        let evicted = if self.ring.len() == self.size {
            self.ring.pop_front()
        } else {
            None
        };
        if let Some(old) = evicted {
            let t = old.tally();
            self.tally.calls -= t.calls;
            self.tally.failures -= t.failures;
            self.tally.slow -= t.slow;
        }
        self.ring.push_back(o);
        let t = o.tally();
        self.tally.calls += t.calls;
        self.tally.failures += t.failures;
        self.tally.slow += t.slow;
        self.tally
    }
}

fn full_resile() -> CountWindow {
    let w = CountWindow::new(SIZE).expect("valid size");
    for _ in 0..SIZE {
        w.record(Outcome::Success);
    }
    w
}

fn full_ring() -> Ring {
    let mut r = Ring::new(SIZE);
    for _ in 0..SIZE {
        r.record(Outcome::Success);
    }
    r
}

fn count_success_resile(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, full_resile(), |w| {
        black_box(w.record(black_box(Outcome::Success)));
    })
}

fn count_success_std(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, std::sync::Mutex::new(full_ring()), |m| {
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        black_box(g.record(black_box(Outcome::Success)));
    })
}

fn count_success_pl(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, parking_lot::Mutex::new(full_ring()), |m| {
        black_box(m.lock().record(black_box(Outcome::Success)));
    })
}

/// resile as a breaker records: a plain success through `record_success_lazily`, deferred
/// unless the totals as they stand could breach.
fn count_mixed_resile(pool: &Pool, threads: usize, iters: u64, every: u64) -> Duration {
    run_mixed(pool, threads, iters, every, full_resile(), |w, o| match o {
        Outcome::Success => w.record_success_lazily(breach),
        o => w.record(o),
    })
}

/// resile with the exact totals after every record (`record` for every outcome).
fn count_mixed_exact(pool: &Pool, threads: usize, iters: u64, every: u64) -> Duration {
    run_mixed(pool, threads, iters, every, full_resile(), |w, o| {
        w.record(o)
    })
}

fn count_mixed_std(pool: &Pool, threads: usize, iters: u64, every: u64) -> Duration {
    let m = std::sync::Mutex::new(full_ring());
    run_mixed(pool, threads, iters, every, m, |m, o| {
        m.lock().unwrap_or_else(|p| p.into_inner()).record(o)
    })
}

fn count_mixed_pl(pool: &Pool, threads: usize, iters: u64, every: u64) -> Duration {
    let m = parking_lot::Mutex::new(full_ring());
    run_mixed(pool, threads, iters, every, m, |m, o| m.lock().record(o))
}

fn mixed8_resile(pool: &Pool, threads: usize, iters: u64) -> Duration {
    count_mixed_resile(pool, threads, iters, 8)
}

fn mixed8_exact(pool: &Pool, threads: usize, iters: u64) -> Duration {
    count_mixed_exact(pool, threads, iters, 8)
}

fn mixed8_std(pool: &Pool, threads: usize, iters: u64) -> Duration {
    count_mixed_std(pool, threads, iters, 8)
}

fn mixed8_pl(pool: &Pool, threads: usize, iters: u64) -> Duration {
    count_mixed_pl(pool, threads, iters, 8)
}

fn mixed100_resile(pool: &Pool, threads: usize, iters: u64) -> Duration {
    count_mixed_resile(pool, threads, iters, 100)
}

fn mixed100_exact(pool: &Pool, threads: usize, iters: u64) -> Duration {
    count_mixed_exact(pool, threads, iters, 100)
}

fn mixed100_std(pool: &Pool, threads: usize, iters: u64) -> Duration {
    count_mixed_std(pool, threads, iters, 100)
}

fn mixed100_pl(pool: &Pool, threads: usize, iters: u64) -> Duration {
    count_mixed_pl(pool, threads, iters, 100)
}

/// The time window's logic, for the mutex baselines: buckets, running totals, and expiry of at
/// most N buckets when the head moves.
struct Buckets {
    bucket_nanos: u64,
    head: u64,
    buckets: Vec<Lanes>,
    totals: Lanes,
}

impl Buckets {
    fn new(span: Duration, n: usize) -> Self {
        Self {
            bucket_nanos: span.as_nanos() as u64 / n as u64,
            head: 0,
            buckets: vec![[0; 3]; n],
            totals: [0; 3],
        }
    }

    fn add(&mut self, now: u64, d: Lanes) -> Lanes {
        let n = self.buckets.len() as u64;
        let e = now / self.bucket_nanos;
        if e > self.head {
            for k in 0..(e - self.head).min(n) {
                let b = &mut self.buckets[((e - k) % n) as usize];
                for (t, x) in self.totals.iter_mut().zip(b.iter()) {
                    *t -= x;
                }
                *b = [0; 3];
            }
            self.head = e;
        }
        if self.head - e < n {
            let b = &mut self.buckets[(e % n) as usize];
            for ((x, t), d) in b.iter_mut().zip(self.totals.iter_mut()).zip(d) {
                let a = d.min(TimeWindow::MAX_LANE - *t);
                *x += a;
                *t += a;
            }
        }
        self.totals
    }
}

const SPAN: Duration = Duration::from_secs(10);

/// A time row: every implementation reads `now` from its own [`CoarseClock`] (the same clock
/// source, read once per record outside any lock) and records a success; the row checks that the
/// calls were counted.
fn run_time<S, F>(pool: &Pool, threads: usize, iters: u64, window: S, record: F) -> Duration
where
    S: Send + Sync + 'static,
    F: Fn(&S, u64) -> Lanes + Send + Sync + 'static,
{
    let state = (window, CoarseClock::new());
    let (time, calls) = run_max(pool, threads, iters, state, move |(w, c), _| {
        let lanes: Lanes = record(w, c.now());
        lanes[0]
    });
    assert!(calls > 0, "the time row counted no call");
    time
}

fn time_resile(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let w = TimeWindow::new(SPAN, 10).expect("valid");
    run_time(pool, threads, iters, w, |w, now| {
        w.record(now, black_box(Outcome::Success)).into()
    })
}

fn time_std(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = std::sync::Mutex::new(Buckets::new(SPAN, 10));
    run_time(pool, threads, iters, m, |m, now| {
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        g.add(now, black_box(Outcome::Success).tally().into())
    })
}

fn time_pl(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = parking_lot::Mutex::new(Buckets::new(SPAN, 10));
    run_time(pool, threads, iters, m, |m, now| {
        m.lock()
            .add(now, black_box(Outcome::Success).tally().into())
    })
}

fn clock_system(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, SystemClock::new(), |c| {
        black_box(c.now());
    })
}

fn clock_coarse(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, CoarseClock::new(), |c| {
        black_box(c.now());
    })
}

fn clock_recent(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, crate::recent_clock(), |c| {
        black_box(c.now());
    })
}

fn clock_manual(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, ManualClock::new(), |c| {
        black_box(c.now());
    })
}

/// The window cases.
pub fn cases() -> Vec<Case> {
    let case = |group, name, role, run| Case {
        group,
        name,
        role,
        run,
    };
    let healthy = "count window success (full of successes)";
    let mixed = "count window mixed (1 in 8 failures)";
    let mixed100 = "count window mixed (1 in 100 failures)";
    let time = "time window record (CoarseClock)";
    let clock = "clock read";
    vec![
        case(healthy, "resile", Role::Resile, count_success_resile as _),
        case(
            healthy,
            "std Mutex<VecDeque>",
            Role::StdMutex,
            count_success_std,
        ),
        case(
            healthy,
            "parking_lot Mutex<VecDeque>",
            Role::ParkingLot,
            count_success_pl,
        ),
        case(
            mixed,
            "resile (the breaker's path: successes deferred)",
            Role::Resile,
            mixed8_resile,
        ),
        case(
            mixed,
            "resile (exact totals on every record)",
            Role::Resile,
            mixed8_exact,
        ),
        case(mixed, "std Mutex<VecDeque>", Role::StdMutex, mixed8_std),
        case(
            mixed,
            "parking_lot Mutex<VecDeque>",
            Role::ParkingLot,
            mixed8_pl,
        ),
        case(
            mixed100,
            "resile (the breaker's path: successes deferred)",
            Role::Resile,
            mixed100_resile,
        ),
        case(
            mixed100,
            "resile (exact totals on every record)",
            Role::Resile,
            mixed100_exact,
        ),
        case(
            mixed100,
            "std Mutex<VecDeque>",
            Role::StdMutex,
            mixed100_std,
        ),
        case(
            mixed100,
            "parking_lot Mutex<VecDeque>",
            Role::ParkingLot,
            mixed100_pl,
        ),
        case(time, "resile", Role::Resile, time_resile),
        case(time, "std Mutex<buckets>", Role::StdMutex, time_std),
        case(
            time,
            "parking_lot Mutex<buckets>",
            Role::ParkingLot,
            time_pl,
        ),
        case(clock, "SystemClock", Role::Floor, clock_system),
        case(clock, "CoarseClock", Role::Floor, clock_coarse),
        case(
            clock,
            "RecentClock (1 ms ticker)",
            Role::Floor,
            clock_recent,
        ),
        case(clock, "ManualClock", Role::Floor, clock_manual),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_match_resile() {
        let w = full_resile();
        let mut r = full_ring();
        for i in 0..1000 {
            for every in [8, 100] {
                assert_eq!(w.record(mixed(i, every)), r.record(mixed(i, every)));
            }
        }
        let tw = TimeWindow::new(SPAN, 10).unwrap();
        let mut b = Buckets::new(SPAN, 10);
        for i in 0..1000u64 {
            let now = i * 37_000_000;
            assert_eq!(
                tw.add(now, [1, (i % 3) as u32, 0]),
                b.add(now, [1, (i % 3) as u32, 0])
            );
        }
    }
}
