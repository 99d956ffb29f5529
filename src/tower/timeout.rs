//! [`TimeoutLayer`] (a limit on each attempt) and [`DeadlineLayer`] (a limit on the whole
//! request, across its attempts), on the crate's [timer](crate::timer), with typed errors:
//! [`AttemptTimedOut`] and [`DeadlineExceeded`].
//!
//! A deadline layer tells what runs inside it how long the request has left: around each call
//! into and each poll of its inner service it sets the request's deadline for the thread, and
//! an attempt timeout inside reads it, so an attempt never outlives the request (it ends at the
//! deadline, with [`DeadlineExceeded`]), and the tower retry does not start (or pay for) a retry
//! whose backoff would end past it. When the deadline's own sleep fires first (the request was
//! in a backoff, or nothing inside has a timeout), the deadline layer drops what is in flight
//! while it marks the thread as cutting, so the breaker inside counts the attempt it cut as a
//! failure instead of releasing it unrecorded. Both marks only reach what is polled on the same
//! thread inside the deadline's poll: a `tower::buffer::Buffer` in between runs the inner
//! service on its own task, where the deadline still ends the request but the inner layers do
//! not see it.

use super::*;
use crate::clock::Clock;
use crate::error::ConfigError;
use crate::timer::{SharedTimer, Timer};
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// An attempt ran past its [`TimeoutLayer`]'s timeout and was given up: the breaker around it
/// counts it as a failure (with the default classifier, or
/// [`StatusClassify`](crate::http::StatusClassify)), and the tower retry retries it when its
/// classifier retries errors. An HTTP service answers it with `504 Gateway Timeout` (see
/// [`RefusalLayer`](crate::http::RefusalLayer)).
///
/// ```
/// use resile::tower::AttemptTimedOut;
/// use std::time::Duration;
///
/// let e = AttemptTimedOut::new(Duration::from_millis(500));
/// assert_eq!(e.after(), Duration::from_millis(500));
/// assert_eq!(e.to_string(), "attempt timed out after 500ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttemptTimedOut {
    after: Duration,
}

impl AttemptTimedOut {
    /// An attempt given up after `after`.
    pub fn new(after: Duration) -> Self {
        Self { after }
    }

    /// The timeout the attempt ran past.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt timed out after {:?}", self.after)
    }
}

impl std::error::Error for AttemptTimedOut {}

/// A request's [`DeadlineLayer`] deadline passed before it finished: the attempt in flight was
/// cut (the breaker around it counted it as a failure) and no retry follows. An HTTP service
/// answers it with `504 Gateway Timeout` (see [`RefusalLayer`](crate::http::RefusalLayer)).
///
/// ```
/// use resile::tower::DeadlineExceeded;
/// use std::time::Duration;
///
/// let e = DeadlineExceeded::new(Duration::from_secs(1));
/// assert_eq!(e.deadline(), Duration::from_secs(1));
/// assert_eq!(e.to_string(), "deadline of 1s exceeded");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeadlineExceeded {
    deadline: Duration,
}

impl DeadlineExceeded {
    /// A request whose `deadline` passed.
    pub fn new(deadline: Duration) -> Self {
        Self { deadline }
    }

    /// The deadline the request had, from its start.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline of {:?} exceeded", self.deadline)
    }
}

impl std::error::Error for DeadlineExceeded {}

/// The deadline of one request: when it passes, on which clock, and how long it was.
#[derive(Clone)]
struct Scope {
    at: u64,
    deadline: Duration,
    clock: Arc<dyn Clock>,
}

impl Scope {
    /// What is left of the deadline now.
    fn left(&self) -> Duration {
        Duration::from_nanos(self.at.saturating_sub(self.clock.now()))
    }
}

