//! Retry budget: one deposit (an original request) plus one withdraw (a retry) per operation, on
//! resile (both modes), a `std::sync::Mutex` and a `parking_lot::Mutex` baseline of the same
//! logic, and tower 0.5's `TpsBudget`; plus the cost of one backoff computation.
//!
//! Every withdraw in the deposit + withdraw group must be granted, as in research/peer-bench.md,
//! so that each row times what its label says and no row is flattered by fast refusals: each
//! row counts its refused withdraws and every sample asserts that there were none. The two
//! resile modes do different work for a deposit: in fixed mode it only bumps a lifetime counter
//! (the window counts retries alone), in ratio mode it earns retries in the window, as tower's
//! does, so the ratio rows are the like-for-like comparison with tower and the mutex rings.
//!
//! resile's window counts at most `MAX_RETRIES` (2^21 - 1) retries, and as many requests, over
//! the window, so its rows use a 2 ms window of ten 200 us buckets, which no thread count here
//! fills; the ratio rows keep a floor of 16 retries, more than the threads, so a pair whose
//! deposit ages out before its retry (one per thread at most) is never refused either. The
//! baselines keep the peer bench's 10 one-second buckets and floor of 100.

use crate::{Case, Pool, Role};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use resile::backoff::{Backoff, Jitter};
use resile::budget::{MAX_RETRIES, RetryBudget};
use resile::clock::{Clock, CoarseClock, SystemClock};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::retry::budget::{Budget, TpsBudget};

const GROUP: &str = "budget deposit + withdraw";
// The deposit + withdraw rows.
const FIXED_COARSE: &str = "resile fixed (CoarseClock): deposit only bumps a counter";
const RATIO_COARSE: &str = "resile ratio (CoarseClock): deposit earns, as tower's";
const FIXED_RECENT: &str = "resile fixed (RecentClock): deposit only bumps a counter";
const RATIO_RECENT: &str = "resile ratio (RecentClock): deposit earns, as tower's";
const RATIO_SYSTEM: &str = "resile ratio (SystemClock): deposit earns, as tower's";
const STD_RING: &str = "std::Mutex ring (CoarseClock)";
const PL_RING: &str = "parking_lot::Mutex ring (CoarseClock)";
const TOWER: &str = "tower 0.5 TpsBudget";

const WINDOW: Duration = Duration::from_millis(2);

fn resile_fixed<C: Clock>(clock: C) -> RetryBudget<C> {
    RetryBudget::builder()
        .max_retries(MAX_RETRIES)
        .window(WINDOW)
        .buckets(10)
        .clock(clock)
        .build()
        .expect("valid budget")
}

fn resile_ratio<C: Clock>(clock: C) -> RetryBudget<C> {
    RetryBudget::builder()
        .ratio(1.0)
        .min_per_sec(8_000) // 16 retries over the 2 ms window
        .window(WINDOW)
        .buckets(10)
        .clock(clock)
        .build()
        .expect("valid budget")
}

/// Runs `iters` deposit + withdraw pairs (`pair` returns whether the withdraw was granted) on
/// each of `threads` threads over one shared `state`, and asserts that every withdraw was
/// granted: each thread counts its refusals in a register and adds them up once at the end.
fn pairs<S, F>(row: &str, pool: &Pool, threads: usize, iters: u64, state: S, pair: F) -> Duration
where
    S: Send + Sync + 'static,
    F: Fn(&S) -> bool + Send + Sync + 'static,
{
    let shared = Arc::new((state, AtomicU64::new(0)));
    let inner = shared.clone();
    let wall = pool.run(threads, move |_| {
        let (state, refused) = &*inner;
        let mut n = 0u64;
        for _ in 0..iters {
            n += u64::from(!pair(state));
        }
        refused.fetch_add(n, Ordering::Relaxed);
    });
    // The pool's end barrier orders every thread's count before this load.
    let refused = shared.1.load(Ordering::Relaxed);
    assert_eq!(
        refused,
        0,
        "{row}, {threads} threads: {refused} of {} withdraws refused; the row times granted withdraws only",
        iters * threads as u64
    );
    wall
}

fn run_resile<C: Clock>(
    row: &str,
    pool: &Pool,
    threads: usize,
    iters: u64,
    b: RetryBudget<C>,
) -> Duration {
    pairs(row, pool, threads, iters, b, |b| {
        b.deposit();
        b.try_withdraw().is_ok()
    })
}

fn fixed_coarse(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_resile(
        FIXED_COARSE,
        pool,
        threads,
        iters,
        resile_fixed(CoarseClock::new()),
    )
}

fn ratio_coarse(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_resile(
        RATIO_COARSE,
        pool,
        threads,
        iters,
        resile_ratio(CoarseClock::new()),
    )
}

fn fixed_recent(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_resile(
        FIXED_RECENT,
        pool,
        threads,
        iters,
        resile_fixed(crate::recent_clock()),
    )
}

fn ratio_recent(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_resile(
        RATIO_RECENT,
        pool,
        threads,
        iters,
        resile_ratio(crate::recent_clock()),
    )
}

fn ratio_system(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_resile(
        RATIO_SYSTEM,
        pool,
        threads,
        iters,
        resile_ratio(SystemClock::new()),
    )
}

/// The mutex baselines' state: 10 one-second buckets of (deposits, retries) and running sums.
struct Ring {
    epoch: u64,
    buckets: [(u64, u64); 10],
    deposits: u64,
    retries: u64,
}

const BUCKET_NANOS: u64 = 1_000_000_000;
const RESERVE: u64 = 10 * 10; // 10 a second over 10 s

impl Ring {
    fn new() -> Self {
        Self {
            epoch: 0,
            buckets: [(0, 0); 10],
            deposits: 0,
            retries: 0,
        }
    }

