//! HTTP responses whose body holds the request's guard (feature `http`): [`UntilBodyEnd`] and
//! [`GuardedBody`].

use super::future::Hold;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The guard moves into the response's body and is released when the body has yielded its last
/// frame, fails, or is dropped: what an HTTP server needs, since it sends the body after the
/// response future has completed. See
/// [`DrainLayer::until_body_end`](super::DrainLayer::until_body_end) and
/// [`BulkheadLayer::until_body_end`](super::BulkheadLayer::until_body_end).
///
/// ```
/// use resile::tower::{GuardedBody, Hold, UntilBodyEnd};
/// let held = <UntilBodyEnd as Hold<http::Response<String>, u8>>::hold(http::Response::new("x".into()), 7);
/// let body: &GuardedBody<String, u8> = held.body();
/// assert!(body.is_guarded()); // until the body ends
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UntilBodyEnd;

impl<B, G> Hold<http::Response<B>, G> for UntilBodyEnd {
    type Response = http::Response<GuardedBody<B, G>>;

    fn hold(response: http::Response<B>, guard: G) -> Self::Response {
        response.map(|inner| GuardedBody::new(inner, guard))
    }
}

pin_project! {
    /// A response body that holds a drain guard or bulkhead permit `G` until it ends: its last
    /// frame yielded, an error, or the body dropped (the client went away). Frames, trailers,
    /// size hints and end-of-stream pass through unchanged.
    ///
    /// ```
    /// use futures::executor::block_on;
    /// use http_body::Body;
    /// use resile::drain::Drainer;
    /// use resile::tower::DrainLayer;
    /// use std::sync::Arc;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// let drainer = Arc::new(Drainer::new());
    /// let mut svc = DrainLayer::new(drainer.clone()).until_body_end().layer(service_fn(|_: ()| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(String::from("streamed")))
    /// }));
    /// let response = block_on(async { svc.ready().await?.call(()).await })?;
    /// assert_eq!(drainer.in_flight(), 1); // the head is ready, the body not yet sent
    /// let mut body = std::pin::pin!(response.into_body());
    /// let frame = block_on(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)));
    /// assert!(frame.is_some());
    /// let end = block_on(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)));
    /// assert!(end.is_none());
    /// assert_eq!(drainer.in_flight(), 0); // released with the body's end
    /// # Ok::<(), resile::tower::BoxError>(())
    /// ```
    pub struct GuardedBody<B, G> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> GuardedBody<B, G> {
    /// `inner`, holding `guard` until it ends.
    pub fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }

    /// Whether the body still holds its guard (it has not ended).
    pub fn is_guarded(&self) -> bool {
        self.guard.is_some()
    }
}

/// An empty body that holds no guard: what a refusal's response carries (see
/// [`RefusalLayer`](crate::http::RefusalLayer)).
impl<B: Default, G> Default for GuardedBody<B, G> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            guard: None,
        }
    }
}

impl<B: Body, G> Body for GuardedBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // The body ended (or failed, which ends it): the work is done.
            *this.guard = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug, G> fmt::Debug for GuardedBody<B, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedBody")
            .field("inner", &self.inner)
            .field("guarded", &self.guard.is_some())
            .finish()
    }
}
