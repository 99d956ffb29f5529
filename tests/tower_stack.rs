//! Every layer in one `tower::ServiceBuilder` stack, over a mock service that fails, stalls and
//! turns unready on command. Time is tokio's paused clock: no real sleep anywhere.
#![cfg(feature = "tower-retry")]

use futures::task::AtomicWaker;
use resile::backoff::{Backoff, Jitter};
use resile::breaker::{CircuitBreaker, CircuitOpen, State, TICK};
use resile::budget::RetryBudget;
use resile::bulkhead::{Bulkhead, BulkheadError};
use resile::classify::Verdict;
use resile::clock::Clock;
use resile::drain::{DrainRefused, Drainer};
use resile::tower::{
    BoxError, BreakerLayer, BulkheadLayer, DeadlineExceeded, DeadlineLayer, DrainLayer, RetryPolicy,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the mock does, set by the test.
#[derive(Default)]
struct Control {
    /// Fail the next `fail_next` calls (`u32::MAX`: every call).
    fail_next: AtomicU32,
    /// How long each call takes, in ms.
    stall_ms: AtomicU64,
    /// `poll_ready` answers `Pending` while set.
    unready: AtomicBool,
    ready_waker: AtomicWaker,
    /// Calls that reached the mock.
    calls: AtomicU32,
}

impl Control {
    fn fail(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }
    fn stall(&self, d: Duration) {
        self.stall_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
    fn set_ready(&self, ready: bool) {
        self.unready.store(!ready, Ordering::SeqCst);
        if ready {
            self.ready_waker.wake();
        }
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dependency down")
    }
}
impl std::error::Error for Down {}

/// The primitives' clock: tokio's (paused) clock, so open periods and waits follow the test.
#[derive(Clone, Copy)]
struct TokioClock(Instant);

impl Clock for TokioClock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

#[derive(Clone)]
struct Mock(Arc<Control>);

impl Service<u32> for Mock {
    type Response = u32;
    type Error = Down;
    type Future = Pin<Box<dyn Future<Output = Result<u32, Down>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Down>> {
        self.0.ready_waker.register(cx.waker());
        if self.0.unready.load(Ordering::SeqCst) {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: u32) -> Self::Future {
        let c = &self.0;
        c.calls.fetch_add(1, Ordering::SeqCst);
        let fail = c
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        let stall = Duration::from_millis(c.stall_ms.load(Ordering::SeqCst));
        Box::pin(async move {
            if !stall.is_zero() {
                tokio::time::sleep(stall).await;
            }
            if fail { Err(Down) } else { Ok(req) }
        })
    }
}

struct Stack {
    ctl: Arc<Control>,
    drainer: Arc<Drainer<TokioClock>>,
    bulkhead: Arc<Bulkhead<TokioClock>>,
    breaker: Arc<CircuitBreaker<TokioClock>>,
    budget: Arc<RetryBudget<TokioClock>>,
}

impl Stack {
    fn new() -> Self {
        let clock = TokioClock(Instant::now());
        Self {
            ctl: Arc::new(Control::default()),
            drainer: Arc::new(Drainer::builder().clock(clock).build().unwrap()),
            bulkhead: Arc::new(
                Bulkhead::builder()
                    .clock(clock)
                    .name("mock")
                    .limit(2)
                    .max_wait(Duration::from_millis(100))
                    .timer(tokio::time::sleep)
                    .build()
                    .unwrap(),
            ),
            breaker: Arc::new(
                CircuitBreaker::builder()
                    .clock(clock)
                    .name("mock")
                    .count_window(4)
                    .minimum_calls(4)
                    .failure_rate_threshold(0.5)
                    .open_for(Duration::from_secs(10))
                    .build()
                    .unwrap(),
            ),
            budget: Arc::new(
                RetryBudget::builder()
                    .max_retries(5)
                    .clock(clock)
                    .build()
                    .unwrap(),
            ),
        }
    }

    /// drain -> bulkhead (waiting on tokio's timer) -> retry (budget, backoff) -> breaker -> mock.
    fn service(
        &self,
    ) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static
    {
        let retry = RetryPolicy::new(self.budget.clone())
            .timer(tokio::time::sleep)
            .max_attempts(3)
            .backoff(
                Backoff::builder()
                    .constant(Duration::from_millis(10))
                    .jitter(Jitter::None)
                    .build()
                    .unwrap(),
            ); // the default classifier: every error but a refusal (the open breaker's)
        ServiceBuilder::new()
            .layer(DrainLayer::new(self.drainer.clone()))
            .layer(BulkheadLayer::new(self.bulkhead.clone()))
            .retry(retry)
            .layer(BreakerLayer::new(self.breaker.clone()))
            .service(Mock(self.ctl.clone()))
    }
}

async fn call<S: Service<u32, Error = BoxError>>(
    svc: &mut S,
    req: u32,
) -> Result<S::Response, BoxError> {
    svc.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn healthy_calls_pass_every_layer() {
    let s = Stack::new();
    let mut svc = s.service();
    for i in 0..10 {
        assert_eq!(call(&mut svc, i).await.unwrap(), i);
    }
    assert_eq!(s.ctl.calls(), 10);
    assert_eq!(s.drainer.metrics().admitted, 10);
    assert_eq!(s.drainer.in_flight(), 0);
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
    assert_eq!(s.budget.metrics().deposits, 10);
    assert_eq!(s.breaker.metrics().calls, 4); // the window: the last 4
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_after_the_backoff_and_paid_from_the_budget() {
    let s = Stack::new();
    let mut svc = s.service();
    s.ctl.fail(1);
    let start = Instant::now();
    assert_eq!(call(&mut svc, 7).await.unwrap(), 7);
    assert_eq!(start.elapsed(), Duration::from_millis(10)); // one constant backoff
    assert_eq!(s.ctl.calls(), 2);
    let b = s.budget.metrics();
    assert_eq!((b.deposits, b.retries_granted), (1, 1));
    let m = s.breaker.metrics();
    assert_eq!((m.calls, m.failures), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn an_outage_opens_the_breaker_and_refusals_are_not_retried() {
    let s = Stack::new();
    let mut svc = s.service();
    s.ctl.fail(u32::MAX);
    // 3 attempts, then 1 more: the window of 4 is all failures and the breaker opens.
    let e = call(&mut svc, 1).await.unwrap_err();
    assert!(e.is::<Down>());
    let e = call(&mut svc, 2).await.unwrap_err();
    assert!(e.is::<CircuitOpen>(), "{e}");
    assert_eq!(s.breaker.state(), State::Open);
    assert_eq!(s.ctl.calls(), 4);

    // Open: refused at once, without reaching the mock, spending the budget, or depositing
    // into it (a refused request earns no retry).
    let granted = s.budget.metrics().retries_granted;
    let deposits = s.budget.metrics().deposits;
    for _ in 0..5 {
        let e = call(&mut svc, 3).await.unwrap_err();
        let open = e
            .downcast_ref::<CircuitOpen>()
            .expect("refused by the breaker");
        assert!(open.retry_after().unwrap() <= Duration::from_secs(10) + TICK);
    }
    assert_eq!(s.ctl.calls(), 4);
    assert_eq!(s.budget.metrics().retries_granted, granted);
    assert_eq!(s.budget.metrics().deposits, deposits);

    // The dependency recovers; after the open period a probe closes the breaker.
    s.ctl.fail(0);
    tokio::time::sleep(Duration::from_secs(11)).await;
    for i in 0..4 {
        assert_eq!(call(&mut svc, i).await.unwrap(), i);
    }
    assert_eq!(s.breaker.state(), State::Closed);
    assert_eq!(s.drainer.in_flight(), 0);
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_when_the_budget_is_spent() {
    let s = Stack::new();
    s.breaker.disable(); // let every failure through to the budget
    let mut svc = s.service();
    s.ctl.fail(u32::MAX);
    for _ in 0..4 {
        let _ = call(&mut svc, 1).await;
    }
    // Wanted: 2 retries for each of 4 requests. Granted: 2, 2, 1 (then refused), refused.
    let b = s.budget.metrics();
    assert_eq!((b.retries_granted, b.retries_refused), (5, 2));
    assert_eq!(s.ctl.calls(), 4 + 5);
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_waits_up_to_its_max_wait_then_refuses() {
    let s = Stack::new();
    let svc = s.service();
    s.ctl.stall(Duration::from_secs(1));
    let mut running = Vec::new();
    for i in 0..2 {
        let mut svc = svc.clone();
        running.push(tokio::spawn(async move { call(&mut svc, i).await }));
    }
    tokio::task::yield_now().await;
    assert_eq!(s.bulkhead.metrics().in_flight, 2);

    let start = Instant::now();
    let mut third = svc.clone();
    let e = call(&mut third, 3).await.unwrap_err();
    let e = e
        .downcast_ref::<BulkheadError>()
        .expect("refused by the bulkhead");
    assert!(e.is_timed_out(), "{e}");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(s.bulkhead.metrics().waiting, 0);

    // A waiter within the max wait gets the slot handed over.
    tokio::time::sleep(Duration::from_millis(850)).await; // 950 ms into the stall
    let mut fourth = svc.clone();
    assert_eq!(call(&mut fourth, 4).await.unwrap(), 4);
    for r in running {
        assert!(r.await.unwrap().is_ok());
    }
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
    assert_eq!(s.bulkhead.metrics().refused, 1);
}

#[tokio::test(start_paused = true)]
async fn draining_refuses_new_requests_and_waits_for_those_in_flight() {
    let s = Stack::new();
    let svc = s.service();
    s.ctl.stall(Duration::from_secs(2));
    let mut slow = svc.clone();
    let in_flight = tokio::spawn(async move { call(&mut slow, 1).await });
    tokio::task::yield_now().await;
    assert_eq!(s.drainer.in_flight(), 1);

    assert!(s.drainer.start_draining());
    let mut late = svc.clone();
    let e = call(&mut late, 2).await.unwrap_err();
    assert_eq!(
        e.downcast_ref::<DrainRefused>(),
        Some(&DrainRefused::Draining)
    );

    let start = Instant::now();
    s.drainer.wait().await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(in_flight.await.unwrap().unwrap(), 1);
    assert_eq!(s.ctl.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn draining_refuses_at_once_even_when_the_bulkhead_is_full() {
    let s = Stack::new();
    let _held = [
        s.bulkhead.try_acquire_owned().unwrap(),
        s.bulkhead.try_acquire_owned().unwrap(),
    ];
    s.drainer.start_draining();
    let start = Instant::now();
    let mut svc = s.service();
    let e = call(&mut svc, 1).await.unwrap_err();
    assert_eq!(
        e.downcast_ref::<DrainRefused>(),
        Some(&DrainRefused::Draining)
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "not after the bulkhead's max wait"
    );
    assert_eq!(s.bulkhead.metrics().waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_refused_for_draining_gives_back_the_slot_taken_for_it() {
    let s = Stack::new();
    let mut svc = s.service();
    // Ready before the drain starts: the bulkhead took a slot for the coming call.
    svc.ready().await.unwrap();
    assert_eq!(s.bulkhead.metrics().in_flight, 1);
    s.drainer.start_draining();
    let e = svc.call(1).await.unwrap_err();
    assert_eq!(
        e.downcast_ref::<DrainRefused>(),
        Some(&DrainRefused::Draining)
    );
    assert_eq!(s.bulkhead.metrics().in_flight, 0, "the slot was given back");
    // The service, kept (a keep-alive connection), refuses again without taking one.
    let e = call(&mut svc, 2).await.unwrap_err();
    assert_eq!(
        e.downcast_ref::<DrainRefused>(),
        Some(&DrainRefused::Draining)
    );
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
    assert_eq!(s.ctl.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_max_wait_counts_across_an_unready_inner_service() {
    let s = Stack::new();
    let _held = [
        s.bulkhead.try_acquire_owned().unwrap(),
        s.bulkhead.try_acquire_owned().unwrap(),
    ];
    let mut svc = s.service();
    let start = Instant::now();
    let waiter = tokio::spawn(async move { call(&mut svc, 1).await });
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(s.bulkhead.metrics().waiting, 1);
    // The inner service turns unready for a moment, and the waiting request sees it: it gives up
    // its place in the queue, but not the time it has waited.
    s.ctl.unready.store(true, Ordering::SeqCst);
    s.ctl.ready_waker.wake();
    tokio::task::yield_now().await;
    assert_eq!(s.bulkhead.metrics().waiting, 0);
    s.ctl.set_ready(true);
    let e = waiter.await.unwrap().unwrap_err();
    assert!(
        e.downcast_ref::<BulkheadError>().unwrap().is_timed_out(),
        "{e}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_readiness_given_up_leaves_no_spent_timer_to_the_next_request() {
    let s = Stack::new();
    let _held = [
        s.bulkhead.try_acquire_owned().unwrap(),
        s.bulkhead.try_acquire_owned().unwrap(),
    ];
    let mut svc = ServiceBuilder::new()
        .layer(BulkheadLayer::new(s.bulkhead.clone()))
        .service(Mock(s.ctl.clone()));
    // Request A queues (its timer starts), the inner service turns unready, and the caller
    // gives up (its own deadline) and stops polling.
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(svc.poll_ready(&mut cx).is_pending());
    s.ctl.set_ready(false);
    assert!(svc.poll_ready(&mut cx).is_pending());
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Request B, ten seconds later on the same service (a keep-alive connection), waits its own
    // max wait, not none.
    s.ctl.set_ready(true);
    let start = Instant::now();
    let e = match svc.ready().await {
        Ok(svc) => svc.call(1).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        e.downcast_ref::<BulkheadError>().unwrap().is_timed_out(),
        "{e}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn no_slot_is_held_while_the_inner_service_is_unready() {
    let s = Stack::new();
    let mut svc = s.service();
    s.ctl.set_ready(false);
    let waiting = tokio::spawn({
        let mut svc = svc.clone();
        async move {
            svc.ready().await.map(drop)?;
            Ok::<_, BoxError>(svc)
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished());
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
    assert_eq!(s.bulkhead.metrics().waiting, 0);

    s.ctl.set_ready(true);
    let mut ready = waiting.await.unwrap().unwrap();
    assert_eq!(s.bulkhead.metrics().in_flight, 1); // taken once the inner service was ready
    assert_eq!(ready.call(5).await.unwrap(), 5);
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
    assert_eq!(call(&mut svc, 6).await.unwrap(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_releases_every_layer() {
    let s = Stack::new();
    let mut svc = s.service();
    s.ctl.stall(Duration::from_secs(60));
    let fut = svc.ready().await.unwrap().call(1);
    let mut fut = Box::pin(fut);
    assert!(futures::poll!(fut.as_mut()).is_pending());
    assert_eq!(s.drainer.in_flight(), 1);
    assert_eq!(s.bulkhead.metrics().in_flight, 1);
    drop(fut);
    assert_eq!(s.drainer.in_flight(), 0);
    assert_eq!(s.bulkhead.metrics().in_flight, 0);
    assert_eq!(s.breaker.metrics().calls, 0); // released unrecorded
}

#[tokio::test(start_paused = true)]
async fn the_breaker_classifies_ok_responses_too() {
    let breaker = Arc::new(
        CircuitBreaker::builder()
            .count_window(2)
            .minimum_calls(2)
            .build()
            .unwrap(),
    );
    let mut svc = ServiceBuilder::new()
        .layer(
            BreakerLayer::new(breaker.clone()).classify(|r: Result<&u16, &Down>| match r {
                Ok(s) if *s >= 500 => Verdict::Failure,
                Ok(s) if *s >= 400 => Verdict::Ignore,
                _ => Verdict::Success,
            }),
        )
        .service_fn(|status: u16| async move { Ok::<_, Down>(status) });
    assert_eq!(svc.ready().await.unwrap().call(404).await.unwrap(), 404);
    assert_eq!(breaker.metrics().calls, 0);
    for _ in 0..2 {
        assert_eq!(svc.ready().await.unwrap().call(503).await.unwrap(), 503);
    }
    assert_eq!(breaker.state(), State::Open);
    let e = svc.ready().await.unwrap().call(200).await.unwrap_err();
    assert!(e.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn fail_fast_bulkhead_refuses_at_once() {
    let bulkhead = Arc::new(Bulkhead::builder().limit(1).build().unwrap());
    let mut svc = ServiceBuilder::new()
        .layer(BulkheadLayer::new(bulkhead.clone()))
        .service_fn(|x: u32| async move { Ok::<_, Down>(x) });
    let held = bulkhead.try_acquire().unwrap();
    let e = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(e.downcast_ref::<BulkheadError>().unwrap().is_full());
    drop(held);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
    // Called without poll_ready: tries once.
    assert_eq!(svc.call(3).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_retry_deadline_bounds_a_request_across_its_attempts() {
    let s = Stack::new();
    s.breaker.disable();
    s.ctl.fail(u32::MAX);
    s.ctl.stall(Duration::from_millis(500)); // each attempt takes 500 ms, then fails
    let retry = RetryPolicy::new(s.budget.clone())
        .timer(tokio::time::sleep)
        .max_attempts(3)
        .deadline(Duration::from_secs(1))
        .backoff(
            Backoff::builder()
                .constant(Duration::from_millis(10))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        );
    let mut svc = ServiceBuilder::new()
        .retry(retry)
        .service(Mock(s.ctl.clone()));
    for round in 1..=2 {
        let start = Instant::now();
        let granted = s.budget.metrics().retries_granted;
        assert!(svc.ready().await.unwrap().call(1).await.is_err());
        // 0-500 ms, a retry at 510 ms (it ends before the deadline), 510-1010 ms; a third
        // attempt would start past the deadline, so none is made, and none is paid for.
        assert_eq!(s.ctl.calls(), 2 * round);
        assert_eq!(start.elapsed(), Duration::from_millis(1010));
        assert_eq!(s.budget.metrics().retries_granted, granted + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_layer_cuts_the_attempt_in_flight() {
    let s = Stack::new();
    s.ctl.fail(u32::MAX);
    s.ctl.stall(Duration::from_millis(500)); // each attempt takes 500 ms, then fails
    let retry = RetryPolicy::new(s.budget.clone())
        .timer(tokio::time::sleep)
        .max_attempts(3)
        .backoff(
            Backoff::builder()
                .constant(Duration::from_millis(10))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        );
    let mut svc = ServiceBuilder::new()
        .layer(
            DeadlineLayer::new(Duration::from_secs(1))
                .unwrap()
                .clock(TokioClock(Instant::now()))
                .timer(tokio::time::sleep),
        )
        .retry(retry)
        .layer(BreakerLayer::new(s.breaker.clone()))
        .service(Mock(s.ctl.clone()));
    let start = Instant::now();
    let e = svc.ready().await.unwrap().call(1).await.unwrap_err();
    // 0-500 ms failed, retried at 510 ms, cut at the deadline 490 ms into the second attempt
    // (which would have ended at 1010 ms).
    assert!(e.is::<DeadlineExceeded>(), "{e}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(s.ctl.calls(), 2);
    let m = s.breaker.metrics();
    assert_eq!(
        (m.calls, m.failures),
        (2, 2),
        "the cut attempt is a failure"
    );
}
