//! What an adaptive bulkhead hears from the places that hold its slots: the tower layer and the
//! policy report each request's result (a failure is a drop, a success comes with its latency),
//! a cut attempt is a drop, and a request whose caller went away follows the `Unreported` rule.
//! Every clock and timer is one `ManualClock`, so each window closes at an exact instant.
#![cfg(feature = "tower")]

use futures::executor::block_on;
use resile::bulkhead::Bulkhead;
use resile::bulkhead::adaptive::{Aimd, Unreported};
use resile::classify::Verdict;
use resile::clock::ManualClock;
use resile::tower::{BoxError, BulkheadLayer, TimeoutLayer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

/// An AIMD bulkhead starting at 20 whose one-second windows close on their first report.
fn adaptive(clock: &ManualClock, unreported: Unreported) -> Arc<Bulkhead<ManualClock>> {
    Arc::new(
        Bulkhead::builder()
            .adaptive(Aimd::default().initial_limit(20).min_limit(2))
            .adaptive_window(Duration::from_secs(1))
            .adaptive_min_samples(1)
            .unreported(unreported)
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
}

type Answer = Pin<Box<dyn Future<Output = Result<u16, std::io::Error>> + Send>>;

/// A dependency answering `status` after `latency` on the manual clock (or failing when
/// `status` is 0), or never answering when `latency` is `None`.
fn dependency(
    clock: &ManualClock,
    status: u16,
    latency: Option<Duration>,
) -> impl Service<(), Response = u16, Error = std::io::Error, Future = Answer> + Clone {
    let clock = clock.clone();
    service_fn(move |()| -> Answer {
        match latency {
            None => Box::pin(std::future::pending()),
            Some(d) => {
                let clock = clock.clone();
                Box::pin(async move {
                    clock.advance(d);
                    match status {
                        0 => Err(std::io::Error::other("connection reset")),
                        s => Ok(s),
                    }
                })
            }
        }
    })
}

fn windows(b: &Bulkhead<ManualClock>) -> (u64, u64) {
    let m = b.metrics().adaptive.unwrap();
    (m.windows, m.drops)
}

#[test]
fn the_layer_reports_an_error_as_a_drop() {
    let clock = ManualClock::new();
    let b = adaptive(&clock, Unreported::Success);
    let svc =
        BulkheadLayer::new(b.clone()).layer(dependency(&clock, 0, Some(Duration::from_secs(1))));
    assert!(block_on(svc.oneshot(())).is_err());
    assert_eq!(windows(&b), (1, 1));
    assert_eq!(b.limit(), 18, "AIMD backs off: 20 × 0.9");
    assert_eq!(b.metrics().in_flight, 0);
}

#[test]
fn the_layer_reports_a_success_with_its_latency() {
    let clock = ManualClock::new();
    let b = Arc::new(
        Bulkhead::builder()
            .adaptive(Aimd::default().initial_limit(2).min_limit(1))
            .adaptive_min_samples(1)
            .unreported(Unreported::Dropped)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let svc =
        BulkheadLayer::new(b.clone()).layer(dependency(&clock, 200, Some(Duration::from_secs(1))));
    assert_eq!(block_on(svc.oneshot(())).unwrap(), 200);
    // One call in flight of a limit of 2 is enough use to grow: a success, not the drop an
    // unreported slot would have been.
    assert_eq!(windows(&b), (1, 0));
    assert_eq!(b.limit(), 3);
}

#[test]
fn the_classifier_decides_what_a_response_means() {
    let clock = ManualClock::new();
    let b = adaptive(&clock, Unreported::Success);
    let shedding = |r: Result<&u16, &std::io::Error>| match r {
        Ok(503) | Err(_) => Verdict::Failure,
        Ok(400..=499) => Verdict::Ignore,
        Ok(_) => Verdict::Success,
    };
    let layer = BulkheadLayer::new(b.clone()).classify(shedding);
    // A client error says nothing of capacity: no report, so the due window stays open.
    let svc = layer.layer(dependency(&clock, 404, Some(Duration::from_secs(1))));
    assert_eq!(block_on(svc.oneshot(())).unwrap(), 404);
    assert_eq!(windows(&b), (0, 0));
    // An answer of 503 is the dependency shedding load.
    let svc = layer.layer(dependency(&clock, 503, Some(Duration::from_millis(5))));
    assert_eq!(block_on(svc.oneshot(())).unwrap(), 503);
    assert_eq!(windows(&b), (1, 1));
    assert_eq!(b.limit(), 18);
}

#[test]
fn an_attempt_timed_out_inside_the_slot_is_a_drop() {
    let clock = ManualClock::new();
    let b = adaptive(&clock, Unreported::Success);
    let svc = ServiceBuilder::new()
        .layer(BulkheadLayer::new(b.clone()))
        .layer(
            TimeoutLayer::new(Duration::from_secs(2))
                .unwrap()
                .timer(clock.clone()),
        )
        .service(dependency(&clock, 200, None));
    let e: BoxError = block_on(svc.oneshot(())).unwrap_err();
    assert!(e.is::<resile::tower::AttemptTimedOut>(), "{e}");
    assert_eq!(windows(&b), (1, 1));
    assert_eq!(b.metrics().in_flight, 0);
}

#[test]
fn a_slot_cut_by_an_enclosing_timeout_is_a_drop() {
    let clock = ManualClock::new();
    // Unreported slots count as successes here: only the cut makes this one a drop.
    let b = adaptive(&clock, Unreported::Success);
    let svc = ServiceBuilder::new()
        .layer(
            TimeoutLayer::new(Duration::from_secs(2))
                .unwrap()
                .timer(clock.clone()),
        )
        .layer(BulkheadLayer::new(b.clone()))
        .service(dependency(&clock, 200, None));
    assert!(block_on(svc.oneshot(())).is_err());
    assert_eq!(windows(&b), (1, 1));
    assert_eq!(b.limit(), 18);
}

#[test]
fn a_request_whose_caller_goes_away_follows_the_unreported_rule() {
    for (rule, expected) in [
        (Unreported::Ignored, (0, 0)),
        (Unreported::Dropped, (1, 1)),
        (Unreported::Success, (1, 0)),
    ] {
        let clock = ManualClock::new();
        let b = adaptive(&clock, rule);
        let mut svc = BulkheadLayer::new(b.clone()).layer(dependency(&clock, 200, None));
        let fut = block_on(svc.ready()).unwrap().call(());
        assert_eq!(b.metrics().in_flight, 1);
        clock.advance(Duration::from_secs(1));
        drop(fut);
        assert_eq!(b.metrics().in_flight, 0);
        assert_eq!(windows(&b), expected, "{rule:?}");
    }
}

/// A dependency whose readiness the test sets.
#[derive(Clone)]
struct Toggle {
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Service<()> for Toggle {
    type Response = u16;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<u16, std::io::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        if self.ready.load(std::sync::atomic::Ordering::SeqCst) {
            std::task::Poll::Ready(Ok(()))
        } else {
            std::task::Poll::Pending
        }
    }

    fn call(&mut self, (): ()) -> Self::Future {
        std::future::ready(Ok(200))
    }
}

#[test]
fn a_slot_taken_for_a_call_that_never_comes_reports_nothing() {
    let clock = ManualClock::new();
    let b = adaptive(&clock, Unreported::Dropped);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut svc = BulkheadLayer::new(b.clone()).layer(Toggle {
        ready: ready.clone(),
    });
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);

    // Ready, then the inner service turns unready: the slot goes back unreported.
    assert!(svc.poll_ready(&mut cx).is_ready());
    assert_eq!(b.metrics().in_flight, 1);
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    assert!(svc.poll_ready(&mut cx).is_pending());
    assert_eq!(b.metrics().in_flight, 0);

    // Ready, then the service is dropped: the same.
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(svc.poll_ready(&mut cx).is_ready());
    assert_eq!(b.metrics().in_flight, 1);
    clock.advance(Duration::from_secs(1));
    drop(svc);
    assert_eq!(b.metrics().in_flight, 0);
    assert_eq!(windows(&b), (0, 0), "no request ran on either slot");
    assert_eq!(b.limit(), 20);
}

#[cfg(feature = "http")]
#[test]
fn a_streamed_response_reports_its_status_when_its_body_ends() {
    use http_body::Body;
    use resile::http::StatusClassify;

    let clock = ManualClock::new();
    let b = adaptive(&clock, Unreported::Success);
    let c = clock.clone();
    let svc = BulkheadLayer::new(b.clone())
        .until_body_end()
        .classify(StatusClassify::new())
        .layer(service_fn(move |()| {
            let c = c.clone();
            async move {
                c.advance(Duration::from_secs(1));
                let mut r = http::Response::new(String::from("overloaded"));
                *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                Ok::<_, std::io::Error>(r)
            }
        }));
    let response = block_on(svc.oneshot(())).unwrap();
    assert_eq!(response.status(), 503);
    // The head is here; the slot is held, and nothing reported, until the body ends.
    assert_eq!((b.metrics().in_flight, windows(&b)), (1, (0, 0)));
    let mut body = std::pin::pin!(response.into_body());
    while block_on(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))).is_some() {}
    assert_eq!((b.metrics().in_flight, windows(&b)), (0, (1, 1)));
}

