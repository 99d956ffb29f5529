//! The policy's breaker classification: an ignored error never trips the breaker (and is still
//! retried and returned), an error classified as a success counts as one, and a failure trips it.
//! Sync and async; time is a `ManualClock`, which the retry's backoff moves on as its timer.

use futures::executor::block_on;
use resile::backoff::{Backoff, Jitter};
use resile::breaker::{CircuitBreaker, State};
use resile::classify::Verdict;
use resile::clock::ManualClock;
use resile::policy::{Policy, PolicyError};
use resile::retry::Retry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum DbError {
    /// The caller's fault: says nothing about the database.
    BadRequest,
    /// An expected answer, as good as a success for the breaker.
    NotFound,
    /// The database failed.
    Timeout,
}

fn class(r: Result<&(), &DbError>) -> Verdict {
    match r {
        Ok(()) => Verdict::Success,
        Err(DbError::BadRequest) => Verdict::Ignore,
        Err(DbError::NotFound) => Verdict::Success,
        Err(DbError::Timeout) => Verdict::Failure,
    }
}

/// The policy under test: a breaker and a retry on the manual clock, classified by [`class`].
type DbPolicy = Policy<
    resile::clock::SystemClock,
    resile::clock::SystemClock,
    ManualClock,
    ManualClock,
    resile::classify::ErrIsFailure,
    resile::policy::NoFallback,
    fn(Result<&(), &DbError>) -> Verdict,
>;

fn setup() -> (ManualClock, Arc<CircuitBreaker<ManualClock>>, DbPolicy) {
    let clock = ManualClock::new();
    let breaker = Arc::new(
        CircuitBreaker::builder()
            .name("db")
            .count_window(4)
            .minimum_calls(4)
            .failure_rate_threshold(0.5)
            .open_for(Duration::from_secs(10))
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(
            Backoff::builder()
                .constant(Duration::from_millis(10))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .clock(clock.clone())
        .timer(clock.clone())
        .build()
        .unwrap();
    let policy = Policy::builder()
        .breaker(breaker.clone())
        .retry(retry)
        .classify(class as fn(Result<&(), &DbError>) -> Verdict)
        .build()
        .unwrap();
    (clock, breaker, policy)
}

#[test]
fn an_ignored_error_never_trips_the_breaker_but_is_still_retried_and_returned() {
    let (_, breaker, policy) = setup();
    for _ in 0..50 {
        let mut runs = 0;
        let r = policy.call(|| {
            runs += 1;
            Err::<(), _>(DbError::BadRequest)
        });
        assert_eq!(
            r,
            Err(PolicyError::Failed {
                attempts: 3,
                last: DbError::BadRequest
            })
        );
        assert_eq!(runs, 3);
    }
    assert_eq!(breaker.state(), State::Closed);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (0, 0));
}

#[test]
fn a_failure_trips_the_breaker() {
    let (_, breaker, policy) = setup();
    // Ignored errors in between do not dilute nor reset the failures.
    let _ = policy.call(|| Err::<(), _>(DbError::BadRequest));
    let r = policy.call(|| Err::<(), _>(DbError::Timeout));
    assert!(matches!(r, Err(PolicyError::Failed { attempts: 3, .. })));
    let _ = policy.call(|| Err::<(), _>(DbError::BadRequest));
    // The 4th failure fills the window: open, and the next attempt is refused.
    let r = policy.call(|| Err::<(), _>(DbError::Timeout));
    assert!(
        matches!(r, Err(PolicyError::Breaker { attempts: 1, .. })),
        "{r:?}"
    );
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.metrics().failures, 4);
}

#[test]
fn an_error_classified_as_success_counts_as_one() {
    let (_, breaker, policy) = setup();
    // Each NotFound is retried (the retry's classifier accepts every error) and recorded as a
    // success each time.
    for _ in 0..10 {
        let r = policy.call(|| Err::<(), _>(DbError::NotFound));
        assert_eq!(r.unwrap_err().last(), Some(&DbError::NotFound));
    }
    let m = breaker.metrics();
    assert_eq!(m.failures, 0);
    assert!(m.calls > 0);
    // A timeout among successes stays under the 50% threshold.
    let _ = policy.call({
        let mut n = 0;
        move || {
            n += 1;
            if n == 1 {
                Err(DbError::Timeout)
            } else {
                Err::<(), _>(DbError::NotFound)
            }
        }
    });
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn the_async_path_classifies_the_same_way() {
    let (_, breaker, policy) = setup();
    for _ in 0..20 {
        let r = block_on(policy.call_async(|| async { Err::<(), _>(DbError::BadRequest) }));
        assert!(matches!(
            r,
            Err(PolicyError::Failed {
                last: DbError::BadRequest,
                ..
            })
        ));
    }
    assert_eq!(
        (breaker.state(), breaker.metrics().calls),
        (State::Closed, 0)
    );
    let _ = block_on(policy.call_async(|| async { Err::<(), _>(DbError::Timeout) }));
    let r = block_on(policy.call_async(|| async { Err::<(), _>(DbError::Timeout) }));
    assert!(matches!(r, Err(PolicyError::Breaker { .. })), "{r:?}");
    assert_eq!(breaker.state(), State::Open);
}
