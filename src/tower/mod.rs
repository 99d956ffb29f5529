//! [tower](https://docs.rs/tower) layers for the primitives (feature `tower`), and a
//! `tower::retry::Policy` paid from a retry budget (feature `tower-retry`).
//!
//! | layer | service | what it does |
//! | --- | --- | --- |
//! | [`DrainLayer`] | [`DrainService`] | admits each request through a [`Drainer`]; the guard lives until the response future completes or is dropped |
//! | [`BulkheadLayer`] | [`BulkheadService`] | holds a [`Bulkhead`] slot for each request until its response future ends; fails fast, or waits up to the bulkhead's max wait on your timer |
//! | [`BreakerLayer`] | [`BreakerService`] | runs each request through a [`CircuitBreaker`] and records its outcome, classified by your [`ClassifyResponse`] |
//! | [`RetryPolicy`] (`tower-retry`) | `tower::retry::Retry` | retries paid from a [`RetryBudget`](crate::budget::RetryBudget) (a deposit per request, a withdrawal per retry), waiting a [`Backoff`](crate::backoff::Backoff) on your timer |
//!
//! Every service's error is a [`BoxError`] (tower's convention): a refusal is the primitive's own
//! error ([`CircuitOpen`], [`BulkheadError`], [`DrainRefused`]), recovered with `downcast_ref`, and
//! the inner service's errors pass through boxed. A refusal comes from the response future,
//! never from `poll_ready`, so a refused request does not fail the service (as tower's
//! `LoadShed`).
//!
//! The crate depends on no runtime, so it has no timer: the bulkhead's wait and the retry's
//! backoff take your runtime's sleep function (`tokio::time::sleep`, ...). The order that
//! matches [`Policy`](crate::policy::Policy): drain outermost, then the bulkhead, then retries,
//! then the breaker around each attempt.
//!
//! ```
//! use resile::breaker::CircuitBreaker;
//! use resile::bulkhead::Bulkhead;
//! use resile::drain::Drainer;
//! use resile::breaker::CircuitOpen;
//! use resile::tower::{BreakerLayer, BulkheadLayer, DrainLayer};
//! use std::sync::Arc;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let breaker = Arc::new(CircuitBreaker::builder().name("db").build()?);
//! let mut svc = ServiceBuilder::new()
//!     .layer(DrainLayer::new(Arc::new(Drainer::new())))
//!     .layer(BulkheadLayer::new(Arc::new(Bulkhead::builder().limit(8).build()?)))
//!     .layer(BreakerLayer::new(breaker.clone()))
//!     .service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req * 2) });
//!
//! futures::executor::block_on(async {
//!     assert_eq!(svc.ready().await?.call(21).await?, 42);
//!
//!     breaker.force_open(); // the database is down: refused at once
//!     let e = svc.ready().await?.call(21).await.unwrap_err();
//!     assert!(e.downcast_ref::<CircuitOpen>().is_some());
//!     Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

use crate::breaker::CircuitOpen;
use crate::breaker::{CircuitBreaker, ErrorClass, OwnedBreakerPermit};
use crate::bulkhead::BulkheadError;
use crate::bulkhead::{AcquireOwned, Bulkhead, OwnedBulkheadPermit};
use crate::clock::{Clock, SystemClock, duration_to_nanos};
use crate::drain::DrainRefused;
use crate::drain::{Drainer, OwnedDrainGuard};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// The error of every service here (tower's convention): downcast it to the primitive's refusal
/// or to the inner service's error.
///
/// ```
/// use resile::drain::Drainer;
/// use resile::drain::DrainRefused;
/// use resile::tower::{BoxError, DrainLayer};
/// use std::sync::Arc;
/// use tower::{Layer, Service, service_fn};
///
/// let drainer = Arc::new(Drainer::new());
/// let mut svc = DrainLayer::new(drainer.clone())
///     .layer(service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("db down")) }));
/// let status = |e: BoxError| if e.is::<DrainRefused>() { 503 } else { 500 };
/// let e = futures::executor::block_on(svc.call(1)).unwrap_err();
/// assert_eq!(e.downcast_ref::<std::io::Error>().unwrap().to_string(), "db down"); // boxed
/// assert_eq!(status(e), 500);
/// drainer.start_draining();
/// let e = futures::executor::block_on(svc.call(2)).unwrap_err();
/// assert_eq!(e.downcast_ref::<DrainRefused>(), Some(&DrainRefused::Draining)); // the refusal
/// assert_eq!(status(e), 503);
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error of a response future polled again after it completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PolledAfterCompletion;

