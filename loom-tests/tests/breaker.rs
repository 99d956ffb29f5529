//! loom models of the circuit breaker: the races its research note lists.
#![cfg(resile_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use resile::breaker::{CircuitBreaker, State, StateChange, TripReason};
use resile::clock::ManualClock;
use std::time::Duration;

const OPEN_FOR: Duration = Duration::from_secs(1);

struct Counts {
    to_open: AtomicUsize,
    to_half_open: AtomicUsize,
    to_closed: AtomicUsize,
}

impl Counts {
    fn new() -> Arc<Self> {
        Arc::new(Counts {
            to_open: AtomicUsize::new(0),
            to_half_open: AtomicUsize::new(0),
            to_closed: AtomicUsize::new(0),
        })
    }

    /// A state-change hook that counts transitions by target.
    fn hook(counts: &Arc<Self>) -> impl Fn(&StateChange) + Send + Sync + 'static {
        let c = counts.clone();
        move |s: &StateChange| {
            let n = match s.to {
                State::Open => &c.to_open,
                State::HalfOpen => &c.to_half_open,
                State::Closed => &c.to_closed,
                _ => return,
            };
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A breaker over a count window of 2 that trips at 2 calls and 50 %, with `probes` probes
/// deciding after `min(2, probes)` results; the hook counts transitions by target.
fn breaker(probes: u32) -> (Arc<CircuitBreaker<ManualClock>>, ManualClock, Arc<Counts>) {
    let (b, clock, counts) = bare_breaker(probes);
    (Arc::new(b), clock, counts)
}

/// [`breaker`] in a std `Arc`, the handle [`CircuitBreaker::try_acquire_owned`] takes (its
/// refcount is not modelled; every word of the breaker is loom's).
fn owned_breaker(
    probes: u32,
) -> (
    std::sync::Arc<CircuitBreaker<ManualClock>>,
    ManualClock,
    Arc<Counts>,
) {
    let (b, clock, counts) = bare_breaker(probes);
    (std::sync::Arc::new(b), clock, counts)
}

fn bare_breaker(probes: u32) -> (CircuitBreaker<ManualClock>, ManualClock, Arc<Counts>) {
    let clock = ManualClock::new();
    let counts = Counts::new();
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .count_window(2)
        .minimum_calls(2)
        .failure_rate_threshold(0.5)
        .open_for(OPEN_FOR)
        .half_open_probes(probes)
        .on_state_change(Counts::hook(&counts))
        .build()
        .unwrap();
    (b, clock, counts)
}

/// Trips the breaker and moves the clock past its open period.
fn trip_and_wait(b: &CircuitBreaker<ManualClock>, clock: &ManualClock) {
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), State::Open);
    clock.advance(OPEN_FOR + Duration::from_millis(2));
}

