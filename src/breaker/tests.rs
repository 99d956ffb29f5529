//! Unit tests of the breaker's rules, with a `ManualClock`.

use super::*;
use crate::classify::Verdict;
use crate::clock::ManualClock;
use std::sync::{Arc, Mutex};

const SEC: Duration = Duration::from_secs(1);

/// A breaker over a count window of `size`, `min` calls, 50 % failure rate, open 5 s, 2 probes
/// deciding after 2 results, half-open timeout 10 s; plus its clock and a log of transitions.
fn breaker(size: u32, min: u32) -> (CircuitBreaker<ManualClock>, ManualClock, Log) {
    let clock = ManualClock::new();
    let log = Log::default();
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .count_window(size)
        .minimum_calls(min)
        .failure_rate_threshold(0.5)
        .open_for(5 * SEC)
        .half_open_probes(2)
        .half_open_timeout(10 * SEC)
        .on_state_change(log.hook())
        .build()
        .unwrap();
    (b, clock, log)
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(State, State)>>>);

impl Log {
    fn hook(&self) -> impl Fn(&StateChange) + Send + Sync + 'static {
        let l = self.0.clone();
        move |c| l.lock().unwrap().push((c.from, c.to))
    }
    fn take(&self) -> Vec<(State, State)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

use State::{Closed, Disabled, ForcedOpen, HalfOpen, Open};

fn outcomes<C: Clock>(b: &CircuitBreaker<C>, pattern: &str) {
    for c in pattern.chars() {
        let p = b.try_acquire().expect("admitted");
        match c {
            'S' => p.success(),
            'F' => p.failure(),
            _ => unreachable!(),
        }
    }
}

/// Moves a half-open breaker (entered at clock reading `entered`) past its half-open timeout,
/// which ends on a whole tick.
fn past_half_open(clock: &ManualClock, entered: u64, timeout: Duration) {
    let d = crate::clock::duration_to_nanos(timeout);
    clock.set((entered + d).div_ceil(state::TICK_NANOS) * state::TICK_NANOS);
}

/// Moves a tripped breaker (opened at clock reading `opened_at`) past its open period.
fn past_open(clock: &ManualClock, opened_at: u64, open_for: Duration) {
    let d = crate::clock::duration_to_nanos(open_for);
    let deadline = (opened_at + d).div_ceil(state::FINE_NANOS) * state::FINE_NANOS;
    clock.set(deadline);
}

#[test]
fn trips_at_the_failure_rate_and_not_before_minimum_calls() {
    let (b, _, log) = breaker(10, 4);
    outcomes(&b, "FFF");
    assert_eq!(
        b.state(),
        Closed,
        "3 failures, but fewer than minimum_calls"
    );
    outcomes(&b, "S");
    // The 4th call, a success, brings the window to minimum_calls at 75 %: successes are
    // evaluated too.
    assert_eq!(b.state(), Open);
    assert_eq!(log.take(), vec![(Closed, Open)]);
}

#[test]
fn rate_is_compared_with_greater_or_equal() {
    let (b, _, _) = breaker(4, 4);
    outcomes(&b, "SSSF");
    assert_eq!(b.state(), Closed);
    outcomes(&b, "F"); // window S S F F: exactly 50 %
    assert_eq!(b.state(), Open);
}

#[test]
fn count_window_caps_minimum_calls_at_its_size() {
    let (b, _, _) = breaker(2, 100);
    outcomes(&b, "SF");
    assert_eq!(b.state(), Open);
}

#[test]
fn the_window_slides() {
    let (b, _, _) = breaker(4, 4);
    outcomes(&b, "FSSS");
    // F S S S then S: the F falls out; then F F: S S F F = 50 %.
    outcomes(&b, "SSS");
    assert_eq!(b.metrics().failures, 0);
    outcomes(&b, "F");
    assert_eq!(b.state(), Closed);
    outcomes(&b, "F");
    assert_eq!(b.state(), Open);
}

#[test]
fn a_window_full_of_successes_still_counts_what_follows() {
    // The healthy path writes nothing once the window is full of successes; the window's
    // counts must stay exact through it.
    let (b, _, _) = breaker(4, 4);
    outcomes(&b, &"S".repeat(50));
    assert_eq!((b.metrics().calls, b.metrics().failures), (4, 0));
    outcomes(&b, "F");
    assert_eq!((b.metrics().calls, b.metrics().failures), (4, 1));
    outcomes(&b, "SSS"); // the F slides out after 4 more records
    assert_eq!(b.metrics().failures, 1);
    outcomes(&b, "S");
    assert_eq!(b.metrics().failures, 0);
    outcomes(&b, "SSFF");
    assert_eq!(b.state(), Open);
}

#[test]
fn slow_calls_trip_and_slow_means_strictly_longer() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .count_window(4)
        .minimum_calls(4)
        .slow_calls(Duration::from_millis(100), 0.5)
        .build()
        .unwrap();
    for d in [100, 100, 100, 101] {
        let p = b.try_acquire().unwrap();
        clock.advance(Duration::from_millis(d));
        p.success();
    }
    let m = b.metrics();
    assert_eq!((m.calls, m.slow_calls, m.state), (4, 1, Closed));
    let p = b.try_acquire().unwrap();
    clock.advance(Duration::from_millis(500));
    p.success(); // 2 slow of the last 4 = 50 %
    assert_eq!(b.state(), Open);
    assert_eq!(b.metrics().slow_call_rate, Some(0.5));
}

#[test]
fn the_guides_absolute_count_over_a_time_window() {
    // Open after 5 failures in 60 s, once 10 calls were seen.
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .time_window(60 * SEC, 60)
        .minimum_calls(10)
        .failure_rate_threshold(None)
        .failure_count_threshold(5)
        .build()
        .unwrap();
    outcomes(&b, "FFFFF");
    assert_eq!(b.state(), Closed, "5 failures but only 5 calls");
    outcomes(&b, "SSSS");
    assert_eq!(b.state(), Closed);
    // 50 s later, the 10th call trips: 5 failures among 10 calls in the last 60 s.
    clock.advance(50 * SEC);
    outcomes(&b, "S");
    assert_eq!(b.state(), Open);

    // Failures older than the window do not count.
    b.reset();
    clock.advance(100 * SEC);
    outcomes(&b, "FFFF");
    outcomes(&b, &"S".repeat(10));
    clock.advance(61 * SEC);
    outcomes(&b, "F");
    assert_eq!(b.metrics().failures, 1);
    assert_eq!(b.state(), Closed);
}