impl fmt::Display for PolledAfterCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("response future polled after it completed")
    }
}

impl std::error::Error for PolledAfterCompletion {}

// ---------------------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------------------

/// Your runtime's timer: implemented by every `Fn(Duration) -> impl Future<Output = ()>`
/// (`tokio::time::sleep`, ...), and by [`FailFast`] (no timer: never wait).
///
/// ```
/// use resile::tower::Sleep;
/// use std::time::Duration;
/// let sleep = |_d: Duration| std::future::ready(());
/// assert!(sleep.waits());
/// futures::executor::block_on(sleep.sleep(Duration::from_millis(1)));
/// ```
pub trait Sleep {
    /// The future `sleep` returns.
    type Future: Future<Output = ()>;

    /// A future that completes after `d`.
    fn sleep(&self, d: Duration) -> Self::Future;

    /// Whether this timer can wait at all ([`FailFast`] cannot).
    fn waits(&self) -> bool {
        true
    }
}

impl<F, Fut> Sleep for F
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    type Future = Fut;

    fn sleep(&self, d: Duration) -> Fut {
        self(d)
    }
}

/// No timer: a [`BulkheadService`] with it refuses at once when the bulkhead is full.
///
/// ```
/// use resile::tower::{FailFast, Sleep};
/// assert!(!FailFast.waits());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct FailFast;

impl Sleep for FailFast {
    type Future = std::future::Ready<()>;

    fn sleep(&self, _: Duration) -> Self::Future {
        std::future::ready(())
    }

