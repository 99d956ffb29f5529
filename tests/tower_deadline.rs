//! The tower stack's time limits: a deadline around the retries that cuts the attempt in flight,
//! and a timeout on each attempt inside the breaker. Every clock and timer is one `ManualClock`:
//! a sleep moves it on and ends at once, so no wall time passes and every instant is exact.
#![cfg(feature = "tower-retry")]

use futures::executor::block_on;
use resile::backoff::{Backoff, Jitter};
use resile::breaker::CircuitBreaker;
use resile::budget::RetryBudget;
use resile::clock::{Clock, ManualClock};
use resile::tower::{
    AttemptTimedOut, BoxError, BreakerLayer, DeadlineExceeded, DeadlineLayer, RetryPolicy,
    TimeoutLayer,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

const MS: u64 = 1_000_000;

/// A dependency that never answers its first `hang` calls, and answers the rest at once.
#[derive(Clone)]
struct Dependency {
    calls: Arc<AtomicU32>,
    hang: u32,
}

impl Dependency {
    fn hanging(hang: u32) -> Self {
        Self {
            calls: Arc::default(),
            hang,
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<()> for Dependency {
    type Response = &'static str;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<&'static str, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.hang {
            Box::pin(std::future::pending())
        } else {
            Box::pin(std::future::ready(Ok("answer")))
        }
    }
}

struct Parts {
    clock: ManualClock,
    breaker: Arc<CircuitBreaker<ManualClock>>,
    budget: Arc<RetryBudget<ManualClock>>,
}

impl Parts {
    fn new() -> Self {
        let clock = ManualClock::new();
        Self {
            breaker: Arc::new(
                CircuitBreaker::builder()
                    .count_window(10)
                    .minimum_calls(10) // stays closed: the tests count what it records
                    .slow_calls(Duration::from_millis(400), 1.0)
                    .clock(clock.clone())
                    .build()
                    .unwrap(),
            ),
            budget: Arc::new(
                RetryBudget::builder()
                    .max_retries(10)
                    .clock(clock.clone())
                    .build()
                    .unwrap(),
            ),
            clock,
        }
    }

    /// Three attempts, 10 ms apart, on the manual clock.
    fn retry(&self) -> RetryPolicy<ManualClock> {
        RetryPolicy::new(self.budget.clone())
            .timer(self.clock.clone())
            .max_attempts(3)
            .backoff(
                Backoff::builder()
                    .constant(Duration::from_millis(10))
                    .jitter(Jitter::None)
                    .build()
                    .unwrap(),
            )
    }

    fn deadline(&self, d: Duration) -> DeadlineLayer {
        DeadlineLayer::new(d)
            .unwrap()
            .clock(self.clock.clone())
            .timer(self.clock.clone())
    }

    fn timeout(&self, d: Duration) -> TimeoutLayer {
        TimeoutLayer::new(d).unwrap().timer(self.clock.clone())
    }

    fn now_ms(&self) -> u64 {
        self.clock.now() / MS
    }
}

fn call<S>(svc: S) -> Result<&'static str, BoxError>
where
    S: Service<(), Response = &'static str, Error = BoxError>,
{
    block_on(svc.oneshot(()))
}

#[test]
fn three_500ms_attempts_under_a_1s_deadline_end_at_the_deadline() {
    let p = Parts::new();
    let dependency = Dependency::hanging(u32::MAX);
    let svc = ServiceBuilder::new()
        .layer(p.deadline(Duration::from_secs(1)))
        .retry(p.retry())
        .layer(BreakerLayer::new(p.breaker.clone()))
        .layer(p.timeout(Duration::from_millis(500)))
        .service(dependency.clone());
    let e = call(svc).unwrap_err();
    // 0-500 ms: timed out, retried; 510 ms: the second attempt has 490 ms left, and is cut at
    // the deadline; no third attempt.
    assert_eq!(
        e.downcast_ref::<DeadlineExceeded>(),
        Some(&DeadlineExceeded::new(Duration::from_secs(1))),
        "{e}"
    );
    assert_eq!(p.now_ms(), 1000);
    assert_eq!(dependency.calls(), 2);
    let m = p.breaker.metrics();
    assert_eq!(
        (m.calls, m.failures, m.slow_calls),
        (2, 2, 2),
        "the timed-out attempt and the cut one: failures, and slow"
    );
    assert_eq!(p.budget.metrics().retries_granted, 1);
}

#[test]
fn without_the_deadline_the_same_request_takes_all_three_attempts() {
    let p = Parts::new();
    let dependency = Dependency::hanging(u32::MAX);
    let svc = ServiceBuilder::new()
        .retry(p.retry())
        .layer(BreakerLayer::new(p.breaker.clone()))
        .layer(p.timeout(Duration::from_millis(500)))
        .service(dependency.clone());
    let e = call(svc).unwrap_err();
    assert_eq!(
        e.downcast_ref::<AttemptTimedOut>(),
        Some(&AttemptTimedOut::new(Duration::from_millis(500)))
    );
    assert_eq!(p.now_ms(), 3 * 500 + 2 * 10);
    assert_eq!(dependency.calls(), 3);
    assert_eq!(p.breaker.metrics().failures, 3);
}

#[test]
fn a_timed_out_attempt_is_retried_and_the_breaker_counts_it() {
    let p = Parts::new();
    let dependency = Dependency::hanging(1); // the first call hangs, the second answers
    let svc = ServiceBuilder::new()
        .layer(p.deadline(Duration::from_secs(1)))
        .retry(p.retry())
        .layer(BreakerLayer::new(p.breaker.clone()))
        .layer(p.timeout(Duration::from_millis(500)))
        .service(dependency.clone());
    assert_eq!(call(svc).unwrap(), "answer");
    assert_eq!(p.now_ms(), 510);
    assert_eq!(dependency.calls(), 2);
    let m = p.breaker.metrics();
    assert_eq!((m.calls, m.failures, m.slow_calls), (2, 1, 1));
}

#[test]
fn a_timed_out_attempt_is_not_retried_when_the_classifier_says_so() {
    let p = Parts::new();
    let dependency = Dependency::hanging(1);
    let svc = ServiceBuilder::new()
        .retry(
            p.retry()
                .retry_if(|e: &BoxError| !e.is::<AttemptTimedOut>()),
        )
        .layer(BreakerLayer::new(p.breaker.clone()))
        .layer(p.timeout(Duration::from_millis(500)))
        .service(dependency.clone());
    assert!(call(svc).unwrap_err().is::<AttemptTimedOut>());
    assert_eq!(dependency.calls(), 1);
    assert_eq!(p.breaker.metrics().failures, 1);
}

#[test]
fn without_an_attempt_timeout_the_deadline_cuts_the_attempt_and_the_breaker_counts_it() {
    let p = Parts::new();
    let dependency = Dependency::hanging(u32::MAX);
    let svc = ServiceBuilder::new()
        .layer(p.deadline(Duration::from_secs(1)))
        .retry(p.retry())
        .layer(BreakerLayer::new(p.breaker.clone()))
        .service(dependency.clone());
    assert!(call(svc).unwrap_err().is::<DeadlineExceeded>());
    assert_eq!(p.now_ms(), 1000);
    assert_eq!(dependency.calls(), 1);
    let m = p.breaker.metrics();
    assert_eq!(
        (m.calls, m.failures, m.slow_calls),
        (1, 1, 1),
        "the cut attempt is a failure"
    );
}

#[test]
fn a_response_future_dropped_by_its_caller_is_not_counted() {
    let p = Parts::new();
    let mut svc = ServiceBuilder::new()
        .layer(p.deadline(Duration::from_secs(1)))
        .layer(BreakerLayer::new(p.breaker.clone()))
        .service(Dependency::hanging(u32::MAX));
    let mut fut = Box::pin(svc.call(()));
    let waker = futures::task::noop_waker();
    // One poll: the deadline's sleep moves the manual clock to the deadline and ends, so the
    // request is cut; a second, fresh request is dropped by its caller before that.
    assert!(
        fut.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
    );
    drop(svc.call(()));
    let m = p.breaker.metrics();
    assert_eq!((m.calls, m.failures), (1, 1), "only the cut one counts");
}

#[test]
fn no_retry_is_made_or_paid_for_whose_backoff_would_end_past_the_deadline() {
    let p = Parts::new();
    let dependency = Dependency::hanging(u32::MAX);
    let retry = p.retry().backoff(
        Backoff::builder()
            .constant(Duration::from_millis(600))
            .jitter(Jitter::None)
            .build()
            .unwrap(),
    );
    let svc = ServiceBuilder::new()
        .layer(p.deadline(Duration::from_secs(1)))
        .retry(retry)
        .layer(BreakerLayer::new(p.breaker.clone()))
        .layer(p.timeout(Duration::from_millis(500)))
        .service(dependency.clone());
    // Timed out at 500 ms; a retry would start at 1.1 s, past the deadline: the last result.
    assert!(call(svc).unwrap_err().is::<AttemptTimedOut>());
    assert_eq!(p.now_ms(), 500);
    assert_eq!(dependency.calls(), 1);
    assert_eq!(p.budget.metrics().retries_granted, 0);
}

#[test]
fn a_deadline_is_never_retried_even_by_an_outer_retry() {
    let p = Parts::new();
    let dependency = Dependency::hanging(u32::MAX);
    // A retry outside the deadline sees each request's DeadlineExceeded: not retried.
    let svc = ServiceBuilder::new()
        .retry(p.retry())
        .layer(p.deadline(Duration::from_millis(300)))
        .layer(BreakerLayer::new(p.breaker.clone()))
        .service(dependency.clone());
    assert!(call(svc).unwrap_err().is::<DeadlineExceeded>());
    assert_eq!(dependency.calls(), 1);
    assert_eq!(p.now_ms(), 300);
}

#[test]
fn an_inner_deadline_cannot_extend_an_outer_one() {
    let p = Parts::new();
    let dependency = Dependency::hanging(u32::MAX);
    let svc = ServiceBuilder::new()
        .layer(p.deadline(Duration::from_millis(300)))
        .layer(p.deadline(Duration::from_secs(5)))
        .layer(p.timeout(Duration::from_secs(1)))
        .service(dependency.clone());
    let e = call(svc).unwrap_err();
    assert_eq!(
        e.downcast_ref::<DeadlineExceeded>(),
        Some(&DeadlineExceeded::new(Duration::from_millis(300)))
    );
    assert_eq!(p.now_ms(), 300);
}

#[test]
fn the_layers_refuse_a_zero_limit() {
    assert_eq!(
        DeadlineLayer::new(Duration::ZERO).unwrap_err().field(),
        "deadline"
    );
    assert_eq!(
        TimeoutLayer::new(Duration::ZERO).unwrap_err().field(),
        "timeout"
    );
}

#[test]
fn a_breaker_inside_the_timeout_counts_the_attempt_it_gave_up() {
    let p = Parts::new();
    let svc = ServiceBuilder::new()
        .layer(p.timeout(Duration::from_millis(500)))
        .layer(BreakerLayer::new(p.breaker.clone()))
        .service(Dependency::hanging(u32::MAX));
    let e = call(svc).unwrap_err();
    assert!(e.is::<AttemptTimedOut>(), "{e}");
    let m = p.breaker.metrics();
    assert_eq!((m.calls, m.failures, m.slow_calls), (1, 1, 1));
}
