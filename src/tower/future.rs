//! The response future of the drain and bulkhead services, and when it lets go of their guard:
//! when the response is ready ([`UntilResponse`]), or when an HTTP response's body ends
//! ([`UntilBodyEnd`], feature `http`).

use super::*;
use std::marker::PhantomData;

/// When a drain or bulkhead service lets go of a request's guard: given the inner service's
/// response and the guard, what the service answers with.
///
/// [`UntilResponse`] drops the guard as the response is ready (any response type);
/// `UntilBodyEnd` (feature `http`) moves it into an `http::Response`'s body, so a streamed
/// response holds its drain guard or bulkhead slot until its last frame.
///
/// ```
/// use resile::tower::{Hold, UntilResponse};
/// // The default: the guard (here a plain value) goes as the response is handed on.
/// assert_eq!(<UntilResponse as Hold<&str, u8>>::hold("ok", 7), "ok");
/// ```
pub trait Hold<T, G> {
    /// The response the service answers with.
    type Response;

    /// The answer for `response`, which the request's `guard` has guarded so far.
    fn hold(response: T, guard: G) -> Self::Response;

    /// [`hold`](Self::hold) with the guard where the response future keeps it (`Some`): taken
    /// out by default; a hold that only drops the guard drops it in place, without a move.
    #[inline]
    fn hold_in(response: T, guard: &mut Option<G>) -> Option<Self::Response> {
        guard.take().map(|g| Self::hold(response, g))
    }
}

/// The guard is released when the inner service's response future completes (or is dropped):
/// the default, for any response type.
///
/// ```
/// use resile::drain::Drainer;
/// use resile::tower::{DrainLayer, DrainService, UntilResponse};
/// use std::sync::Arc;
/// use tower::{Layer, service_fn};
/// let svc = DrainLayer::new(Arc::new(Drainer::new()))
///     .layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// let _: &DrainService<_, _, UntilResponse> = &svc; // what `new` builds
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UntilResponse;

impl<T, G> Hold<T, G> for UntilResponse {
    type Response = T;

    #[inline]
    fn hold(response: T, guard: G) -> T {
        drop(guard);
        response
    }

    #[inline]
    fn hold_in(response: T, guard: &mut Option<G>) -> Option<T> {
        guard.is_some().then(|| {
            *guard = None;
            response
        })
    }
}

/// What a request's guard learns of the inner service's result before the [`Hold`] takes it (or,
/// on an error, before it is released): a [`BulkheadSlot`] classifies it for an
/// [adaptive](crate::bulkhead::adaptive) limit; a drain guard needs nothing.
///
/// ```
/// use resile::tower::Settle;
/// /// A guard that keeps whether the request succeeded.
/// struct Seen(Option<bool>);
/// impl<T, E> Settle<T, E> for Seen {
///     fn settle(&mut self, result: Result<&T, &E>) {
///         self.0 = Some(result.is_ok());
///     }
/// }
/// let mut g = Seen(None);
/// Settle::<u8, ()>::settle(&mut g, Ok(&1));
/// assert_eq!(g.0, Some(true));
/// ```
pub trait Settle<T, E> {
    /// Called once, with the inner service's result, when its response future completes.
    fn settle(&mut self, result: Result<&T, &E>);
}

impl<C: Clock, T, E> Settle<T, E> for OwnedDrainGuard<C> {
    #[inline]
    fn settle(&mut self, _: Result<&T, &E>) {}
}

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
    pub struct ResponseFuture<F, G, H = UntilResponse> {
        #[pin]
        inner: Option<F>,
        guard: Option<G>,
        refused: Option<BoxError>,
        hold: PhantomData<fn() -> H>,
    }
}

impl<F, G, H> ResponseFuture<F, G, H> {
    pub(super) fn running(inner: F, guard: G) -> Self {
        Self {
            inner: Some(inner),
            guard: Some(guard),
            refused: None,
            hold: PhantomData,
        }
    }

    pub(super) fn refused(e: BoxError) -> Self {
        Self {
            inner: None,
            guard: None,
            refused: Some(e),
            hold: PhantomData,
        }
    }
}

impl<F, G, H> fmt::Debug for ResponseFuture<F, G, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("running", &self.inner.is_some())
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl<F, G, H, T, E> Future for ResponseFuture<F, G, H>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    G: Settle<T, E>,
    H: Hold<T, G>,
{
    type Output = Result<H::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.inner.as_mut().as_pin_mut() {
            Some(f) => {
                let out = ready!(f.poll(cx));
                this.inner.set(None);
                // The inner future is done: from here the guard is the hold's (dropped now, not
                // when the caller drops the finished future, or moved into the body); an error
                // ends the work, so it is released at once.
                if let Some(g) = this.guard.as_mut() {
                    g.settle(out.as_ref());
                }
                Poll::Ready(match out {
                    Ok(response) => H::hold_in(response, this.guard)
                        .ok_or_else(|| Box::new(PolledAfterCompletion) as BoxError),
                    Err(e) => {
                        *this.guard = None;
                        Err(e.into())
                    }
                })
            }
            None => Poll::Ready(Err(this
                .refused
                .take()
                .unwrap_or_else(|| Box::new(PolledAfterCompletion)))),
        }
    }
}
