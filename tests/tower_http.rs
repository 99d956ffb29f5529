//! With `until_body_end`, the drain and bulkhead layers hold a request's guard until its HTTP
//! response body ends, not only until the head is ready: a streamed response keeps the drain
//! waiting and its bulkhead slot taken until its last frame, and a body dropped early (the client
//! went away) or failed gives them back.
#![cfg(feature = "http")]

use futures::executor::block_on;
use http_body::{Body, Frame};
use resile::bulkhead::Bulkhead;
use resile::drain::Drainer;
use resile::tower::{BulkheadLayer, DrainLayer};
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Service, ServiceBuilder, ServiceExt};

/// A body of `chunks` frames of one byte, then (if `fail`) an error instead of its end.
struct Chunks {
    chunks: u32,
    fail: bool,
}

impl Body for Chunks {
    type Data = &'static [u8];
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<&'static [u8]>, std::io::Error>>> {
        if self.chunks > 0 {
            self.chunks -= 1;
            return Poll::Ready(Some(Ok(Frame::data(&b"x"[..]))));
        }
        if self.fail {
            self.fail = false;
            return Poll::Ready(Some(Err(std::io::Error::other("reset"))));
        }
        Poll::Ready(None)
    }
}

fn next_frame<B: Body + Unpin>(body: &mut B) -> Option<Result<Frame<B::Data>, B::Error>> {
    block_on(poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)))
}

fn is_pending<F: Future>(fut: Pin<&mut F>) -> bool {
    let waker = std::task::Waker::noop();
    fut.poll(&mut Context::from_waker(waker)).is_pending()
}

struct Stack {
    drainer: Arc<Drainer>,
    bulkhead: Arc<Bulkhead>,
}

impl Stack {
    fn new() -> Self {
        Self {
            drainer: Arc::new(Drainer::new()),
            bulkhead: Arc::new(Bulkhead::builder().limit(1).build().unwrap()),
        }
    }

    /// drain -> bulkhead -> a service answering with a body of `chunks` frames.
    fn call(&self, chunks: u32, fail: bool) -> http::Response<impl Body + Unpin> {
        let mut svc = ServiceBuilder::new()
            .layer(DrainLayer::new(self.drainer.clone()).until_body_end())
            .layer(BulkheadLayer::new(self.bulkhead.clone()).until_body_end())
            .service_fn(move |_: ()| async move {
                Ok::<_, std::io::Error>(http::Response::new(Chunks { chunks, fail }))
            });
        block_on(async { svc.ready().await?.call(()).await }).unwrap()
    }
}

#[test]
fn a_streamed_body_holds_the_drain_and_the_slot_until_its_last_frame() {
    let s = Stack::new();
    let response = s.call(3, false);
    s.drainer.start_draining();
    let mut wait = pin!(s.drainer.wait());
    let mut body = response.into_body();
    for _ in 0..3 {
        assert_eq!(s.drainer.in_flight(), 1, "the body is still being sent");
        assert_eq!(s.bulkhead.metrics().in_flight, 1);
        assert!(is_pending(wait.as_mut()), "the drain waits for the body");
        assert!(next_frame(&mut body).unwrap().is_ok());
    }
    assert!(next_frame(&mut body).is_none(), "the end of the body");
    assert_eq!(s.drainer.in_flight(), 0);
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
    assert!(!is_pending(wait.as_mut()), "drained once the body ended");
}

#[test]
fn a_body_dropped_early_releases_its_guards() {
    let s = Stack::new();
    let mut body = s.call(10, false).into_body();
    assert!(next_frame(&mut body).unwrap().is_ok());
    assert_eq!(s.drainer.in_flight(), 1);
    drop(body); // the client went away after one frame
    assert_eq!(s.drainer.in_flight(), 0);
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
}

