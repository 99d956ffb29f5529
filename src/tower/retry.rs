//! `tower::retry::Policy` paid from a [`RetryBudget`].

use super::Sleep;
use crate::backoff::Backoff;
use crate::breaker::CircuitOpen;
use crate::budget::RetryBudget;
use crate::bulkhead::BulkheadError;
use crate::clock::{Clock, SystemClock};
use crate::drain::DrainRefused;
use std::any::Any;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Says which results a [`RetryPolicy`] retries: implemented by [`RetryErrors`] and by every
/// `Fn(&Result<Res, E>) -> bool`.
///
/// ```
/// use resile::tower::ShouldRetry;
/// let only_timeouts = |r: &Result<u8, std::io::Error>| {
///     matches!(r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut)
/// };
/// assert!(!only_timeouts.should_retry(&Ok(1)));
/// ```
pub trait ShouldRetry<Res, E> {
    /// Whether `result` is worth another attempt.
    fn should_retry(&self, result: &Result<Res, E>) -> bool;
}

/// The default: retry every `Err` but a refusal by one of this crate's primitives, never an
/// `Ok`.
///
/// A refusal ([`CircuitOpen`], [`BulkheadError`], [`DrainRefused`]; bare, or boxed as a
/// [`BoxError`](super::BoxError) the way the layers return them, or anywhere in a boxed error's
/// chain of [`source`](Error::source)s, as tower's `Buffer` wraps it) is this process declining
/// the call, not a failure of the dependency: an open breaker refuses at once so that callers
/// fail fast, and retrying it would spend the shared budget and wait out backoff on calls that
/// never reach the dependency.
///
/// ```
/// use resile::breaker::{CircuitOpen, State};
/// use resile::tower::{BoxError, RetryErrors, ShouldRetry};
/// assert!(RetryErrors.should_retry(&Err::<(), _>("timeout")));
/// assert!(!RetryErrors.should_retry(&Ok::<_, ()>(())));
/// let open: BoxError = Box::new(CircuitOpen::new(State::Open, None));
/// assert!(!RetryErrors.should_retry(&Err::<(), _>(open)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryErrors;

impl<Res, E: 'static> ShouldRetry<Res, E> for RetryErrors {
    #[inline]
    fn should_retry(&self, result: &Result<Res, E>) -> bool {
        result.as_ref().is_err_and(|e| !is_refusal(e))
    }
}

