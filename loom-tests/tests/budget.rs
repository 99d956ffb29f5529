//! loom models of the retry budget: concurrent withdraws never overdraw, and a withdraw racing a
//! deposit and a window rotation neither loses nor invents a token.
#![cfg(resile_loom)]

use loom::sync::Arc;
use loom::thread;
use resile::budget::RetryBudget;
use resile::clock::ManualClock;
use resile_loom_tests::model;
use std::time::Duration;

fn granted_by(b: &Arc<RetryBudget<ManualClock>>, tries: usize) -> u64 {
    (0..tries).filter(|_| b.try_withdraw().is_ok()).count() as u64
}

#[test]
fn three_threads_withdrawing_never_get_more_than_k() {
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(
            RetryBudget::builder()
                .max_retries(2)
                .window(Duration::from_nanos(4))
                .buckets(2)
                .clock(clock)
                .build()
                .unwrap(),
        );
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || granted_by(&b, 1))
            })
            .collect();
        let mine = granted_by(&b, 1);
        let total: u64 = mine + hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
        // Three withdraws against a budget of two: exactly two granted, one refused.
        assert_eq!(total, 2);
        let m = b.metrics();
        assert_eq!((m.retries_granted, m.retries_refused, m.balance), (2, 1, 0));
    });
}

#[test]
fn two_threads_draining_a_ratio_budget_never_overdraw() {
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(
            RetryBudget::builder()
                .ratio(1.0)
                .min_per_sec(0)
                .window(Duration::from_nanos(4))
                .buckets(2)
                .clock(clock)
                .build()
                .unwrap(),
        );
        b.deposit();
        let b2 = b.clone();
        let h = thread::spawn(move || granted_by(&b2, 2));
        let total = granted_by(&b, 1) + h.join().unwrap();
        assert_eq!(total, 1);
        assert_eq!(b.balance(), 0);
    });
}

#[test]
fn withdraw_racing_a_rotation_and_a_deposit_neither_loses_nor_invents() {
    model(|| {
        // Two buckets of 1 ns. The first deposit lands in epoch 1; the clock moves to epoch 2
        // (rotating the other slot in) while a deposit and a withdraw race.
        let clock = ManualClock::starting_at(1);
        let b = Arc::new(
            RetryBudget::builder()
                .ratio(1.0)
                .min_per_sec(0)
                .window(Duration::from_nanos(2))
                .buckets(2)
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        b.deposit();
        let (bw, bd, c) = (b.clone(), b.clone(), clock.clone());
        let w = thread::spawn(move || bw.try_withdraw().is_ok());
        let d = thread::spawn(move || bd.deposit());
        c.set(2);
        let granted = w.join().unwrap();
        d.join().unwrap();
        // Whatever the order, at least one request was always in the window: the retry is
        // granted, and at t = 2 both requests and the one retry are counted.
        assert!(granted);
        assert_eq!(b.balance(), 1);
        let m = b.metrics();
        assert_eq!(
            (m.deposits, m.retries_granted, m.retries_refused),
            (2, 1, 0)
        );
        // Once every bucket has aged out, nothing is left over or owed.
        clock.set(10);
        assert_eq!(b.balance(), 0);
        b.deposit();
        assert_eq!(b.balance(), 1);
    });
}

/// A budget over two 1 ns buckets (a window of 2 ns) on `clock`.
fn two_bucket_budget(clock: &ManualClock, fixed: Option<u32>) -> Arc<RetryBudget<ManualClock>> {
    let b = RetryBudget::builder()
        .window(Duration::from_nanos(2))
        .buckets(2)
        .clock(clock.clone());
    let b = match fixed {
        Some(n) => b.max_retries(n),
        None => b.ratio(1.0).min_per_sec(0),
    };
    Arc::new(b.build().unwrap())
}

#[test]
fn withdraws_racing_the_rotation_that_frees_a_retry_take_it_once() {
    // One retry a window of three 1 ns buckets. Fixed mode keeps a spent retry for one bucket
    // more than the window's, so four epochs are live, in a ring of four slots: the retry taken
    // at t = 0 fills the window until t = 4, when its bucket dies and its slot opens for epoch 4.
    // A withdraws while the clock moves to 4 (the withdraw may read 3 and work at the head
    // someone else moved, or read 4 and move it itself, sealing bucket 3); then the main thread
    // withdraws at 4. Exactly one of the two gets the freed retry.
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(
            RetryBudget::builder()
                .max_retries(1)
                .window(Duration::from_nanos(3))
                .buckets(3)
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        assert!(b.try_withdraw().is_ok());
        clock.set(3);
        assert!(b.try_withdraw().is_err(), "the window still holds t = 0");
        let ba = b.clone();
        let a = thread::spawn(move || ba.try_withdraw().is_ok());
        clock.set(4);
        let mine = b.try_withdraw().is_ok();
        let theirs = a.join().unwrap();
        assert!(mine ^ theirs, "granted: main {mine}, A {theirs}");
        assert_eq!(b.balance(), 0);
        clock.set(7);
        assert_eq!(b.balance(), 0, "the retry at 4 is live until 8");
        clock.set(8);
        assert_eq!(b.balance(), 1);
    });
}

