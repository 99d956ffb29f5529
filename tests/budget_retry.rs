//! The retry helper against a ManualClock and a test timer that advances it.

use resile::backoff::{Backoff, Jitter};
use resile::budget::RetryBudget;
use resile::classify::{Classify, Verdict};
use resile::clock::{Clock, ManualClock};
use resile::retry::{Retry, RetryError};
use resile::timer::{Sleep, Timer};
use std::cell::RefCell;
use std::sync::{Arc, Mutex};
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

/// One sleep the retry loop asked of its timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slept {
    duration: Duration,
    /// `blocking_sleep` (the sync loop) rather than an awaited `sleep` (the async one).
    blocking: bool,
    /// The budget's balance while the sleep ran, if the timer watches one.
    balance: Option<u64>,
}

/// A test timer: each sleep is logged, then moves the manual clock on by its duration plus
/// `late` (a late wake-up). An async sleep does so only when polled, so the loop must await it.
#[derive(Clone)]
struct FakeTimer {
    clock: ManualClock,
    late: Duration,
    budget: Option<Arc<RetryBudget<ManualClock>>>,
    log: Arc<Mutex<Vec<Slept>>>,
}

impl FakeTimer {
    fn new(clock: &ManualClock) -> Self {
        Self {
            clock: clock.clone(),
            late: Duration::ZERO,
            budget: None,
            log: Arc::default(),
        }
    }

    fn late(mut self, late: Duration) -> Self {
        self.late = late;
        self
    }

    fn watching(mut self, budget: &Arc<RetryBudget<ManualClock>>) -> Self {
        self.budget = Some(budget.clone());
        self
    }

    fn tick(&self, duration: Duration, blocking: bool) {
        self.log.lock().unwrap().push(Slept {
            duration,
            blocking,
            balance: self.budget.as_ref().map(|b| b.balance()),
        });
        self.clock.advance(duration + self.late);
    }

    /// The sleeps logged since the last call.
    fn take(&self) -> Vec<Slept> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// The durations of the sleeps logged since the last call, checking that each was of the
    /// expected kind.
    fn durations(&self, blocking: bool) -> Vec<Duration> {
        self.take()
            .into_iter()
            .map(|s| {
                assert_eq!(s.blocking, blocking, "{s:?}");
                s.duration
            })
            .collect()
    }
}

impl Timer for FakeTimer {
    fn sleep(&self, duration: Duration) -> Sleep {
        let this = self.clone();
        Sleep::new(async move { this.tick(duration, false) })
    }

    fn blocking_sleep(&self, duration: Duration) {
        self.tick(duration, true);
    }
}

#[test]
fn succeeds_after_retries_and_sleeps_the_backoff() {
    let clock = ManualClock::new();
    let timer = FakeTimer::new(&clock);
    let retry = Retry::builder()
        .max_attempts(5)
        .backoff(constant(100 * MS))
        .clock(clock.clone())
        .timer(timer.clone())
        .rng_seed(1)
        .build()
        .unwrap();
    let mut calls = 0;
    let out = retry.run(|| {
        calls += 1;
        if calls < 3 { Err("busy") } else { Ok("done") }
    });
    assert_eq!(out, Ok("done"));
    assert_eq!(calls, 3);
    assert_eq!(timer.durations(true), vec![100 * MS, 100 * MS]);
    assert_eq!(clock.now(), 200_000_000);
}

#[test]
fn gives_up_after_max_attempts_with_the_last_error() {
    let clock = ManualClock::new();
    let timer = FakeTimer::new(&clock);
    let retry = Retry::builder()
        .max_attempts(4)
        .backoff(constant(MS))
        .clock(clock.clone())
        .timer(timer.clone())
        .rng_seed(2)
        .build()
        .unwrap();
    let mut calls = 0;
    let out: Result<(), _> = retry.run(|| {
        calls += 1;
        Err(calls)
    });
    assert_eq!(
        out,
        Err(RetryError::Exhausted {
            attempts: 4,
            last: 4
        })
    );
    let sleeps = timer.durations(true).len();
    assert_eq!((calls, sleeps), (4, 3));
}

