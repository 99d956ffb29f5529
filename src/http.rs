//! HTTP for the tower layers (feature `http`): refusals that are responses, responses that are
//! classified, and the server's `Retry-After` read as a hint.
//!
//! - [`RefusalLayer`], outermost in the stack, answers each refusal by one of this crate's
//!   layers with the response a load balancer and a client expect, and makes the stack's error
//!   `Infallible` (what axum's router asks of a service), so no `HandleErrorLayer` and no
//!   `downcast_ref` chain are needed: draining is `503` with `Connection: close` (the client
//!   retries on another instance), an open breaker is `503` with `Retry-After` (its hint, rounded
//!   up to whole seconds), a full bulkhead or a wait that timed out is `503` (or the status you
//!   choose, `429` say), a keyed layer's full registry (feature `registry`)
//!   is `503`. A request that ran out of time is `504 Gateway Timeout`: its
//!   [deadline](crate::tower::DeadlineLayer) passed, or its last attempt
//!   [timed out](crate::tower::TimeoutLayer). Any other error is `500`. [`refusal_response`] is
//!   the same mapping as a function.
//! - [`StatusClassify`] classifies `http::Response`s for the breaker and the retries: a `5xx` is
//!   a failure (and retried), a `4xx` is not (the dependency answered), a `429` or `503` is
//!   retried after the `Retry-After` it carries.
//! - [`retry_after`] parses the header in both of its forms (delta-seconds and HTTP-date); a
//!   malformed one is ignored, never a panic.
//!
//! The drain and bulkhead layers' `until_body_end` keeps each guard until the response body has
//! been sent (see [`crate::tower`]).

use crate::breaker::CircuitOpen;
use crate::classify::{Classify, Verdict};
use crate::drain::DrainRefused;
use crate::tower::BoxError;
use ::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};
use tower_layer::Layer;
use tower_service::Service;

/// The response for a refusal by one of this crate's primitives found in `error` (itself or
/// anywhere in its chain of [`source`](Error::source)s, as the tower layers and tower's `Buffer`
/// box them), or for one of its time limits, or `None` for any other error. A full bulkhead
/// answers `bulkhead_status`; a [`DeadlineExceeded`](crate::tower::DeadlineExceeded) or an
/// [`AttemptTimedOut`](crate::tower::AttemptTimedOut) answers `504 Gateway Timeout`.
///
/// ```
/// use http::StatusCode;
/// use resile::breaker::{CircuitOpen, State};
/// use resile::http::refusal_response;
/// use std::time::Duration;
///
/// let open = CircuitOpen::new(State::Open, Some(Duration::from_millis(1500)));
/// let r = refusal_response::<()>(&open, StatusCode::SERVICE_UNAVAILABLE).unwrap();
/// assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(r.headers()["retry-after"], "2"); // rounded up to whole seconds
/// assert!(refusal_response::<()>(&std::io::Error::other("boom"), StatusCode::SERVICE_UNAVAILABLE).is_none());
///
/// let late = resile::tower::DeadlineExceeded::new(Duration::from_secs(1));
/// let r = refusal_response::<()>(&late, StatusCode::SERVICE_UNAVAILABLE).unwrap();
/// assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
/// ```
pub fn refusal_response<B: Default>(
    error: &(dyn Error + 'static),
    bulkhead_status: StatusCode,
) -> Option<Response<B>> {
    let mut response = Response::new(B::default());
    let Some(e) = crate::tower::refusal_in(error) else {
        crate::tower::time_limit_in(error)?;
        *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        return Some(response);
    };
    if e.is::<DrainRefused>() {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else if let Some(open) = e.downcast_ref::<CircuitOpen>() {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        if let Some(after) = open.retry_after() {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    } else if crate::tower::is_registry_full(e) {
        // A keyed layer's registry is full of keys with evidence: this process declines the
        // request, as a drain does, whatever the bulkhead status.
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    } else {
        // The one refusal left: a bulkhead's.
        *response.status_mut() = bulkhead_status;
    }
    Some(response)
}

/// The delay a `Retry-After` header asks for: delta-seconds (`120`) or an HTTP-date (`Wed, 21
/// Oct 2026 07:28:00 GMT`, counted from `now`; a date in the past is zero). `None` when the header
/// is absent or malformed (several values, not ASCII, a negative or fractional number, a number
/// too large for a `u64`, a date that does not parse): a bad header is ignored, never a panic.
///
/// ```
/// use http::HeaderMap;
/// use resile::http::retry_after;
/// use std::time::{Duration, SystemTime};
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "120".parse()?);
/// assert_eq!(retry_after(&h, SystemTime::now()), Some(Duration::from_secs(120)));
/// h.insert("retry-after", "soon".parse()?);
/// assert_eq!(retry_after(&h, SystemTime::now()), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    retry_after_at(headers, || now)
}

/// [`retry_after`] with the wall clock read lazily: `now` is called only when the header is an
/// HTTP-date, so a delta-seconds hint (or an absent or malformed header) costs no clock read.
///
/// ```
/// use http::HeaderMap;
/// use resile::http::retry_after_at;
/// use std::time::{Duration, SystemTime};
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "120".parse()?);
/// let never = || -> SystemTime { unreachable!("delta-seconds need no clock") };
/// assert_eq!(retry_after_at(&h, never), Some(Duration::from_secs(120)));
/// h.insert("retry-after", "Wed, 21 Oct 2026 07:28:10 GMT".parse()?);
/// let now = || httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
/// assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(10)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn retry_after_at(headers: &HeaderMap, now: impl FnOnce() -> SystemTime) -> Option<Duration> {
    let mut values = headers.get_all(header::RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now()).unwrap_or(Duration::ZERO))
}

