//! What a call's result means, for every primitive that records or retries it: one [`Verdict`]
//! for the breaker, and whether (and when) to retry for the retry helper, the policy and the
//! tower layers.
//!
//! One trait, [`Classify`], answers both over a result seen by reference (`Result<&T, &E>`, so
//! an HTTP 503 that arrived as an `Ok` response can fail too). [`ErrIsFailure`] is the default
//! everywhere: every `Ok` a success, every `Err` a failure, and failures retried. A closure
//! `Fn(Result<&T, &E>) -> Verdict` classifies, and retries what it calls a failure;
//! [`RetryBuilder::retry_if`](crate::retry::RetryBuilder::retry_if) narrows only the retries.
//!
//! | asked by | uses |
//! | --- | --- |
//! | [`CircuitBreaker::call_with`](crate::breaker::CircuitBreaker::call_with), [`BreakerLayer::classify`](crate::tower::BreakerLayer::classify) | [`verdict`](Classify::verdict) |
//! | [`Retry`](crate::retry::Retry) (errors only: an `Ok` ends the run) | [`is_retryable`](Classify::is_retryable), [`retry_after`](Classify::retry_after) |
//! | [`Policy`](crate::policy::Policy) | its own classifier's verdict for the breaker, the retry's for retries |
//! | [`RetryPolicy`](crate::tower::RetryPolicy) (tower) | `is_retryable`, `retry_after` |
//!
//! A refusal by one of this crate's primitives is never retried, whatever the classifier says:
//! it is this process declining the call, not the dependency failing.
//!
//! ```
//! use resile::classify::{Classify, Verdict};
//! use std::time::Duration;
//!
//! struct Http;
//! impl Classify<u16, std::io::Error> for Http {
//!     fn verdict(&self, result: Result<&u16, &std::io::Error>) -> Verdict {
//!         match result {
//!             Ok(404) => Verdict::Success, // an expected answer: the dependency works
//!             Ok(400..=499) => Verdict::Ignore, // the caller's mistake: says nothing
//!             Ok(500..) | Err(_) => Verdict::Failure,
//!             Ok(_) => Verdict::Success,
//!         }
//!     }
//!     fn retry_after(&self, result: Result<&u16, &std::io::Error>) -> Option<Duration> {
//!         matches!(result, Ok(503)).then(|| Duration::from_secs(1))
//!     }
//! }
//! assert_eq!(Http.verdict(Ok(&503)), Verdict::Failure);
//! assert!(Http.is_retryable(Ok(&503)) && !Http.is_retryable(Ok(&400)));
//! ```

use std::time::Duration;

/// What one result counts as for a circuit breaker.
///
/// Only `Failure` counts against the dependency; `Ignore` releases the permit and records
/// nothing.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use resile::classify::Verdict;
///
/// let breaker = CircuitBreaker::builder().build()?;
/// let classify = |r: Result<&(), &u16>| match r {
///     Err(404) => Verdict::Success, // an expected answer: the dependency works
///     Err(400) => Verdict::Ignore,  // the caller's own mistake: says nothing
///     Err(_) => Verdict::Failure,
///     Ok(_) => Verdict::Success,
/// };
/// for status in [404, 400, 503] {
///     let _ = breaker.call_with(classify, || Err::<(), u16>(status));
/// }
/// let m = breaker.metrics();
/// assert_eq!((m.calls, m.failures), (2, 1)); // the 404 and the 503; only the 503 failed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The dependency answered as expected.
    Success,
    /// The dependency failed: record a failure (and retry, by default).
    Failure,
    /// Not the dependency's doing: record nothing, retry nothing.
    Ignore,
}

/// Classifies a call's result: its [`Verdict`] for a breaker, and whether and when a retry may
/// follow it. See the [module docs](self).
///
/// Implemented by [`ErrIsFailure`], [`RetryIf`], and every `Fn(Result<&T, &E>) -> Verdict`.
///
/// ```
/// use resile::classify::{Classify, Verdict};
///
/// // A closure classifies; what it calls a failure is retried.
/// let not_found_is_an_answer = |r: Result<&(), &u16>| match r {
///     Err(404) | Ok(_) => Verdict::Success,
///     Err(_) => Verdict::Failure,
/// };
/// assert!(!not_found_is_an_answer.is_retryable(Err(&404)));
/// assert!(not_found_is_an_answer.is_retryable(Err(&503)));
/// ```
pub trait Classify<T, E> {
    /// What `result` counts as for a breaker.
    fn verdict(&self, result: Result<&T, &E>) -> Verdict;

    /// Whether another attempt may follow `result` (default: when its verdict is
    /// [`Verdict::Failure`]).
    fn is_retryable(&self, result: Result<&T, &E>) -> bool {
        self.verdict(result) == Verdict::Failure
    }

    /// A delay the server asked for in `result` (`Retry-After`, gRPC pushback): it replaces the
    /// computed backoff, clamped to the backoff's bounds. Default: none.
    fn retry_after(&self, result: Result<&T, &E>) -> Option<Duration> {
        let _ = result;
        None
    }
}

impl<T, E, F: Fn(Result<&T, &E>) -> Verdict> Classify<T, E> for F {
    #[inline]
    fn verdict(&self, result: Result<&T, &E>) -> Verdict {
        self(result)
    }
}

/// The default classification: every `Ok` a success, every `Err` a failure, and every failure
/// retryable.
///
/// ```
/// use resile::classify::{Classify, ErrIsFailure, Verdict};
/// assert_eq!(ErrIsFailure.verdict(Err::<&(), _>(&"timeout")), Verdict::Failure);
/// assert!(!ErrIsFailure.is_retryable(Ok::<_, &()>(&7)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrIsFailure;

impl<T, E> Classify<T, E> for ErrIsFailure {
    #[inline]
    fn verdict(&self, result: Result<&T, &E>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::Failure,
        }
    }
}

/// Every `Err` a failure, retried only where `F` says so: what
/// [`RetryBuilder::retry_if`](crate::retry::RetryBuilder::retry_if) and
/// [`RetryPolicy::retry_if`](crate::tower::RetryPolicy::retry_if) make of a closure
/// `Fn(&E) -> bool`.
///
/// ```
/// use resile::classify::{Classify, RetryIf};
/// let transient = RetryIf(|e: &&str| *e != "bad request");
/// assert!(Classify::<(), _>::is_retryable(&transient, Err(&"timeout")));
/// assert!(!Classify::<(), _>::is_retryable(&transient, Err(&"bad request")));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryIf<F>(pub F);

impl<T, E, F: Fn(&E) -> bool> Classify<T, E> for RetryIf<F> {
    #[inline]
    fn verdict(&self, result: Result<&T, &E>) -> Verdict {
        ErrIsFailure.verdict(result)
    }

    #[inline]
    fn is_retryable(&self, result: Result<&T, &E>) -> bool {
        result.is_err_and(|e| (self.0)(e))
    }
}
