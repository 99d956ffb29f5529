//! [`BreakerLayer`] and [`BreakerService`]: each request through a
//! [`CircuitBreaker`](crate::breaker::CircuitBreaker).

use super::*;

/// Runs each request through a [`CircuitBreaker`]: see [`BreakerService`].
///
/// ```
/// use resile::breaker::{CircuitBreaker, CircuitOpen};
/// use resile::classify::Verdict;
/// use resile::tower::BreakerLayer;
/// use std::sync::Arc;
/// use tower::{Service, ServiceBuilder};
///
/// let breaker = Arc::new(CircuitBreaker::builder().count_window(2).minimum_calls(2).build()?);
/// let mut svc = ServiceBuilder::new()
///     // A 5xx is the dependency failing; a 4xx is the caller's problem.
///     .layer(BreakerLayer::new(breaker.clone()).classify(|r: Result<&u16, &std::io::Error>| match r {
///         Ok(s) if *s >= 500 => Verdict::Failure,
///         Ok(s) if *s >= 400 => Verdict::Ignore,
///         Ok(_) => Verdict::Success,
///         Err(_) => Verdict::Failure,
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
    /// Classify each result with `classify` (see [`crate::classify`]).
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
    K: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future, C, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => {
                BreakerFuture::running(self.inner.call(req), permit, self.classify.clone())
            }
            Err(open) => BreakerFuture::refused(Box::new(open), self.classify.clone()),
        }
    }
}

/// The permit of an admitted request, until its response future records it. Dropped unrecorded
/// (the response future was dropped unfinished: the caller went away), it is released without a
/// record, unless a [`DeadlineLayer`](super::DeadlineLayer) or [`TimeoutLayer`](super::TimeoutLayer)
/// is dropping it because its time ran out: then the attempt did not answer in the time it had,
/// a failure.
struct Admitted<C: Clock>(Option<OwnedBreakerPermit<C>>);

impl<C: Clock> Drop for Admitted<C> {
    fn drop(&mut self) {
        if let Some(permit) = self.0.take() {
            if super::timeout::is_cutting() {
                permit.failure();
            }
        }
    }
}

pin_project! {
    /// The response future of [`BreakerService`]: records its result in the breaker when it
    /// completes, and nothing if dropped unfinished (but for an attempt a
    /// [`DeadlineLayer`](super::DeadlineLayer) or [`TimeoutLayer`](super::TimeoutLayer) cut: a
    /// failure).
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
        permit: Admitted<C>,
        classify: K,
        refused: Option<BoxError>,
    }
}

impl<F, C: Clock, K> BreakerFuture<F, C, K> {
    /// An admitted request: `inner` runs under `permit`, which records its result.
    pub(super) fn running(inner: F, permit: OwnedBreakerPermit<C>, classify: K) -> Self {
        Self {
            inner: Some(inner),
            permit: Admitted(Some(permit)),
            classify,
            refused: None,
        }
    }

    /// A refused request: the future answers `refusal`, and the inner service is not called.
    pub(super) fn refused(refusal: BoxError, classify: K) -> Self {
        Self {
            inner: None,
            permit: Admitted(None),
            classify,
            refused: Some(refusal),
        }
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
    K: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.inner.as_mut().as_pin_mut() {
            Some(f) => {
                let out = ready!(f.poll(cx));
                this.inner.set(None);
                if let Some(permit) = this.permit.0.take() {
                    permit.record(this.classify.verdict(out.as_ref()));
                }
                Poll::Ready(out.map_err(Into::into))
            }
            None => Poll::Ready(Err(this
                .refused
                .take()
                .unwrap_or_else(|| Box::new(PolledAfterCompletion)))),
        }
    }
}
