//! Timers for the waits that have a deadline and the sleeps between retries.
//!
//! The crate depends on no async runtime, so the time to wait comes from a [`Timer`], set once on
//! the builder of whatever waits: [`BulkheadBuilder::timer`](crate::bulkhead::BulkheadBuilder::timer)
//! (a queued wait's [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait), in
//! [`Bulkhead::call_async`](crate::bulkhead::Bulkhead::call_async) and the tower layer) and
//! [`RetryBuilder::timer`](crate::retry::RetryBuilder::timer) (the backoff between attempts, in
//! [`Retry`](crate::retry::Retry), the [`Policy`](crate::policy::Policy) and the tower retry).
//!
//! | timer | sleeps on | for |
//! | --- | --- | --- |
//! | [`ThreadTimer`] (the default) | one shared timer thread (the `futures-timer` crate) | any executor |
//! | [`TokioTimer`] (feature `tokio`) | `tokio::time::sleep` | tokio, including its paused test clock |
//! | [`ManualClock`](crate::clock::ManualClock) | nothing: a sleep advances the clock and completes | tests |
//! | any `Fn(Duration) -> impl Future<Output = ()>` | what the closure returns | another runtime |
//!
//! A blocking call ([`Retry::run`](crate::retry::Retry::run)) sleeps with
//! [`Timer::blocking_sleep`], which parks the thread unless the timer says otherwise.
//!
//! ```
//! use resile::retry::Retry;
//! use std::time::Duration;
//!
//! // tokio::time::sleep, async-io's Timer::after, ... or the default thread timer.
//! let retry = Retry::builder().timer(|d: Duration| async move { let _ = d; }).build()?;
//! let mut n = 0;
//! let out = futures::executor::block_on(retry.run_async(|| {
//!     n += 1;
//!     let r = if n < 2 { Err("busy") } else { Ok(n) };
//!     async move { r }
//! }));
//! assert_eq!(out, Ok(2));
//! # Ok::<(), resile::error::ConfigError>(())
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use sync_wrapper::SyncWrapper;

/// A source of sleeps: a future that completes after a duration, and a blocking sleep.
///
/// Implemented by [`ThreadTimer`], [`TokioTimer`] (feature `tokio`),
/// [`ManualClock`](crate::clock::ManualClock), and every
/// `Fn(Duration) -> impl Future<Output = ()> + Send` (such as `tokio::time::sleep`).
///
/// ```
/// use resile::timer::{Sleep, Timer};
/// use std::time::Duration;
///
/// /// A timer whose sleeps complete at once.
/// struct Instant;
/// impl Timer for Instant {
///     fn sleep(&self, _: Duration) -> Sleep {
///         Sleep::new(std::future::ready(()))
///     }
///     fn blocking_sleep(&self, _: Duration) {}
/// }
/// futures::executor::block_on(Instant.sleep(Duration::from_secs(60)));
/// ```
pub trait Timer: Send + Sync + 'static {
    /// A future that completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> Sleep;

    /// Blocks the thread for `duration` (default: [`std::thread::sleep`]).
    fn blocking_sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

impl<F, Fut> Timer for F
where
    F: Fn(Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(self(duration))
    }
}

/// The future of [`Timer::sleep`]: any timer's sleep, boxed, so that the primitives store one
/// timer type whatever the runtime is. It is made only when a wait has to queue or a retry has
/// to wait, never on a path that does not wait.
///
/// It is `Send` and `Sync` whatever the timer's future is (only `Send` is asked of it): a shared
/// `&Sleep` gives no access to the future, so a service that holds one (the tower bulkhead
/// waiting for a slot) stays `Sync`, as axum's router asks of its layers.
///
/// ```
/// use resile::timer::Sleep;
/// let done = Sleep::new(async {}); // wraps any `Future<Output = ()> + Send + 'static`
/// futures::executor::block_on(done);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    inner: SyncWrapper<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Sleep {
    /// A sleep that completes when `future` does.
    pub fn new(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            inner: SyncWrapper::new(Box::pin(future)),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.get_mut().as_mut().poll(cx)
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").finish_non_exhaustive()
    }
}

/// The default timer: sleeps on one timer thread shared by the process (the `futures-timer`
/// crate's), started the first time anything sleeps, so it works on every executor.
///
/// ```
/// use resile::timer::{ThreadTimer, Timer};
/// use std::time::Duration;
/// futures::executor::block_on(ThreadTimer.sleep(Duration::from_millis(1)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadTimer;

impl Timer for ThreadTimer {
    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(futures_timer::Delay::new(duration))
    }
}

/// Tokio's timer (feature `tokio`): `tokio::time::sleep`, so sleeps follow tokio's clock,
/// paused and advanced in tests. Its sleeps must be polled inside a tokio runtime with the time
/// driver enabled (they may be made outside one).
///
/// ```
/// use resile::timer::{TokioTimer, Timer};
/// use std::time::Duration;
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
/// rt.block_on(TokioTimer.sleep(Duration::from_secs(3600))); // paused: returns at once
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioTimer;

#[cfg(feature = "tokio")]
impl Timer for TokioTimer {
    fn sleep(&self, duration: Duration) -> Sleep {
        // Made when first polled, inside the runtime, wherever the sleep itself was asked for.
        Sleep::new(async move { tokio::time::sleep(duration).await })
    }
}

/// A timer shared by a primitive and its clones.
#[derive(Clone)]
pub(crate) struct SharedTimer(Arc<dyn Timer>);

impl SharedTimer {
    pub(crate) fn new(timer: impl Timer) -> Self {
        Self(Arc::new(timer))
    }

    pub(crate) fn sleep(&self, duration: Duration) -> Sleep {
        self.0.sleep(duration)
    }

    pub(crate) fn blocking_sleep(&self, duration: Duration) {
        self.0.blocking_sleep(duration);
    }
}

// A timer is only asked for sleeps, outside every critical section of the primitives, so a panic
// in one leaves none of their state half-updated: the primitives that hold one stay as unwind
// safe as their atomics make them.
impl std::panic::UnwindSafe for SharedTimer {}
impl std::panic::RefUnwindSafe for SharedTimer {}

impl Default for SharedTimer {
    fn default() -> Self {
        Self::new(ThreadTimer)
    }
}

impl fmt::Debug for SharedTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Timer")
    }
}
