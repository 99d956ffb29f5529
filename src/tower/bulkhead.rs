//! [`BulkheadLayer`] and [`BulkheadService`]: a [`Bulkhead`](crate::bulkhead::Bulkhead) slot for
//! each request.

use super::*;
use crate::classify::Verdict;
use std::marker::PhantomData;

/// Holds a [`Bulkhead`] slot for each request: see [`BulkheadService`].
///
/// With the bulkhead's default max wait of zero it fails fast; with a
/// [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait) it waits up to that, on the
/// bulkhead's [timer](crate::bulkhead::BulkheadBuilder::timer).
///
/// ```
/// use resile::bulkhead::{Bulkhead, BulkheadError};
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
pub struct BulkheadLayer<C: Clock = SystemClock, H = UntilResponse, K = ErrIsFailure> {
    bulkhead: Arc<Bulkhead<C>>,
    classify: K,
    hold: PhantomData<fn() -> H>,
}

impl<C: Clock> BulkheadLayer<C> {
    /// A layer that takes a slot of `bulkhead` for each request, waiting as the bulkhead is
    /// configured to, and holds it until the response is ready (for HTTP, see
    /// [`until_body_end`](Self::until_body_end)). For an [adaptive](crate::bulkhead::adaptive)
    /// bulkhead each slot reports its request's result, classified by [`ErrIsFailure`] (an
    /// error is a drop) unless [`classify`](Self::classify) says otherwise.
    pub fn new(bulkhead: Arc<Bulkhead<C>>) -> Self {
        Self {
            bulkhead,
            classify: ErrIsFailure,
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H, K> BulkheadLayer<C, H, K> {
    /// Holds each HTTP request's slot until its response body ends (or is dropped), not only
    /// until the response head is ready, so a streamed response counts against the limit until
    /// its last frame (feature `http`; the service answers with an [`http::Response`] of a
    /// [`GuardedBody`]).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn until_body_end(self) -> BulkheadLayer<C, UntilBodyEnd, K> {
        BulkheadLayer {
            bulkhead: self.bulkhead,
            classify: self.classify,
            hold: PhantomData,
        }
    }

    /// Classifies each response for an [adaptive](crate::bulkhead::adaptive) bulkhead's limit:
    /// a [`Verdict::Failure`](crate::classify::Verdict::Failure) is reported as a drop (the
    /// dependency timed out or is overloaded), a `Success` with its latency, an `Ignore` not
    /// at all. A request a [`DeadlineLayer`](super::DeadlineLayer) or
    /// [`TimeoutLayer`](super::TimeoutLayer) cuts is a drop; one whose caller goes away follows
    /// the bulkhead's [`Unreported`](crate::bulkhead::adaptive::Unreported) rule. On a static
    /// bulkhead the classification is unused. For HTTP,
    /// [`StatusClassify`](crate::http::StatusClassify) makes a 5xx a drop, a 429 nothing, the rest successes.
    ///
    /// ```
    /// use futures::executor::block_on;
    /// use resile::bulkhead::Bulkhead;
    /// use resile::bulkhead::adaptive::Aimd;
    /// use resile::classify::Verdict;
    /// use resile::clock::ManualClock;
    /// use resile::tower::BulkheadLayer;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// let clock = ManualClock::new();
    /// let bulkhead = Arc::new(
    ///     Bulkhead::builder()
    ///         .adaptive(Aimd::default().initial_limit(20).min_limit(5))
    ///         .adaptive_min_samples(1)
    ///         .clock(clock.clone())
    ///         .build()?,
    /// );
    /// // A status of 503 is the dependency shedding load: a drop.
    /// let overloaded = |r: Result<&u16, &std::io::Error>| match r {
    ///     Ok(503) | Err(_) => Verdict::Failure,
    ///     Ok(_) => Verdict::Success,
    /// };
    /// let mut svc = BulkheadLayer::new(bulkhead.clone())
    ///     .classify(overloaded)
    ///     .layer(service_fn(|_: ()| async { Ok::<u16, std::io::Error>(503) }));
    /// clock.advance(Duration::from_secs(1));
    /// block_on(async { svc.ready().await?.call(()).await })?;
    /// assert_eq!(bulkhead.limit(), 18); // the window closed on a drop: 20 × 0.9
    /// # Ok::<(), resile::tower::BoxError>(())
    /// ```
    pub fn classify<K2>(self, classify: K2) -> BulkheadLayer<C, H, K2> {
        BulkheadLayer {
            bulkhead: self.bulkhead,
            classify,
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H, K: Clone> Clone for BulkheadLayer<C, H, K> {
    fn clone(&self) -> Self {
        Self {
            bulkhead: self.bulkhead.clone(),
            classify: self.classify.clone(),
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H, K> fmt::Debug for BulkheadLayer<C, H, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("bulkhead", &self.bulkhead)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clock, H, K: Clone> Layer<S> for BulkheadLayer<C, H, K> {
    type Service = BulkheadService<S, C, H, K>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
            classify: self.classify.clone(),
            ready: None,
            admission: Admission::Idle,
            wait: None,
            hold: PhantomData,
        }
    }
}

/// A request's [`Bulkhead`] slot, held by a [`BulkheadService`]'s response future (or, with
/// `until_body_end`, by the response's body), and released when dropped. It reports the
/// request's result, classified by the layer's [`Classify`], to an
/// [adaptive](crate::bulkhead::adaptive) bulkhead; a slot dropped while a
/// [`DeadlineLayer`](super::DeadlineLayer) or [`TimeoutLayer`](super::TimeoutLayer) cuts its
/// request reports a drop.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::tower::{BulkheadLayer, BulkheadSlot, ResponseFuture};
/// use std::sync::Arc;
/// use tower::{Layer, Service, service_fn};
///
/// let bulkhead = Arc::new(Bulkhead::builder().limit(1).build()?);
/// let mut svc = BulkheadLayer::new(bulkhead.clone())
///     .layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// let fut = svc.call(1);
/// let _: &ResponseFuture<_, BulkheadSlot, _> = &fut; // the future holds the slot
/// assert_eq!(bulkhead.metrics().in_flight, 1);
/// drop(fut);
/// assert_eq!(bulkhead.metrics().in_flight, 0);
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
pub struct BulkheadSlot<C: Clock = SystemClock, K = ErrIsFailure> {
    /// The slot, until the drop releases it.
    permit: Option<OwnedBulkheadPermit<C>>,
    /// The request's result, classified, once the response is ready.
    verdict: Option<Verdict>,
    classify: K,
}

impl<C: Clock, K> BulkheadSlot<C, K> {
    /// The slot of `permit`, classifying its request's result with `classify`.
    pub(crate) fn new(permit: OwnedBulkheadPermit<C>, classify: K) -> Self {
        Self {
            permit: Some(permit),
            verdict: None,
            classify,
        }
    }

    /// The name of the bulkhead the slot belongs to.
    pub fn bulkhead_name(&self) -> &str {
        self.permit
            .as_ref()
            .map_or("", OwnedBulkheadPermit::bulkhead_name)
    }
}

impl<C: Clock, K: Classify<T, E>, T, E> Settle<T, E> for BulkheadSlot<C, K> {
    #[inline]
    fn settle(&mut self, result: Result<&T, &E>) {
        self.verdict = Some(self.classify.verdict(result));
    }
}

impl<C: Clock, K> Drop for BulkheadSlot<C, K> {
    #[inline]
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        // Dropped before its result came: cut at a deadline (the dependency did not answer in
        // time, a drop), or given up by the caller (the bulkhead's `Unreported` rule).
        match self.verdict {
            Some(verdict) => permit.record(verdict),
            None if super::timeout::is_cutting() => permit.record(Verdict::Failure),
            None => drop(permit),
        }
    }
}

impl<C: Clock, K> fmt::Debug for BulkheadSlot<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadSlot")
            .field("bulkhead", &self.bulkhead_name())
            .finish_non_exhaustive()
    }
}

/// Where a [`BulkheadService`] without a slot is in taking its next one.
enum Admission<C: Clock> {
    /// Nothing asked for.
    Idle,
    /// Queued for a slot, racing the service's `wait` timer.
    Waiting(AcquireOwned<C>),
    /// Refused: the next `call` answers with this.
    Refused(BulkheadError),
}

/// Holds a [`Bulkhead`] slot for each request until its response future completes (or is
/// dropped).
///
/// `poll_ready` first waits for the inner service, and only then takes the slot, so a slot is
/// never held while the inner service is not ready (a slot taken earlier is given back if the
/// inner service turns unready). Failing fast, a full bulkhead makes `poll_ready` ready at once
/// and the next response future fails with [`BulkheadError::Full`] (boxed). Waiting (a bulkhead
/// with a [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait)), `poll_ready` queues for a slot, FIFO with every other waiter,
/// and gives up with [`BulkheadError::TimedOut`] after the max wait, counted from the request's
/// first wait (an inner service that turns unready meanwhile costs the place in the queue, not
/// more time). A `call` without `poll_ready` tries once, failing fast.
///
/// ```
/// use resile::bulkhead::{Bulkhead, BulkheadError};
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
pub struct BulkheadService<S, C: Clock = SystemClock, H = UntilResponse, K = ErrIsFailure> {
    inner: S,
    bulkhead: Arc<Bulkhead<C>>,
    classify: K,
    /// A slot, taken after the inner service said it was ready, for the next `call`. Kept apart
    /// from `admission` so that the way from `poll_ready` to `call` moves the permit alone.
    ready: Option<OwnedBulkheadPermit<C>>,
    admission: Admission<C>,
    /// The max-wait timer of the request being admitted and the clock reading it started at,
    /// once it had to queue. Kept when the inner service turns unready (which gives up the slot
    /// or the place in the queue), so the max wait bounds the request's whole wait; cleared once
    /// it is admitted or refused.
    wait: Option<(Sleep, u64)>,
    hold: PhantomData<fn() -> H>,
}

impl<S: Clone, C: Clock, H, K: Clone> Clone for BulkheadService<S, C, H, K> {
    /// A clone with no slot of its own (as tower's `ConcurrencyLimit`).
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            bulkhead: self.bulkhead.clone(),
            classify: self.classify.clone(),
            ready: None,
            admission: Admission::Idle,
            wait: None,
            hold: PhantomData,
        }
    }
}

impl<S, C: Clock, H, K> Drop for BulkheadService<S, C, H, K> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<S: fmt::Debug, C: Clock, H, K> fmt::Debug for BulkheadService<S, C, H, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admission = match &self.admission {
            _ if self.ready.is_some() => "ready",
            Admission::Idle => "idle",
            Admission::Waiting(_) => "waiting",
            Admission::Refused(_) => "refused",
        };
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .field("admission", &admission)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clock, H, K> BulkheadService<S, C, H, K> {
    /// Gives back a slot taken for a `call` that will not come (the inner service turned unready
    /// or failed, or the service is dropped) and leaves any queue: no request ran on it, so it
    /// reports nothing to an adaptive limit.
    fn give_back(&mut self) {
        if let Some(p) = self.ready.take() {
            p.ignore();
        }
        if matches!(self.admission, Admission::Waiting(_)) {
            self.admission = Admission::Idle;
        }
    }

    /// Takes a slot, or queues for one, or records the refusal; `Pending` only while queued.
    /// A fail-fast bulkhead's try is inlined into `poll_ready`; queueing is not.
    #[inline]
    fn poll_admission(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.ready.is_none()
            && matches!(self.admission, Admission::Idle)
            && self.bulkhead.max_wait().is_zero()
        {
            match self.bulkhead.try_acquire_owned() {
                Ok(p) => self.ready = Some(p),
                Err(e) => self.admission = Admission::Refused(e),
            }
            return Poll::Ready(());
        }
        self.poll_queued(cx)
    }

    /// [`poll_admission`](Self::poll_admission) holding a slot or a refusal already, or with a
    /// max wait to queue for.
    #[inline(never)]
    fn poll_queued(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.admission {
                _ if self.ready.is_some() => return Poll::Ready(()),
                Admission::Refused(_) => return Poll::Ready(()),
                Admission::Idle if !self.bulkhead.max_wait().is_zero() => {
                    // A timer left from an earlier readiness that has run its whole max wait
                    // (the caller may have given that readiness up) is not held against this
                    // one: it starts afresh.
                    let max = duration_to_nanos(self.bulkhead.max_wait());
                    if let Some((_, start)) = &self.wait {
                        if self.bulkhead.wait_started().saturating_sub(*start) >= max {
                            self.wait = None;
                        }
                    }
                    self.admission = Admission::Waiting(self.bulkhead.acquire_owned());
                }
                Admission::Idle => {
                    match self.bulkhead.try_acquire_owned() {
                        Ok(p) => self.ready = Some(p),
                        Err(e) => self.admission = Admission::Refused(e),
                    }
                    return Poll::Ready(());
                }
                Admission::Waiting(acquire) => {
                    let next = match Pin::new(acquire).poll(cx) {
                        Poll::Ready(Ok(p)) => {
                            self.ready = Some(p);
                            Admission::Idle
                        }
                        Poll::Ready(Err(e)) => Admission::Refused(e),
                        Poll::Pending => {
                            // Queued: only now start the timer (the uncontended path allocates
                            // nothing), unless this request's timer is already running.
                            let (timer, start) = self.wait.get_or_insert_with(|| {
                                let start = self.bulkhead.wait_started();
                                (self.bulkhead.timer().sleep(self.bulkhead.max_wait()), start)
                            });
                            match Pin::new(timer).poll(cx) {
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

impl<S, C, H, K, Req> Service<Req> for BulkheadService<S, C, H, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Clock,
    K: Classify<S::Response, S::Error> + Clone,
    H: Hold<S::Response, BulkheadSlot<C, K>>,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, BulkheadSlot<C, K>, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                self.give_back();
                self.admission = Admission::Idle;
                self.wait = None;
                return Poll::Ready(Err(e.into()));
            }
            Poll::Pending => {
                // Never hold a slot (or a place in the queue) across an unready inner service;
                // the request's max-wait timer (`wait`) runs on.
                self.give_back();
                return Poll::Pending;
            }
        }
        ready!(self.poll_admission(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admission = match self.ready.take() {
            Some(p) => Ok(p),
            None => {
                self.wait = None;
                match std::mem::replace(&mut self.admission, Admission::Idle) {
                    Admission::Refused(e) => Err(e),
                    // Called without `poll_ready`: try once, failing fast.
                    Admission::Idle | Admission::Waiting(_) => self.bulkhead.try_acquire_owned(),
                }
            }
        };
        match admission {
            Ok(permit) => {
                let slot = BulkheadSlot::new(permit, self.classify.clone());
                ResponseFuture::running(self.inner.call(req), slot)
            }
            Err(e) => ResponseFuture::refused(Box::new(e)),
        }
    }
}
