//! loom models of the sliding windows.
#![cfg(resile_loom)]

use loom::sync::Arc;
use loom::thread;
use resile::clock::{Clock, ManualClock};
use resile::window::{CountWindow, Lanes, Outcome, Tally, TimeWindow};
use resile_loom_tests::model;
use std::time::Duration;

fn tally_of(outcomes: &[Outcome]) -> Tally {
    let mut t = Tally::default();
    for o in outcomes {
        t.calls += 1;
        t.failures += o.is_failure() as u32;
        t.slow += o.is_slow() as u32;
    }
    t
}

/// Checks the quiescent invariants of a count window after `recorded` went in (plus `pre`
/// recorded before the threads started): the totals equal the ring's contents, the ring is as
/// full as it must be, and it holds only outcomes that were recorded (none invented).
fn check_count(w: &CountWindow, recorded: &[Outcome]) {
    let contents = w.outcomes();
    assert_eq!(w.snapshot(), tally_of(&contents));
    assert_eq!(contents.len(), recorded.len().min(w.size() as usize));
    let mut pool = recorded.to_vec();
    for o in contents {
        let at = pool
            .iter()
            .position(|p| *p == o)
            .expect("an invented outcome");
        pool.swap_remove(at);
    }
}

fn record_concurrently(size: u32, pre: &'static [Outcome], each: &'static [Outcome]) {
    model(move || {
        let w = Arc::new(CountWindow::new(size).unwrap());
        for &o in pre {
            w.record(o);
        }
        let hs: Vec<_> = each
            .iter()
            .map(|&o| {
                let w = w.clone();
                thread::spawn(move || {
                    let t = w.record(o);
                    assert!(t.calls <= size && t.failures <= t.calls && t.slow <= t.calls);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let all: Vec<Outcome> = pre.iter().chain(each).copied().collect();
        check_count(&w, &all);
    });
}

#[test]
fn count_two_threads_two_slots() {
    record_concurrently(2, &[], &[Outcome::Failure, Outcome::SlowSuccess]);
}

#[test]
fn count_two_threads_lap_the_ring() {
    // One slot already used: the two records claim the last free slot and the first again.
    record_concurrently(
        2,
        &[Outcome::SlowFailure],
        &[Outcome::Failure, Outcome::Success],
    );
}

#[test]
fn count_unwritten_record_races_a_swap_of_its_slot() {
    // One slot holding a failure: one record finds its outcome already there and writes
    // nothing, while the other lands in the same slot (a lap race) with a different outcome.
    // Whichever way they interleave, the totals describe the slot, and the slot holds one of
    // the outcomes.
    record_concurrently(
        1,
        &[Outcome::Failure],
        &[Outcome::Failure, Outcome::Success],
    );
}

#[test]
fn count_three_records_two_unwritten_race_a_swap() {
    // Two slots already full of failures; two records of a failure may leave their slots
    // unwritten while a success lands in one of them.
    record_concurrently(
        2,
        &[Outcome::Failure, Outcome::Failure],
        &[Outcome::Failure, Outcome::Success, Outcome::Failure],
    );
}

#[test]
fn count_three_threads_two_slots() {
    record_concurrently(
        2,
        &[],
        &[Outcome::Failure, Outcome::SlowSuccess, Outcome::SlowFailure],
    );
}

#[test]
fn count_three_threads_three_slots_full() {
    record_concurrently(
        3,
        &[Outcome::Failure, Outcome::Success, Outcome::Success],
        &[Outcome::Success, Outcome::Failure, Outcome::SlowSuccess],
    );
}

#[test]
fn count_success_fast_path_races_a_failure() {
    // A window full of plain successes: one thread takes the write-free fast path while another
    // records a failure; the failure must stay counted.
    model(|| {
        let w = Arc::new(CountWindow::new(2).unwrap());
        w.record(Outcome::Success);
        w.record(Outcome::Success);
        let w2 = w.clone();
        let h = thread::spawn(move || {
            w2.record(Outcome::Failure);
        });
        w.record(Outcome::Success);
        h.join().unwrap();
        assert_eq!(
            w.snapshot(),
            Tally {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        assert_eq!(w.snapshot(), tally_of(&w.outcomes()));
    });
}

/// What the two models of a deferred success racing a failure record, in all.
const TWO_FAILURES_THEN_S_F_S: [Outcome; 5] = [
    Outcome::Failure,
    Outcome::Failure,
    Outcome::Success,
    Outcome::Failure,
    Outcome::Success,
];

/// Never matters: every lazy success into a full window is deferred.
fn never(_: &Tally) -> bool {
    false
}

#[test]
fn count_deferred_success_is_counted_by_a_later_record_while_another_defers() {
    // A success deferred before a failure's record began lands before it, exactly, while a
    // thread on a shared cell defers a success of its own (a `fetch_add`); once all return and
    // a snapshot claims what is left, the totals are the ring's and nothing is lost or invented.
    model(|| {
        let w = Arc::new(CountWindow::new(2).unwrap());
        w.record(Outcome::Failure);
        w.record(Outcome::Failure);
        assert_eq!(w.record_success_lazily(never).failures, 2); // deferred: cell 0, owned
        let w2 = w.clone();
        let b = thread::spawn(move || w2.record(Outcome::Failure)); // thread 1
        let w3 = w.clone();
        let c = thread::spawn(move || {
            // Thread 2: past the two owned cells, so it shares a cell; deferred, below its
            // batch of 2.
            w3.record_success_lazily(never);
        });
        // The main thread's success, then B's failure: one of each, whenever C's lands.
        assert_eq!(b.join().unwrap().failures, 1);
        c.join().unwrap();
        check_count(&w, &TWO_FAILURES_THEN_S_F_S);
        assert_eq!(w.claims(), 5, "a success lost or claimed twice");
    });
}

#[test]
fn count_record_races_a_take_of_deferred_successes_in_flight() {
    // C's second success fills its own cell (batch 2), so C takes every cell's successes (the
    // main thread's and its own) and claims them, racing B's failure, whose take may come
    // between C's plain stores. B may miss successes while C has them in flight (B then counts
    // the failures they will evict: the bound the module docs state); once all return, every
    // success is claimed exactly once and the totals are the ring's.
    model(|| {
        let w = Arc::new(CountWindow::new(2).unwrap());
        w.record(Outcome::Failure);
        w.record(Outcome::Failure);
        w.record_success_lazily(never); // deferred: cell 0
        let w3 = w.clone();
        let c = thread::spawn(move || {
            // Thread 1, owner of cell 1: deferred, then its cell fills and it takes.
            w3.record_success_lazily(never);
            w3.record_success_lazily(never);
        });
        let w2 = w.clone();
        let b = thread::spawn(move || {
            w2.record(Outcome::Failure); // thread 2
        });
        b.join().unwrap();
        c.join().unwrap();
        check_count(
            &w,
            &[
                Outcome::Failure,
                Outcome::Failure,
                Outcome::Success,
                Outcome::Success,
                Outcome::Success,
                Outcome::Failure,
            ],
        );
        assert_eq!(w.claims(), 6, "a success lost or claimed twice");
    });
}

#[test]
fn count_two_records_race_to_take_deferred_successes() {
    // Two failures' records each take what the cells hold: every deferred success is claimed
    // once, by one of them, and the quiescent totals equal the ring's contents.
    model(|| {
        let w = Arc::new(CountWindow::new(3).unwrap());
        for o in [Outcome::Failure, Outcome::Success, Outcome::Success] {
            w.record(o);
        }
        w.record_success_lazily(never);
        w.record_success_lazily(never);
        let hs: Vec<_> = [Outcome::Failure, Outcome::SlowFailure]
            .into_iter()
            .map(|o| {
                let w = w.clone();
                thread::spawn(move || {
                    let t = w.record(o);
                    assert!(t.calls == 3 && t.failures <= 3);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        check_count(
            &w,
            &[
                Outcome::Failure,
                Outcome::Success,
                Outcome::Success,
                Outcome::Success,
                Outcome::Success,
                Outcome::Failure,
                Outcome::SlowFailure,
            ],
        );
        assert_eq!(w.claims(), 7, "a success lost or claimed twice");
    });
}

#[test]
fn count_reset_races_a_record() {
    model(|| {
        let w = Arc::new(CountWindow::new(2).unwrap());
        w.record(Outcome::Failure);
        let w2 = w.clone();
        let h = thread::spawn(move || {
            w2.record(Outcome::SlowFailure);
        });
        w.reset();
        h.join().unwrap();
        let contents = w.outcomes();
        assert_eq!(w.snapshot(), tally_of(&contents));
        assert!(contents.iter().all(|o| *o == Outcome::SlowFailure));
    });
}

/// 2 buckets of 1 ns: epoch = now.
fn tiny_time_window() -> TimeWindow {
    TimeWindow::new(Duration::from_nanos(2), 2).unwrap()
}

/// Whether an event at `at` is still in the span when the newest time is `now`.
fn live(at: u64, now: u64) -> bool {
    now - at < 2
}

#[test]
fn time_records_on_two_stripes_race_a_rotation_that_keeps_them_then_age_out() {
    // Two threads (on the two stripes of lane words loom gives a window) record a failure each
    // into the bucket of time 1 while the main thread moves the head on to time 2, which keeps
    // that bucket live: both failures count exactly once. A read at time 3 kills the bucket; the
    // stamp must clear both stripes' words, leaving nothing behind.
    model(|| {
        let w = Arc::new(tiny_time_window());
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let w = w.clone();
                thread::spawn(move || {
                    let t = w.record(1, Outcome::Failure);
                    assert!(t.failures <= t.calls && t.calls <= 2);
                })
            })
            .collect();
        let _ = w.totals(2);
        for h in hs {
            h.join().unwrap();
        }
        let both = Tally {
            calls: 2,
            failures: 2,
            slow: 0,
        };
        assert_eq!(w.tally(2), both);
        assert_eq!(w.totals(3), [0, 0, 0]);
        assert_eq!(w.record(3, Outcome::Success).calls, 1);
    });
}

#[test]
fn time_record_races_a_rotation() {
    // Thread A records a failure at whatever the clock reads; thread B moves the clock two buckets
    // on (killing A's epoch if A read the old time) and records a success there. A's failure is
    // counted exactly once if its epoch is live at the end, and not at all otherwise.
    model(|| {
        let clock = ManualClock::starting_at(1);
        let w = Arc::new(tiny_time_window());
        let (wa, ca) = (w.clone(), clock.clone());
        let a = thread::spawn(move || {
            let t = ca.now();
            wa.record(t, Outcome::Failure);
            t
        });
        let (wb, cb) = (w.clone(), clock.clone());
        let b = thread::spawn(move || {
            cb.advance(Duration::from_nanos(2));
            wb.record(cb.now(), Outcome::Success);
        });
        let ta = a.join().unwrap();
        b.join().unwrap();
        let end = clock.now();
        let fa = live(ta, end) as u32;
        assert_eq!(
            w.tally(end),
            Tally {
                calls: 1 + fa,
                failures: fa,
                slow: 0
            }
        );
        // And everything ages out.
        assert_eq!(w.tally(end + 2), Tally::default());
    });
}

#[test]
fn time_record_races_a_rotation_that_keeps_it() {
    // B moves the clock one bucket on: A's epoch stays live either way, so A counts exactly once,
    // whether it lands before the rotation, after it, or is being stamped around.
    model(|| {
        let clock = ManualClock::starting_at(0);
        let w = Arc::new(tiny_time_window());
        w.record(0, Outcome::SlowSuccess); // the bucket A writes already holds an event
        let (wa, ca) = (w.clone(), clock.clone());
        let a = thread::spawn(move || {
            let t = ca.now();
            wa.record(t, Outcome::Failure);
        });
        let (wb, cb) = (w.clone(), clock.clone());
        let b = thread::spawn(move || {
            cb.advance(Duration::from_nanos(1));
            wb.totals(cb.now());
        });
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(
            w.tally(1),
            Tally {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
        assert_eq!(w.tally(3), Tally::default());
    });
}

#[test]
fn time_record_at_a_stale_time_races_two_rotations() {
    // A adds at time 1 (a caller's `now` read earlier); B and C advance the window to 2 and 3.
    // A's event is live until the head reaches 3: at the end it must not count.
    model(|| {
        let w = Arc::new(tiny_time_window());
        w.add(1, [1, 0, 0]);
        let wa = w.clone();
        let a = thread::spawn(move || {
            wa.add(1, [0, 1, 0]);
        });
        let wb = w.clone();
        let b = thread::spawn(move || {
            wb.add(2, [0, 0, 1]);
        });
        w.totals(3);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(w.totals(3), [0, 0, 1]);
        assert_eq!(w.totals(4), [0, 0, 0]);
    });
}

#[test]
fn time_fast_path_add_races_a_rotation_that_kills_it() {
    // Bucket 0's words already carry epoch 0's lap, so A's add at time 0 takes the `fetch_add`
    // fast path; B moves the head to 2 (killing epoch 0, stamping bucket 0) and adds to the very
    // word A adds to. A's amounts must age out whether they land before the stamp, after it (the
    // take-back), or A finds the epoch dead on arrival; B's stays counted exactly once.
    model(|| {
        let w = Arc::new(tiny_time_window());
        w.add(0, [1, 1, 0]);
        let wa = w.clone();
        let a = thread::spawn(move || {
            wa.add(0, [1, 1, 0]);
        });
        let wb = w.clone();
        let b = thread::spawn(move || {
            wb.add(2, [1, 0, 0]);
        });
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(w.totals(2), [1, 0, 0]);
        assert_eq!(w.totals(4), [0, 0, 0]);
    });
}

#[test]
fn time_fast_path_add_races_a_reset() {
    // A's fast-path add races a reset that zeroes the word under it: A's event may or may not
    // survive, but the totals equal the words afterwards, so everything ages out to exactly 0.
    model(|| {
        let w = Arc::new(tiny_time_window());
        w.add(0, [1, 0, 0]);
        let wa = w.clone();
        let a = thread::spawn(move || {
            wa.add(0, [1, 0, 0]);
        });
        w.reset();
        a.join().unwrap();
        let t = w.totals(1);
        assert!(t == [0, 0, 0] || t == [1, 0, 0], "{t:?}");
        w.add(1, [0, 1, 0]);
        assert_eq!(w.totals(2), [0, 1, 0]);
        assert_eq!(w.totals(3), [0, 0, 0]);
    });
}

#[test]
fn time_try_add_never_admits_past_the_limit() {
    model(|| {
        let w = Arc::new(tiny_time_window());
        let limit = |t: Lanes| t[1] < 2;
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let w = w.clone();
                thread::spawn(move || w.try_add(5, [0, 1, 0], limit).is_ok())
            })
            .collect();
        let admitted = hs
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(admitted, 2);
        assert_eq!(w.totals(5), [0, 2, 0]);
    });
}

#[test]
fn time_try_add_races_a_rotation() {
    // Two withdrawals against a limit while a third thread moves time on: neither admission may
    // overdraw the totals it was checked against, and the totals stay exact.
    model(|| {
        let w = Arc::new(tiny_time_window());
        w.add(0, [0, 1, 0]);
        let limit = |t: Lanes| t[1] < 2;
        let hs: Vec<_> = [0u64, 2]
            .into_iter()
            .map(|now| {
                let w = w.clone();
                thread::spawn(move || (now, w.try_add(now, [0, 1, 0], limit)))
            })
            .collect();
        let results: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        for (_, r) in &results {
            if let Ok(after) = r {
                assert!(after[1] <= 2);
            }
        }
        // At time 2 the pre-existing event (epoch 0) has aged out, and so has an add at time 0.
        let at2 = results
            .iter()
            .filter(|(now, r)| *now == 2 && r.is_ok())
            .count() as u32;
        assert_eq!(w.totals(2), [0, at2, 0]);
    });
}

/// [`tiny_time_window`] with fast calls (the breaker's kind), holding one fast call at time 0
/// (on the main thread's stripe, 0), and a thread (1, so stripe 1) that adds another fast call
/// at time 0.
fn fast_window_and_a_fast_call() -> (Arc<TimeWindow>, thread::JoinHandle<()>) {
    let w = Arc::new(TimeWindow::with_fast_calls(Duration::from_nanos(2), 2).unwrap());
    w.add_fast(0);
    let wa = w.clone();
    (w, thread::spawn(move || wa.add_fast(0)))
}

#[test]
fn time_fast_call_races_a_rotation_that_kills_it() {
    // Fast words are striped by thread (under loom: 2 stripes, thread i on stripe i % 2, the
    // model's main thread being 0). Bucket 0's word on stripe 0 already carries epoch 0's lap.
    // B (thread 2, stripe 0) moves the head to 2, killing epoch 0, and adds a fast call there,
    // to that very word, while the main thread adds a fast call at time 0 to the same word and
    // A (thread 1) adds one at time 0 to its own stripe's word. Both time-0 calls must age out,
    // whether they land before B's replacement (replaced with it), after it (refused: their
    // epoch is dead), or in between; B's stays counted exactly once.
    model(|| {
        let (w, a) = fast_window_and_a_fast_call();
        let wb = w.clone();
        let b = thread::spawn(move || wb.add_fast(2));
        w.add_fast(0);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(w.totals(2), [1, 0, 0]);
        assert_eq!(w.totals(4), [0, 0, 0]);
    });
}

#[test]
fn time_fast_call_races_a_record_and_a_rotation_that_keeps_it() {
    // A fast call, a recorded failure (totals and lane words) and a read that moves the head one
    // bucket on all race; both events stay live, so each counts exactly once, in its own lane.
    model(|| {
        let (w, a) = fast_window_and_a_fast_call();
        let wb = w.clone();
        let b = thread::spawn(move || {
            wb.record(0, Outcome::Failure);
        });
        let t = w.totals(1);
        assert!(t[0] >= 1 && t[0] <= 3 && t[1] <= 1, "{t:?}");
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(w.totals(1), [3, 1, 0]);
        assert_eq!(w.totals(2), [0, 0, 0]);
    });
}

#[test]
fn time_fast_call_races_a_reset() {
    // A fast call races a reset: it may or may not survive it, and whatever survives ages out.
    model(|| {
        let (w, a) = fast_window_and_a_fast_call();
        w.reset();
        a.join().unwrap();
        let t = w.totals(1);
        assert!(t == [0, 0, 0] || t == [1, 0, 0], "{t:?}");
        w.add_fast(1);
        assert_eq!(w.totals(2), [1, 0, 0]);
        assert_eq!(w.totals(3), [0, 0, 0]);
    });
}

#[test]
fn time_fast_calls_in_a_ring_of_four_slots_for_three_buckets_age_out_by_epoch() {
    // Three 1 ns buckets: fast words form a ring of four slots, so the epoch that dies at 3 (0,
    // slot 0) is not the one whose slot 3 opens. A adds a fast call at 1 (slot 1) while the main
    // thread adds one at 3: A's stays live until 4, epoch 0's call ages out at 3.
    model(|| {
        let w = Arc::new(TimeWindow::with_fast_calls(Duration::from_nanos(3), 3).unwrap());
        w.add_fast(0);
        let wa = w.clone();
        let a = thread::spawn(move || wa.add_fast(1));
        w.add_fast(3);
        a.join().unwrap();
        assert_eq!(w.totals(3), [2, 0, 0]);
        assert_eq!(w.totals(4), [1, 0, 0]);
        assert_eq!(w.totals(6), [0, 0, 0]);
    });
}

/// A record racing a reset survives it whole or as its call alone, never as a failure or a slow
/// call without its call: the record writes its lanes in the reverse of the reset's order.
#[test]
fn time_a_record_racing_a_reset_never_leaves_a_failure_without_its_call() {
    model(|| {
        let w = Arc::new(TimeWindow::new(Duration::from_nanos(2), 2).unwrap());
        let wa = w.clone();
        let a = thread::spawn(move || {
            wa.record(0, Outcome::SlowFailure);
        });
        w.reset();
        a.join().unwrap();
        let [calls, failures, slow] = w.totals(0);
        assert!(
            failures <= calls && slow <= calls,
            "{:?}",
            [calls, failures, slow]
        );
    });
}

/// A record that helps a rotation's stamping, raced by the reader that moved the head: what it
/// returns never shows more failures than calls.
#[test]
fn time_a_record_during_a_rotation_never_reports_more_failures_than_calls() {
    model(|| {
        let w = Arc::new(TimeWindow::new(Duration::from_nanos(2), 2).unwrap());
        w.record(0, Outcome::Failure);
        w.record(0, Outcome::Failure);
        let wa = w.clone();
        let a = thread::spawn(move || {
            wa.tally(2);
        });
        let t = w.record(2, Outcome::Success);
        assert!(t.failures <= t.calls, "{t:?}");
        a.join().unwrap();
        assert_eq!(
            w.tally(2),
            Tally {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    });
}