#[test]
fn a_late_deposit_racing_the_seal_of_its_bucket_counts_exactly_once() {
    // A deposits while the main thread moves the clock to 1 and reads the balance, which seals
    // bucket 0 (its sums installed for head 1). A's request lands in bucket 0 before the seal, or
    // in bucket 1 (its clock read 1, or its CAS on the sealed word failed and it moved to the
    // head): either way it counts once at t = 1 and is gone once both buckets have aged out.
    model(|| {
        let clock = ManualClock::new();
        let b = two_bucket_budget(&clock, None);
        let ba = b.clone();
        let a = thread::spawn(move || ba.deposit());
        clock.set(1);
        let seen = b.balance();
        assert!(seen <= 1, "{seen}");
        a.join().unwrap();
        assert_eq!(b.balance(), 1);
        clock.set(3);
        assert_eq!(b.balance(), 0);
        assert_eq!(b.metrics().deposits, 1);
    });
}

#[test]
fn withdraws_at_stale_and_new_times_racing_two_rotations_never_overdraw() {
    // One retry a window of two 1 ns buckets, taken at t = 0. While the clock moves to 2 and then
    // 3, A and B withdraw, each reading 0, 2 or 3 (an operation older than the head works in the
    // newest bucket). The retry at 0 counts until t = 3 (fixed mode keeps it a whole window),
    // and epochs 2 and 3 share one window, so at most one of them is granted, and the balance at
    // 3 agrees with what was granted.
    model(|| {
        let clock = ManualClock::new();
        let b = two_bucket_budget(&clock, Some(1));
        assert!(b.try_withdraw().is_ok());
        let (ba, bb) = (b.clone(), b.clone());
        let a = thread::spawn(move || ba.try_withdraw().is_ok());
        let bt = thread::spawn(move || bb.try_withdraw().is_ok());
        clock.set(2);
        clock.set(3);
        let granted = u64::from(a.join().unwrap()) + u64::from(bt.join().unwrap());
        assert!(granted <= 1, "{granted} granted in one window");
        assert_eq!(b.balance(), 1 - granted);
        assert_eq!(b.metrics().retries_granted, 1 + granted);
    });
}

#[test]
fn three_live_buckets_in_four_slots_free_the_oldest_retry_once() {
    // Two 1 ns buckets, and fixed mode's one more for spent retries: three live epochs in a ring
    // of four slots (rounded up to a power of two), so the epoch that dies at t = 3 (0, slot 0)
    // is not the one whose slot t = 3 opens (slot 3). One retry a window, taken at 0; A
    // withdraws while the clock moves to 3, then the main thread withdraws at 3: exactly one of
    // them gets the retry that epoch 0's death frees.
    model(|| {
        let clock = ManualClock::new();
        let b = two_bucket_budget(&clock, Some(1));
        assert!(b.try_withdraw().is_ok());
        let ba = b.clone();
        let a = thread::spawn(move || ba.try_withdraw().is_ok());
        clock.set(3);
        let mine = b.try_withdraw().is_ok();
        let theirs = a.join().unwrap();
        assert!(mine ^ theirs, "granted: main {mine}, A {theirs}");
        clock.set(5);
        assert_eq!(b.balance(), 0, "the retry at 3 is live until 6");
        clock.set(6);
        assert_eq!(b.balance(), 1);
    });
}

#[test]
fn a_withdraw_whose_bucket_slot_is_reused_under_it_never_refuses_a_held_retry() {
    // Ratio 1.0 with a floor of one retry, two 1 ns buckets in a ring of two slots. At t = 0 two
    // requests and one retry leave a balance of 2; from then on the balance never drops below
    // the floor of 1. A withdraws at t = 0 while the main thread moves the clock to 2 and
    // deposits, which reopens slot 0 (epoch 0's) for epoch 2. Whether A decides at epoch 0 or at
    // the head, a retry is always held, so A is granted.
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(
            RetryBudget::builder()
                .ratio(1.0)
                .min_per_sec(500_000_000) // one retry over the 2 ns window
                .window(Duration::from_nanos(2))
                .buckets(2)
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        b.deposit();
        b.deposit();
        assert!(b.try_withdraw().is_ok());
        assert_eq!(b.balance(), 2);
        let ba = b.clone();
        let a = thread::spawn(move || ba.try_withdraw().is_ok());
        clock.set(2);
        b.deposit();
        let granted = a.join().unwrap();
        assert!(granted, "refused while the budget held a retry");
        let m = b.metrics();
        assert_eq!(
            (m.deposits, m.retries_granted, m.retries_refused),
            (3, 2, 0)
        );
        // At t = 2: the floor and the request at 2, less A's retry if it landed at 2.
        assert!((1..=2).contains(&m.balance), "{}", m.balance);
    });
}