#[test]
fn half_open_never_holds_more_than_the_probe_limit() {
    resile_loom_tests::model(|| {
        let (b, clock, _) = breaker(2);
        trip_and_wait(&b, &clock);
        let held = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (b, held) = (b.clone(), held.clone());
                thread::spawn(move || {
                    if let Ok(p) = b.try_acquire() {
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 2, "{now} probes held at once");
                        held.fetch_sub(1, Ordering::SeqCst);
                        drop(p); // released unrecorded: the slot goes back
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.state(), State::HalfOpen);
    });
}

/// [`half_open_never_holds_more_than_the_probe_limit`] with one probe and two threads, small
/// enough to run at three preemptions: both race the move to half-open and the one slot, and
/// give it back unrecorded.
#[test]
fn half_open_with_one_probe_never_holds_two() {
    resile_loom_tests::model(|| {
        let (b, clock, counts) = breaker(1);
        trip_and_wait(&b, &clock);
        let held = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (b, held) = (b.clone(), held.clone());
                thread::spawn(move || {
                    if let Ok(p) = b.try_acquire() {
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 1, "{now} probes held at once");
                        held.fetch_sub(1, Ordering::SeqCst);
                        drop(p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(counts.to_half_open.load(Ordering::Relaxed), 1);
    });
}

/// Two probes, one already held: two threads race for the second slot (the count field at one
/// and two, and the refusal at the limit) and give it back unrecorded; small enough to run at
/// three preemptions.
#[test]
fn half_open_second_probe_slot_is_held_by_one_thread_at_a_time() {
    resile_loom_tests::model(|| {
        let (b, clock, _) = breaker(2);
        trip_and_wait(&b, &clock);
        let first = b.try_acquire().unwrap();
        let held = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (b, held) = (b.clone(), held.clone());
                thread::spawn(move || {
                    if let Ok(p) = b.try_acquire() {
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 1, "{} probes held at once", now + 1);
                        held.fetch_sub(1, Ordering::SeqCst);
                        drop(p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(first);
        assert_eq!(b.state(), State::HalfOpen);
    });
}

#[test]
fn open_to_half_open_has_one_winner_and_one_hook_call() {
    resile_loom_tests::model(|| {
        let (b, clock, counts) = breaker(1);
        trip_and_wait(&b, &clock);
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (b, admitted) = (b.clone(), admitted.clone());
                thread::spawn(move || {
                    if let Ok(p) = b.try_acquire() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        std::mem::forget(p); // keep the slot
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counts.to_half_open.load(Ordering::Relaxed), 1);
        assert_eq!(
            admitted.load(Ordering::Relaxed),
            1,
            "one probe slot, one admission"
        );
    });
}

/// Fails one call on each of `threads` threads at once; the breaker must be open, and the
/// transition to open reported once.
fn fail_concurrently(b: &Arc<CircuitBreaker<ManualClock>>, counts: &Counts, threads: usize) {
    let threads: Vec<_> = (0..threads)
        .map(|_| {
            let b = b.clone();
            thread::spawn(move || {
                if let Ok(p) = b.try_acquire() {
                    p.failure();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(b.state(), State::Open);
    assert_eq!(counts.to_open.load(Ordering::Relaxed), 1);
}

#[test]
fn concurrent_failures_trip_exactly_once() {
    resile_loom_tests::model(|| {
        let (b, _, counts) = breaker(1);
        fail_concurrently(&b, &counts, 3);
    });
}

#[test]
fn a_late_result_from_the_previous_generation_never_counts_as_a_probe() {
    resile_loom_tests::model(|| {
        let (b, clock, counts) = breaker(1);
        let late = b.try_acquire().unwrap(); // admitted while closed
        trip_and_wait(&b, &clock);
        let b2 = b.clone();
        let prober = thread::spawn(move || {
            let p = b2.try_acquire().expect("the only caller gets the probe");
            p.success();
        });
        late.failure(); // races the probe: must be ignored
        prober.join().unwrap();
        // The probe alone decided (min(2, 1) = 1 result): closed, never re-opened.
        assert_eq!(b.state(), State::Closed);
        assert_eq!(counts.to_open.load(Ordering::Relaxed), 1);
        assert_eq!(counts.to_closed.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn a_permit_dropped_unresolved_returns_its_slot() {
    resile_loom_tests::model(|| {
        let (b, clock, _) = breaker(1);
        trip_and_wait(&b, &clock);
        let b2 = b.clone();
        let t = thread::spawn(move || {
            if let Ok(p) = b2.try_acquire() {
                drop(p);
            }
        });
        let mine = b.try_acquire().ok();
        drop(mine);
        t.join().unwrap();
        // Every slot came back: a new probe is admitted and decides.
        let p = b.try_acquire().expect("slot returned");
        p.success();
        assert_eq!(b.state(), State::Closed);
    });
}

#[test]
fn an_owned_permit_dropped_unresolved_on_another_thread_returns_its_slot() {
    resile_loom_tests::model(|| {
        let (b, clock, _) = owned_breaker(1);
        trip_and_wait(&b, &clock);
        let probe = b.try_acquire_owned().expect("the only probe");
        let held = Arc::new(AtomicUsize::new(1));
        let dropper = {
            let held = held.clone();
            thread::spawn(move || {
                held.fetch_sub(1, Ordering::SeqCst);
                drop(probe); // released unrecorded: the slot goes back
            })
        };
        let racer = {
            let (b, held) = (b.clone(), held.clone());
            thread::spawn(move || {
                let p = b.try_acquire_owned().ok()?;
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= 1, "{now} probes held at once");
                Some(p)
            })
        };
        dropper.join().unwrap();
        let raced = racer.join().unwrap();
        // Once the drop is done, a probe is admitted: the racer's, or else a new one now.
        let p = match raced {
            Some(p) => p,
            None => b.try_acquire_owned().expect("slot returned"),
        };
        p.success();
        assert_eq!(b.state(), State::Closed);
    });
}

#[test]
fn a_late_owned_result_from_the_previous_generation_never_counts_as_a_probe() {
    resile_loom_tests::model(|| {
        let (b, clock, counts) = owned_breaker(1);
        let late = b.try_acquire_owned().unwrap(); // admitted while closed
        trip_and_wait(&b, &clock);
        let b2 = b.clone();
        let prober = thread::spawn(move || {
            let p = b2
                .try_acquire_owned()
                .expect("the only caller gets the probe");
            p.success();
        });
        let reporter = thread::spawn(move || late.failure()); // races the probe: ignored
        prober.join().unwrap();
        reporter.join().unwrap();
        // The probe alone decided (min(2, 1) = 1 result): closed, never re-opened.
        assert_eq!(b.state(), State::Closed);
        assert_eq!(counts.to_open.load(Ordering::Relaxed), 1);
        assert_eq!(counts.to_closed.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn a_late_owned_permit_dropped_unresolved_never_frees_a_current_probe_slot() {
    resile_loom_tests::model(|| {
        let (b, clock, _) = owned_breaker(1);
        let late = b.try_acquire_owned().unwrap(); // admitted while closed
        trip_and_wait(&b, &clock);
        let probe = b.try_acquire_owned().expect("the only probe");
        let dropper = thread::spawn(move || drop(late));
        let b2 = b.clone();
        let racer = thread::spawn(move || b2.try_acquire_owned().is_ok());
        dropper.join().unwrap();
        assert!(!racer.join().unwrap(), "the probe slot is still held");
        assert!(b.try_acquire_owned().is_err());
        probe.success();
        assert_eq!(b.state(), State::Closed);
    });
}

/// A breaker over a time window of two 1 s buckets that trips at 3 calls and 50 %, warmed
/// with one success so the window is clean (the healthy fast path is armed).
fn clean_time_breaker() -> (Arc<CircuitBreaker<ManualClock>>, Arc<Counts>) {
    let counts = Counts::new();
    let b = CircuitBreaker::builder()
        .clock(ManualClock::new())
        .time_window(Duration::from_secs(2), 2)
        .minimum_calls(3)
        .failure_rate_threshold(0.5)
        .open_for(OPEN_FOR)
        .on_state_change(Counts::hook(&counts))
        .build()
        .unwrap();
    b.try_acquire().unwrap().success();
    (Arc::new(b), counts)
}

#[test]
fn a_clean_time_window_success_races_a_failure_and_both_count_once() {
    // A takes the healthy path (one CAS on its bucket's fast word, no decision) while B records
    // a failure, which clears the clean mark. Whichever lands first, neither trips (2 calls are
    // too few; 1 failure in 3 is too few), both count exactly once, and the next failure (4
    // calls, 2 failures: 50 %) trips.
    resile_loom_tests::model(|| {
        let (b, counts) = clean_time_breaker();
        let ba = b.clone();
        let a = thread::spawn(move || ba.try_acquire().unwrap().success());
        let bb = b.clone();
        let f = thread::spawn(move || bb.try_acquire().unwrap().failure());
        a.join().unwrap();
        f.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.calls, m.failures, m.state), (3, 1, State::Closed));
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), State::Open);
        assert_eq!(counts.to_open.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn concurrent_failures_in_a_clean_time_window_trip_exactly_once() {
    resile_loom_tests::model(|| {
        let (b, counts) = clean_time_breaker();
        fail_concurrently(&b, &counts, 2);
    });
}

/// The success that marks a window clean races a failure: the success's tally (taken before
/// the failure lands) is clean, so it sets `CLEAN`; the failure's record never writes the word
/// unless it finds the flag set. The fence pair must leave the flag clear over the failure, or
/// the next success would take the healthy path and skip the decision it has to make.
#[test]
fn a_success_marking_a_time_window_clean_races_a_failure_and_the_flag_never_hides_it() {
    resile_loom_tests::model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(
            CircuitBreaker::builder()
                .clock(clock.clone())
                .time_window(Duration::from_secs(2), 2)
                .minimum_calls(3)
                .failure_rate_threshold(0.3)
                .open_for(OPEN_FOR)
                .build()
                .unwrap(),
        );
        // A failure that ages out (a read moves the window on): the window is empty but not
        // marked clean.
        b.try_acquire().unwrap().failure();
        clock.advance(Duration::from_secs(2));
        assert_eq!(b.metrics().calls, 0);
        let (ba, bb) = (b.clone(), b.clone());
        let s = thread::spawn(move || ba.try_acquire().unwrap().success());
        let f = thread::spawn(move || bb.try_acquire().unwrap().failure());
        s.join().unwrap();
        f.join().unwrap();
        assert_eq!(b.state(), State::Closed, "2 calls: below the minimum");
        // 3 calls, 1 failure: 33 % trips, which only a recorded decision sees.
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), State::Open);
    });
}

/// The same race over a count window. The window is full of successes but not marked clean
/// (its last failure was evicted by a deferred success, claimed by a read), so the next success
/// marks it while another thread's failure lands. Wrongly left set, the flag would keep that
/// failure in the window for good (a clean window's successes write nothing).
#[test]
fn a_success_marking_a_count_window_clean_races_a_failure_and_the_flag_never_hides_it() {
    resile_loom_tests::model(|| {
        let b = Arc::new(
            CircuitBreaker::builder()
                .clock(ManualClock::new())
                .count_window(2)
                .minimum_calls(2)
                .failure_rate_threshold(1.0)
                .open_for(OPEN_FOR)
                .build()
                .unwrap(),
        );
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().success();
        // Deferred (1 failure in 2 breaches nothing), which allocates the deferred stripes on
        // this thread (std's `OnceLock` that publishes them is not modelled); the read claims it.
        b.try_acquire().unwrap().success();
        assert_eq!(b.metrics().failures, 0);
        let (ba, bb) = (b.clone(), b.clone());
        let s = thread::spawn(move || ba.try_acquire().unwrap().success());
        let f = thread::spawn(move || bb.try_acquire().unwrap().failure());
        s.join().unwrap();
        f.join().unwrap();
        assert_eq!(b.state(), State::Closed, "never 2 failures in 2");
        // Two successes evict whatever the race left.
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().success();
        let m = b.metrics();
        assert_eq!((m.calls, m.failures), (2, 0));
    });
}

#[test]
fn an_acquire_racing_a_trip_hours_after_the_last_transition_sees_a_fresh_open_state() {
    // The deadline's tick field wraps, so an open state older than 2^24 ticks (about 4.9 hours)
    // reads as passed from the transition stamp. The stamp must never be older than the state
    // that an acquire sees, or an acquire racing a trip long after the breaker's last transition
    // would take the fresh open state for an old one and probe at once.
    resile_loom_tests::model(|| {
        let (b, clock, counts) = breaker(1);
        clock.advance(Duration::from_secs(10 * 3600));
        let first = b.try_acquire().unwrap();
        b.try_acquire().unwrap().failure();
        let racer = {
            let b = b.clone();
            thread::spawn(move || match b.try_acquire() {
                Ok(p) => drop(p), // admitted while still closed: released unrecorded
                Err(e) => assert!(e.retry_after().unwrap() >= OPEN_FOR, "a whole open period"),
            })
        };
        first.failure(); // the second failure of two calls: trips
        racer.join().unwrap();
        assert_eq!(
            b.state(),
            State::Open,
            "no probe before the open period ends"
        );
        assert_eq!(counts.to_half_open.load(Ordering::Relaxed), 0);
    });
}

/// A health check trips the breaker while a probe races for admission and reports success: the
/// probe never undoes the trip (its result lands before it, or counts for nothing after it),
/// and a refusal after the trip carries the trip's reason.
#[test]
fn a_trip_racing_a_probe_admission_is_never_undone_by_it() {
    resile_loom_tests::model(|| {
        let (b, clock, counts) = breaker(1);
        trip_and_wait(&b, &clock);
        let prober = {
            let b = b.clone();
            thread::spawn(move || match b.try_acquire() {
                Ok(p) => p.success(), // one probe decides: closes, unless the trip came first
                Err(e) => assert_eq!(e.tripped_by(), Some(TripReason::HealthCheck)),
            })
        };
        b.trip_for(TripReason::HealthCheck, Duration::from_secs(10))
            .unwrap();
        prober.join().unwrap();
        assert_eq!(b.state(), State::Open);
        let e = b.try_acquire().unwrap_err();
        assert_eq!(e.tripped_by(), Some(TripReason::HealthCheck));
        assert!(e.retry_after().unwrap() >= Duration::from_secs(10));
        assert!(counts.to_half_open.load(Ordering::Relaxed) <= 1);
    });
}

/// A reconfigure between two settings, each of which leaves a window of 2 failures in 3 calls
/// closed (at least 2 calls and a 100 % rate; at least 4 calls and a 50 % rate), races the
/// record that makes it 2 in 3. A decision that mixed them (2 calls and 50 %) would trip: every
/// decision sees one configuration whole.
#[test]
fn a_reconfigure_racing_a_record_is_seen_whole() {
    resile_loom_tests::model(|| {
        let b = Arc::new(
            CircuitBreaker::builder()
                .clock(ManualClock::new())
                .count_window(4)
                .minimum_calls(2)
                .failure_rate_threshold(1.0)
                .build()
                .unwrap(),
        );
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().success();
        let recorder = {
            let b = b.clone();
            thread::spawn(move || b.try_acquire().unwrap().failure())
        };
        b.reconfigure(|c| c.minimum_calls(4).failure_rate_threshold(0.5))
            .unwrap();
        recorder.join().unwrap();
        assert_eq!(b.state(), State::Closed);
        let m = b.metrics();
        assert_eq!(
            (m.calls, m.failures),
            (3, 2),
            "the window survives the reconfigure"
        );
    });
}

/// Metrics-only: two failures breach the window at once (each sees 1 or 2 failures of 2 calls,
/// both at least 50 %); the breach is reported once, and nothing is refused.
#[test]
fn a_metrics_only_breach_is_reported_once_under_concurrent_failures() {
    resile_loom_tests::model(|| {
        let reports = Arc::new(AtomicUsize::new(0));
        let r = reports.clone();
        let b = Arc::new(
            CircuitBreaker::builder()
                .clock(ManualClock::new())
                .count_window(2)
                .minimum_calls(2)
                .failure_rate_threshold(0.5)
                .metrics_only(true)
                .on_breach(move |_| {
                    r.fetch_add(1, Ordering::Relaxed);
                })
                .build()
                .unwrap(),
        );
        b.try_acquire().unwrap().success();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || b.try_acquire().unwrap().failure())
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(reports.load(Ordering::Relaxed), 1);
        assert_eq!(b.metrics().breaches, 1);
        assert_eq!(b.state(), State::Closed);
    });
}