/// A breaker over a 10 s time window of 10 buckets, 4 calls minimum, 50 % failure rate.
fn time_breaker() -> (CircuitBreaker<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .time_window(10 * SEC, 10)
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .build()
        .unwrap();
    (b, clock)
}

#[test]
fn a_clean_time_window_counts_every_success_and_ages_them_out() {
    // The healthy path (no failure in the window) counts successes outside the running totals;
    // they still dilute a later failure rate and age out with their buckets.
    let (b, clock) = time_breaker();
    outcomes(&b, "SSS");
    clock.advance(5 * SEC);
    outcomes(&b, "SSS");
    assert_eq!(b.metrics().calls, 6);
    outcomes(&b, "FFF");
    let m = b.metrics();
    assert_eq!(
        (m.calls, m.failures, m.state),
        (9, 3, Closed),
        "3 of 9 < 50 %"
    );
    // 5 s later the first three successes age out: 3 of 6 trips on the next result.
    clock.advance(5 * SEC);
    assert_eq!(b.metrics().calls, 6);
    outcomes(&b, "S");
    assert_eq!(b.state(), Closed, "3 of 7");
    outcomes(&b, "F");
    assert_eq!(b.state(), Open, "4 of 8");
}

#[test]
fn a_time_window_is_clean_again_once_its_failures_age_out() {
    let (b, clock) = time_breaker();
    outcomes(&b, "SSSF");
    clock.advance(10 * SEC);
    // The failure aged out: these successes (the first still decides, then the fast path)
    // count, and so do the failures that follow.
    outcomes(&b, "SSSS");
    assert_eq!((b.metrics().calls, b.metrics().failures), (4, 0));
    outcomes(&b, "FFF");
    assert_eq!(b.state(), Closed, "3 of 7");
    outcomes(&b, "F");
    assert_eq!(b.state(), Open, "4 of 8");
    // And after a reset the window starts empty, fast path included.
    b.reset();
    outcomes(&b, "SS");
    assert_eq!(b.metrics().calls, 2);
}

#[test]
fn one_breach_one_transition() {
    let (b, _, log) = breaker(4, 2);
    let permits: Vec<_> = (0..6).map(|_| b.try_acquire().unwrap()).collect();
    for p in permits {
        p.failure();
    }
    assert_eq!(log.take(), vec![(Closed, Open)]);
}

#[test]
fn open_refuses_with_retry_after_then_the_first_caller_probes() {
    let (b, clock, log) = breaker(2, 2);
    clock.set(3 * SEC.as_nanos() as u64);
    outcomes(&b, "FF");
    let opened = clock.now();
    let e = b.try_acquire().unwrap_err();
    assert_eq!(e.state(), State::Open);
    let wait = e.retry_after().unwrap();
    assert!(wait >= 5 * SEC && wait < 5 * SEC + TICK, "{wait:?}");
    clock.advance(2 * SEC);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(wait - 2 * SEC)
    );
    assert_eq!(b.metrics().refused, 2);
    past_open(&clock, opened, 5 * SEC);
    clock.set(clock.now() - 1);
    assert!(b.try_acquire().is_err(), "one nanosecond early");
    clock.advance(Duration::from_nanos(1));
    let probe = b.try_acquire().expect("first caller after open_for");
    assert_eq!(b.state(), HalfOpen);
    assert_eq!(log.take(), vec![(Closed, Open), (Open, HalfOpen)]);
    drop(probe);
}

#[test]
fn half_open_admits_at_most_probes_and_decides_after_enough_results() {
    let (b, clock, log) = breaker(2, 5);
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let e = b.try_acquire().unwrap_err();
    assert_eq!(e.state(), State::HalfOpen);
    // The estimate (if the probes never decide): the half-open timeout of 10 s, then one more
    // open period of 5 s.
    let wait = e.retry_after().unwrap();
    assert!((15 * SEC..15 * SEC + TICK).contains(&wait), "{wait:?}");
    p1.success();
    assert_eq!(
        b.state(),
        HalfOpen,
        "min(minimum_calls 5, probes 2) = 2 results needed"
    );
    assert!(b.try_acquire().is_err(), "a reported probe keeps its slot");
    p2.success();
    assert_eq!(b.state(), Closed);
    assert_eq!(b.metrics().calls, 0, "closing empties the window");
    assert_eq!(
        log.take(),
        vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
    outcomes(&b, "S");
    assert_eq!(b.metrics().calls, 1);
}

#[test]
fn half_open_breach_reopens_and_open_for_grows() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .count_window(1)
        .minimum_calls(1)
        .open_for(SEC)
        .open_for_growth(2.0, 3 * SEC)
        .half_open_probes(1)
        .build()
        .unwrap();
    outcomes(&b, "F");
    let mut waits = vec![];
    for _ in 0..4 {
        let w = b.try_acquire().unwrap_err().retry_after().unwrap();
        waits.push(w.as_secs_f64().round() as u64);
        clock.advance(w);
        b.try_acquire().expect("probe").failure();
        assert_eq!(b.state(), Open);
    }
    assert_eq!(waits, vec![1, 2, 3, 3]);
    // A close resets the growth.
    clock.advance(3 * SEC + TICK);
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), Closed);
    outcomes(&b, "F");
    let w = b.try_acquire().unwrap_err().retry_after().unwrap();
    assert!(w <= SEC + TICK);
}

#[test]
fn a_dropped_probe_gives_its_slot_back() {
    let (b, clock, _) = breaker(2, 2);
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(p1);
    let p3 = b.try_acquire().expect("slot returned");
    p2.ignore();
    let p4 = b
        .try_acquire()
        .expect("ignored probe returned its slot too");
    p3.success();
    p4.success();
    assert_eq!(b.state(), Closed);
}