#[test]
fn a_failed_body_releases_its_guards() {
    let s = Stack::new();
    let mut body = s.call(1, true).into_body();
    assert!(next_frame(&mut body).unwrap().is_ok());
    assert_eq!(s.bulkhead.metrics().in_flight, 1);
    assert!(next_frame(&mut body).unwrap().is_err());
    assert_eq!(s.drainer.in_flight(), 0, "an error ends the body");
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
    // The slot is free for the next request.
    drop(body);
    let next = s.call(0, false).into_body();
    assert_eq!(s.bulkhead.metrics().in_flight, 1);
    drop(next);
}

#[test]
fn without_until_body_end_the_guard_ends_with_the_head() {
    let drainer = Arc::new(Drainer::new());
    let mut svc = ServiceBuilder::new()
        .layer(DrainLayer::new(drainer.clone()))
        .service_fn(|_: ()| async {
            Ok::<_, std::io::Error>(http::Response::new(Chunks {
                chunks: 3,
                fail: false,
            }))
        });
    let response = block_on(async { svc.ready().await?.call(()).await }).unwrap();
    assert_eq!(drainer.in_flight(), 0, "released at the response head");
    drop(response);
}

/// The whole stack over a downstream that answers `503` with `Retry-After: 1`: the breaker
/// counts each `503` as a failure and opens, the retry reads the server's hint, and the client
/// sees a `503` with `Retry-After` for the open breaker, then `503` with `Connection: close` once
/// draining: no error ever reaches the server.
#[tokio::test(start_paused = true)]
async fn refusals_are_responses_and_statuses_are_classified() {
    use resile::breaker::CircuitBreaker;
    use resile::budget::RetryBudget;
    use resile::http::{RefusalLayer, StatusClassify};
    use resile::tower::{BreakerLayer, RetryPolicy};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    let drainer = Arc::new(Drainer::new());
    let breaker = Arc::new(
        CircuitBreaker::builder()
            .count_window(2)
            .minimum_calls(2)
            .open_for(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let budget = Arc::new(RetryBudget::builder().max_retries(10).build().unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let retry = RetryPolicy::new(budget.clone())
        .timer(tokio::time::sleep)
        .max_attempts(2)
        .classify(StatusClassify::new());
    let mut svc = ServiceBuilder::new()
        .layer(RefusalLayer::new())
        .layer(DrainLayer::new(drainer.clone()).until_body_end())
        .retry(retry)
        .layer(BreakerLayer::new(breaker.clone()).classify(StatusClassify::new()))
        .service_fn({
            let calls = calls.clone();
            move |_: ()| {
                calls.fetch_add(1, Ordering::Relaxed);
                async {
                    Ok::<_, std::io::Error>(
                        http::Response::builder()
                            .status(503)
                            .header("retry-after", "1")
                            .body(String::new())
                            .unwrap(),
                    )
                }
            }
        });
    let start = tokio::time::Instant::now();
    // Two attempts, both 503: the retry waited the server's 1 s, and the breaker opened.
    let r = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "the Retry-After hint"
    );
    // Open: refused without reaching the downstream, as a 503 with the breaker's own hint.
    let r = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(r.status(), 503);
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29..=31).contains(&after), "{after}");
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    // Draining: 503 with Connection: close.
    drainer.start_draining();
    let r = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["connection"], "close");
}

/// A service that is never ready: its readiness fails.
struct Broken {
    called: Arc<std::sync::atomic::AtomicBool>,
}

impl Service<()> for Broken {
    type Response = http::Response<String>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<http::Response<String>, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Err(std::io::Error::other("pool closed")))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        self.called.store(true, std::sync::atomic::Ordering::SeqCst);
        std::future::ready(Ok(http::Response::new(String::new())))
    }
}

#[test]
fn a_readiness_error_is_a_500_and_the_inner_service_is_not_called() {
    use resile::http::RefusalLayer;
    use tower::Layer;
    let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut svc = RefusalLayer::new().layer(Broken {
        called: called.clone(),
    });
    let r = block_on(async { svc.ready().await?.call(()).await }).unwrap();
    assert_eq!(r.status(), 500);
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
}

