//! The retry helper against a ManualClock and a fake sleep that advances it.

use rand::{SeedableRng, rngs::SmallRng};
use resile::backoff::{Backoff, Jitter};
use resile::budget::RetryBudget;
use resile::clock::{Clock, ManualClock};
use resile::retry::RetryError;
use resile::retry::{Classify, Retry};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn constant(d: Duration) -> Backoff {
    Backoff::builder()
        .constant(d)
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

fn budget(clock: &ManualClock, n: u32) -> Arc<RetryBudget<ManualClock>> {
    Arc::new(
        RetryBudget::builder()
            .max_retries(n)
            .window(60 * SEC)
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
}

#[test]
fn succeeds_after_retries_and_sleeps_the_backoff() {
    let clock = ManualClock::new();
    let retry = Retry::builder()
        .max_attempts(5)
        .backoff(constant(100 * MS))
        .clock(clock.clone())
        .build()
        .unwrap();
    let slept = RefCell::new(Vec::new());
    let mut calls = 0;
    let out = retry.run_with(
        &mut SmallRng::seed_from_u64(1),
        || {
            calls += 1;
            if calls < 3 { Err("busy") } else { Ok("done") }
        },
        |d| slept.borrow_mut().push(d),
    );
    assert_eq!(out, Ok("done"));
    assert_eq!(calls, 3);
    assert_eq!(*slept.borrow(), vec![100 * MS, 100 * MS]);
}

#[test]
fn gives_up_after_max_attempts_with_the_last_error() {
    let retry = Retry::builder()
        .max_attempts(4)
        .backoff(constant(MS))
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let mut calls = 0;
    let mut sleeps = 0;
    let out: Result<(), _> = retry.run_with(
        &mut SmallRng::seed_from_u64(2),
        || {
            calls += 1;
            Err(calls)
        },
        |_| sleeps += 1,
    );
    assert_eq!(
        out,
        Err(RetryError::Exhausted {
            attempts: 4,
            last: 4
        })
    );
    assert_eq!((calls, sleeps), (4, 3));
}

#[test]
fn budget_is_debited_before_the_wait_and_refusal_ends_the_run() {
    let clock = ManualClock::new();
    let b = budget(&clock, 2);
    let retry = Retry::builder()
        .max_attempts(10)
        .backoff(constant(SEC))
        .budget(b.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut balances_while_sleeping = Vec::new();
    let out: Result<(), _> = retry.run_with(
        &mut SmallRng::seed_from_u64(3),
        || Err("down"),
        |d| {
            balances_while_sleeping.push(b.balance());
            clock.advance(d);
        },
    );
    assert_eq!(
        out,
        Err(RetryError::BudgetExhausted {
            attempts: 3,
            last: "down"
        })
    );
    // Each retry was already withdrawn while its backoff was running (envoy#30205).
    assert_eq!(balances_while_sleeping, vec![1, 0]);
    let m = b.metrics();
    assert_eq!(
        (m.deposits, m.retries_granted, m.retries_refused),
        (1, 2, 1)
    );
}

#[test]
fn deadline_bounds_all_attempts_together() {
    let clock = ManualClock::new();
    let b = budget(&clock, 100);
    let retry = Retry::builder()
        .max_attempts(100)
        .backoff(constant(SEC))
        .deadline(Duration::from_millis(3500))
        .budget(b.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut starts = Vec::new();
    let out: Result<(), _> = retry.run_with(
        &mut SmallRng::seed_from_u64(4),
        || {
            starts.push(clock.now());
            clock.advance(500 * MS); // each attempt takes 0.5 s
            Err("slow")
        },
        |d| clock.advance(d),
    );
    // t=0 fail at 0.5, wait 1 s; t=1.5 fail at 2.0, wait; t=3.0 fail at 3.5 = the deadline.
    assert_eq!(
        out,
        Err(RetryError::DeadlineExceeded {
            attempts: 3,
            last: "slow"
        })
    );
    assert_eq!(starts, vec![0, 1_500_000_000, 3_000_000_000]);
    // The retry the deadline ruled out was never withdrawn.
    assert_eq!(b.metrics().retries_granted, 2);
    // A retry whose backoff would end past the deadline is not started either.
    let clock = ManualClock::new();
    let retry = Retry::builder()
        .max_attempts(100)
        .backoff(constant(2 * SEC))
        .deadline(3 * SEC)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut calls = 0;
    let out: Result<(), _> = retry.run_with(
        &mut SmallRng::seed_from_u64(5),
        || {
            calls += 1;
            Err(())
        },
        |d| clock.advance(d),
    );
    assert_eq!(out.unwrap_err().attempts(), 2);
    assert_eq!(clock.now(), 2_000_000_000);
}

#[test]
fn no_attempt_starts_past_the_deadline_after_a_late_wakeup() {
    // A 250 ms deadline and 100 ms of backoff, but each sleep wakes 30 ms late (timer rounding,
    // a busy executor): attempts at 0 and 130 ms; the one due at 260 ms is past the deadline and
    // is not started. The same for the sync and the async loop.
    let clock = ManualClock::new();
    let b = budget(&clock, 100);
    let retry = Retry::builder()
        .max_attempts(10)
        .backoff(constant(100 * MS))
        .deadline(250 * MS)
        .budget(b.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let starts = RefCell::new(Vec::new());
    let attempt = || {
        starts.borrow_mut().push(clock.now());
        Err::<(), _>("busy")
    };
    let late = |d: Duration| clock.advance(d + 30 * MS);
    let out = retry.run_with(&mut SmallRng::seed_from_u64(6), attempt, late);
    let expected = Err(RetryError::DeadlineExceeded {
        attempts: 2,
        last: "busy",
    });
    assert_eq!(out, expected);
    assert_eq!(starts.take(), vec![0, 130_000_000]);
    // Paid before its wait, as every retry is: the budget errs against the retrier.
    assert_eq!(b.metrics().retries_granted, 2);

    let t0 = clock.now();
    let out = futures::executor::block_on(retry.run_async_with(
        SmallRng::seed_from_u64(6),
        || std::future::ready(attempt()),
        |d| {
            late(d);
            std::future::ready(())
        },
    ));
    assert_eq!(out, expected);
    assert_eq!(starts.take(), vec![t0, t0 + 130_000_000]);
}

#[test]
fn non_retryable_errors_end_the_run_without_debit() {
    let clock = ManualClock::new();
    let b = budget(&clock, 5);
    let retry = Retry::builder()
        .budget(b.clone())
        .clock(clock.clone())
        .retry_if(|e: &u16| *e >= 500)
        .build()
        .unwrap();
    let mut codes = vec![404u16, 503, 503].into_iter().rev();
    let out: Result<(), _> = retry.run_with(
        &mut SmallRng::seed_from_u64(6),
        || Err(codes.next().unwrap()),
        |d| clock.advance(d),
    );
    assert_eq!(
        out,
        Err(RetryError::NotRetryable {
            attempts: 3,
            last: 404
        })
    );
    assert_eq!(b.metrics().retries_granted, 2);
}

struct Hinted;
impl Classify<Duration> for Hinted {
    fn is_retryable(&self, _: &Duration) -> bool {
        true
    }
    fn retry_after(&self, e: &Duration) -> Option<Duration> {
        Some(*e)
    }
}

#[test]
fn server_hints_replace_the_backoff_clamped_to_bounds() {
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(
            Backoff::builder()
                .constant(10 * MS)
                .cap(SEC)
                .retry_after_bounds(50 * MS, 5 * SEC)
                .build()
                .unwrap(),
        )
        .clock(ManualClock::new())
        .retry_if(Hinted)
        .build()
        .unwrap();
    let mut hints = vec![3600 * SEC, 2 * SEC, MS].into_iter().rev();
    let mut slept = Vec::new();
    let _ = retry.run_with(
        &mut SmallRng::seed_from_u64(7),
        || Err::<(), _>(hints.next().unwrap()),
        |d| slept.push(d),
    );
    assert_eq!(slept, vec![50 * MS, 2 * SEC]);
}

#[test]
fn async_run_uses_the_callers_sleep() {
    let clock = ManualClock::new();
    let b = budget(&clock, 10);
    let retry = Retry::builder()
        .max_attempts(5)
        .backoff(
            Backoff::builder()
                .exponential(100 * MS, 2)
                .cap(SEC)
                .build()
                .unwrap(),
        )
        .budget(b.clone())
        .deadline(10 * SEC)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut calls = 0;
    let slept = RefCell::new(Vec::new());
    let out = futures::executor::block_on(retry.run_async_with(
        SmallRng::seed_from_u64(8),
        || {
            calls += 1;
            let r = if calls < 4 { Err("busy") } else { Ok(calls) };
            async move { r }
        },
        |d| {
            slept.borrow_mut().push(d);
            clock.advance(d);
            std::future::ready(())
        },
    ));
    assert_eq!(out, Ok(4));
    let slept = slept.into_inner();
    assert_eq!(slept.len(), 3);
    for (i, d) in slept.iter().enumerate() {
        assert!(*d <= retry.backoff().ceiling(i as u32 + 1));
    }
    assert_eq!(b.metrics().retries_granted, 3);
    // The async path gives up for the same reasons as the sync one.
    let out: Result<(), _> = futures::executor::block_on(retry.run_async(
        || async { Err("down") },
        |d| {
            clock.advance(d);
            std::future::ready(())
        },
    ));
    assert_eq!(out.unwrap_err().attempts(), 5);
}

#[test]
fn builder_validates() {
    let e = Retry::builder().max_attempts(0).build().unwrap_err();
    assert_eq!(e.field(), "max_attempts");
    let e = Retry::builder()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "deadline");
    // One attempt means no retry at all.
    let retry = Retry::builder().max_attempts(1).build().unwrap();
    let out: Result<(), _> = retry.run(|| Err("x"));
    assert_eq!(
        out,
        Err(RetryError::Exhausted {
            attempts: 1,
            last: "x"
        })
    );
}