    fn waits(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Guarded responses (bulkhead, drain)
// ---------------------------------------------------------------------------------------------

pin_project! {
    /// The response future of [`BulkheadService`] and [`DrainService`]: the inner service's
    /// future, holding the permit or guard `G` until it completes (or is dropped), or the
    /// refusal.
    ///
    /// ```
    /// use futures::executor::block_on;
    /// use resile::bulkhead::Bulkhead;
    /// use resile::tower::BulkheadLayer;
    /// use std::sync::Arc;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// let bulkhead = Arc::new(Bulkhead::builder().limit(1).build()?);
    /// let mut svc = BulkheadLayer::new(bulkhead.clone())
    ///     .layer(service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req) }));
    /// let fut = block_on(svc.ready())?.call(1);
    /// assert_eq!(bulkhead.metrics().in_flight, 1); // the future holds the slot...
    /// assert_eq!(block_on(fut)?, 1);
    /// assert_eq!(bulkhead.metrics().in_flight, 0); // ...until it completes
    /// drop(block_on(svc.ready())?.call(2)); // or is dropped
    /// assert_eq!(bulkhead.metrics().in_flight, 0);
    /// # Ok::<(), resile::tower::BoxError>(())
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, G> {
        #[pin]
        inner: Option<F>,
        guard: Option<G>,
        refused: Option<BoxError>,
    }
}

impl<F, G> ResponseFuture<F, G> {
    fn running(inner: F, guard: G) -> Self {
        Self {
            inner: Some(inner),
            guard: Some(guard),
            refused: None,
        }
    }

    fn refused(e: BoxError) -> Self {
        Self {
            inner: None,
            guard: None,
            refused: Some(e),
        }
    }
}

impl<F, G> fmt::Debug for ResponseFuture<F, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("running", &self.inner.is_some())
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl<F, G, T, E> Future for ResponseFuture<F, G>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.inner.as_mut().as_pin_mut() {
            Some(f) => {
                let out = ready!(f.poll(cx));
                this.inner.set(None);
                // The work is done: release the slot (or drain guard) now, not when the caller
                // drops the finished future.
                *this.guard = None;
                Poll::Ready(out.map_err(Into::into))
            }
            None => Poll::Ready(Err(this
                .refused
                .take()
                .unwrap_or_else(|| Box::new(PolledAfterCompletion)))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drain
// ---------------------------------------------------------------------------------------------

/// Admits each request through a [`Drainer`]: see [`DrainService`].
///
/// ```
/// use resile::drain::Drainer;
/// use resile::drain::DrainRefused;
/// use resile::tower::DrainLayer;
/// use std::sync::Arc;
/// use tower::{Service, ServiceBuilder};
///
/// let drainer = Arc::new(Drainer::new());
/// let mut svc = ServiceBuilder::new()
///     .layer(DrainLayer::new(drainer.clone()))
///     .service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req) });
/// drainer.start_draining();
/// let e = futures::executor::block_on(svc.call(1)).unwrap_err();
/// assert_eq!(e.downcast_ref::<DrainRefused>(), Some(&DrainRefused::Draining)); // answer 503
/// ```
pub struct DrainLayer<C: Clock = SystemClock> {
    drainer: Arc<Drainer<C>>,
}

impl<C: Clock> DrainLayer<C> {
    /// A layer that admits requests through `drainer`.
    pub fn new(drainer: Arc<Drainer<C>>) -> Self {
        Self { drainer }
    }
}

impl<C: Clock> Clone for DrainLayer<C> {
    fn clone(&self) -> Self {
        Self {
            drainer: self.drainer.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for DrainLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainLayer")
            .field("drainer", &self.drainer)
            .finish()
    }
}

impl<S, C: Clock> Layer<S> for DrainLayer<C> {
    type Service = DrainService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainService {
            inner: Some(inner),
            drainer: self.drainer.clone(),
        }
    }
}

/// Admits each request through a [`Drainer`] in `call`: once draining has started, the response
/// future fails with [`DrainRefused`] (boxed) and the inner service is not
/// called. An admitted request's guard is held until its response future completes or is
/// dropped, so [`Drainer::wait`] sees every request in flight.
///
/// `poll_ready` is the inner service's until draining starts; from then on it is ready at once,
/// without asking the inner service (a request is refused at once, not after waiting in an inner
/// layer such as a full bulkhead). The first refusal drops the inner service, which will never
/// be called again: whatever it reserved in an earlier `poll_ready` (a bulkhead slot, say) is
/// given back.
///
/// ```
/// use futures::executor::block_on;
/// use resile::drain::Drainer;
/// use resile::drain::DrainRefused;
/// use resile::tower::DrainLayer;
/// use std::sync::Arc;
/// use tower::{Layer, Service, service_fn};
///
/// let drainer = Arc::new(Drainer::new());
/// let mut svc = DrainLayer::new(drainer.clone())
///     .layer(service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req) }));
/// let admitted = svc.call(1);
/// drainer.start_draining();
/// assert_eq!(drainer.in_flight(), 1); // the drain waits for the admitted request
/// let e = block_on(svc.call(2)).unwrap_err(); // new ones are refused
/// assert_eq!(e.downcast_ref::<DrainRefused>(), Some(&DrainRefused::Draining));
/// assert_eq!(block_on(admitted)?, 1); // the admitted one finishes
/// assert_eq!(drainer.in_flight(), 0);
/// # Ok::<(), resile::tower::BoxError>(())
/// ```
pub struct DrainService<S, C: Clock = SystemClock> {
    /// `None` once a refusal for draining has dropped it.
    inner: Option<S>,
    drainer: Arc<Drainer<C>>,
}

impl<S: Clone, C: Clock> Clone for DrainService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            drainer: self.drainer.clone(),
        }
    }
}

impl<S: fmt::Debug, C: Clock> fmt::Debug for DrainService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainService")
            .field("inner", &self.inner)
            .field("drainer", &self.drainer)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for DrainService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Clock,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, OwnedDrainGuard<C>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.inner {
            Some(inner) if !self.drainer.is_draining() => inner.poll_ready(cx).map_err(Into::into),
            // Draining: `call` refuses without the inner service.
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match (self.drainer.enter_owned(), &mut self.inner) {
            (Ok(guard), Some(inner)) => ResponseFuture::running(inner.call(req), guard),
            (Err(e), _) => {
                if e == DrainRefused::Draining {
                    // Never called again: give back what it reserved for this call.
                    self.inner = None;
                }
                ResponseFuture::refused(Box::new(e))
            }
            // Only a refusal for draining drops the inner service, and draining never ends.
            (Ok(_), None) => ResponseFuture::refused(Box::new(DrainRefused::Draining)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bulkhead
// ---------------------------------------------------------------------------------------------

/// Holds a [`Bulkhead`] slot for each request: see [`BulkheadService`].
///
/// [`new`](Self::new) fails fast; [`wait_with`](Self::wait_with) waits up to the bulkhead's
/// [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait) on your runtime's timer.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::bulkhead::BulkheadError;
/// use resile::tower::BulkheadLayer;
/// use std::sync::Arc;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// let bulkhead = Arc::new(Bulkhead::builder().name("reads").limit(1).build()?);
/// let mut svc = ServiceBuilder::new()
///     .layer(BulkheadLayer::new(bulkhead.clone()))
///     .service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req) });
///
/// let _held = bulkhead.try_acquire()?; // someone else holds the only slot
/// let e = futures::executor::block_on(async { svc.ready().await?.call(1).await }).unwrap_err();
/// assert!(e.downcast_ref::<BulkheadError>().unwrap().is_full());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BulkheadLayer<C: Clock = SystemClock, T = FailFast> {
    bulkhead: Arc<Bulkhead<C>>,
    timer: T,
}

impl<C: Clock> BulkheadLayer<C> {
    /// A layer that takes a slot of `bulkhead` for each request, or refuses at once.
    pub fn new(bulkhead: Arc<Bulkhead<C>>) -> Self {
        Self {
            bulkhead,
            timer: FailFast,
        }
    }
}

impl<C: Clock, T> BulkheadLayer<C, T> {
    /// Wait (FIFO) up to the bulkhead's
    /// [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait) for a slot, timed by `sleep`
    /// (`tokio::time::sleep`, ...), in `poll_ready`; a zero max wait still fails fast.
    pub fn wait_with<T2: Sleep + Clone>(self, sleep: T2) -> BulkheadLayer<C, T2> {
        BulkheadLayer {
            bulkhead: self.bulkhead,
            timer: sleep,
        }
    }
}

impl<C: Clock, T: Clone> Clone for BulkheadLayer<C, T> {
    fn clone(&self) -> Self {
        Self {
            bulkhead: self.bulkhead.clone(),
            timer: self.timer.clone(),
        }
    }
}

impl<C: Clock, T> fmt::Debug for BulkheadLayer<C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("bulkhead", &self.bulkhead)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clock, T: Sleep + Clone> Layer<S> for BulkheadLayer<C, T> {
    type Service = BulkheadService<S, C, T>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
            timer: self.timer.clone(),
            admission: Admission::Idle,
            wait: None,
        }
    }
}

/// Where a [`BulkheadService`] is in taking its next slot.
enum Admission<C: Clock> {
    /// Nothing taken or asked for.
    Idle,
    /// Queued for a slot, racing the service's `wait` timer.
    Waiting(AcquireOwned<C>),
    /// A slot, taken after the inner service said it was ready, for the next `call`.
    Ready(OwnedBulkheadPermit<C>),
    /// Refused: the next `call` answers with this.
    Refused(BulkheadError),
}

/// Holds a [`Bulkhead`] slot for each request until its response future completes (or is
/// dropped).
///
/// `poll_ready` first waits for the inner service, and only then takes the slot, so a slot is
/// never held while the inner service is not ready (a slot taken earlier is given back if the
/// inner service turns unready). Failing fast, a full bulkhead makes `poll_ready` ready at once
/// and the next response future fails with [`BulkheadError::Full`] (boxed). Waiting (see
/// [`BulkheadLayer::wait_with`]), `poll_ready` queues for a slot, FIFO with every other waiter,
/// and gives up with [`BulkheadError::TimedOut`] after the max wait, counted from the request's
/// first wait (an inner service that turns unready meanwhile costs the place in the queue, not
/// more time). A `call` without `poll_ready` tries once, failing fast.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::bulkhead::BulkheadError;
/// use resile::tower::{BoxError, BulkheadLayer};
/// use std::sync::Arc;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// let bulkhead = Arc::new(Bulkhead::builder().limit(1).build()?);
/// let mut svc = BulkheadLayer::new(bulkhead.clone())
///     .layer(service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req) }));
/// let held = bulkhead.try_acquire_owned()?; // the only slot is taken
/// futures::executor::block_on(async {
///     let e = svc.ready().await?.call(1).await.unwrap_err(); // ready, then refused
///     assert!(e.downcast_ref::<BulkheadError>().unwrap().is_full());
///     drop(held);
///     assert_eq!(svc.ready().await?.call(2).await?, 2); // the service still works
///     Ok::<(), BoxError>(())
/// })?;
/// # Ok::<(), BoxError>(())
/// ```
pub struct BulkheadService<S, C: Clock = SystemClock, T: Sleep = FailFast> {
    inner: S,
    bulkhead: Arc<Bulkhead<C>>,
    timer: T,
    admission: Admission<C>,
    /// The max-wait timer of the request being admitted and the clock reading it started at,
    /// once it had to queue. Kept when the inner service turns unready (which gives up the slot
    /// or the place in the queue), so the max wait bounds the request's whole wait; cleared once
    /// it is admitted or refused.
    wait: Option<(Pin<Box<T::Future>>, u64)>,
}

impl<S: Clone, C: Clock, T: Sleep + Clone> Clone for BulkheadService<S, C, T> {
    /// A clone with no slot of its own (as tower's `ConcurrencyLimit`).
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            bulkhead: self.bulkhead.clone(),
            timer: self.timer.clone(),
            admission: Admission::Idle,
            wait: None,
        }
    }
}