thread_local! {
    /// The deadline of the request whose deadline layer is calling into or polling its inner
    /// service on this thread.
    static ENCLOSING: RefCell<Option<Scope>> = const { RefCell::new(None) };
    /// Set while a deadline layer drops the work it cut.
    static CUTTING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` inside `scope`: the sooner of it and any deadline already enclosing this thread's
/// work (an inner deadline layer cannot extend an outer one). The previous one is restored
/// after, also when `f` unwinds.
fn within<R>(scope: &Scope, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Option<Scope>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                let _ = ENCLOSING.try_with(|e| *e.borrow_mut() = previous);
            }
        }
    }
    let previous = ENCLOSING
        .try_with(|e| {
            let mut e = e.borrow_mut();
            let sooner = match &*e {
                Some(outer) if outer.left() <= scope.left() => outer.clone(),
                _ => scope.clone(),
            };
            e.replace(sooner)
        })
        .ok();
    let _restore = Restore(previous);
    f()
}

/// What is left of the deadline enclosing the current call or poll, and that deadline, when a
/// [`DeadlineLayer`] encloses it on this thread.
pub(crate) fn enclosing() -> Option<(Duration, Duration)> {
    ENCLOSING
        .try_with(|e| e.borrow().as_ref().map(|s| (s.left(), s.deadline)))
        .ok()
        .flatten()
}

/// Runs `f` (which drops the work a deadline cut) with the thread marked as cutting.
fn cutting(f: impl FnOnce()) {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CUTTING.try_with(|c| c.set(self.0));
        }
    }
    let previous = CUTTING.try_with(|c| c.replace(true)).unwrap_or(false);
    let _restore = Restore(previous);
    f();
}

/// Whether a deadline or timeout layer is dropping the work it cut, on this thread: a breaker's
/// response future dropped now records its attempt as a failure, a bulkhead's slot a drop.
pub(crate) fn is_cutting() -> bool {
    CUTTING.try_with(Cell::get).unwrap_or(false)
}

/// Gives up each attempt that runs longer than its timeout, with [`AttemptTimedOut`]: see
/// [`TimeoutService`]. Put it inside the [`BreakerLayer`] (so the breaker counts a timed-out
/// attempt as a failure) and the retry (so each attempt gets the whole timeout); inside a
/// [`DeadlineLayer`] an attempt also ends at the request's deadline.
///
/// It sleeps on the crate's [timer](crate::timer) ([`ThreadTimer`](crate::timer::ThreadTimer)
/// by default, [`TokioTimer`](crate::timer::TokioTimer) with feature `tokio`), so it needs no
/// runtime's time driver (`tower::timeout` needs tokio's).
///
/// ```
/// use resile::clock::{Clock, ManualClock};
/// use resile::tower::{AttemptTimedOut, TimeoutLayer};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder};
///
/// let clock = ManualClock::new(); // its sleeps move it on and end at once
/// let mut svc = ServiceBuilder::new()
///     .layer(TimeoutLayer::new(Duration::from_millis(500))?.timer(clock.clone()))
///     .service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()); // hangs
/// let e = futures::executor::block_on(svc.call(())).unwrap_err();
/// assert_eq!(e.downcast_ref::<AttemptTimedOut>().unwrap().after(), Duration::from_millis(500));
/// assert_eq!(clock.now(), 500_000_000);
///
/// assert_eq!(TimeoutLayer::new(Duration::ZERO).unwrap_err().field(), "timeout");
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
    timer: SharedTimer,
}

impl TimeoutLayer {
    /// A layer that gives up each attempt after `timeout`, on the default timer.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `timeout` when it is zero.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new("timeout", timeout, "a non-zero duration"));
        }
        Ok(Self {
            timeout,
            timer: SharedTimer::default(),
        })
    }

    /// The timer the timeout sleeps on (see [`crate::timer`]).
    pub fn timer(mut self, timer: impl Timer) -> Self {
        self.timer = SharedTimer::new(timer);
        self
    }

    /// The timeout of each attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService {
            inner,
            timeout: self.timeout,
            timer: self.timer.clone(),
        }
    }
}

/// Gives up a request that runs longer than its timeout: the response future fails with
/// [`AttemptTimedOut`] (boxed), or, when less than the timeout is left of an enclosing
/// [`DeadlineLayer`]'s deadline, with [`DeadlineExceeded`] at the deadline. The sleep is asked of
/// the timer only once the inner future is pending, so a request answered at once makes none.
/// `poll_ready` is the inner service's.
///
/// ```
/// use resile::clock::ManualClock;
/// use resile::tower::{TimeoutLayer, TimeoutService};
/// use std::time::Duration;
/// use tower::{Layer, Service, service_fn};
///
/// let layer = TimeoutLayer::new(Duration::from_secs(1))?.timer(ManualClock::new());
/// let mut svc: TimeoutService<_> = layer.layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(futures::executor::block_on(svc.call(7)).unwrap(), 7); // in time
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TimeoutService<S> {
    inner: S,
    timeout: Duration,
    timer: SharedTimer,
}

impl<S, Req> Service<Req> for TimeoutService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let (limit, expiry) = match enclosing() {
            Some((left, deadline)) if left <= self.timeout => (left, Expiry::Deadline(deadline)),
            _ => (self.timeout, Expiry::Attempt),
        };
        TimeoutFuture {
            inner: Some(self.inner.call(req)),
            limit,
            expiry,
            timer: self.timer.clone(),
            sleep: None,
        }
    }
}