#[test]
fn half_open_without_a_decision_reopens() {
    let (b, clock, log) = breaker(2, 2);
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let stuck = b.try_acquire().unwrap();
    let _stuck2 = b.try_acquire().unwrap();
    let entered = clock.now();
    clock.set(entered + 10 * 1_000_000_000 - 1);
    assert_eq!(b.try_acquire().unwrap_err().state(), State::HalfOpen);
    past_half_open(&clock, entered, 10 * SEC);
    let e = b.try_acquire().unwrap_err();
    assert_eq!(e.state(), State::Open);
    assert_eq!(b.state(), Open);
    // The stuck probe finally reports: too late, it counts for nothing.
    stuck.success();
    assert_eq!(b.state(), Open);
    log.take();
    clock.advance(e.retry_after().unwrap());
    b.try_acquire().unwrap().success();
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), Closed);
    assert_eq!(log.take(), vec![(Open, HalfOpen), (HalfOpen, Closed)]);
}

#[test]
fn a_probe_result_after_the_half_open_timeout_reopens_and_does_not_count() {
    let (b, clock, log) = breaker(2, 2);
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let entered = clock.now();
    p1.success();
    // Nobody asks for a permit: the timeout passes unseen, then the second probe succeeds.
    past_half_open(&clock, entered, 10 * SEC);
    p2.success();
    assert_eq!(b.state(), Open, "the timeout re-opened the breaker first");
    assert_eq!(
        log.take(),
        vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Open)]
    );
    // Re-opened for the second open period (no growth configured: 5 s again), from the result.
    let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
    assert!((5 * SEC - TICK..5 * SEC + TICK).contains(&wait), "{wait:?}");
}

#[test]
fn an_open_or_half_open_breaker_left_alone_for_hours_moves_on() {
    // The deadline is a 25-bit tick field (wrapping every 2^25 ticks, about 9.8 hours); a state
    // untouched for longer than half of that must still read its deadline as passed.
    let tick = state::TICK_NANOS;
    let hour = 3_600_000_000_000;
    for idle in [
        (1 << 24) * tick - tick,
        (1 << 24) * tick + 5 * tick,
        5 * hour,
        (1 << 25) * tick - 3 * tick,
        (1 << 25) * tick + 7 * tick,
        24 * hour,
        30 * 24 * hour,
    ] {
        let (b, clock, log) = breaker(2, 2);
        outcomes(&b, "FF");
        clock.advance(Duration::from_nanos(idle));
        let probe = b.try_acquire().expect("the open period ended long ago");
        assert_eq!(b.state(), HalfOpen);
        let _other = b.try_acquire().unwrap();
        // Both probes hang; nothing happens for as long again.
        clock.advance(Duration::from_nanos(idle));
        let e = b.try_acquire().unwrap_err();
        assert_eq!(e.state(), State::Open, "the half-open timeout passed");
        let wait = e.retry_after().unwrap();
        assert!(
            (5 * SEC - TICK..5 * SEC + TICK).contains(&wait),
            "idle {idle} ns: wait {wait:?} for the next open period"
        );
        probe.success();
        assert_eq!(b.state(), Open);
        assert_eq!(
            log.take(),
            vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Open)]
        );
    }
}

#[test]
fn results_of_calls_admitted_earlier_never_count_as_probes() {
    let (b, clock, _) = breaker(2, 2);
    let late = b.try_acquire().unwrap(); // admitted while closed
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let probe = b.try_acquire().unwrap();
    late.failure(); // from the closed generation: ignored
    probe.success();
    let probe2 = b.try_acquire().unwrap();
    probe2.success();
    assert_eq!(b.state(), Closed, "the late failure did not count");
    // And a late drop does not free a probe slot either.
    let (b, clock, _) = breaker(2, 2);
    let late = b.try_acquire().unwrap();
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let _p1 = b.try_acquire().unwrap();
    let _p2 = b.try_acquire().unwrap();
    drop(late);
    assert!(b.try_acquire().is_err());
}

#[test]
fn ignored_errors_record_nothing_and_success_classified_errors_count_as_successes() {
    let (b, _, _) = breaker(4, 4);
    for _ in 0..10 {
        let r = b.call_with(
            |_: Result<&(), &&str>| Verdict::Ignore,
            || Err::<(), _>("bad request"),
        );
        assert_eq!(r, Err(BreakerError::Inner("bad request")));
    }
    assert_eq!(b.metrics().calls, 0);
    let _ = b.call_with(
        |_: Result<&(), &&str>| Verdict::Success,
        || Err::<(), _>("not found"),
    );
    let _ = b.call(|| Err::<(), _>("boom"));
    let m = b.metrics();
    assert_eq!((m.calls, m.failures), (2, 1));
    assert_eq!(b.call(|| Ok::<_, ()>(3)), Ok(3));
}

#[test]
fn call_refused_while_open_does_not_run_the_closure() {
    let (b, _, _) = breaker(2, 2);
    outcomes(&b, "FF");
    let mut ran = false;
    let r = b.call(|| {
        ran = true;
        Ok::<_, ()>(())
    });
    assert!(matches!(r, Err(BreakerError::Refused(e)) if e.state() == State::Open));
    assert!(!ran);
}

#[test]
fn a_panic_inside_call_is_a_failure_and_keeps_unwinding() {
    let (b, _, _) = breaker(4, 2);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = b.call(|| -> Result<(), ()> { panic!("inside") });
    }));
    let payload = r.expect_err("the panic was resumed");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));
    assert_eq!((b.metrics().calls, b.metrics().failures), (1, 1));
    // A panicking probe is a failed probe; its slot is used, not leaked.
    let (b, clock, _) = breaker(2, 1);
    outcomes(&b, "F");
    past_open(&clock, 0, 5 * SEC);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = b.call(|| -> Result<(), ()> { panic!("probe") });
    }));
    assert!(r.is_err());
    assert_eq!(
        b.state(),
        Open,
        "needed min(1, 2) = 1 result: the panic re-opened it"
    );
}