/// Classifies HTTP responses: a `5xx` is a failure (and retried), any other status a success
/// for the breaker; a `429` is not recorded (the dependency refused this caller, it did not
/// fail) but is retried; `429` and `503` carry their [`Retry-After`](retry_after) to the retry as
/// its hint. An `Err` (no response at all) is a failure, retried.
///
/// ```
/// use http::{Response, StatusCode};
/// use resile::classify::{Classify, Verdict};
/// use resile::http::StatusClassify;
///
/// let r = |s: u16| Response::builder().status(s).body(()).unwrap();
/// let c = StatusClassify::new();
/// assert_eq!(Classify::<_, ()>::verdict(&c, Ok(&r(503))), Verdict::Failure);
/// assert_eq!(Classify::<_, ()>::verdict(&c, Ok(&r(404))), Verdict::Success);
/// assert!(!Classify::<_, ()>::is_retryable(&c, Ok(&r(400))));
/// assert!(Classify::<_, ()>::is_retryable(&c, Ok(&r(429))));
/// ```
#[derive(Clone, Copy)]
pub struct StatusClassify {
    now: fn() -> SystemTime,
}

impl StatusClassify {
    /// The classifier, reading HTTP-dates against the system's wall clock (read only for a
    /// `Retry-After` that is an HTTP-date: a delta-seconds hint needs no clock).
    pub fn new() -> Self {
        Self {
            now: SystemTime::now,
        }
    }

    /// The classifier, reading HTTP-dates against `now` (a test's fixed instant).
    pub fn with_wall_clock(now: fn() -> SystemTime) -> Self {
        Self { now }
    }
}

impl Default for StatusClassify {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StatusClassify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusClassify").finish_non_exhaustive()
    }
}

impl<B, E> Classify<Response<B>, E> for StatusClassify {
    fn verdict(&self, result: Result<&Response<B>, &E>) -> Verdict {
        match result {
            Ok(r) if r.status().is_server_error() => Verdict::Failure,
            Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => Verdict::Ignore,
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::Failure,
        }
    }

    fn is_retryable(&self, result: Result<&Response<B>, &E>) -> bool {
        match result {
            Ok(r) => r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS,
            Err(_) => true,
        }
    }

    fn retry_after(&self, result: Result<&Response<B>, &E>) -> Option<Duration> {
        match result {
            Ok(r)
                if r.status() == StatusCode::TOO_MANY_REQUESTS
                    || r.status() == StatusCode::SERVICE_UNAVAILABLE =>
            {
                retry_after_at(r.headers(), self.now)
            }
            _ => None,
        }
    }
}

/// Answers the refusals of the layers inside it as responses (`503`, or `504` for a deadline or
/// an attempt timeout), and every other error as `500`: see [`RefusalService`] and the
/// [module docs](self).
///
/// ```
/// use resile::drain::Drainer;
/// use resile::http::RefusalLayer;
/// use resile::tower::DrainLayer;
/// use std::sync::Arc;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// let drainer = Arc::new(Drainer::new());
/// let mut svc = ServiceBuilder::new()
///     .layer(RefusalLayer::new())
///     .layer(DrainLayer::new(drainer.clone()).until_body_end())
///     .service_fn(|_: ()| async { Ok::<_, std::io::Error>(http::Response::new(String::from("ok"))) });
/// drainer.start_draining();
/// let r = futures::executor::block_on(async { svc.ready().await?.call(()).await })?;
/// assert_eq!(r.status(), 503);
/// assert_eq!(r.headers()["connection"], "close");
/// # Ok::<(), std::convert::Infallible>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RefusalLayer {
    bulkhead_status: StatusCode,
}