impl<S: fmt::Debug, C: Clock, T: Sleep> fmt::Debug for BulkheadService<S, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admission = match &self.admission {
            Admission::Idle => "idle",
            Admission::Waiting(_) => "waiting",
            Admission::Ready(_) => "ready",
            Admission::Refused(_) => "refused",
        };
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .field("admission", &admission)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clock, T: Sleep> BulkheadService<S, C, T> {
    /// Takes a slot, or queues for one, or records the refusal; `Pending` only while queued.
    fn poll_admission(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.admission {
                Admission::Ready(_) | Admission::Refused(_) => return Poll::Ready(()),
                Admission::Idle if self.timer.waits() && !self.bulkhead.max_wait().is_zero() => {
                    // A timer left from an earlier readiness that has run its whole max wait
                    // (the caller may have given that readiness up) is not held against this
                    // one: it starts afresh.
                    let max = duration_to_nanos(self.bulkhead.max_wait());
                    if let Some((_, start)) = &self.wait {
                        if self.bulkhead.wait_started().saturating_sub(*start) >= max {
                            self.wait = None;
                        }
                    }
                    self.admission = Admission::Waiting(self.bulkhead.clone().acquire_owned());
                }
                Admission::Idle => {
                    self.admission = match self.bulkhead.try_acquire_owned() {
                        Ok(p) => Admission::Ready(p),
                        Err(e) => Admission::Refused(e),
                    };
                }
                Admission::Waiting(acquire) => {
                    let next = match Pin::new(acquire).poll(cx) {
                        Poll::Ready(Ok(p)) => Admission::Ready(p),
                        Poll::Ready(Err(e)) => Admission::Refused(e),
                        Poll::Pending => {
                            // Queued: only now start the timer (the uncontended path allocates
                            // nothing), unless this request's timer is already running.
                            let (timer, start) = self.wait.get_or_insert_with(|| {
                                let start = self.bulkhead.wait_started();
                                (Box::pin(self.timer.sleep(self.bulkhead.max_wait())), start)
                            });
                            match timer.as_mut().poll(cx) {
                                // Dropping the `AcquireOwned` leaves the queue, and gives a slot
                                // handed over meanwhile to the next waiter.
                                Poll::Ready(()) => {
                                    Admission::Refused(self.bulkhead.timed_out(*start))
                                }
                                Poll::Pending => return Poll::Pending,
                            }
                        }
                    };
                    self.admission = next;
                    self.wait = None;
                }
            }
        }
    }
}