#[test]
fn forced_open_disabled_and_reset() {
    let (b, _, log) = breaker(2, 2);
    outcomes(&b, "F");
    b.force_open();
    b.force_open();
    let e = b.try_acquire().unwrap_err();
    assert_eq!((e.state(), e.retry_after()), (State::ForcedOpen, None));
    b.disable();
    assert_eq!(b.state(), Disabled);
    outcomes(&b, "FFFFFF");
    assert_eq!(b.state(), Disabled);
    assert_eq!(b.metrics().failures, 1, "disabled records nothing");
    b.reset();
    assert_eq!(b.state(), Closed);
    assert_eq!(b.metrics().calls, 0, "reset empties the window");
    assert_eq!(
        log.take(),
        vec![
            (Closed, ForcedOpen),
            (ForcedOpen, Disabled),
            (Disabled, Closed)
        ]
    );
    // A permit from before the reset reports into nothing.
    let old = b.try_acquire().unwrap();
    b.reset();
    old.failure();
    assert_eq!(b.metrics().calls, 0);
}

/// A clock whose next reading, once armed, waits until the test lets it go: it holds a
/// recorder between its look at the word and its window write.
#[derive(Clone)]
struct GateClock {
    inner: ManualClock,
    gate: Arc<Gate>,
}

struct Gate {
    armed: Mutex<bool>,
    entered: std::sync::Barrier,
    release: std::sync::Barrier,
}

impl GateClock {
    /// A clock at 0, disarmed, and its gate.
    fn new() -> (Self, Arc<Gate>) {
        let gate = Arc::new(Gate {
            armed: Mutex::new(false),
            entered: std::sync::Barrier::new(2),
            release: std::sync::Barrier::new(2),
        });
        let clock = GateClock {
            inner: ManualClock::new(),
            gate: gate.clone(),
        };
        (clock, gate)
    }
}

impl Clock for GateClock {
    fn now(&self) -> u64 {
        if std::mem::take(&mut *self.gate.armed.lock().unwrap()) {
            self.gate.entered.wait();
            self.gate.release.wait();
        }
        self.inner.now()
    }
}

#[test]
fn a_failure_recorded_across_a_reset_counts_in_the_new_window_and_clears_clean() {
    let (clock, gate) = GateClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock)
        .time_window(10 * SEC, 10)
        .minimum_calls(3)
        .failure_rate_threshold(None)
        .failure_count_threshold(1)
        .build()
        .unwrap();
    let old = b.try_acquire().unwrap();
    *gate.armed.lock().unwrap() = true;
    std::thread::scope(|s| {
        // The recorder passes its generation check, then stops at its clock reading.
        let recorder = s.spawn(|| old.failure());
        gate.entered.wait();
        b.reset();
        outcomes(&b, "SS"); // the new window: clean, 2 calls
        let w = b.word.load(Ordering::Acquire);
        assert!(state::is_clean(w, state::generation(w)));
        gate.release.wait();
        recorder.join().unwrap();
    });
    // The late failure landed in the new window: it counts there, and the window is no
    // longer marked clean, so the next result decides (3 calls, 1 failure: trip).
    assert_eq!((b.metrics().calls, b.metrics().failures), (3, 1));
    assert_eq!(b.state(), Closed, "the late result made no decision itself");
    outcomes(&b, "S");
    assert_eq!(b.state(), Open);
}

#[test]
fn a_timeout_cas_lost_to_a_probe_given_back_keeps_the_state_s_age() {
    let (clock, gate) = GateClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .count_window(2)
        .minimum_calls(2)
        .failure_rate_threshold(0.5)
        .open_for(5 * SEC)
        .half_open_probes(2)
        .half_open_timeout(10 * SEC)
        .build()
        .unwrap();
    outcomes(&b, "FF");
    past_open(&clock.inner, 0, 5 * SEC);
    let p1 = b.try_acquire().unwrap();
    let _p2 = b.try_acquire().unwrap();
    // 15 hours untouched, both probes hung: the half-open timeout passed long ago.
    clock.inner.advance(Duration::from_secs(15 * 3600));
    *gate.armed.lock().unwrap() = true;
    let racer = std::thread::scope(|s| {
        // The racer loads the word, then stops at its clock reading...
        let t = s.spawn(|| b.try_acquire().map(|p| p.ignore()));
        gate.entered.wait();
        // ... while a hung probe is given back (same state, one slot freer), so the racer's
        // timeout CAS, made after it raised the stamp, loses and is retried.
        drop(p1);
        gate.release.wait();
        t.join().unwrap()
    });
    assert_eq!(
        racer.unwrap_err().state(),
        State::Open,
        "the timeout re-opened"
    );
    assert_eq!(b.state(), Open);
    let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
    assert!((5 * SEC - TICK..5 * SEC + TICK).contains(&wait), "{wait:?}");
}

#[test]
fn a_reset_of_a_closed_breaker_empties_the_window_and_is_no_transition() {
    let (b, clock, log) = breaker(4, 4);
    outcomes(&b, "SFS");
    clock.advance(3 * SEC);
    b.reset();
    let m = b.metrics();
    assert_eq!((m.state, m.calls, m.failures), (Closed, 0, 0));
    assert_eq!(m.since_last_transition, 3 * SEC, "no transition happened");
    assert_eq!(log.take(), vec![], "the hook does not run");
    // The window really restarted: three more calls are still below minimum_calls.
    outcomes(&b, "FFF");
    assert_eq!(b.state(), Closed);
    outcomes(&b, "F");
    assert_eq!(b.state(), Open);
}

#[test]
fn metrics_report_the_window_refusals_and_time_since_the_last_transition() {
    let (b, clock, _) = breaker(4, 4);
    clock.advance(7 * SEC);
    let m = b.metrics();
    assert_eq!(m.since_last_transition, 7 * SEC);
    outcomes(&b, "SFSF");
    clock.advance(SEC);
    let _ = b.try_acquire();
    let _ = b.try_acquire();
    let m = b.metrics();
    assert_eq!(m.state, Open);
    assert_eq!((m.calls, m.failures, m.slow_calls, m.refused), (4, 2, 0, 2));
    assert_eq!(m.failure_rate, Some(0.5));
    assert_eq!(m.since_last_transition, SEC);
}