    /// Moves the ring to `now`'s bucket, expiring at most every bucket once.
    fn rotate(&mut self, now: u64) {
        let e = now / BUCKET_NANOS;
        if e <= self.epoch {
            return;
        }
        let n = (e - self.epoch).min(10);
        for k in 1..=n {
            let i = ((self.epoch + k) % 10) as usize;
            let (d, r) = std::mem::take(&mut self.buckets[i]);
            self.deposits -= d;
            self.retries -= r;
        }
        self.epoch = e;
    }

    fn deposit(&mut self, now: u64) {
        self.rotate(now);
        self.buckets[(self.epoch % 10) as usize].0 += 1;
        self.deposits += 1;
    }

    fn withdraw(&mut self, now: u64) -> bool {
        self.rotate(now);
        if self.retries < self.deposits + RESERVE {
            self.buckets[(self.epoch % 10) as usize].1 += 1;
            self.retries += 1;
            true
        } else {
            false
        }
    }
}

fn std_mutex(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let state = (std::sync::Mutex::new(Ring::new()), CoarseClock::new());
    pairs(STD_RING, pool, threads, iters, state, |(m, clock)| {
        let now = clock.now();
        m.lock().unwrap().deposit(now);
        let now = clock.now();
        m.lock().unwrap().withdraw(now)
    })
}

fn parking_lot_mutex(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let state = (parking_lot::Mutex::new(Ring::new()), CoarseClock::new());
    pairs(PL_RING, pool, threads, iters, state, |(m, clock)| {
        let now = clock.now();
        m.lock().deposit(now);
        let now = clock.now();
        m.lock().withdraw(now)
    })
}

fn tower_tps(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = TpsBudget::new(Duration::from_secs(10), 10, 1.0);
    pairs(TOWER, pool, threads, iters, b, |b| {
        b.deposit();
        b.withdraw()
    })
}

/// The floor: what any design with one check-and-debit word per call costs at least, two CAS
/// loops on one shared word (the deposit's and the withdraw's), plus the clock reads resile's
/// ratio rows make (two `CoarseClock::now`).
fn floor_cas(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, AtomicU64::new(0), |w| {
        for delta in [1u64, 1 << 32] {
            let mut cur = w.load(Ordering::Relaxed);
            while let Err(seen) = w.compare_exchange_weak(
                cur,
                cur.wrapping_add(delta),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                cur = seen;
            }
        }
    })
}

fn floor_cas_clock(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let state = (AtomicU64::new(0), CoarseClock::new());
    pool.run_op(threads, iters, state, |(w, clock)| {
        for delta in [1u64, 1 << 32] {
            black_box(clock.now());
            let mut cur = w.load(Ordering::Relaxed);
            while let Err(seen) = w.compare_exchange_weak(
                cur,
                cur.wrapping_add(delta),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                cur = seen;
            }
        }
    })
}

fn backoff_case(jitter: Jitter, pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = Backoff::builder()
        .exponential(Duration::from_millis(10), 2)
        .cap(Duration::from_secs(10))
        .jitter(jitter)
        .build()
        .expect("valid backoff");
    pool.run(threads, move |i| {
        let mut rng = SmallRng::seed_from_u64(i as u64);
        let mut prev = Duration::ZERO;
        for k in 0..iters {
            prev = b.delay(black_box((k % 16) as u32 + 1), prev, &mut rng);
            black_box(prev);
        }
    })
}

fn backoff_full(pool: &Pool, threads: usize, iters: u64) -> Duration {
    backoff_case(Jitter::Full, pool, threads, iters)
}

fn backoff_equal(pool: &Pool, threads: usize, iters: u64) -> Duration {
    backoff_case(Jitter::Equal, pool, threads, iters)
}

fn backoff_decorrelated(pool: &Pool, threads: usize, iters: u64) -> Duration {
    backoff_case(Jitter::Decorrelated, pool, threads, iters)
}

fn backoff_none(pool: &Pool, threads: usize, iters: u64) -> Duration {
    backoff_case(Jitter::None, pool, threads, iters)
}

/// The budget cases: deposit + withdraw on every implementation, then one backoff computation.
pub fn cases() -> Vec<Case> {
    let c = |group, name, role, run| Case {
        group,
        name,
        role,
        run,
    };
    vec![
        c(GROUP, FIXED_COARSE, Role::Resile, fixed_coarse),
        c(GROUP, RATIO_COARSE, Role::Resile, ratio_coarse),
        c(GROUP, FIXED_RECENT, Role::Resile, fixed_recent),
        c(GROUP, RATIO_RECENT, Role::Resile, ratio_recent),
        c(GROUP, RATIO_SYSTEM, Role::Resile, ratio_system),
        c(GROUP, STD_RING, Role::StdMutex, std_mutex),
        c(GROUP, PL_RING, Role::ParkingLot, parking_lot_mutex),
        c(GROUP, TOWER, Role::Peer, tower_tps),
        c(GROUP, "floor: CAS loop x2", Role::Floor, floor_cas),
        c(
            GROUP,
            "floor: (CoarseClock::now + CAS loop) x2",
            Role::Floor,
            floor_cas_clock,
        ),
        c(
            "backoff delay",
            "exponential, no jitter",
            Role::Resile,
            backoff_none,
        ),
        c(
            "backoff delay",
            "exponential, full jitter",
            Role::Resile,
            backoff_full,
        ),
        c(
            "backoff delay",
            "exponential, equal jitter",
            Role::Resile,
            backoff_equal,
        ),
        c(
            "backoff delay",
            "decorrelated jitter",
            Role::Resile,
            backoff_decorrelated,
        ),
    ]
}