impl<S, C, T, Req> Service<Req> for BulkheadService<S, C, T>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Clock,
    T: Sleep,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, OwnedBulkheadPermit<C>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                self.admission = Admission::Idle;
                self.wait = None;
                return Poll::Ready(Err(e.into()));
            }
            Poll::Pending => {
                // Never hold a slot (or a place in the queue) across an unready inner service;
                // the request's max-wait timer (`wait`) runs on.
                if !matches!(self.admission, Admission::Refused(_)) {
                    self.admission = Admission::Idle;
                }
                return Poll::Pending;
            }
        }
        ready!(self.poll_admission(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admission = match std::mem::replace(&mut self.admission, Admission::Idle) {
            Admission::Ready(p) => Ok(p),
            Admission::Refused(e) => Err(e),
            // Called without `poll_ready`: try once, failing fast.
            Admission::Idle | Admission::Waiting(_) => self.bulkhead.try_acquire_owned(),
        };
        self.wait = None;
        match admission {
            Ok(permit) => ResponseFuture::running(self.inner.call(req), permit),
            Err(e) => ResponseFuture::refused(Box::new(e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Breaker
// ---------------------------------------------------------------------------------------------

/// Says what a response (or error) counts as for a [`BreakerService`]: implemented by
/// [`ErrIsFailure`] and by every `Fn(&Result<Res, E>) -> ErrorClass`, so an `Ok` HTTP 503 can be
/// a failure and an `Err` "not found" ignored.
///
/// ```
/// use resile::breaker::ErrorClass;
/// use resile::tower::ClassifyResponse;
/// let status = |r: &Result<u16, std::io::Error>| match r {
///     Ok(s) if *s >= 500 => ErrorClass::Failure,
///     Ok(_) => ErrorClass::Success,
///     Err(_) => ErrorClass::Failure,
/// };
/// assert_eq!(status.classify(&Ok(503)), ErrorClass::Failure);
/// ```
pub trait ClassifyResponse<Res, E> {
    /// What `result` counts as.
    fn classify(&self, result: &Result<Res, E>) -> ErrorClass;
}

/// The default classification: every `Ok` a success, every `Err` a failure.
///
/// ```
/// use resile::breaker::ErrorClass;
/// use resile::tower::{ClassifyResponse, ErrIsFailure};
/// assert_eq!(ErrIsFailure.classify(&Err::<(), _>("timeout")), ErrorClass::Failure);
/// assert_eq!(ErrIsFailure.classify(&Ok::<_, ()>(1)), ErrorClass::Success);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrIsFailure;

impl<Res, E> ClassifyResponse<Res, E> for ErrIsFailure {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> ErrorClass {
        match result {
            Ok(_) => ErrorClass::Success,
            Err(_) => ErrorClass::Failure,
        }
    }
}

impl<Res, E, F: Fn(&Result<Res, E>) -> ErrorClass> ClassifyResponse<Res, E> for F {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> ErrorClass {
        self(result)
    }
}

/// Runs each request through a [`CircuitBreaker`]: see [`BreakerService`].
///
/// ```
/// use resile::breaker::{CircuitBreaker, ErrorClass};
/// use resile::breaker::CircuitOpen;
/// use resile::tower::BreakerLayer;
/// use std::sync::Arc;
/// use tower::{Service, ServiceBuilder};
///
/// let breaker = Arc::new(CircuitBreaker::builder().count_window(2).minimum_calls(2).build()?);
/// let mut svc = ServiceBuilder::new()
///     // A 5xx is the dependency failing; a 4xx is the caller's problem.
///     .layer(BreakerLayer::new(breaker.clone()).classify(|r: &Result<u16, std::io::Error>| match r {
///         Ok(s) if *s >= 500 => ErrorClass::Failure,
///         Ok(s) if *s >= 400 => ErrorClass::Ignore,
///         Ok(_) => ErrorClass::Success,
///         Err(_) => ErrorClass::Failure,
///     }))
///     .service_fn(|status: u16| async move { Ok::<_, std::io::Error>(status) });
///
/// let call = |svc: &mut _, s| futures::executor::block_on(Service::call(svc, s));
/// assert_eq!(call(&mut svc, 404).unwrap(), 404);
/// assert_eq!(call(&mut svc, 503).unwrap(), 503);
/// assert_eq!(call(&mut svc, 503).unwrap(), 503); // 2 failures of 2 calls: open
/// let e = call(&mut svc, 200).unwrap_err();
/// assert!(e.downcast_ref::<CircuitOpen>().unwrap().retry_after().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BreakerLayer<C: Clock = SystemClock, K = ErrIsFailure> {
    breaker: Arc<CircuitBreaker<C>>,
    classify: K,
}

impl<C: Clock> BreakerLayer<C> {
    /// A layer that runs requests through `breaker`, every `Err` a failure.
    pub fn new(breaker: Arc<CircuitBreaker<C>>) -> Self {
        Self {
            breaker,
            classify: ErrIsFailure,
        }
    }
}

impl<C: Clock, K> BreakerLayer<C, K> {
    /// Classify each result with `classify` (see [`ClassifyResponse`]).
    pub fn classify<K2>(self, classify: K2) -> BreakerLayer<C, K2> {
        BreakerLayer {
            breaker: self.breaker,
            classify,
        }
    }
}

impl<C: Clock, K: Clone> Clone for BreakerLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<C: Clock, K> fmt::Debug for BreakerLayer<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clock, K: Clone> Layer<S> for BreakerLayer<C, K> {
    type Service = BreakerService<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// Runs each request through a [`CircuitBreaker`]: `call` asks for a permit; refused, the
/// response future fails with [`CircuitOpen`] (boxed) and the inner service is not called;
/// admitted, the response future records its result as the classifier says. A response future
/// dropped unfinished releases its permit unrecorded. `poll_ready` is the inner service's.
///
/// ```
/// use futures::executor::block_on;
/// use resile::breaker::CircuitBreaker;
/// use resile::breaker::{CircuitOpen, State};
/// use resile::tower::BreakerLayer;
/// use std::sync::Arc;
/// use tower::{Layer, Service, service_fn};
///
/// let breaker = Arc::new(CircuitBreaker::builder().build()?);
/// let mut svc = BreakerLayer::new(breaker.clone())
///     .layer(service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req) }));
/// breaker.force_open(); // refused at once, the inner service not called
/// let e = block_on(svc.call(1)).unwrap_err();
/// assert_eq!(e.downcast_ref::<CircuitOpen>().unwrap().state(), State::ForcedOpen);
/// breaker.reset();
/// assert_eq!(block_on(svc.call(2))?, 2);
/// let m = breaker.metrics();
/// assert_eq!((m.calls, m.refused), (1, 1)); // one call recorded, one refused
/// # Ok::<(), resile::tower::BoxError>(())
/// ```
pub struct BreakerService<S, C: Clock = SystemClock, K = ErrIsFailure> {
    inner: S,
    breaker: Arc<CircuitBreaker<C>>,
    classify: K,
}

impl<S: Clone, C: Clock, K: Clone> Clone for BreakerService<S, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, C: Clock, K> fmt::Debug for BreakerService<S, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C, K, Req> Service<Req> for BreakerService<S, C, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Clock,
    K: ClassifyResponse<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future, C, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => BreakerFuture {
                inner: Some(self.inner.call(req)),
                permit: Some(permit),
                classify: self.classify.clone(),
                refused: None,
            },
            Err(open) => BreakerFuture {
                inner: None,
                permit: None,
                classify: self.classify.clone(),
                refused: Some(open),
            },
        }
    }
}

pin_project! {
    /// The response future of [`BreakerService`]: records its result in the breaker when it
    /// completes, and nothing if dropped unfinished.
    ///
    /// ```
    /// use futures::executor::block_on;
    /// use resile::breaker::CircuitBreaker;
    /// use resile::tower::BreakerLayer;
    /// use std::sync::Arc;
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let breaker = Arc::new(CircuitBreaker::builder().build()?);
    /// let mut svc = BreakerLayer::new(breaker.clone())
    ///     .layer(service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("down")) }));
    /// drop(svc.call(1)); // dropped unfinished: nothing recorded
    /// assert_eq!(breaker.metrics().calls, 0);
    /// let e = block_on(svc.call(2)).unwrap_err(); // the inner error, boxed...
    /// assert!(e.downcast_ref::<std::io::Error>().is_some());
    /// let m = breaker.metrics();
    /// assert_eq!((m.calls, m.failures), (1, 1)); // ...and recorded as a failure
    /// # Ok::<(), resile::tower::BoxError>(())
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct BreakerFuture<F, C: Clock, K> {
        #[pin]
        inner: Option<F>,
        permit: Option<OwnedBreakerPermit<C>>,
        classify: K,
        refused: Option<CircuitOpen>,
    }
}

impl<F, C: Clock, K> fmt::Debug for BreakerFuture<F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerFuture")
            .field("running", &self.inner.is_some())
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl<F, C, K, T, E> Future for BreakerFuture<F, C, K>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Clock,
    K: ClassifyResponse<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.inner.as_mut().as_pin_mut() {
            Some(f) => {
                let out = ready!(f.poll(cx));
                this.inner.set(None);
                if let Some(permit) = this.permit.take() {
                    permit.resolve_as(this.classify.classify(&out));
                }
                Poll::Ready(out.map_err(Into::into))
            }
            None => Poll::Ready(Err(match this.refused.take() {
                Some(open) => Box::new(open),
                None => Box::new(PolledAfterCompletion),
            })),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retry
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "tower-retry")]
mod retry;
#[cfg(feature = "tower-retry")]
pub use retry::{RetryErrors, RetryPolicy, ShouldRetry};