/// Which limit ends an attempt that runs too long.
#[derive(Clone, Copy, Debug)]
enum Expiry {
    /// The attempt timeout.
    Attempt,
    /// The enclosing request's deadline (of this length).
    Deadline(Duration),
}

pin_project! {
    /// The response future of [`TimeoutService`]: the inner response, or the time limit's error
    /// once it has passed.
    ///
    /// ```
    /// use resile::clock::ManualClock;
    /// use resile::tower::{TimeoutFuture, TimeoutLayer};
    /// use std::time::Duration;
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let mut svc = TimeoutLayer::new(Duration::from_secs(1))?
    ///     .timer(ManualClock::new())
    ///     .layer(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
    /// let fut: TimeoutFuture<_> = svc.call(());
    /// assert!(futures::executor::block_on(fut).is_err()); // given up after 1 s
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: Option<F>,
        limit: Duration,
        expiry: Expiry,
        timer: SharedTimer,
        sleep: Option<Sleep>,
    }
}

impl<F> fmt::Debug for TimeoutFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutFuture")
            .field("limit", &self.limit)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(Box::new(PolledAfterCompletion)));
        };
        if let Poll::Ready(out) = inner.poll(cx) {
            this.inner.set(None);
            return Poll::Ready(out.map_err(Into::into));
        }
        // Pending: only now ask the timer for the sleep.
        let (timer, limit) = (&*this.timer, *this.limit);
        let sleep = this.sleep.get_or_insert_with(|| timer.sleep(limit));
        ready!(Pin::new(sleep).poll(cx));
        // Given up: drop the attempt now, marked, so a breaker or bulkhead inside counts it.
        cutting(|| this.inner.set(None));
        Poll::Ready(Err(match *this.expiry {
            Expiry::Attempt => Box::new(AttemptTimedOut::new(limit)),
            Expiry::Deadline(deadline) => Box::new(DeadlineExceeded::new(deadline)),
        }))
    }
}

/// Bounds each request, all its attempts and backoffs, by a deadline measured from its call:
/// see [`DeadlineService`]. Put it outside the retry; a [`TimeoutLayer`] inside the breaker then
/// limits each attempt to the sooner of its timeout and the deadline.
///
/// It measures on its [clock](Self::clock) and sleeps on its [timer](Self::timer) (the
/// [`SystemClock`] and the [`ThreadTimer`](crate::timer::ThreadTimer) by default: no runtime).
///
/// ```
/// use resile::clock::{Clock, ManualClock};
/// use resile::tower::{DeadlineExceeded, DeadlineLayer};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder};
///
/// let clock = ManualClock::new();
/// let mut svc = ServiceBuilder::new()
///     .layer(DeadlineLayer::new(Duration::from_secs(1))?.clock(clock.clone()).timer(clock.clone()))
///     .service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()); // hangs
/// let e = futures::executor::block_on(svc.call(())).unwrap_err();
/// assert!(e.is::<DeadlineExceeded>());
/// assert_eq!(clock.now(), 1_000_000_000); // cut at the deadline
///
/// assert_eq!(DeadlineLayer::new(Duration::ZERO).unwrap_err().field(), "deadline");
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct DeadlineLayer {
    deadline: Duration,
    clock: Arc<dyn Clock>,
    timer: SharedTimer,
}

impl DeadlineLayer {
    /// A layer that ends each request `deadline` after its call, on the [`SystemClock`] and the
    /// default timer.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `deadline` when it is zero.
    pub fn new(deadline: Duration) -> Result<Self, ConfigError> {
        if deadline.is_zero() {
            return Err(ConfigError::new(
                "deadline",
                deadline,
                "a non-zero duration",
            ));
        }
        Ok(Self {
            deadline,
            clock: Arc::new(SystemClock::new()),
            timer: SharedTimer::default(),
        })
    }

    /// The clock the deadline is measured on (default [`SystemClock`]); the attempts inside
    /// read what is left of it on this clock too.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The timer the deadline sleeps on (see [`crate::timer`]).
    pub fn timer(mut self, timer: impl Timer) -> Self {
        self.timer = SharedTimer::new(timer);
        self
    }

    /// Each request's deadline, from its call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

impl fmt::Debug for DeadlineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineLayer")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            deadline: self.deadline,
            clock: self.clock.clone(),
            timer: self.timer.clone(),
        }
    }
}