#[test]
fn deadlines_survive_the_tick_field_wrapping() {
    // The deadline field holds 25 bits of ticks: start a few ticks below its wrap.
    let start = ((1u64 << 25) - 3) * state::TICK_NANOS;
    for base in [start, u64::MAX / 2 + start, u64::MAX - 40 * 1_000_000_000] {
        let clock = ManualClock::starting_at(base);
        let b = CircuitBreaker::builder()
            .clock(clock.clone())
            .count_window(1)
            .minimum_calls(1)
            .open_for(5 * SEC)
            .half_open_probes(1)
            .half_open_timeout(10 * SEC)
            .build()
            .unwrap();
        outcomes(&b, "F");
        let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
        assert!(wait >= 5 * SEC && wait < 5 * SEC + TICK);
        clock.advance(wait - Duration::from_nanos(1));
        assert!(b.try_acquire().is_err());
        clock.advance(Duration::from_nanos(1));
        let probe = b.try_acquire().expect("open period over across the wrap");
        // The half-open timeout across the wrap too.
        clock.advance(10 * SEC + TICK);
        assert_eq!(b.try_acquire().unwrap_err().state(), State::Open);
        probe.success();
        assert_eq!(b.state(), Open);
    }
}

#[test]
fn async_wrapper_records_and_a_dropped_future_releases_its_probe() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};
    let (b, clock, _) = breaker(2, 2);
    let r = futures::executor::block_on(b.call_async(async { Err::<(), _>("down") }));
    assert_eq!(r, Err(BreakerError::Inner("down")));
    let r = futures::executor::block_on(b.call_async(async { Err::<(), _>("down") }));
    assert!(r.is_err());
    assert_eq!(b.state(), Open);
    past_open(&clock, 0, 5 * SEC);
    {
        // Poll a pending probe once (it takes a slot), then drop it.
        let mut fut = pin!(b.call_async(std::future::pending::<Result<(), ()>>()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        let mut fut2 = pin!(b.call_async(std::future::pending::<Result<(), ()>>()));
        assert!(fut2.as_mut().poll(&mut cx).is_pending());
        assert!(b.try_acquire().is_err());
    }
    futures::executor::block_on(b.call_async(async { Ok::<_, ()>(()) })).unwrap();
    futures::executor::block_on(b.call_async(async { Ok::<_, ()>(()) })).unwrap();
    assert_eq!(b.state(), Closed);
}

#[test]
fn no_panic_on_extreme_inputs() {
    let clock = ManualClock::starting_at(u64::MAX);
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .count_window(CountWindow::MAX_SIZE)
        .minimum_calls(1)
        .open_for(Duration::ZERO)
        .open_for_growth(1000.0, MAX_DURATION)
        .half_open_probes(state::MAX_PROBES)
        .slow_calls(Duration::MAX, 1.0)
        .half_open_timeout(Duration::from_nanos(1))
        .build()
        .unwrap();
    for _ in 0..100 {
        if let Ok(p) = b.try_acquire() {
            p.failure();
        }
        clock.set(0);
        let _ = b.try_acquire();
        clock.set(u64::MAX);
    }
    let _ = b.metrics();
}

use crate::window::CountWindow;

// ---- OwnedBreakerPermit: the same rules as the borrowed permit ---------------------------------------

#[test]
fn an_owned_permit_dropped_unresolved_is_released_and_gives_its_probe_slot_back() {
    let (b, clock, _) = breaker(2, 2);
    let b = Arc::new(b);
    drop(b.try_acquire_owned().unwrap());
    assert_eq!(b.metrics().calls, 0, "released, not recorded");
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let p1 = b.try_acquire_owned().unwrap();
    let p2 = b.try_acquire_owned().unwrap();
    assert!(b.try_acquire_owned().is_err());
    // Dropped on another thread, as a response future may be.
    std::thread::spawn(move || drop(p1)).join().unwrap();
    let p3 = b.try_acquire_owned().expect("slot returned");
    p2.ignore();
    let p4 = b
        .try_acquire_owned()
        .expect("ignored probe returned its slot too");
    p3.success();
    p4.record(Verdict::Success);
    assert_eq!(b.state(), Closed);
}

#[test]
fn an_owned_permit_dropped_while_panicking_is_a_failure() {
    let (b, _, _) = breaker(4, 2);
    let b = Arc::new(b);
    let p = b.try_acquire_owned().unwrap();
    let r = std::thread::spawn(move || {
        let _p = p;
        panic!("inside");
    })
    .join();
    assert!(r.is_err());
    assert_eq!((b.metrics().calls, b.metrics().failures), (1, 1));
    // A panicking probe is a failed probe: its slot is used, not leaked.
    let (b, clock, _) = breaker(2, 1);
    let b = Arc::new(b);
    outcomes(&b, "F");
    past_open(&clock, 0, 5 * SEC);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _p = b.try_acquire_owned().unwrap();
        panic!("probe");
    }));
    assert!(r.is_err());
    assert_eq!(
        b.state(),
        Open,
        "needed min(1, 2) = 1 result: the panic re-opened it"
    );
}

#[test]
fn owned_results_of_calls_admitted_earlier_never_count_as_probes() {
    let (b, clock, _) = breaker(2, 2);
    let b = Arc::new(b);
    let late = b.try_acquire_owned().unwrap(); // admitted while closed
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let probe = b.try_acquire_owned().unwrap();
    late.failure(); // from the closed generation: ignored
    probe.success();
    b.try_acquire_owned().unwrap().success();
    assert_eq!(b.state(), Closed, "the late failure did not count");
    // And a late drop does not free a probe slot either.
    let (b, clock, _) = breaker(2, 2);
    let b = Arc::new(b);
    let late = b.try_acquire_owned().unwrap();
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let _p1 = b.try_acquire_owned().unwrap();
    let _p2 = b.try_acquire_owned().unwrap();
    drop(late);
    assert!(b.try_acquire_owned().is_err());
}

#[test]
fn an_owned_permit_keeps_its_breaker_alive_and_reports_each_class() {
    let (b, _, _) = breaker(4, 4);
    let b = Arc::new(b);
    let p = b.try_acquire_owned().unwrap();
    let weak = Arc::downgrade(&b);
    drop(b);
    assert!(weak.upgrade().is_some(), "the permit holds the breaker");
    let b = Arc::clone(p.breaker());
    p.record(Verdict::Ignore);
    b.try_acquire_owned().unwrap().record(Verdict::Failure);
    b.try_acquire_owned().unwrap().record(Verdict::Success);
    b.try_acquire_owned().unwrap().failure();
    let m = b.metrics();
    assert_eq!((m.calls, m.failures), (3, 2));
}