/// A downstream that never answers, behind the whole client stack with a deadline and an attempt
/// timeout on a manual clock: the client sees `504`, at the deadline, and the breaker counted
/// both attempts; with only the attempt timeout (no retry), also `504`.
#[test]
fn a_deadline_or_an_attempt_timeout_is_a_504() {
    use resile::backoff::{Backoff, Jitter};
    use resile::breaker::CircuitBreaker;
    use resile::budget::RetryBudget;
    use resile::clock::{Clock, ManualClock};
    use resile::http::{RefusalLayer, StatusClassify};
    use resile::tower::{BreakerLayer, DeadlineLayer, RetryPolicy, TimeoutLayer};
    use std::time::Duration;

    let clock = ManualClock::new();
    let breaker = Arc::new(
        CircuitBreaker::builder()
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let budget = Arc::new(RetryBudget::builder().clock(clock.clone()).build().unwrap());
    let hung = tower::service_fn(|_: ()| {
        std::future::pending::<Result<http::Response<String>, std::io::Error>>()
    });
    let svc = ServiceBuilder::new()
        .layer(RefusalLayer::new())
        .layer(
            DeadlineLayer::new(Duration::from_secs(2))
                .unwrap()
                .clock(clock.clone())
                .timer(clock.clone()),
        )
        .retry(
            RetryPolicy::new(budget)
                .timer(clock.clone())
                .backoff(
                    Backoff::builder()
                        .constant(Duration::from_millis(10))
                        .jitter(Jitter::None)
                        .build()
                        .unwrap(),
                )
                .classify(StatusClassify::new()),
        )
        .layer(BreakerLayer::new(breaker.clone()).classify(StatusClassify::new()))
        .layer(
            TimeoutLayer::new(Duration::from_millis(1500))
                .unwrap()
                .timer(clock.clone()),
        )
        .service(hung);
    let r = block_on(svc.oneshot(())).unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(clock.now(), 2_000_000_000, "at the deadline");
    assert_eq!(breaker.metrics().failures, 2);

    let svc = ServiceBuilder::new()
        .layer(RefusalLayer::new())
        .layer(
            TimeoutLayer::new(Duration::from_millis(100))
                .unwrap()
                .timer(clock.clone()),
        )
        .service(hung);
    assert_eq!(block_on(svc.oneshot(())).unwrap().status(), 504);
}

/// What axum's router asks of a layered service: `Clone + Send + Sync`, and a `Send` future;
/// and what an axum handler asks of a stack it awaits: a `Send` async block holding it.
#[test]
fn every_layers_service_is_send_sync_and_clone_and_awaitable_in_a_send_block() {
    use resile::breaker::CircuitBreaker;
    use resile::budget::RetryBudget;
    use resile::http::RefusalLayer;
    use resile::tower::{BreakerLayer, DeadlineLayer, RetryPolicy, TimeoutLayer};
    use std::time::Duration;

    fn check<S, Req>(_: &S)
    where
        S: Service<Req, Future: Send> + Clone + Send + Sync + 'static,
    {
    }
    fn send<T: Send>(_: T) {}
    // An error type without a lifetime: `BoxError` written in the closure would not do (see the
    // `tower` module's docs on `Send` futures).
    let inner = tower::service_fn(|_: ()| async {
        Ok::<_, std::io::Error>(http::Response::new(String::new()))
    });
    let budget = Arc::new(RetryBudget::builder().build().unwrap());
    let svc = ServiceBuilder::new()
        .layer(RefusalLayer::new())
        .layer(DrainLayer::new(Arc::new(Drainer::new())).until_body_end())
        .layer(BulkheadLayer::new(Arc::new(Bulkhead::builder().build().unwrap())).until_body_end())
        .layer(DeadlineLayer::new(Duration::from_secs(1)).unwrap())
        .retry(RetryPolicy::new(budget))
        .layer(BreakerLayer::new(Arc::new(
            CircuitBreaker::builder().build().unwrap(),
        )))
        .layer(TimeoutLayer::new(Duration::from_secs(1)).unwrap())
        .service(inner);
    check::<_, ()>(&svc);
    send(async move {
        let _ = svc.oneshot(()).await;
    });
}