/// Ends a request whose deadline passes before it finishes: the response future fails with
/// [`DeadlineExceeded`] (boxed) at the deadline, and what was in flight is dropped then: the
/// attempt running (which the breaker inside counts as a failure, and as slow past its slow-call
/// threshold), or the backoff before the next one. While it calls into and polls the inner
/// service, the attempts inside see the deadline (see [`TimeoutService`] and
/// [`RetryPolicy`](crate::tower::RetryPolicy)). `poll_ready` is the inner service's.
///
/// ```
/// use resile::tower::{DeadlineLayer, DeadlineService};
/// use std::time::Duration;
/// use tower::{Layer, Service, service_fn};
///
/// let mut svc: DeadlineService<_> = DeadlineLayer::new(Duration::from_secs(1))?
///     .layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(futures::executor::block_on(svc.call(7)).unwrap(), 7); // in time
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct DeadlineService<S> {
    inner: S,
    deadline: Duration,
    clock: Arc<dyn Clock>,
    timer: SharedTimer,
}

impl<S: fmt::Debug> fmt::Debug for DeadlineService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineService")
            .field("inner", &self.inner)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for DeadlineService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let scope = Scope {
            at: self
                .clock
                .now()
                .saturating_add(duration_to_nanos(self.deadline)),
            deadline: self.deadline,
            clock: self.clock.clone(),
        };
        // The first attempt starts in this call (tower's retry calls its inner service here).
        let inner = within(&scope, || self.inner.call(req));
        DeadlineFuture {
            inner: Some(inner),
            scope,
            timer: self.timer.clone(),
            sleep: None,
        }
    }
}

pin_project! {
    /// The response future of [`DeadlineService`]: the inner response, or [`DeadlineExceeded`]
    /// once the deadline has passed.
    ///
    /// ```
    /// use resile::clock::ManualClock;
    /// use resile::tower::{DeadlineFuture, DeadlineLayer};
    /// use std::time::Duration;
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let clock = ManualClock::new();
    /// let mut svc = DeadlineLayer::new(Duration::from_secs(1))?
    ///     .clock(clock.clone())
    ///     .timer(clock)
    ///     .layer(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
    /// let fut: DeadlineFuture<_> = svc.call(());
    /// assert!(futures::executor::block_on(fut).is_err()); // cut at 1 s
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: Option<F>,
        scope: Scope,
        timer: SharedTimer,
        sleep: Option<Sleep>,
    }
}

impl<F> fmt::Debug for DeadlineFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineFuture")
            .field("running", &self.inner.is_some())
            .field("deadline", &self.scope.deadline)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(Box::new(PolledAfterCompletion)));
        };
        if let Poll::Ready(out) = within(this.scope, || inner.poll(cx)) {
            this.inner.set(None);
            return Poll::Ready(out.map_err(Into::into));
        }
        // Pending: only now ask the timer for the sleep, of what is left.
        let scope = &*this.scope;
        let sleep = this
            .sleep
            .get_or_insert_with(|| this.timer.sleep(scope.left()));
        ready!(Pin::new(sleep).poll(cx));
        // Cut: drop what is in flight now, marked, so the breaker inside counts its attempt.
        cutting(|| this.inner.set(None));
        Poll::Ready(Err(Box::new(DeadlineExceeded::new(scope.deadline))))
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn scope(clock: &ManualClock, at_ms: u64, deadline_ms: u64) -> Scope {
        Scope {
            at: at_ms * 1_000_000,
            deadline: Duration::from_millis(deadline_ms),
            clock: Arc::new(clock.clone()),
        }
    }

    #[test]
    fn the_sooner_deadline_encloses_and_the_previous_one_is_restored() {
        let clock = ManualClock::new();
        assert_eq!(enclosing(), None);
        within(&scope(&clock, 1000, 1000), || {
            assert_eq!(
                enclosing(),
                Some((Duration::from_secs(1), Duration::from_secs(1)))
            );
            // A later inner deadline cannot extend the outer one; a sooner one shortens it.
            within(&scope(&clock, 5000, 5000), || {
                assert_eq!(enclosing().map(|e| e.0), Some(Duration::from_secs(1)));
            });
            within(&scope(&clock, 200, 200), || {
                assert_eq!(enclosing().map(|e| e.0), Some(Duration::from_millis(200)));
            });
            clock.advance(Duration::from_millis(400));
            assert_eq!(enclosing().map(|e| e.0), Some(Duration::from_millis(600)));
        });
        assert_eq!(enclosing(), None);
    }

    #[test]
    fn a_panic_inside_restores_the_enclosing_deadline_and_the_cut_mark() {
        let clock = ManualClock::new();
        let r = std::panic::catch_unwind(|| within(&scope(&clock, 10, 10), || panic!("inner")));
        assert!(r.is_err());
        assert_eq!(enclosing(), None);
        let r = std::panic::catch_unwind(|| cutting(|| panic!("drop")));
        assert!(r.is_err());
        assert!(!is_cutting());
        cutting(|| assert!(is_cutting()));
        assert!(!is_cutting());
    }
}
