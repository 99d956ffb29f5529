//! The response future of the drain and bulkhead services: it holds their guard until the
//! inner future completes or is dropped.

use super::*;

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
    pub(super) fn running(inner: F, guard: G) -> Self {
        Self {
            inner: Some(inner),
            guard: Some(guard),
            refused: None,
        }
    }

    pub(super) fn refused(e: BoxError) -> Self {
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
