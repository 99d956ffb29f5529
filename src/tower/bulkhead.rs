//! [`BulkheadLayer`] and [`BulkheadService`]: a [`Bulkhead`](crate::bulkhead::Bulkhead) slot for
//! each request.

use super::*;
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
pub struct BulkheadLayer<C: Clock = SystemClock, H = UntilResponse> {
    bulkhead: Arc<Bulkhead<C>>,
    hold: PhantomData<fn() -> H>,
}

impl<C: Clock> BulkheadLayer<C> {
    /// A layer that takes a slot of `bulkhead` for each request, waiting as the bulkhead is
    /// configured to, and holds it until the response is ready (for HTTP, see
    /// [`until_body_end`](Self::until_body_end)).
    pub fn new(bulkhead: Arc<Bulkhead<C>>) -> Self {
        Self {
            bulkhead,
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H> BulkheadLayer<C, H> {
    /// Holds each HTTP request's slot until its response body ends (or is dropped), not only
    /// until the response head is ready, so a streamed response counts against the limit until
    /// its last frame (feature `http`; the service answers with an [`http::Response`] of a
    /// [`GuardedBody`]).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn until_body_end(self) -> BulkheadLayer<C, UntilBodyEnd> {
        BulkheadLayer {
            bulkhead: self.bulkhead,
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H> Clone for BulkheadLayer<C, H> {
    fn clone(&self) -> Self {
        Self {
            bulkhead: self.bulkhead.clone(),
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H> fmt::Debug for BulkheadLayer<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("bulkhead", &self.bulkhead)
            .finish()
    }
}

impl<S, C: Clock, H> Layer<S> for BulkheadLayer<C, H> {
    type Service = BulkheadService<S, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
            admission: Admission::Idle,
            wait: None,
            hold: PhantomData,
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
pub struct BulkheadService<S, C: Clock = SystemClock, H = UntilResponse> {
    inner: S,
    bulkhead: Arc<Bulkhead<C>>,
    admission: Admission<C>,
    /// The max-wait timer of the request being admitted and the clock reading it started at,
    /// once it had to queue. Kept when the inner service turns unready (which gives up the slot
    /// or the place in the queue), so the max wait bounds the request's whole wait; cleared once
    /// it is admitted or refused.
    wait: Option<(Sleep, u64)>,
    hold: PhantomData<fn() -> H>,
}

impl<S: Clone, C: Clock, H> Clone for BulkheadService<S, C, H> {
    /// A clone with no slot of its own (as tower's `ConcurrencyLimit`).
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            bulkhead: self.bulkhead.clone(),
            admission: Admission::Idle,
            wait: None,
            hold: PhantomData,
        }
    }
}

impl<S: fmt::Debug, C: Clock, H> fmt::Debug for BulkheadService<S, C, H> {
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

impl<S, C: Clock, H> BulkheadService<S, C, H> {
    /// Takes a slot, or queues for one, or records the refusal; `Pending` only while queued.
    fn poll_admission(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.admission {
                Admission::Ready(_) | Admission::Refused(_) => return Poll::Ready(()),
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

impl<S, C, H, Req> Service<Req> for BulkheadService<S, C, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Clock,
    H: Hold<S::Response, OwnedBulkheadPermit<C>>,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, OwnedBulkheadPermit<C>, H>;

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