#[test]
fn budget_is_debited_before_the_wait_and_refusal_ends_the_run() {
    let clock = ManualClock::new();
    let b = budget(&clock, 2);
    let timer = FakeTimer::new(&clock).watching(&b);
    let retry = Retry::builder()
        .max_attempts(10)
        .backoff(constant(SEC))
        .budget(b.clone())
        .clock(clock.clone())
        .timer(timer.clone())
        .rng_seed(3)
        .build()
        .unwrap();
    let out: Result<(), _> = retry.run(|| Err("down"));
    assert_eq!(
        out,
        Err(RetryError::BudgetExhausted {
            attempts: 3,
            last: "down"
        })
    );
    // Each retry was already withdrawn while its backoff was running (envoy#30205).
    let balances_while_sleeping: Vec<_> = timer.take().iter().map(|s| s.balance).collect();
    assert_eq!(balances_while_sleeping, vec![Some(1), Some(0)]);
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
        .timer(clock.clone())
        .rng_seed(4)
        .build()
        .unwrap();
    let mut starts = Vec::new();
    let out: Result<(), _> = retry.run(|| {
        starts.push(clock.now());
        clock.advance(500 * MS); // each attempt takes 0.5 s
        Err("slow")
    });
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
        .timer(clock.clone())
        .rng_seed(5)
        .build()
        .unwrap();
    let mut calls = 0;
    let out: Result<(), _> = retry.run(|| {
        calls += 1;
        Err(())
    });
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
    let timer = FakeTimer::new(&clock).late(30 * MS);
    let retry = Retry::builder()
        .max_attempts(10)
        .backoff(constant(100 * MS))
        .deadline(250 * MS)
        .budget(b.clone())
        .clock(clock.clone())
        .timer(timer.clone())
        .rng_seed(6)
        .build()
        .unwrap();
    let starts = RefCell::new(Vec::new());
    let attempt = || {
        starts.borrow_mut().push(clock.now());
        Err::<(), _>("busy")
    };
    let out = retry.run(attempt);
    let expected = Err(RetryError::DeadlineExceeded {
        attempts: 2,
        last: "busy",
    });
    assert_eq!(out, expected);
    assert_eq!(starts.take(), vec![0, 130_000_000]);
    assert_eq!(timer.durations(true), vec![100 * MS, 100 * MS]);
    // Paid before its wait, as every retry is: the budget errs against the retrier.
    assert_eq!(b.metrics().retries_granted, 2);

    let t0 = clock.now();
    let out = futures::executor::block_on(retry.run_async(|| std::future::ready(attempt())));
    assert_eq!(out, expected);
    assert_eq!(starts.take(), vec![t0, t0 + 130_000_000]);
    assert_eq!(timer.durations(false), vec![100 * MS, 100 * MS]);
}

#[test]
fn non_retryable_errors_end_the_run_without_debit() {
    let clock = ManualClock::new();
    let b = budget(&clock, 5);
    let retry = Retry::builder()
        .budget(b.clone())
        .clock(clock.clone())
        .timer(clock.clone())
        .rng_seed(6)
        .retry_if(|e: &u16| *e >= 500)
        .build()
        .unwrap();
    let mut codes = vec![404u16, 503, 503].into_iter().rev();
    let out: Result<(), _> = retry.run(|| Err(codes.next().unwrap()));
    assert_eq!(
        out,
        Err(RetryError::NotRetryable {
            attempts: 3,
            last: 404
        })
    );
    assert_eq!(b.metrics().retries_granted, 2);
}

/// Every error is a retryable failure carrying the server's hint of when to retry.
struct Hinted;
impl<T> Classify<T, Duration> for Hinted {
    fn verdict(&self, result: Result<&T, &Duration>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::Failure,
        }
    }
    fn retry_after(&self, result: Result<&T, &Duration>) -> Option<Duration> {
        result.err().copied()
    }
}

#[test]
fn server_hints_replace_the_backoff_clamped_to_bounds() {
    let clock = ManualClock::new();
    let timer = FakeTimer::new(&clock);
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
        .clock(clock.clone())
        .timer(timer.clone())
        .rng_seed(7)
        .classify(Hinted)
        .build()
        .unwrap();
    let mut hints = vec![3600 * SEC, 2 * SEC, MS].into_iter().rev();
    let _ = retry.run(|| Err::<(), _>(hints.next().unwrap()));
    assert_eq!(timer.durations(true), vec![50 * MS, 2 * SEC]);
}

#[test]
fn async_run_sleeps_on_the_timer() {
    let clock = ManualClock::new();
    let b = budget(&clock, 10);
    let timer = FakeTimer::new(&clock);
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
        .timer(timer.clone())
        .rng_seed(8)
        .build()
        .unwrap();
    let mut calls = 0;
    let out = futures::executor::block_on(retry.run_async(|| {
        calls += 1;
        let r = if calls < 4 { Err("busy") } else { Ok(calls) };
        async move { r }
    }));
    assert_eq!(out, Ok(4));
    let slept = timer.durations(false);
    assert_eq!(slept.len(), 3);
    for (i, d) in slept.iter().enumerate() {
        assert!(*d <= retry.backoff().ceiling(i as u32 + 1));
    }
    // The awaited sleeps moved the clock (the deadline's) by exactly what was asked.
    assert_eq!(
        clock.now(),
        slept.iter().sum::<Duration>().as_nanos() as u64
    );
    assert_eq!(b.metrics().retries_granted, 3);
    // The async path gives up for the same reasons as the sync one.
    let out: Result<(), _> = futures::executor::block_on(retry.run_async(|| async { Err("down") }));
    assert_eq!(out.unwrap_err().attempts(), 5);
    assert_eq!(timer.durations(false).len(), 4);
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