impl RefusalLayer {
    /// A layer that answers a full bulkhead with `503`.
    pub fn new() -> Self {
        Self {
            bulkhead_status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Answers a full bulkhead (or a wait for a slot that timed out) with `status` instead of
    /// `503`: `429 Too Many Requests`, say.
    ///
    /// ```
    /// use http::StatusCode;
    /// use resile::http::RefusalLayer;
    /// let layer = RefusalLayer::new().bulkhead_status(StatusCode::TOO_MANY_REQUESTS)?;
    /// let e = RefusalLayer::new().bulkhead_status(StatusCode::OK).unwrap_err();
    /// assert_eq!(e.field(), "bulkhead_status");
    /// # let _ = layer;
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`](crate::error::ConfigError) for a status that is not a client or server
    /// error (`400..=599`): a refusal is never a success or a redirect.
    pub fn bulkhead_status(
        mut self,
        status: StatusCode,
    ) -> Result<Self, crate::error::ConfigError> {
        if !(status.is_client_error() || status.is_server_error()) {
            return Err(crate::error::ConfigError::new(
                "bulkhead_status",
                status.as_u16(),
                "400..=599",
            ));
        }
        self.bulkhead_status = status;
        Ok(self)
    }
}

impl Default for RefusalLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RefusalLayer {
    type Service = RefusalService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RefusalService {
            inner,
            bulkhead_status: self.bulkhead_status,
            not_ready: None,
        }
    }
}

/// A service whose error is `Infallible`: the inner service's refusals (a drain, a bulkhead or a
/// breaker of this crate refused the request) and time limits (a deadline or an attempt
/// timeout, `504`) are answered as responses, see [`refusal_response`], and any other error as
/// `500 Internal Server Error` with an empty body.
/// A readiness error of the inner service is not a refusal: the service reports itself ready and
/// the next call answers `500` (a readiness error means the inner service cannot serve it).
///
/// ```
/// use resile::http::RefusalLayer;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// let mut svc = RefusalLayer::new().layer(service_fn(|_: ()| async {
///     Err::<http::Response<String>, _>(std::io::Error::other("no database"))
/// }));
/// let r = futures::executor::block_on(async { svc.ready().await?.call(()).await })?;
/// assert_eq!(r.status(), 500); // not a refusal: an internal error, never the error itself
/// # Ok::<(), std::convert::Infallible>(())
/// ```
#[derive(Debug)]
pub struct RefusalService<S> {
    inner: S,
    bulkhead_status: StatusCode,
    /// The inner service's readiness error, answered by the next call without calling it.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for RefusalService<S> {
    /// A clone with no readiness of its own.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            bulkhead_status: self.bulkhead_status,
            not_ready: None,
        }
    }
}

impl<S, Req, B> Service<Req> for RefusalService<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = RefusalFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner stack reports its refusals from the response future, never from here; an
        // error here is the inner service failing, answered by the next call's response.
        if self.not_ready.is_none() {
            if let Err(e) = ready!(self.inner.poll_ready(cx)) {
                self.not_ready = Some(e.into());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let (inner, early) = match self.not_ready.take() {
            Some(e) => (None, Some(e)),
            None => (Some(self.inner.call(req)), None),
        };
        RefusalFuture {
            inner,
            early,
            bulkhead_status: self.bulkhead_status,
        }
    }
}

pin_project! {
    /// The response future of [`RefusalService`]: the inner response, or the response for its
    /// error.
    ///
    /// ```
    /// use resile::http::{RefusalFuture, RefusalLayer};
    /// use tower::{Layer, Service, service_fn};
    /// let mut svc = RefusalLayer::new()
    ///     .layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
    /// let fut: RefusalFuture<_> = svc.call(());
    /// assert_eq!(futures::executor::block_on(fut)?.status(), 200);
    /// # Ok::<(), std::convert::Infallible>(())
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RefusalFuture<F> {
        #[pin]
        inner: Option<F>,
        early: Option<BoxError>,
        bulkhead_status: StatusCode,
    }
}

impl<F> fmt::Debug for RefusalFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefusalFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for RefusalFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let e: BoxError = match this.inner.as_pin_mut() {
            Some(inner) => match ready!(inner.poll(cx)) {
                Ok(response) => return Poll::Ready(Ok(response)),
                Err(e) => e.into(),
            },
            None => this
                .early
                .take()
                .unwrap_or_else(|| "polled after completion".into()),
        };
        Poll::Ready(Ok(refusal_response(e.as_ref(), *this.bulkhead_status)
            .unwrap_or_else(|| {
                let mut r = Response::new(B::default());
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            })))
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::breaker::State;
    use crate::bulkhead::BulkheadError;

