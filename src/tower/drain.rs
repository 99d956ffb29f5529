//! [`DrainLayer`] and [`DrainService`]: admission through a [`Drainer`](crate::drain::Drainer).

use super::*;
use std::marker::PhantomData;

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
pub struct DrainLayer<C: Clock = SystemClock, H = UntilResponse> {
    drainer: Arc<Drainer<C>>,
    hold: PhantomData<fn() -> H>,
}

impl<C: Clock> DrainLayer<C> {
    /// A layer that admits requests through `drainer`, each guarded until its response is ready
    /// (for HTTP, see [`until_body_end`](Self::until_body_end)).
    pub fn new(drainer: Arc<Drainer<C>>) -> Self {
        Self {
            drainer,
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H> DrainLayer<C, H> {
    /// Holds each HTTP request's guard until its response body ends (or is dropped), not only
    /// until the response head is ready, so [`Drainer::wait`] waits for a streamed response's
    /// last frame (feature `http`; the service answers with an [`http::Response`] of a
    /// [`GuardedBody`]).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn until_body_end(self) -> DrainLayer<C, UntilBodyEnd> {
        DrainLayer {
            drainer: self.drainer,
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H> Clone for DrainLayer<C, H> {
    fn clone(&self) -> Self {
        Self {
            drainer: self.drainer.clone(),
            hold: PhantomData,
        }
    }
}

impl<C: Clock, H> fmt::Debug for DrainLayer<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainLayer")
            .field("drainer", &self.drainer)
            .finish()
    }
}

impl<S, C: Clock, H> Layer<S> for DrainLayer<C, H> {
    type Service = DrainService<S, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainService {
            inner: Some(inner),
            drainer: self.drainer.clone(),
            hold: PhantomData,
        }
    }
}

/// Admits each request through a [`Drainer`] in `call`: once draining has started, the response
/// future fails with [`DrainRefused`] (boxed) and the inner service is not
/// called. An admitted request's guard is held until its response future completes or is
/// dropped, so [`Drainer::wait`] sees every request in flight; with
/// [`until_body_end`](DrainLayer::until_body_end) (HTTP), until its response body ends.
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
pub struct DrainService<S, C: Clock = SystemClock, H = UntilResponse> {
    /// `None` once a refusal for draining has dropped it.
    inner: Option<S>,
    drainer: Arc<Drainer<C>>,
    hold: PhantomData<fn() -> H>,
}

impl<S: Clone, C: Clock, H> Clone for DrainService<S, C, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            drainer: self.drainer.clone(),
            hold: PhantomData,
        }
    }
}

impl<S: fmt::Debug, C: Clock, H> fmt::Debug for DrainService<S, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainService")
            .field("inner", &self.inner)
            .field("drainer", &self.drainer)
            .finish()
    }
}

impl<S, C, H, Req> Service<Req> for DrainService<S, C, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Clock,
    H: Hold<S::Response, OwnedDrainGuard<C>>,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, OwnedDrainGuard<C>, H>;

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
