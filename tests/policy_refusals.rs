//! The policy: each refusal reason, in the layer order, the fallback, and what each layer holds
//! while the operation runs. Time is a `ManualClock`, moved on by the timers' sleeps; nothing sleeps.

use futures::executor::block_on;
use resile::backoff::{Backoff, Jitter};
use resile::breaker::{CircuitBreaker, State};
use resile::budget::RetryBudget;
use resile::bulkhead::{Bulkhead, BulkheadError};
use resile::classify::RetryIf;
use resile::clock::{Clock, ManualClock, SystemClock};
use resile::drain::{DrainRefused, Drainer};
use resile::policy::{Policy, PolicyError};
use resile::retry::Retry;
use resile::timer::{Sleep, Timer};
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BACKOFF: Duration = Duration::from_millis(100);

struct Parts {
    clock: ManualClock,
    drainer: Arc<Drainer<ManualClock>>,
    bulkhead: Arc<Bulkhead<ManualClock>>,
    breaker: Arc<CircuitBreaker<ManualClock>>,
    budget: Arc<RetryBudget<ManualClock>>,
}

fn parts(max_retries: u32) -> Parts {
    let clock = ManualClock::new();
    Parts {
        drainer: Arc::new(Drainer::builder().clock(clock.clone()).build().unwrap()),
        bulkhead: Arc::new(
            Bulkhead::builder()
                .name("db")
                .limit(1)
                .clock(clock.clone())
                .build()
                .unwrap(),
        ),
        breaker: Arc::new(
            CircuitBreaker::builder()
                .name("db")
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(0.5)
                .open_for(Duration::from_secs(10))
                .clock(clock.clone())
                .build()
                .unwrap(),
        ),
        budget: Arc::new(
            RetryBudget::builder()
                .max_retries(max_retries)
                .window(Duration::from_secs(60))
                .clock(clock.clone())
                .build()
                .unwrap(),
        ),
        clock,
    }
}