mod policy {
    use super::*;
    use resile::breaker::CircuitBreaker;
    use resile::policy::{Policy, PolicyError};

    #[test]
    fn a_failed_call_is_a_drop_and_a_good_one_a_success() {
        let clock = ManualClock::new();
        let b = adaptive(&clock, Unreported::Dropped);
        let policy = Policy::builder().bulkhead(b.clone()).build().unwrap();
        clock.advance(Duration::from_secs(1));
        assert!(policy.call(|| Err::<(), _>("down")).is_err());
        assert_eq!(windows(&b), (1, 1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(policy.call(|| Ok::<_, ()>(7)), Ok(7));
        assert_eq!(windows(&b), (2, 1), "a success");
    }

    #[test]
    fn a_timed_out_async_call_is_a_drop() {
        let clock = ManualClock::new();
        let b = adaptive(&clock, Unreported::Success);
        let policy = Policy::builder()
            .bulkhead(b.clone())
            .attempt_timeout(Duration::from_secs(2))
            .timer(clock.clone())
            .build()
            .unwrap();
        let e = block_on(policy.call_async(std::future::pending::<Result<(), ()>>));
        assert!(matches!(e, Err(PolicyError::TimedOut { .. })), "{e:?}");
        assert_eq!(windows(&b), (1, 1));
    }

    #[test]
    fn a_call_the_breaker_refuses_says_nothing() {
        let clock = ManualClock::new();
        let b = adaptive(&clock, Unreported::Dropped);
        let breaker = Arc::new(
            CircuitBreaker::builder()
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        breaker.force_open();
        let policy = Policy::builder()
            .bulkhead(b.clone())
            .breaker(breaker)
            .build()
            .unwrap();
        clock.advance(Duration::from_secs(1));
        let e = policy.call(|| Ok::<_, ()>(1));
        assert!(
            matches!(e, Err(PolicyError::Breaker { attempts: 0, .. })),
            "{e:?}"
        );
        assert_eq!(windows(&b), (0, 0), "no attempt ran: no report");
        assert_eq!(b.metrics().in_flight, 0);
    }

    #[test]
    fn the_classifier_can_call_a_value_a_drop() {
        let clock = ManualClock::new();
        let b = adaptive(&clock, Unreported::Success);
        let policy = Policy::builder()
            .bulkhead(b.clone())
            .classify(|r: Result<&u16, &()>| match r {
                Ok(503) | Err(_) => Verdict::Failure,
                Ok(_) => Verdict::Success,
            })
            .build()
            .unwrap();
        clock.advance(Duration::from_secs(1));
        assert_eq!(policy.call(|| Ok::<u16, ()>(503)), Ok(503));
        assert_eq!(windows(&b), (1, 1));
    }
}