/// Whether `e` is one of this crate's refusals, bare, or boxed (itself or one of its sources).
fn is_refusal<E: 'static>(e: &E) -> bool {
    fn refusal(e: &(dyn Error + 'static)) -> bool {
        let mut next = Some(e);
        while let Some(e) = next {
            if e.is::<CircuitOpen>() || e.is::<BulkheadError>() || e.is::<DrainRefused>() {
                return true;
            }
            next = e.source();
        }
        false
    }
    let any = e as &dyn Any;
    if let Some(boxed) = any.downcast_ref::<super::BoxError>() {
        return refusal(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return refusal(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error>>() {
        return refusal(boxed.as_ref());
    }
    any.is::<CircuitOpen>() || any.is::<BulkheadError>() || any.is::<DrainRefused>()
}

impl<Res, E, F: Fn(&Result<Res, E>) -> bool> ShouldRetry<Res, E> for F {
    #[inline]
    fn should_retry(&self, result: &Result<Res, E>) -> bool {
        self(result)
    }
}

/// A `tower::retry::Policy` paid from a [`RetryBudget`]: each original request deposits into
/// the budget (when its first result comes back), each retry withdraws from it, and a retry the
/// budget refuses is not made (the last result is returned). Between attempts it waits a
/// [`Backoff`] delay on your runtime's `sleep`; at most `max_attempts` attempts (default 3).
///
/// Requests must be `Clone` (tower retries a clone). Tower clones the policy for each request,
/// which is how the attempt count stays per request; share one budget across services by
/// cloning its `Arc`.
///
/// ```
/// use resile::backoff::Backoff;
/// use resile::budget::RetryBudget;
/// use resile::tower::RetryPolicy;
/// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder};
///
/// let budget = Arc::new(RetryBudget::builder().max_retries(10).build()?);
/// let policy = RetryPolicy::new(budget.clone(), |_d: Duration| std::future::ready(())) // tokio::time::sleep
///     .max_attempts(3)
///     .backoff(Backoff::builder().exponential(Duration::from_millis(10), 2).build()?);
///
/// let calls = Arc::new(AtomicU32::new(0));
/// let mut svc = ServiceBuilder::new().retry(policy).service_fn({
///     let calls = calls.clone();
///     move |_req: ()| {
///         let n = calls.fetch_add(1, Ordering::Relaxed);
///         async move { if n == 0 { Err("busy") } else { Ok(n) } }
///     }
/// });
/// assert_eq!(futures::executor::block_on(svc.call(())).unwrap(), 1);
/// assert_eq!(budget.metrics().retries_granted, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RetryPolicy<S, C: Clock = SystemClock, K = RetryErrors> {
    budget: Arc<RetryBudget<C>>,
    backoff: Backoff,
    max_attempts: u32,
    sleep: S,
    classify: K,
    /// Attempts whose result this (per-request) clone has seen.
    attempts: u32,
    /// The delay before the previous retry (decorrelated jitter reads it).
    previous: Duration,
}

impl<S, C: Clock> RetryPolicy<S, C> {
    /// A policy paid from `budget`, waiting with `sleep` (`tokio::time::sleep`, ...); the
    /// default [`Backoff`], 3 attempts, every `Err` retried but this crate's refusals
    /// ([`RetryErrors`]).
    pub fn new(budget: Arc<RetryBudget<C>>, sleep: S) -> Self {
        Self {
            budget,
            backoff: Backoff::default(),
            max_attempts: 3,
            sleep,
            classify: RetryErrors,
            attempts: 0,
            previous: Duration::ZERO,
        }
    }
}

impl<S, C: Clock, K> RetryPolicy<S, C, K> {
    /// At most `n` attempts, the original one included (0 counts as 1: never retry).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The delays between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Retry the results `classify` accepts (see [`ShouldRetry`]).
    pub fn retry_if<K2>(self, classify: K2) -> RetryPolicy<S, C, K2> {
        RetryPolicy {
            budget: self.budget,
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            sleep: self.sleep,
            classify,
            attempts: self.attempts,
            previous: self.previous,
        }
    }

    /// The budget retries are paid from.
    pub fn budget(&self) -> &Arc<RetryBudget<C>> {
        &self.budget
    }
}

impl<S: Clone, C: Clock, K: Clone> Clone for RetryPolicy<S, C, K> {
    fn clone(&self) -> Self {
        Self {
            budget: self.budget.clone(),
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            sleep: self.sleep.clone(),
            classify: self.classify.clone(),
            attempts: self.attempts,
            previous: self.previous,
        }
    }
}

impl<S, C: Clock, K> fmt::Debug for RetryPolicy<S, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("budget", &self.budget)
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<Req, Res, E, S, C, K> ::tower::retry::Policy<Req, Res, E> for RetryPolicy<S, C, K>
where
    Req: Clone,
    S: Sleep,
    C: Clock,
    K: ShouldRetry<Res, E>,
{
    type Future = S::Future;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<S::Future> {
        if self.attempts == 0 {
            self.budget.deposit();
        }
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts >= self.max_attempts || !self.classify.should_retry(result) {
            return None;
        }
        self.budget.try_withdraw().ok()?;
        let delay = self
            .backoff
            .delay(self.attempts, self.previous, &mut rand::rng());
        self.previous = delay;
        Some(self.sleep.sleep(delay))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::breaker::State;

    /// An error that carries another as its source, as tower's `Buffer` wraps its inner error.
    #[derive(Debug)]
    struct Wrapped(super::super::BoxError);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    fn retried<E: 'static>(e: E) -> bool {
        RetryErrors.should_retry(&Err::<(), E>(e))
    }

    #[test]
    fn refusals_are_not_retried_bare_boxed_or_as_a_source() {
        let open = || CircuitOpen::new(State::Open, None);
        assert!(!retried(open()));
        assert!(!retried(DrainRefused::Draining));
        let boxed: super::super::BoxError = Box::new(open());
        assert!(!retried(boxed));
        let deep: super::super::BoxError = Box::new(Wrapped(Box::new(DrainRefused::Draining)));
        assert!(!retried(deep));
        let deeper: Box<dyn Error + Send> = Box::new(Wrapped(Box::new(Wrapped(Box::new(open())))));
        assert!(!retried(deeper));
        // Anything else is retried, wrapped or not.
        let other: super::super::BoxError = Box::new(Wrapped("connection reset".into()));
        assert!(retried(other));
        assert!(retried(std::io::Error::other("timeout")));
    }
}