    use crate::test_support::Wrapped;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_reads_both_forms_and_ignores_the_malformed() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        let at = |v: &str| retry_after(&headers(&[v]), now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(at("0"), Some(Duration::ZERO));
        assert_eq!(
            at("Wed, 21 Oct 2026 07:30:30 GMT"),
            Some(Duration::from_secs(150))
        );
        assert_eq!(
            at("Wed, 21 Oct 2026 07:00:00 GMT"),
            Some(Duration::ZERO),
            "in the past"
        );
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "99999999999999999999999",
            "Wed, 32 Oct 2026 07:28:00 GMT",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
        assert_eq!(retry_after(&headers(&["1", "2"]), now), None, "two values");
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        let mut binary = HeaderMap::new();
        binary.insert(
            header::RETRY_AFTER,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(retry_after(&binary, now), None, "not ASCII");
    }

    #[test]
    fn each_refusal_is_its_response() {
        let s = StatusCode::SERVICE_UNAVAILABLE;
        let r = refusal_response::<()>(&DrainRefused::Draining, s).unwrap();
        assert_eq!(r.status(), s);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let open = CircuitOpen::new(State::Open, Some(Duration::from_secs(5)));
        let r = refusal_response::<()>(&open, s).unwrap();
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let forced = CircuitOpen::new(State::ForcedOpen, None);
        let r = refusal_response::<()>(&forced, s).unwrap();
        assert!(
            r.headers().get(header::RETRY_AFTER).is_none(),
            "no hint to give"
        );
        let full = BulkheadError::Full { limit: 1 };
        let r = refusal_response::<()>(&full, StatusCode::TOO_MANY_REQUESTS).unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        // Boxed as the layers return them, and as the source of another error.
        let boxed: BoxError = Box::new(DrainRefused::Draining);
        assert!(refusal_response::<()>(boxed.as_ref(), s).is_some());
        let wrapped = Wrapped(Box::new(CircuitOpen::new(State::Open, None)));
        assert!(refusal_response::<()>(&wrapped, s).is_some());
        assert!(refusal_response::<()>(&std::io::Error::other("boom"), s).is_none());
    }

    #[test]
    fn statuses_are_classified_and_carry_their_hints() {
        let fixed = || httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        let c = StatusClassify::with_wall_clock(fixed);
        let r = |s: u16, after: Option<&str>| {
            let mut b = Response::builder().status(s);
            if let Some(a) = after {
                b = b.header(header::RETRY_AFTER, a);
            }
            b.body(()).unwrap()
        };
        let verdict = |x: &Response<()>| Classify::<_, ()>::verdict(&c, Ok(x));
        let retryable = |x: &Response<()>| Classify::<_, ()>::is_retryable(&c, Ok(x));
        let hint = |x: &Response<()>| Classify::<_, ()>::retry_after(&c, Ok(x));
        assert_eq!(verdict(&r(500, None)), Verdict::Failure);
        assert_eq!(verdict(&r(200, None)), Verdict::Success);
        assert_eq!(verdict(&r(404, None)), Verdict::Success);
        assert_eq!(verdict(&r(429, None)), Verdict::Ignore);
        assert!(retryable(&r(502, None)) && retryable(&r(429, None)));
        assert!(!retryable(&r(404, None)) && !retryable(&r(200, None)));
        assert_eq!(hint(&r(503, Some("3"))), Some(Duration::from_secs(3)));
        assert_eq!(
            hint(&r(429, Some("Wed, 21 Oct 2026 07:28:10 GMT"))),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            hint(&r(500, Some("3"))),
            None,
            "only 429 and 503 carry a hint"
        );
        assert_eq!(hint(&r(503, Some("garbage"))), None);
        // Only an HTTP-date reads the wall clock: delta-seconds, garbage and a missing header
        // never call it.
        let no_clock = StatusClassify::with_wall_clock(|| panic!("the wall clock was read"));
        let hint = |x: &Response<()>| Classify::<_, ()>::retry_after(&no_clock, Ok(x));
        assert_eq!(hint(&r(503, Some("3"))), Some(Duration::from_secs(3)));
        assert_eq!(hint(&r(429, Some("garbage"))), None);
        assert_eq!(hint(&r(503, None)), None);
        assert_eq!(
            Classify::<Response<()>, &str>::verdict(&c, Err(&"reset")),
            Verdict::Failure
        );
    }
}