#[test]
fn an_open_period_ends_within_a_microsecond_of_its_length() {
    // Trips at many sub-millisecond offsets: each refuses until its full period has passed and
    // admits a probe at most 1 024 ns after it.
    let (b, clock, _) = breaker(2, 2);
    let period = crate::clock::duration_to_nanos(5 * SEC);
    let mut opened = 3 * 1_000_000_000;
    let trips = if cfg!(miri) { 50 } else { 2_000u64 };
    for k in 0..trips {
        opened += 5 * period + k * 7_919; // a step that lands on every sub-tick phase
        clock.set(opened);
        outcomes(&b, "FF");
        assert_eq!(b.state(), Open);
        clock.set(opened + period - 1);
        let e = b.try_acquire().unwrap_err();
        assert!(
            e.retry_after().unwrap() <= Duration::from_nanos(1_024),
            "k = {k}"
        );
        clock.set(opened + period + 1_023);
        b.try_acquire()
            .expect("admitted within 1 024 ns of the period's end")
            .success();
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), Closed, "k = {k}");
    }
}

#[test]
fn a_timed_trip_refuses_with_its_reason_then_probes() {
    let (b, clock, log) = breaker(4, 4);
    clock.set(7);
    b.trip_for(TripReason::HealthCheck, 30 * SEC).unwrap();
    assert_eq!(b.state(), Open);
    let e = b.try_acquire().unwrap_err();
    assert_eq!(
        (e.state(), e.tripped_by()),
        (Open, Some(TripReason::HealthCheck))
    );
    assert!(e.retry_after().unwrap() >= 30 * SEC);
    assert!(e.to_string().contains("health check"), "{e}");
    clock.set(7 + crate::clock::duration_to_nanos(30 * SEC) - 1);
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_nanos(1_024));
    let p1 = b.try_acquire().expect("half-open after the trip");
    let p2 = b.try_acquire().unwrap();
    p1.success();
    p2.success();
    assert_eq!(b.state(), Closed);
    assert_eq!(
        log.take(),
        vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
    // An own trip carries no reason.
    outcomes(&b, "FFFF");
    assert_eq!(b.try_acquire().unwrap_err().tripped_by(), None);
}

#[test]
fn a_timed_trip_never_shortens_a_refusal_in_force() {
    let (b, clock, log) = breaker(2, 2);
    outcomes(&b, "FF"); // open for 5 s on its own evidence
    log.take();
    b.trip_for(TripReason::AdaptiveLimit, SEC).unwrap();
    let e = b.try_acquire().unwrap_err();
    assert_eq!(e.tripped_by(), None, "the longer open period stands");
    assert!(e.retry_after().unwrap() > 4 * SEC);
    // A longer trip extends it, and names itself.
    b.trip_for(TripReason::AdaptiveLimit, 60 * SEC).unwrap();
    let e = b.try_acquire().unwrap_err();
    assert_eq!(e.tripped_by(), Some(TripReason::AdaptiveLimit));
    assert!(e.retry_after().unwrap() >= 60 * SEC);
    clock.advance(10 * SEC);
    assert!(
        b.try_acquire().is_err(),
        "the old 5 s deadline no longer applies"
    );
    // Forced open outlasts any timed trip.
    b.trip(TripReason::Manual);
    b.trip_for(TripReason::HealthCheck, 3_600 * SEC).unwrap();
    let e = b.try_acquire().unwrap_err();
    assert_eq!(
        (e.state(), e.tripped_by(), e.retry_after()),
        (ForcedOpen, Some(TripReason::Manual), None)
    );
    // Another reason for the forced open changes the reason, not the state: no transition.
    b.trip(TripReason::OutlierDetection);
    assert_eq!(
        b.try_acquire().unwrap_err().tripped_by(),
        Some(TripReason::OutlierDetection)
    );
    assert_eq!(log.take(), vec![(Open, ForcedOpen)]);
    b.reset();
    assert!(b.try_acquire().is_ok());
}

#[test]
fn a_trip_longer_than_the_word_holds_is_an_error_and_changes_nothing() {
    let (b, _, _) = breaker(2, 2);
    let e = b
        .trip_for(TripReason::Manual, MAX_DURATION + SEC)
        .unwrap_err();
    assert_eq!(e.field(), "duration");
    assert_eq!(b.state(), Closed);
    b.trip_for(TripReason::Manual, MAX_DURATION).unwrap();
    assert!(b.try_acquire().unwrap_err().retry_after().unwrap() >= MAX_DURATION);
    assert!(
        b.trip_until(TripReason::Manual, std::time::Instant::now())
            .is_ok()
    );
}

#[test]
fn a_trip_during_half_open_drops_the_probes_results() {
    let (b, clock, log) = breaker(2, 2);
    outcomes(&b, "FF");
    past_open(&clock, 0, 5 * SEC);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    b.trip_for(TripReason::HealthCheck, 20 * SEC).unwrap();
    p1.success();
    p2.success();
    assert_eq!(
        b.state(),
        Open,
        "probes of the earlier half-open do not close it"
    );
    assert_eq!(
        log.take(),
        vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Open)]
    );
}

#[test]
fn force_half_open_starts_fresh_probes_from_any_state() {
    let (b, _, log) = breaker(2, 2);
    for prepare in [
        (|b: &CircuitBreaker<ManualClock>| outcomes(b, "FF")) as fn(&CircuitBreaker<ManualClock>),
        |b| b.trip(TripReason::Manual),
        |b| b.disable(),
        |_| {},
    ] {
        b.reset();
        prepare(&b);
        log.take();
        let from = b.state();
        b.force_half_open();
        assert_eq!(b.state(), HalfOpen);
        b.force_half_open(); // already half-open: nothing
        assert_eq!(log.take(), vec![(from, HalfOpen)]);
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err(), "two probes at most");
        p1.failure();
        p2.failure();
        assert_eq!(b.state(), Open);
    }
}

/// Records every breach the hook reports.
#[derive(Clone, Default)]
struct Breaches(Arc<Mutex<Vec<Breach>>>);

