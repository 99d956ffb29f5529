//! Stress: 4 threads on one ratio-mode budget, each doing deposit + withdraw pairs while moving a
//! manual clock (so buckets rotate and slots are reused under the withdraws), or draining a
//! prefilled budget with the clock still. The counts at the end are exact: no withdraw refused
//! while the budget provably held retries, none granted beyond what was earned, and every
//! attempt either granted or refused.

use resile::budget::RetryBudget;
use resile::clock::ManualClock;
use std::time::Duration;

const THREADS: u64 = 4;
/// Deposit + withdraw pairs per thread and configuration (fewer in a debug build, so the test
/// takes a few seconds there too, and fewer still under miri, which interprets every call).
const PAIRS: u64 = if cfg!(miri) {
    300
} else if cfg!(debug_assertions) {
    100_000
} else {
    500_000
};

/// Ratio 1.0 with a floor of `min_per_sec` retries a second, over a window of `window_ns` in
/// `buckets` buckets, on `clock`.
fn budget(
    clock: &ManualClock,
    window_ns: u64,
    buckets: u32,
    min_per_sec: u32,
) -> RetryBudget<ManualClock> {
    RetryBudget::builder()
        .ratio(1.0)
        .min_per_sec(min_per_sec)
        .window(Duration::from_nanos(window_ns))
        .buckets(buckets)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Each thread moves the clock 1 ns, deposits, then withdraws. A thread's retry lands in the
/// bucket of its own deposit or a later one, so the window never holds more retries than
/// requests plus one per thread (a pair straddling the window's oldest edge): the balance never
/// drops below `reserve - THREADS`, and every withdraw must be granted.
fn pairs_while_the_clock_moves(window_ns: u64, buckets: u32, min_per_sec: u32, reserve: u64) {
    assert!(reserve > THREADS);
    let clock = ManualClock::new();
    let b = budget(&clock, window_ns, buckets, min_per_sec);
    assert_eq!(b.balance(), reserve, "the floor, before any traffic");
    let refused: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                let (b, clock) = (&b, &clock);
                s.spawn(move || {
                    let mut refused = 0;
                    for _ in 0..PAIRS {
                        clock.advance(Duration::from_nanos(1));
                        b.deposit();
                        if b.try_withdraw().is_err() {
                            refused += 1;
                        }
                    }
                    refused
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let attempts = THREADS * PAIRS;
    let m = b.metrics();
    assert_eq!(
        refused,
        0,
        "{buckets} buckets of {} ns: withdraws refused with at least {} retries held",
        window_ns / u64::from(buckets),
        reserve - THREADS
    );
    assert_eq!(m.deposits, attempts);
    assert_eq!(m.retries_refused, 0);
    assert_eq!(m.retries_granted + m.retries_refused, attempts);
    // Earned: one retry per request, plus the floor once per window the run spanned.
    let windows = attempts.div_ceil(window_ns) + 1;
    assert!(m.retries_granted <= m.deposits + reserve * windows);
}

#[test]
fn two_slots_reused_every_other_bucket_never_refuse_a_held_retry() {
    // Two buckets of 16 ns in a ring of two slots; the floor is 5 retries over the 32 ns
    // window, fewer than a bucket's retries.
    pairs_while_the_clock_moves(32, 2, 156_250_000, 5);
}

#[test]
fn ten_buckets_in_sixteen_slots_never_refuse_a_held_retry() {
    // Ten buckets of 20 ns in a ring of sixteen slots; the floor is 5 retries over 200 ns.
    pairs_while_the_clock_moves(200, 10, 25_000_000, 5);
}

#[test]
fn a_floor_of_100_never_refuses_a_held_retry() {
    // Two buckets of 1 us; the floor is 100 retries over 2 us.
    pairs_while_the_clock_moves(2_000, 2, 50_000_000, 100);
}

#[test]
fn four_threads_draining_a_prefilled_budget_take_exactly_what_it_holds() {
    // The clock stands still: the requests earn as many retries (no floor), more than a thread
    // takes in one slice of its scheduler's time (200 000, or 1 000 under miri). Each thread
    // withdraws until its first refusal; together they take every retry, and not one more.
    const PREFILL: u64 = if cfg!(miri) { 1_000 } else { 200_000 };
    let clock = ManualClock::new();
    let b = budget(&clock, 10_000_000_000, 10, 0);
    for _ in 0..PREFILL {
        b.deposit();
    }
    assert_eq!(b.balance(), PREFILL);
    let granted: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                let b = &b;
                s.spawn(move || {
                    let mut granted = 0;
                    while b.try_withdraw().is_ok() {
                        granted += 1;
                    }
                    granted
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let m = b.metrics();
    assert_eq!(granted, PREFILL, "granted exactly what the deposits earned");
    assert_eq!(
        (m.deposits, m.retries_granted, m.retries_refused, m.balance),
        (PREFILL, PREFILL, THREADS, 0)
    );
}
