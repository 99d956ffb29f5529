//! The sliding windows: record cost of resile's lock-free windows beside `std::sync::Mutex` and
//! `parking_lot::Mutex` baselines of the same logic, and the cost of reading each clock.
//!
//! - `count window success (full of successes)`: the closed breaker's healthy path, recording a
//!   plain success into a window of 100 plain successes.
//! - `count window mixed (1 in 8 failures)`: every record changes the ring.
//! - `time window record (CoarseClock)`: 10 s in 10 buckets, `now` read from the coarse clock.
//! - `clock read`: one `now()` of each clock.

use crate::{Case, Pool, Role};
use resile::clock::{Clock, CoarseClock, ManualClock, SystemClock};
use resile::window::{CountWindow, Lanes, Outcome, Tally, TimeWindow};
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const SIZE: u32 = 100;

/// Runs `op(state, thread, i)` for `i in 0..iters` on each of `threads` threads.
fn run_indexed<S, F>(pool: &Pool, threads: usize, iters: u64, state: S, op: F) -> Duration
where
    S: Send + Sync + 'static,
    F: Fn(&S, usize, u64) + Send + Sync + 'static,
{
    let state = Arc::new(state);
    pool.run(threads, move |t| {
        for i in 0..iters {
            op(&state, t, i);
        }
    })
}

fn mixed(i: u64) -> Outcome {
    if i % 8 == 7 {
        Outcome::Failure
    } else {
        Outcome::Success
    }
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

fn count_mixed_resile(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_indexed(pool, threads, iters, full_resile(), |w, _, i| {
        black_box(w.record(black_box(mixed(i))));
    })
}

fn count_mixed_std(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_indexed(
        pool,
        threads,
        iters,
        std::sync::Mutex::new(full_ring()),
        |m, _, i| {
            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
            black_box(g.record(black_box(mixed(i))));
        },
    )
}

fn count_mixed_pl(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_indexed(
        pool,
        threads,
        iters,
        parking_lot::Mutex::new(full_ring()),
        |m, _, i| {
            black_box(m.lock().record(black_box(mixed(i))));
        },
    )
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

fn time_resile(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let state = (
        TimeWindow::new(SPAN, 10).expect("valid"),
        CoarseClock::new(),
    );
    pool.run_op(threads, iters, state, |(w, c)| {
        black_box(w.record(c.now(), black_box(Outcome::Success)));
    })
}

fn time_std(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let state = (
        std::sync::Mutex::new(Buckets::new(SPAN, 10)),
        CoarseClock::new(),
    );
    pool.run_op(threads, iters, state, |(m, c)| {
        let now = c.now();
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        black_box(g.add(now, black_box(Outcome::Success).tally().into()));
    })
}

fn time_pl(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let state = (
        parking_lot::Mutex::new(Buckets::new(SPAN, 10)),
        CoarseClock::new(),
    );
    pool.run_op(threads, iters, state, |(m, c)| {
        let now = c.now();
        black_box(
            m.lock()
                .add(now, black_box(Outcome::Success).tally().into()),
        );
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
        case(mixed, "resile", Role::Resile, count_mixed_resile),
        case(
            mixed,
            "std Mutex<VecDeque>",
            Role::StdMutex,
            count_mixed_std,
        ),
        case(
            mixed,
            "parking_lot Mutex<VecDeque>",
            Role::ParkingLot,
            count_mixed_pl,
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
            assert_eq!(w.record(mixed(i)), r.record(mixed(i)));
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