impl Breaches {
    fn hook(&self) -> impl Fn(&Breach) + Send + Sync + 'static {
        let l = self.0.clone();
        move |b| l.lock().unwrap().push(*b)
    }
    fn take(&self) -> Vec<Breach> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn metrics_only(size: u32) -> (CircuitBreaker<ManualClock>, Breaches, Log) {
    let (breaches, log) = (Breaches::default(), Log::default());
    let b = CircuitBreaker::builder()
        .clock(ManualClock::new())
        .count_window(size)
        .minimum_calls(size)
        .failure_rate_threshold(0.5)
        .metrics_only(true)
        .on_breach(breaches.hook())
        .on_state_change(log.hook())
        .build()
        .unwrap();
    (b, breaches, log)
}

#[test]
fn metrics_only_reports_each_breach_once_and_never_refuses() {
    let (b, breaches, log) = metrics_only(4);
    outcomes(&b, "SSFF"); // 50 %: the breach begins
    let seen = breaches.take();
    assert_eq!(seen.len(), 1);
    let first = seen[0];
    assert_eq!(
        (first.calls, first.failures, first.failure_rate),
        (4, 2, 0.5)
    );
    assert!(first.failure_rate_exceeded && !first.enforced);
    outcomes(&b, "FFFF"); // the same breach goes on: nothing new
    assert!(breaches.take().is_empty());
    assert_eq!(b.state(), Closed);
    assert_eq!(b.metrics().breaches, 1);
    // Successes bring it under the threshold (a success whose window breaches nothing ends it),
    // and the next breach is reported again.
    outcomes(&b, "SSS"); // FSSS: 25 %
    assert!(breaches.take().is_empty());
    outcomes(&b, "FF"); // SSFF: 50 % again
    assert_eq!(breaches.take().len(), 1);
    assert_eq!(b.metrics().breaches, 2);
    assert!(log.take().is_empty(), "no transition");
    assert_eq!(b.metrics().refused, 0);
}

#[test]
fn a_reconfigure_out_of_metrics_only_lets_the_next_breach_trip() {
    let (b, breaches, log) = metrics_only(4);
    outcomes(&b, "FFFF");
    assert_eq!(breaches.take().len(), 1);
    b.reconfigure(|c| c.metrics_only(false)).unwrap();
    assert_eq!(b.state(), Closed, "a reconfigure alone trips nothing");
    outcomes(&b, "F");
    assert_eq!(b.state(), Open);
    let enforced = breaches.take();
    assert!(enforced.len() == 1 && enforced[0].enforced);
    assert_eq!(log.take(), vec![(Closed, Open)]);
    // Trips by other code act in metrics-only mode too.
    b.reset();
    b.reconfigure(|c| c.metrics_only(true)).unwrap();
    b.trip(TripReason::HealthCheck);
    assert!(b.try_acquire().is_err());
}

#[test]
fn every_transition_says_why() {
    let causes = Arc::new(Mutex::new(Vec::new()));
    let log = causes.clone();
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock.clone())
        .count_window(2)
        .minimum_calls(2)
        .half_open_probes(2)
        .open_for(5 * SEC)
        .half_open_timeout(10 * SEC)
        .on_state_change(move |c: &StateChange| log.lock().unwrap().push(c.cause))
        .build()
        .unwrap();
    outcomes(&b, "SF");
    past_open(&clock, 0, 5 * SEC);
    let (p1, p2) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    p1.failure();
    p2.success(); // 1 of 2 probes failed: 50 %, re-open
    clock.advance(MAX_DURATION);
    let (p1, p2) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    let entered = clock.now();
    past_half_open(&clock, entered, 10 * SEC);
    assert!(b.try_acquire().is_err()); // no decision in time: re-open
    drop((p1, p2));
    b.force_half_open();
    outcomes(&b, "SS");
    b.trip(TripReason::Other);
    b.disable();
    b.reset();
    let causes = causes.lock().unwrap();
    let kinds: Vec<String> = causes
        .iter()
        .map(|c| format!("{c:?}").split('(').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "Breach",
            "OpenPeriodEnded",
            "ProbesBreached",
            "OpenPeriodEnded",
            "HalfOpenTimeout",
            "ForcedHalfOpen",
            "ProbesHealthy",
            "Tripped",
            "Disabled",
            "Reset"
        ]
    );
    let Cause::Breach(closed) = causes[0] else {
        unreachable!()
    };
    assert_eq!(
        (closed.calls, closed.failures, closed.failure_rate),
        (2, 1, 0.5)
    );
    let Cause::ProbesBreached(probes) = causes[2] else {
        unreachable!()
    };
    assert_eq!((probes.calls, probes.failures), (2, 1));
    assert_eq!(causes[7], Cause::Tripped(TripReason::Other));
}

#[test]
fn metrics_show_probes_refusals_in_the_state_and_the_trip() {
    let (b, clock, _) = breaker(4, 4);
    assert_eq!(b.metrics().failure_rate, None, "no calls yet");
    outcomes(&b, "SSF");
    assert_eq!(
        b.metrics().failure_rate,
        None,
        "3 calls of the 4 a decision needs"
    );
    outcomes(&b, "F");
    let m = b.metrics();
    assert_eq!((m.state, m.failure_rate, m.breaches), (Open, Some(0.5), 1));
    for _ in 0..3 {
        assert!(b.try_acquire().is_err());
    }
    assert_eq!((b.metrics().refused, b.metrics().refused_in_state), (3, 3));
    past_open(&clock, 0, 5 * SEC);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err(), "both probes out");
    p1.failure();
    let m = b.metrics();
    assert_eq!((m.refused, m.refused_in_state), (4, 1));
    let probes = m.probes.unwrap();
    assert_eq!(
        (
            probes.admitted,
            probes.results,
            probes.failures,
            probes.slow
        ),
        (2, 1, 1, 0)
    );
    drop(p2);
    assert_eq!(
        b.metrics().probes.unwrap().admitted,
        1,
        "the unreported probe gave its slot back"
    );
    b.trip_for(TripReason::AdaptiveLimit, SEC).unwrap();
    let m = b.metrics();
    assert_eq!(
        (m.probes, m.tripped_by),
        (None, Some(TripReason::AdaptiveLimit))
    );
}