/// The retry under test: retries every error but "bad request".
type TestRetry = Retry<ManualClock, RetryIf<fn(&&'static str) -> bool>>;

fn retry(p: &Parts, attempts: u32) -> TestRetry {
    Retry::builder()
        .max_attempts(attempts)
        .backoff(
            Backoff::builder()
                .constant(BACKOFF)
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .budget(p.budget.clone())
        .deadline(Duration::from_secs(1))
        .clock(p.clock.clone())
        .timer(p.clock.clone())
        .retry_if((|e: &&str| *e != "bad request") as fn(&&'static str) -> bool)
        .build()
        .unwrap()
}

macro_rules! full_policy {
    ($p:expr, $attempts:expr) => {
        Policy::builder()
            .drainer($p.drainer.clone())
            .bulkhead($p.bulkhead.clone())
            .breaker($p.breaker.clone())
            .retry(retry(&$p, $attempts))
            .build()
            .unwrap()
    };
}

#[test]
fn success_after_retries_holds_guard_and_permit_for_the_whole_call() {
    let p = parts(10);
    let policy = full_policy!(p, 3);
    let calls = Cell::new(0);
    let out = policy.call(|| {
        calls.set(calls.get() + 1);
        // Held across attempts, released after.
        assert_eq!(p.drainer.in_flight(), 1);
        assert_eq!(p.bulkhead.metrics().in_flight, 1);
        if calls.get() < 3 { Err("busy") } else { Ok(7) }
    });
    assert_eq!(out, Ok(7));
    assert_eq!(calls.get(), 3);
    assert_eq!(p.drainer.in_flight(), 0);
    assert_eq!(p.bulkhead.metrics().in_flight, 0);
    let m = p.budget.metrics();
    assert_eq!((m.deposits, m.retries_granted), (1, 2));
    let b = p.breaker.metrics();
    assert_eq!((b.calls, b.failures), (3, 2));
    // Two backoffs of 100 ms passed on the manual clock.
    assert_eq!(Duration::from_nanos(p.clock.now()), 2 * BACKOFF);
}

#[test]
fn draining_refuses_before_anything_else() {
    let p = parts(10);
    let policy = full_policy!(p, 3);
    p.drainer.start_draining();
    let ran = Cell::new(false);
    let e = policy
        .call(|| {
            ran.set(true);
            Ok::<_, &str>(1)
        })
        .unwrap_err();
    assert_eq!(e, PolicyError::Drain(DrainRefused::Draining));
    assert!(e.is_refused_before_call());
    assert!(!ran.get());
    // No later layer was touched: no bulkhead refusal, no budget deposit.
    assert_eq!(p.bulkhead.metrics().refused, 0);
    assert_eq!(p.budget.metrics().deposits, 0);
}

#[test]
fn a_full_bulkhead_fails_fast() {
    let p = parts(10);
    let policy = full_policy!(p, 3);
    let _held = p.bulkhead.try_acquire().unwrap();
    let e = policy.call(|| Ok::<_, &str>(1)).unwrap_err();
    assert_eq!(e, PolicyError::Bulkhead(BulkheadError::Full { limit: 1 }));
    assert_eq!(e.attempts(), 0);
    // The drain guard was given back.
    assert_eq!(p.drainer.in_flight(), 0);
}

#[test]
fn an_open_breaker_refuses_with_retry_after_and_is_not_retried() {
    let p = parts(10);
    let policy = full_policy!(p, 3);
    for _ in 0..4 {
        p.breaker.try_acquire().unwrap().failure();
    }
    assert_eq!(p.breaker.state(), State::Open);
    let ran = Cell::new(false);
    let e = policy
        .call(|| {
            ran.set(true);
            Ok::<_, &str>(1)
        })
        .unwrap_err();
    let PolicyError::Breaker { open, attempts } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((open.state(), *attempts), (State::Open, 0));
    assert!(e.retry_after().unwrap() >= Duration::from_secs(10));
    assert!(!ran.get());
    // A refusal is not retried: no retry withdrawn.
    assert_eq!(p.budget.metrics().retries_granted, 0);
}

#[test]
fn the_breaker_opening_mid_call_ends_the_retries() {
    let p = parts(10);
    let policy = full_policy!(p, 10);
    // Three failures already in the window: the next failure opens the breaker.
    for _ in 0..3 {
        p.breaker.try_acquire().unwrap().failure();
    }
    let calls = Cell::new(0);
    let e = policy
        .call(|| {
            calls.set(calls.get() + 1);
            Err::<u8, _>("timeout")
        })
        .unwrap_err();
    assert!(e.is_breaker_open(), "{e:?}");
    assert_eq!(e.attempts(), 1);
    assert_eq!(calls.get(), 1);
}

#[test]
fn an_exhausted_budget_fails_fast_with_the_last_error() {
    let p = parts(1);
    let policy = full_policy!(p, 5);
    let calls = Cell::new(0);
    let e = policy
        .call(|| {
            calls.set(calls.get() + 1);
            Err::<u8, _>("busy")
        })
        .unwrap_err();
    // One retry in the budget: two attempts, then the budget refuses.
    assert_eq!(
        e,
        PolicyError::BudgetExhausted {
            attempts: 2,
            last: "busy"
        }
    );
    assert_eq!(calls.get(), 2);
    assert_eq!(p.budget.metrics().retries_refused, 1);
}

#[test]
fn the_deadline_stops_retries() {
    let p = parts(100);
    let policy = full_policy!(p, 100);
    let calls = Cell::new(0);
    let e = policy
        .call(|| {
            calls.set(calls.get() + 1);
            p.clock.advance(Duration::from_millis(200)); // each attempt takes 200 ms
            Err::<u8, _>("slow")
        })
        .unwrap_err();
    // 1 s deadline; each round is 200 ms + 100 ms backoff: attempts start at 0, 300, 600 ms;
    // after the third (at 800 ms) a backoff would end at 900 ms, and the fourth attempt at 1.1 s.
    assert!(
        matches!(
            e,
            PolicyError::DeadlineExceeded {
                last: Some("slow"),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.attempts() >= 2 && e.attempts() <= 4, "{e:?}");
}

#[test]
fn the_operations_own_error_after_the_last_attempt() {
    let p = parts(100);
    let policy = full_policy!(p, 2);
    let e = policy.call(|| Err::<u8, _>("busy")).unwrap_err();
    assert_eq!(
        e,
        PolicyError::Failed {
            attempts: 2,
            last: "busy"
        }
    );
    assert_eq!(e.to_string(), "failed after 2 attempts: busy".to_string());
    // An error the classifier says is not worth retrying ends at once.
    let e = policy.call(|| Err::<u8, _>("bad request")).unwrap_err();
    assert_eq!(
        e,
        PolicyError::Failed {
            attempts: 1,
            last: "bad request"
        }
    );
}

#[test]
fn the_fallback_answers_while_the_breaker_is_open_and_lets_other_errors_through() {
    let p = parts(100);
    let policy = Policy::builder()
        .breaker(p.breaker.clone())
        .retry(retry(&p, 2))
        .fallback(|e: &PolicyError<&str>| e.is_breaker_open().then_some("cached"))
        .build()
        .unwrap();
    // Closed: errors reach the caller.
    let e = policy.call(|| Err::<&str, _>("timeout")).unwrap_err();
    assert_eq!(e.attempts(), 2);
    // Two more failures open the breaker (4 in the window) on the call's last attempt: the
    // call ends with its own error, which the fallback lets through.
    let v = policy.call(|| Err::<&str, _>("timeout"));
    assert_eq!(p.breaker.state(), State::Open);
    assert_eq!(v.unwrap_err().last(), Some(&"timeout"));
    let ran = Cell::new(false);
    let v = policy.call(|| {
        ran.set(true);
        Ok("fresh")
    });
    assert_eq!(v, Ok("cached"));
    assert!(!ran.get());
    // After the open period a probe goes through and the fresh value comes back.
    p.clock.advance(Duration::from_secs(11));
    let v = policy.call(|| Ok("fresh"));
    assert_eq!(v, Ok("fresh"));
}

#[test]
fn a_policy_without_layers_runs_once() {
    let policy = Policy::builder().build().unwrap();
    let calls = Cell::new(0);
    let e = policy
        .call(|| {
            calls.set(calls.get() + 1);
            Err::<u8, _>("x")
        })
        .unwrap_err();
    assert_eq!(
        e,
        PolicyError::Failed {
            attempts: 1,
            last: "x"
        }
    );
    assert_eq!(calls.get(), 1);
}

#[test]
fn async_call_retries_on_the_retrys_timer() {
    let p = parts(10);
    let policy = full_policy!(p, 3);
    let calls = Cell::new(0);
    let out = block_on(policy.call_async(|| {
        calls.set(calls.get() + 1);
        let r = if calls.get() < 3 { Err("busy") } else { Ok(9) };
        async move { r }
    }));
    assert_eq!(out, Ok(9));
    assert_eq!(Duration::from_nanos(p.clock.now()), 2 * BACKOFF);
    assert_eq!(p.drainer.in_flight(), 0);
    assert_eq!(p.bulkhead.metrics().in_flight, 0);
}

/// A timer that logs each sleep it is asked for, then moves the manual clock on by it.
#[derive(Clone)]
struct LoggingTimer {
    clock: ManualClock,
    asked: Arc<Mutex<Vec<Duration>>>,
}

impl Timer for LoggingTimer {
    fn sleep(&self, d: Duration) -> Sleep {
        self.asked.lock().unwrap().push(d);
        self.clock.advance(d);
        Sleep::new(std::future::ready(()))
    }
}

/// A policy of one bulkhead of one slot that waits up to `max_wait`, on a manual clock and a
/// timer that logs what it is asked for.
fn waiting_bulkhead_policy(
    max_wait: Duration,
) -> (
    LoggingTimer,
    Arc<Bulkhead<ManualClock>>,
    Policy<SystemClock, ManualClock>,
) {
    let clock = ManualClock::new();
    let timer = LoggingTimer {
        clock: clock.clone(),
        asked: Arc::default(),
    };
    let bulkhead = Arc::new(
        Bulkhead::builder()
            .name("db")
            .limit(1)
            .max_wait(max_wait)
            .clock(clock)
            .timer(timer.clone())
            .build()
            .unwrap(),
    );
    let policy = Policy::builder()
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    (timer, bulkhead, policy)
}

#[test]
fn async_bulkhead_wait_is_bounded_by_max_wait_on_the_bulkheads_timer() {
    let (timer, bulkhead, policy) = waiting_bulkhead_policy(Duration::from_millis(50));
    let _held = bulkhead.try_acquire().unwrap();
    let e = block_on(policy.call_async(|| async { Ok::<u8, &str>(1) })).unwrap_err();
    assert!(
        matches!(e, PolicyError::Bulkhead(BulkheadError::TimedOut { .. })),
        "{e:?}"
    );
    assert_eq!(*timer.asked.lock().unwrap(), [Duration::from_millis(50)]);
    assert_eq!(bulkhead.metrics().waiting, 0);
}

#[test]
fn async_refusals_match_the_sync_ones() {
    let p = parts(1);
    let policy = full_policy!(p, 3);
    p.budget.try_withdraw().unwrap(); // spend the only retry
    let e = block_on(policy.call_async(|| async { Err::<u8, _>("busy") })).unwrap_err();
    assert_eq!(
        e,
        PolicyError::BudgetExhausted {
            attempts: 1,
            last: "busy"
        }
    );
    p.breaker.force_open();
    let e = block_on(policy.call_async(|| async { Ok::<u8, &str>(1) })).unwrap_err();
    assert!(e.is_breaker_open() && e.retry_after().is_none());
    p.drainer.start_draining();
    let e = block_on(policy.call_async(|| async { Ok::<u8, &str>(1) })).unwrap_err();
    assert!(matches!(e, PolicyError::Drain(DrainRefused::Draining)));
}

#[test]
fn async_an_open_breaker_refuses_before_the_operation_is_even_made() {
    let p = parts(10);
    let policy = full_policy!(p, 3);
    p.breaker.force_open();
    let made = Cell::new(0);
    let e = block_on(policy.call_async(|| {
        // Work done eagerly, when the future is made (building and sending the request).
        made.set(made.get() + 1);
        let r = Ok::<u8, &str>(1);
        async move { r }
    }))
    .unwrap_err();
    assert!(e.is_breaker_open(), "{e:?}");
    assert_eq!(
        made.get(),
        0,
        "the operation was made while the breaker was open"
    );
}

#[test]
fn async_no_timer_is_asked_for_when_a_slot_is_free() {
    let (timer, bulkhead, policy) = waiting_bulkhead_policy(Duration::from_secs(1));
    assert_eq!(
        block_on(policy.call_async(|| async { Ok::<u8, &str>(1) })),
        Ok(1)
    );
    assert!(timer.asked.lock().unwrap().is_empty(), "no wait, no timer");
    assert_eq!(timer.clock.now(), 0);
    // The same for the bulkhead's own call_async.
    assert_eq!(block_on(bulkhead.call_async(async { 2 })), Ok(2));
    assert!(timer.asked.lock().unwrap().is_empty());
}

#[test]
fn a_request_the_breaker_refuses_deposits_nothing_in_the_budget() {
    let p = parts(10);
    let policy = full_policy!(p, 3);
    assert_eq!(policy.call(|| Ok::<_, &str>(1)), Ok(1));
    assert_eq!(
        p.budget.metrics().deposits,
        1,
        "a request that ran deposits"
    );
    p.breaker.force_open();
    for _ in 0..5 {
        assert!(
            policy
                .call(|| Ok::<_, &str>(1))
                .unwrap_err()
                .is_breaker_open()
        );
        let e = block_on(policy.call_async(|| async { Ok::<u8, &str>(1) })).unwrap_err();
        assert!(e.is_breaker_open());
    }
    assert_eq!(
        p.budget.metrics().deposits,
        1,
        "refused before reaching the dependency: no deposit"
    );
}

#[test]
fn async_attempts_that_hang_time_out_count_as_failures_and_are_retried() {
    let p = parts(10);
    let timer = LoggingTimer {
        clock: p.clock.clone(),
        asked: Arc::default(),
    };
    let policy = Policy::builder()
        .breaker(p.breaker.clone())
        .retry(retry(&p, 3))
        .attempt_timeout(Duration::from_millis(100))
        .timer(timer.clone())
        .build()
        .unwrap();
    let made = Cell::new(0);
    let e = block_on(policy.call_async(|| {
        made.set(made.get() + 1);
        std::future::pending::<Result<u8, &str>>()
    }))
    .unwrap_err();
    assert!(
        matches!(e, PolicyError::TimedOut { attempts: 3, after } if after == Duration::from_millis(100)),
        "{e:?}"
    );
    assert_eq!(made.get(), 3, "each timed-out attempt was retried");
    assert_eq!(p.breaker.metrics().failures, 3, "each counted as a failure");
    assert_eq!(
        *timer.asked.lock().unwrap(),
        [Duration::from_millis(100); 3]
    );
    // An attempt that answers in time never asks the timer.
    timer.asked.lock().unwrap().clear();
    assert_eq!(
        block_on(policy.call_async(|| async { Ok::<u8, &str>(7) })),
        Ok(7)
    );
    assert!(timer.asked.lock().unwrap().is_empty());
}

#[test]
fn a_zero_attempt_timeout_is_refused_by_the_builder() {
    let e = Policy::builder()
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "attempt_timeout");
}

#[test]
fn an_async_attempt_in_flight_at_the_deadline_is_cut_counted_and_not_retried() {
    let p = parts(10);
    // No timer of its own: the attempt limits sleep on the retry's (the manual clock).
    let policy = Policy::builder()
        .breaker(p.breaker.clone())
        .retry(retry(&p, 3))
        .attempt_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let made = Cell::new(0);
    let e = block_on(policy.call_async(|| {
        made.set(made.get() + 1);
        std::future::pending::<Result<u8, &str>>()
    }))
    .unwrap_err();
    // 0-500 ms: timed out, retried after the 100 ms backoff; the second attempt has 400 ms of
    // the 1 s deadline left, and is cut at the deadline; no third.
    assert!(
        matches!(
            e,
            PolicyError::DeadlineExceeded {
                attempts: 2,
                last: None
            }
        ),
        "{e:?}"
    );
    assert!(e.is_timeout() && e.last().is_none());
    assert_eq!(e.to_string(), "gave up after 2 attempts: deadline exceeded");
    assert_eq!(p.clock.now(), 1_000_000_000);
    assert_eq!(made.get(), 2);
    assert_eq!(p.breaker.metrics().failures, 2, "the timed-out and the cut");
}

#[test]
fn without_an_attempt_timeout_the_deadline_still_cuts_an_async_attempt() {
    let p = parts(10);
    let policy = Policy::builder()
        .breaker(p.breaker.clone())
        .retry(retry(&p, 3))
        .build()
        .unwrap();
    let e = block_on(policy.call_async(std::future::pending::<Result<u8, &str>>)).unwrap_err();
    assert!(
        matches!(
            e,
            PolicyError::DeadlineExceeded {
                attempts: 1,
                last: None
            }
        ),
        "{e:?}"
    );
    assert_eq!(p.clock.now(), 1_000_000_000);
    assert_eq!(p.breaker.metrics().failures, 1);
    // An attempt that answers in time is not affected.
    assert_eq!(
        block_on(policy.call_async(|| async { Ok::<u8, &str>(7) })),
        Ok(7)
    );
}

#[test]
fn a_timed_out_attempt_with_no_time_left_for_a_retry_ends_at_the_deadline() {
    let p = parts(10);
    let policy = Policy::builder()
        .retry(retry(&p, 3))
        .attempt_timeout(Duration::from_millis(950))
        .build()
        .unwrap();
    let e = block_on(policy.call_async(std::future::pending::<Result<u8, &str>>)).unwrap_err();
    // Timed out at 950 ms; the backoff would end at 1.05 s, past the deadline.
    assert!(
        matches!(
            e,
            PolicyError::DeadlineExceeded {
                attempts: 1,
                last: None
            }
        ),
        "{e:?}"
    );
    assert_eq!(p.clock.now(), 950_000_000);
}
