//! loom models of the adaptive bulkhead's races: a window's close racing reports, two closers
//! racing, and a shrink racing admission, on the public API with AIMD and windows of one report.
#![cfg(resile_loom)]

use loom::thread;
use resile::bulkhead::Bulkhead;
use resile::bulkhead::adaptive::{Aimd, LimitChange};
use resile::clock::Clock;
use resile_loom_tests::model;
use std::sync::atomic::{AtomicU32, AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A clock the model's main thread sets between phases (a std atomic, outside the model: no
/// thread reads it while another writes it, so it adds no interleavings of its own).
#[derive(Clone, Default)]
struct PhaseClock(Arc<StdAtomicU64>);

impl PhaseClock {
    fn set_secs(&self, secs: u64) {
        self.0.store(secs * 1_000_000_000, StdOrdering::Relaxed);
    }
}

impl Clock for PhaseClock {
    fn now(&self) -> u64 {
        self.0.load(StdOrdering::Relaxed)
    }
}

type Changes = Arc<Mutex<Vec<LimitChange>>>;

/// An AIMD bulkhead whose windows last 1 s and close on one report, recording every closed
/// window.
fn adaptive(aimd: Aimd) -> (PhaseClock, Changes, Arc<Bulkhead<PhaseClock>>) {
    let clock = PhaseClock::default();
    let changes: Changes = Arc::default();
    let b = Bulkhead::builder()
        .adaptive(aimd)
        .adaptive_window(Duration::from_secs(1))
        .adaptive_min_samples(1)
        .on_limit_change({
            let changes = changes.clone();
            move |c| changes.lock().unwrap().push(c)
        })
        .clock(clock.clone())
        .build()
        .unwrap();
    (clock, changes, Arc::new(b))
}

/// Reports and an admission from two threads racing the close of a due window: each report (a
/// drop is a sample with its RTT, and a drop) lands in exactly one
/// window (the one being closed, or the next, which a last report after the race closes), so
/// the closed windows hold every report once.
#[test]
fn a_window_close_racing_reports_counts_each_report_once() {
    model(|| {
        let (clock, changes, b) = adaptive(Aimd::default().min_limit(1).max_limit(50));
        let p = b.try_acquire_owned().unwrap();
        let q = b.try_acquire_owned().unwrap();
        clock.set_secs(1); // the first window is due
        let t = {
            let b = b.clone();
            thread::spawn(move || {
                q.dropped();
                // An admission and a report racing the other thread's close.
                b.try_acquire().unwrap().success();
            })
        };
        p.success();
        t.join().unwrap();
        clock.set_secs(3); // the window reopened at 1 s + 1 s is due
        b.try_acquire().unwrap().success();
        let changes = changes.lock().unwrap();
        let counted: u64 = changes.iter().map(|c| c.window.count).sum();
        let dropped: u64 = changes.iter().map(|c| c.window.drops).sum();
        assert_eq!((counted, dropped), (4, 1), "{changes:?}");
        assert_eq!(changes.len(), 2, "one close in the race, one after");
        assert_eq!(b.metrics().adaptive.unwrap().windows, 2);
        assert_eq!(b.metrics().in_flight, 0);
    });
}

/// Two reports finding the same window due: one wins the close and applies one update (20 × 0.5
/// = 10, not 5); the other's drop goes to the next window.
#[test]
fn two_closers_race_and_one_wins() {
    model(|| {
        let aimd = Aimd::default().min_limit(1).backoff_ratio(0.5);
        let (clock, changes, b) = adaptive(aimd);
        let p = b.try_acquire_owned().unwrap();
        let q = b.try_acquire_owned().unwrap();
        clock.set_secs(1);
        let t = thread::spawn(move || q.dropped());
        p.dropped();
        t.join().unwrap();
        let changes = changes.lock().unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].from, changes[0].to), (20, 10));
        assert!((1..=2).contains(&changes[0].window.drops));
        assert_eq!(b.limit(), 10);
        assert_eq!(b.metrics().adaptive.unwrap().windows, 1);
    });
}

/// A shrink (a drop closing the window, limit 2 to 1) racing admissions: no more than the old
/// limit is ever held, nothing is admitted past the new limit once it is in the word, and once
/// the permits return exactly the new limit is admitted.
#[test]
fn a_shrink_racing_admission_never_exceeds_the_old_limit() {
    model(|| {
        let aimd = Aimd::default()
            .initial_limit(2)
            .min_limit(1)
            .backoff_ratio(0.5);
        let (clock, _changes, b) = adaptive(aimd);
        let holding = Arc::new(AtomicU32::new(1));
        let p = b.try_acquire_owned().unwrap();
        clock.set_secs(1);
        let shrinker = {
            let holding = holding.clone();
            thread::spawn(move || {
                p.dropped(); // reported (and the limit shrunk) before the slot is given back
                holding.fetch_sub(1, StdOrdering::SeqCst);
            })
        };
        let mut got = Vec::new();
        for _ in 0..2 {
            if let Ok(permit) = b.try_acquire() {
                // The count (a std atomic: an assertion aid, outside the model) lags the
                // shrinker's release, so it may overcount; never past the old limit.
                assert!(
                    holding.fetch_add(1, StdOrdering::SeqCst) < 2,
                    "over the old limit"
                );
                got.push(permit);
            }
        }
        // The second admission needs two slots free of two: the shrink lands before the
        // shrinker's slot is given back, so it never finds them.
        assert!(got.len() <= 1);
        shrinker.join().unwrap();
        assert_eq!(b.limit(), 1);
        for permit in got.drain(..) {
            holding.fetch_sub(1, StdOrdering::SeqCst);
            permit.ignore();
        }
        let one = b.try_acquire().unwrap();
        assert!(b.try_acquire().unwrap_err().is_full(), "the new limit is 1");
        one.ignore();
        assert_eq!(b.metrics().in_flight, 0);
    });
}