#[test]
fn a_reconfigure_keeps_the_window_the_state_and_the_hooks() {
    let (b, clock, log) = breaker(4, 4);
    outcomes(&b, "SSSF");
    b.reconfigure(|c| {
        c.failure_rate_threshold(0.25)
            .open_for(20 * SEC)
            .half_open_probes(1)
    })
    .unwrap();
    assert_eq!(
        (b.metrics().calls, b.metrics().failures),
        (4, 1),
        "the window is kept"
    );
    outcomes(&b, "S"); // 1 of 4 = 25 %: trips under the new threshold
    assert_eq!(b.state(), Open);
    let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
    assert!(
        wait >= 20 * SEC && wait < 20 * SEC + TICK,
        "the new open period: {wait:?}"
    );
    clock.advance(wait);
    b.try_acquire().unwrap().success(); // one probe decides now
    assert_eq!(b.state(), Closed);
    assert_eq!(
        log.take(),
        vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
    assert_eq!(b.metrics().refused, 1, "counters are kept");
}

#[test]
fn a_reconfigure_the_live_breaker_cannot_take_is_an_error_that_changes_nothing() {
    let (b, _, _) = breaker(4, 4);
    let field = |r: Result<(), crate::error::ConfigError>| r.unwrap_err().field();
    assert_eq!(field(b.reconfigure(|c| c.count_window(8))), "count_window");
    assert_eq!(
        field(b.reconfigure(|c| c.time_window(10 * SEC, 10))),
        "count_window"
    );
    assert_eq!(field(b.reconfigure(|c| c.name("other"))), "name");
    assert_eq!(
        field(b.reconfigure(|c| c.on_state_change(|_| {}))),
        "on_state_change"
    );
    assert_eq!(field(b.reconfigure(|c| c.on_breach(|_| {}))), "on_breach");
    assert_eq!(
        field(b.reconfigure(|c| c.failure_rate_threshold(1.5))),
        "failure_rate_threshold"
    );
    assert_eq!(
        field(b.reconfigure(|c| c.failure_count_threshold(5))),
        "failure_count_threshold"
    );
    // Nothing changed: 2 failures of 4 still trip at 50 %.
    outcomes(&b, "SSFF");
    assert_eq!(b.state(), Open);
}

#[test]
fn a_slow_call_rule_set_at_run_time_never_counts_earlier_permits_as_slow() {
    let (b, clock, _) = breaker(2, 2);
    let before = b.try_acquire().unwrap(); // taken without reading the clock
    b.reconfigure(|c| c.slow_calls(SEC, 1.0)).unwrap();
    clock.advance(10 * SEC);
    before.success();
    let slow = b.try_acquire().unwrap();
    clock.advance(2 * SEC);
    slow.success();
    let m = b.metrics();
    assert_eq!((m.calls, m.slow_calls), (2, 1));
    assert_eq!(
        m.state, Closed,
        "1 slow of 2 is under a 100 % slow-call rate"
    );
    b.reconfigure(|c| c.slow_calls(SEC, 0.5)).unwrap();
    let slow = b.try_acquire().unwrap();
    clock.advance(2 * SEC);
    slow.success();
    assert_eq!(b.state(), Open);
}

#[test]
fn successes_deferred_in_a_full_count_window_land_before_the_next_failure() {
    let (b, _clock, log) = breaker(4, 4);
    // SSSS F: one failure in four. Each success after it is deferred (25 % breaches nothing);
    // the next failure claims them first, so the window is S S S F (25 %), not S S F F.
    outcomes(&b, "SSSSF");
    outcomes(&b, "SSS");
    outcomes(&b, "F");
    assert_eq!(b.state(), Closed);
    assert_eq!((b.metrics().calls, b.metrics().failures), (4, 1));
    // One more failure: S S F F, 50 %, trips on this very call.
    outcomes(&b, "F");
    assert_eq!(b.state(), Open);
    assert_eq!(log.take(), vec![(Closed, Open)]);
}

#[test]
fn a_count_window_whose_failures_age_out_through_deferred_successes_is_clean_again() {
    let (b, _clock, _log) = breaker(8, 8);
    outcomes(&b, "SSSSSSSF");
    // Eight successes evict the failure; deferred, they are claimed by the one that fills the
    // thread's cell (a window of 8 defers at most 8 per cell), which finds the window clean.
    outcomes(&b, "SSSSSSSS");
    let w = b.word.load(Ordering::Acquire);
    assert!(state::is_clean(w, state::generation(w)));
    assert_eq!((b.metrics().calls, b.metrics().failures), (8, 0));
}

#[test]
fn a_failure_that_trips_nothing_writes_the_shared_word_only_to_clear_clean() {
    let (b, _, _) = breaker(4, 4);
    outcomes(&b, "SSSS");
    let clean = b.word.load(Ordering::Acquire);
    assert_ne!(
        clean & state::CLEAN,
        0,
        "a full window of successes is marked clean"
    );
    outcomes(&b, "F");
    let dirty = b.word.load(Ordering::Acquire);
    assert_eq!(
        dirty,
        clean & !state::CLEAN,
        "the failure clears CLEAN and nothing else"
    );
    // Failures and successes below the threshold (1 failure in 4) leave the word as it is, so
    // admissions on other cores keep reading it from their caches.
    outcomes(&b, "SSSFSS");
    assert_eq!(b.word.load(Ordering::Acquire), dirty);
    assert_eq!(b.state(), Closed);
    // Once the last failure is evicted, a success marks the window clean again.
    outcomes(&b, "SS");
    assert_eq!(b.word.load(Ordering::Acquire), clean);
}

#[test]
fn a_metrics_only_failure_still_bumps_seq() {
    let b = CircuitBreaker::builder()
        .clock(ManualClock::new())
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(0.9)
        .metrics_only(true)
        .build()
        .unwrap();
    outcomes(&b, "SSSF");
    let before = b.word.load(Ordering::Acquire);
    outcomes(&b, "F");
    let after = b.word.load(Ordering::Acquire);
    // 2 failures in 4 breach nothing: only SEQ moved, which keeps a success that looked before
    // this failure from clearing a later `BREACHED`.
    assert_ne!(after, before);
    assert_eq!(after & state::STATE_MASK, state::CLOSED);
    assert_eq!(b.metrics().breaches, 0);
}
