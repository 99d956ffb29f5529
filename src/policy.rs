//! The four patterns composed, in the order a request meets them.
//!
//! A [`Policy`] runs one operation through any subset of:
//!
//! 1. **drain admission**: a [`Drainer`] refuses new work once the process is shutting down;
//! 2. a **bulkhead** permit: a [`Bulkhead`] caps how many calls run at once, failing fast or
//!    waiting up to its [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait);
//! 3. up to `max_attempts` **attempts** of a [`Retry`], retries paid from its budget with its
//!    backoff, inside its deadline (on the async path the deadline also cuts the attempt in
//!    flight when it passes);
//! 4. each attempt through a [`CircuitBreaker`], which records the outcome and refuses attempts
//!    while the dependency is down;
//!
//! and, when any of them refuses or the last attempt fails, an optional **fallback** (an answer
//! from a cache while the breaker is open, say). The drain guard and the bulkhead permit are
//! held across all attempts and backoffs of one call, and released when it ends.
//!
//! A call that does not succeed returns a [`PolicyError`] that says which layer refused and why.
//! A breaker refusal ends the call (it is never retried: the breaker said the dependency is down,
//! and its [`retry_after`](PolicyError::retry_after) says for how long). Every other error of the
//! operation is retried when the retry's classifier says so; the breaker records it as a failure,
//! unless [`PolicyBuilder::classify`] says it is ignored or counts as a success.
//!
//! **Time limits** (async path): an attempt that runs past the
//! [attempt timeout](PolicyBuilder::attempt_timeout) is given up, counted by the breaker as a
//! failure, and retried like any failure; the last one ends the call with
//! [`PolicyError::TimedOut`]. When the retry has a [deadline](crate::retry::RetryBuilder::deadline),
//! an attempt still running when it passes is cut then, counted by the breaker the same way (a
//! failure, and slow past its slow-call threshold: the dependency did not answer in the time the
//! caller had), never retried, and the call ends with [`PolicyError::DeadlineExceeded`]. Each
//! attempt waits on one sleep, of the attempt timeout or of what is left of the deadline,
//! whichever is shorter. The blocking [`Policy::call`] cannot interrupt its operation: there the
//! deadline only stops retries, and the attempt timeout does nothing.
//!
//! The primitives stay independent of each other: this module is the only one that knows all
//! four. Each is shared through an `Arc`, so one breaker or budget can guard several policies.
//!
//! ```
//! use resile::backoff::Backoff;
//! use resile::breaker::CircuitBreaker;
//! use resile::budget::RetryBudget;
//! use resile::bulkhead::Bulkhead;
//! use resile::clock::ManualClock;
//! use resile::drain::Drainer;
//! use resile::policy::{Policy, PolicyError};
//! use resile::retry::Retry;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let drainer = Arc::new(Drainer::builder().clock(clock.clone()).build()?);
//! let reads = Arc::new(Bulkhead::builder().name("reads").limit(8).clock(clock.clone()).build()?);
//! let breaker = Arc::new(
//!     CircuitBreaker::builder().name("db").count_window(4).minimum_calls(4).clock(clock.clone()).build()?,
//! );
//! let budget = Arc::new(RetryBudget::builder().max_retries(10).clock(clock.clone()).build()?);
//! let retry = Retry::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::builder().constant(Duration::from_millis(10)).build()?)
//!     .budget(budget)
//!     .clock(clock.clone())
//!     .timer(clock.clone()) // each backoff moves the manual clock on: no wall time passes
//!     .build()?;
//! let policy = Policy::builder()
//!     .drainer(drainer.clone())
//!     .bulkhead(reads)
//!     .breaker(breaker)
//!     .retry(retry)
//!     .fallback(|e: &PolicyError<&str>| e.is_breaker_open().then_some("cached"))
//!     .build()?;
//!
//! let mut calls = 0;
//! let v = policy.call(|| { calls += 1; if calls < 2 { Err("timeout") } else { Ok("fresh") } });
//! assert_eq!(v, Ok("fresh"));
//!
//! // The dependency dies: the breaker opens after 4 failures in its window, and the fallback
//! // answers from the cache instead of waiting on it.
//! let v = policy.call(|| Err("timeout"));
//! assert_eq!(v, Ok("cached"));
//!
//! drainer.start_draining();
//! let e = policy.call(|| Ok("fresh")).unwrap_err();
//! assert!(matches!(e, PolicyError::Drain(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::breaker::{BreakerError, CircuitBreaker, CircuitOpen};
use crate::bulkhead::{Bulkhead, BulkheadError};
use crate::classify::{Classify, ErrIsFailure, Verdict};
use crate::clock::{Clock, SystemClock, duration_to_nanos};
use crate::drain::{DrainRefused, Drainer};
use crate::error::ConfigError;
use crate::retry::{Retry, RetryError};
use crate::timer::{SharedTimer, Timer};
use crate::wait::timer::LazyTimer;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// Why a [`Policy`] call did not produce a value: which layer refused, and why.
///
/// The refusals before any attempt ([`Drain`](Self::Drain),
/// [`Bulkhead`](Self::Bulkhead)) carry the primitive's own error; the others carry how
/// many attempts ran and, where one ran, the operation's last error.
///
/// ```
/// use resile::breaker::{CircuitOpen, State};
/// use resile::policy::PolicyError;
/// use std::time::Duration;
///
/// let e: PolicyError<&str> = PolicyError::Breaker {
///     open: CircuitOpen::new(State::Open, Some(Duration::from_secs(5))),
///     attempts: 1,
/// };
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
/// assert_eq!(e.attempts(), 1);
/// assert_eq!(e.last(), None);
/// assert_eq!(e.to_string(), "circuit breaker open: call refused, retry after 5s (after 1 attempt)");
///
/// let e = PolicyError::BudgetExhausted { attempts: 1, last: "503" };
/// assert_eq!(e.into_last(), Some("503"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError<E> {
    /// The drainer refused: the process is shutting down. Send the caller elsewhere (HTTP 503).
    Drain(DrainRefused),
    /// The bulkhead refused: full (and the caller did not wait), no slot within its max wait, or
    /// closed.
    Bulkhead(BulkheadError),
    /// The breaker refused an attempt: the dependency is down. Ends the call without a retry.
    Breaker {
        /// The breaker's refusal: which state refused, and when it will admit a probe.
        open: CircuitOpen,
        /// Attempts that ran before the refusal (0: the breaker refused the first).
        attempts: u32,
    },
    /// The operation failed, and the retry budget refused the retry.
    BudgetExhausted {
        /// Attempts that ran.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
    /// The retry's deadline passed: it would pass during the backoff before the next attempt,
    /// or (on the async path) it passed while an attempt ran, and that attempt was cut.
    DeadlineExceeded {
        /// Attempts that ran, a cut one included.
        attempts: u32,
        /// The error of the last attempt; `None` when it returned none (the deadline cut it, or
        /// it ran past the attempt timeout).
        last: Option<E>,
    },
    /// The last attempt ran past the [attempt timeout](PolicyBuilder::attempt_timeout) (on the
    /// async path) and was given up; the breaker counted it as a failure.
    TimedOut {
        /// Attempts that ran, the timed-out one included.
        attempts: u32,
        /// The attempt timeout.
        after: Duration,
    },
    /// The operation's own error after the last attempt: every attempt allowed failed, or the
    /// error was not worth retrying (the retry's classifier said so).
    Failed {
        /// Attempts that ran.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
}

impl<E> PolicyError<E> {
    /// How many times the operation ran (0 when a layer refused before the first attempt).
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Drain(_) | Self::Bulkhead(_) => 0,
            Self::Breaker { attempts, .. }
            | Self::BudgetExhausted { attempts, .. }
            | Self::DeadlineExceeded { attempts, .. }
            | Self::TimedOut { attempts, .. }
            | Self::Failed { attempts, .. } => *attempts,
        }
    }

    /// The operation's last error, when the call ended on one.
    pub fn last(&self) -> Option<&E> {
        match self {
            Self::BudgetExhausted { last, .. } | Self::Failed { last, .. } => Some(last),
            Self::DeadlineExceeded { last, .. } => last.as_ref(),
            _ => None,
        }
    }

    /// The operation's last error, by value.
    pub fn into_last(self) -> Option<E> {
        match self {
            Self::BudgetExhausted { last, .. } | Self::Failed { last, .. } => Some(last),
            Self::DeadlineExceeded { last, .. } => last,
            _ => None,
        }
    }

    /// Whether a time limit ended the call: the last attempt ran past the attempt timeout, or
    /// the retry's deadline passed (an HTTP service answers either with 504).
    ///
    /// ```
    /// use resile::policy::PolicyError;
    /// // The deadline cut the second attempt: it returned no error of its own.
    /// let e: PolicyError<&str> = PolicyError::DeadlineExceeded { attempts: 2, last: None };
    /// assert!(e.is_timeout() && e.last().is_none());
    /// assert_eq!(e.to_string(), "gave up after 2 attempts: deadline exceeded");
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut { .. } | Self::DeadlineExceeded { .. })
    }

    /// How long until the breaker admits a probe, when the breaker refused (`None` otherwise,
    /// and when it was forced open).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Breaker { open, .. } => open.retry_after(),
            _ => None,
        }
    }

    /// Whether the breaker refused.
    pub fn is_breaker_open(&self) -> bool {
        matches!(self, Self::Breaker { .. })
    }

    /// Whether a layer refused before the operation ran at all (draining, bulkhead, or the
    /// breaker on the first attempt): the dependency never saw this call.
    pub fn is_refused_before_call(&self) -> bool {
        self.attempts() == 0
    }

    fn from_retry(e: RetryError<Attempt<E>>) -> Self {
        let attempts = e.attempts();
        let kind = match &e {
            RetryError::BudgetExhausted { .. } => 0,
            RetryError::DeadlineExceeded { .. } => 1,
            _ => 2,
        };
        match e.into_last() {
            Attempt::Refused(open) => Self::Breaker {
                open,
                attempts: attempts.saturating_sub(1),
            },
            Attempt::Cut => Self::DeadlineExceeded {
                attempts,
                last: None,
            },
            // Timed out, and no retry fits before the deadline: the deadline ended the call.
            Attempt::TimedOut(_) if kind == 1 => Self::DeadlineExceeded {
                attempts,
                last: None,
            },
            Attempt::TimedOut(after) => Self::TimedOut { attempts, after },
            Attempt::Inner(last) => match kind {
                0 => Self::BudgetExhausted { attempts, last },
                1 => Self::DeadlineExceeded {
                    attempts,
                    last: Some(last),
                },
                _ => Self::Failed { attempts, last },
            },
        }
    }
}

impl<E: fmt::Display> fmt::Display for PolicyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.attempts();
        let s = if n == 1 { "" } else { "s" };
        match self {
            Self::Drain(r) => r.fmt(f),
            Self::Bulkhead(b) => b.fmt(f),
            Self::Breaker { open, .. } => write!(f, "{open} (after {n} attempt{s})"),
            Self::BudgetExhausted { last, .. } => {
                write!(
                    f,
                    "gave up after {n} attempt{s} (retry budget exhausted): {last}"
                )
            }
            Self::DeadlineExceeded {
                last: Some(last), ..
            } => {
                write!(
                    f,
                    "gave up after {n} attempt{s} (deadline exceeded): {last}"
                )
            }
            Self::DeadlineExceeded { last: None, .. } => {
                write!(f, "gave up after {n} attempt{s}: deadline exceeded")
            }
            Self::TimedOut { after, .. } => {
                write!(
                    f,
                    "gave up after {n} attempt{s}: the last ran past {after:?}"
                )
            }
            Self::Failed { last, .. } => write!(f, "failed after {n} attempt{s}: {last}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PolicyError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Drain(r) => Some(r),
            Self::Bulkhead(b) => Some(b),
            Self::Breaker { open, .. } => Some(open),
            Self::TimedOut { .. } => None,
            Self::DeadlineExceeded { last, .. } => last.as_ref().map(|e| e as _),
            Self::BudgetExhausted { last, .. } | Self::Failed { last, .. } => Some(last),
        }
    }
}

/// What a [`Policy`] answers instead of an error: implemented by [`NoFallback`] and by every
/// `Fn(&PolicyError<E>) -> Option<T>` (return `None` to let the error through).
///
/// ```
/// use resile::policy::{Fallback, PolicyError};
/// let cache = |e: &PolicyError<()>| e.is_breaker_open().then_some("cached");
/// assert_eq!(cache.fallback(&PolicyError::Failed { attempts: 1, last: () }), None);
/// ```
pub trait Fallback<T, E> {
    /// The value to answer with when the call ended with `error`, or `None` to return the error.
    fn fallback(&self, error: &PolicyError<E>) -> Option<T>;
}

/// No fallback: every error reaches the caller.
///
/// ```
/// use resile::policy::{Fallback, NoFallback, PolicyError};
/// let e = PolicyError::Failed { attempts: 1, last: "x" };
/// assert_eq!(Fallback::<u8, _>::fallback(&NoFallback, &e), None);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFallback;

impl<T, E> Fallback<T, E> for NoFallback {
    #[inline]
    fn fallback(&self, _: &PolicyError<E>) -> Option<T> {
        None
    }
}

impl<T, E, F: Fn(&PolicyError<E>) -> Option<T>> Fallback<T, E> for F {
    #[inline]
    fn fallback(&self, error: &PolicyError<E>) -> Option<T> {
        self(error)
    }
}

/// The retry's classifier, widened to an attempt through the breaker: a breaker refusal is never
/// retried.
struct Through<'a, K>(&'a K);

impl<T, E, K: Classify<T, E>> Classify<T, Attempt<E>> for Through<'_, K> {
    #[inline]
    fn verdict(&self, result: Result<&T, &Attempt<E>>) -> Verdict {
        match result {
            Ok(v) => self.0.verdict(Ok(v)),
            Err(Attempt::Refused(_)) => Verdict::Ignore,
            Err(Attempt::TimedOut(_) | Attempt::Cut) => Verdict::Failure,
            Err(Attempt::Inner(e)) => self.0.verdict(Err(e)),
        }
    }

    #[inline]
    fn is_retryable(&self, result: Result<&T, &Attempt<E>>) -> bool {
        match result {
            Ok(v) => self.0.is_retryable(Ok(v)),
            Err(Attempt::Refused(_) | Attempt::Cut) => false,
            Err(Attempt::TimedOut(_)) => true,
            Err(Attempt::Inner(e)) => self.0.is_retryable(Err(e)),
        }
    }

    fn retry_after(&self, result: Result<&T, &Attempt<E>>) -> Option<Duration> {
        match result {
            Ok(v) => self.0.retry_after(Ok(v)),
            Err(Attempt::Inner(e)) => self.0.retry_after(Err(e)),
            Err(_) => None,
        }
    }
}

/// How one attempt through the policy ended, when it did not succeed.
enum Attempt<E> {
    /// The breaker refused it: it never ran.
    Refused(CircuitOpen),
    /// It ran past the attempt timeout and was given up.
    TimedOut(Duration),
    /// The retry's deadline passed while it ran: given up, and never retried.
    Cut,
    /// It returned this error.
    Inner(E),
}

impl<E> From<BreakerError<E>> for Attempt<E> {
    fn from(e: BreakerError<E>) -> Self {
        match e {
            BreakerError::Refused(open) => Self::Refused(open),
            BreakerError::Inner(e) => Self::Inner(e),
        }
    }
}

/// Drain admission, a bulkhead permit, attempts through a breaker with budgeted retries, and a
/// fallback: see the [module docs](self). Each layer is optional; a policy with none runs the
/// operation once.
///
/// The type parameters are the clocks of the drainer (`D`), bulkhead (`H`), breaker (`B`) and
/// retry (`R`), the retry's classifier `K`, the fallback `F` and the breaker's error
/// classification `C`; the builder infers them.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use resile::policy::{Policy, PolicyError};
/// use std::sync::Arc;
///
/// let breaker = Arc::new(CircuitBreaker::builder().build()?);
/// let policy = Policy::builder().breaker(breaker.clone()).build()?;
/// assert_eq!(policy.call(|| Ok::<_, ()>(1)), Ok(1));
/// breaker.force_open();
/// assert!(matches!(policy.call(|| Ok::<_, ()>(1)), Err(PolicyError::Breaker { attempts: 0, .. })));
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
pub struct Policy<
    D: Clock = SystemClock,
    H: Clock = SystemClock,
    B: Clock = SystemClock,
    R: Clock = SystemClock,
    K = ErrIsFailure,
    F = NoFallback,
    C = ErrIsFailure,
> {
    drainer: Option<Arc<Drainer<D>>>,
    bulkhead: Option<Arc<Bulkhead<H>>>,
    breaker: Option<Arc<CircuitBreaker<B>>>,
    retry: Option<Retry<R, K>>,
    fallback: F,
    classify: C,
    attempt_timeout: Option<Duration>,
    timer: SharedTimer,
}

impl<D: Clock, H: Clock, B: Clock, R: Clock + Clone, K: Clone, F: Clone, C: Clone> Clone
    for Policy<D, H, B, R, K, F, C>
{
    /// A policy sharing the same primitives (and a seeded retry's sequence).
    fn clone(&self) -> Self {
        Self {
            drainer: self.drainer.clone(),
            bulkhead: self.bulkhead.clone(),
            breaker: self.breaker.clone(),
            retry: self.retry.clone(),
            fallback: self.fallback.clone(),
            classify: self.classify.clone(),
            attempt_timeout: self.attempt_timeout,
            timer: self.timer.clone(),
        }
    }
}

impl<D: Clock, H: Clock, B: Clock, R: Clock, K, F, C> fmt::Debug for Policy<D, H, B, R, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("drainer", &self.drainer)
            .field("bulkhead", &self.bulkhead)
            .field("breaker", &self.breaker)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// A builder with no layer; add the ones you need.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            drainer: None,
            bulkhead: None,
            breaker: None,
            retry: None,
            fallback: NoFallback,
            classify: ErrIsFailure,
            attempt_timeout: None,
            timer: None,
        }
    }
}

impl<D: Clock, H: Clock, B: Clock, R: Clock, K, F, C> Policy<D, H, B, R, K, F, C> {
    /// The drainer, if the policy has one.
    pub fn drainer(&self) -> Option<&Arc<Drainer<D>>> {
        self.drainer.as_ref()
    }

    /// The bulkhead, if the policy has one.
    pub fn bulkhead(&self) -> Option<&Arc<Bulkhead<H>>> {
        self.bulkhead.as_ref()
    }

    /// The breaker, if the policy has one.
    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker<B>>> {
        self.breaker.as_ref()
    }

    /// The retry, if the policy has one.
    pub fn retry(&self) -> Option<&Retry<R, K>> {
        self.retry.as_ref()
    }

    /// Runs `op` through the policy, blocking the thread: for a bulkhead slot (up to its max
    /// wait) and between attempts (the retry's timer's blocking sleep).
    ///
    /// # Errors
    /// The [`PolicyError`] that ended the call, unless the fallback answered it.
    pub fn call<T, E>(&self, op: impl FnMut() -> Result<T, E>) -> Result<T, PolicyError<E>>
    where
        K: Classify<T, E>,
        F: Fallback<T, E>,
        C: Classify<T, E>,
    {
        self.run(op)
            .or_else(|e| self.fallback.fallback(&e).ok_or(e))
    }

    fn run<T, E>(&self, mut op: impl FnMut() -> Result<T, E>) -> Result<T, PolicyError<E>>
    where
        K: Classify<T, E>,
        C: Classify<T, E>,
    {
        let _guard = match &self.drainer {
            Some(d) => Some(d.enter().map_err(PolicyError::Drain)?),
            None => None,
        };
        let permit = match &self.bulkhead {
            Some(b) => Some(b.blocking_acquire().map_err(PolicyError::Bulkhead)?),
            None => None,
        };
        let breaker = self.breaker.as_deref();
        let class = &self.classify;
        let attempt = || match breaker {
            Some(b) => b
                .call_with(|r: Result<&T, &E>| class.verdict(r), &mut op)
                .map_err(Attempt::from),
            None => op().map_err(Attempt::Inner),
        };
        let result = match &self.retry {
            Some(retry) => retry
                .run_classified(&Through(retry.classifier()), is_refused, attempt)
                .map_err(PolicyError::from_retry),
            None => {
                let mut attempt = attempt;
                attempt().map_err(|e| PolicyError::from_retry(once(e)))
            }
        };
        if let Some(permit) = permit {
            permit.record(bulkhead_verdict(&result, class));
        }
        result
    }

    /// Runs the future `op()` returns through the policy, on any executor: a wait for a bulkhead
    /// slot is bounded by its max wait (zero: fail fast) on the bulkhead's timer, and the
    /// backoff between attempts sleeps on the retry's.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::policy::{Policy, PolicyError};
    /// use resile::retry::Retry;
    /// use std::sync::Arc;
    ///
    /// let bulkhead = Arc::new(Bulkhead::builder().name("db").limit(1).build()?);
    /// let policy = Policy::builder()
    ///     .bulkhead(bulkhead.clone())
    ///     .retry(Retry::builder().max_attempts(2).build()?)
    ///     .build()?;
    /// let v = futures::executor::block_on(policy.call_async(|| async { Ok::<_, ()>(1) }));
    /// assert_eq!(v, Ok(1));
    ///
    /// let _held = bulkhead.try_acquire().unwrap();
    /// let e = futures::executor::block_on(policy.call_async(|| async { Ok::<u8, ()>(1) }));
    /// assert!(matches!(e, Err(PolicyError::Bulkhead(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The [`PolicyError`] that ended the call, unless the fallback answered it.
    pub async fn call_async<T, E, Op, Fut>(&self, op: Op) -> Result<T, PolicyError<E>>
    where
        K: Classify<T, E>,
        F: Fallback<T, E>,
        C: Classify<T, E>,
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.run_async(op).await {
            Ok(v) => Ok(v),
            Err(e) => self.fallback.fallback(&e).ok_or(e),
        }
    }

    async fn run_async<T, E, Op, Fut>(&self, mut op: Op) -> Result<T, PolicyError<E>>
    where
        K: Classify<T, E>,
        C: Classify<T, E>,
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let _guard = match &self.drainer {
            Some(d) => Some(d.enter().map_err(PolicyError::Drain)?),
            None => None,
        };
        let permit = match &self.bulkhead {
            Some(b) => Some(
                b.acquire_timeout(b.max_wait())
                    .await
                    .map_err(PolicyError::Bulkhead)?,
            ),
            None => None,
        };
        let breaker = self.breaker.as_deref();
        let class = &self.classify;
        let (timeout, timer) = (self.attempt_timeout, &self.timer);
        // When the retry's deadline passes, on the retry's clock (the retry measures its own
        // from the same reading).
        let deadline = self.retry.as_ref().and_then(|r| {
            let at = r
                .clock()
                .now()
                .saturating_add(duration_to_nanos(r.deadline()?));
            Some((r.clock(), at))
        });
        let attempt = || {
            // The breaker first: a refused attempt never calls `op`, so nothing it does eagerly
            // (building or sending the request) reaches the dependency.
            let admitted = match breaker.map(CircuitBreaker::try_acquire).transpose() {
                Ok(permit) => Ok((permit, op())),
                Err(refused) => Err(refused),
            };
            // The attempt's time limit: the attempt timeout, or what is left of the deadline
            // when that is sooner (then the limit is a cut). One sleep either way.
            let limit = match (timeout, deadline) {
                (timeout, Some((clock, at))) => {
                    let left = Duration::from_nanos(at.saturating_sub(clock.now()));
                    match timeout {
                        Some(after) if after < left => Some((after, false)),
                        _ => Some((left, true)),
                    }
                }
                (Some(after), None) => Some((after, false)),
                (None, None) => None,
            };
            async move {
                let (permit, fut) = admitted.map_err(Attempt::Refused)?;
                let r = match limit {
                    None => fut.await.map_err(Attempt::Inner),
                    Some((after, cut)) => {
                        let mut fut = std::pin::pin!(fut);
                        let mut sleep = LazyTimer::new(timer, after);
                        std::future::poll_fn(|cx| {
                            if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                                return Poll::Ready(r.map_err(Attempt::Inner));
                            }
                            match std::pin::Pin::new(&mut sleep).poll(cx) {
                                Poll::Ready(()) if cut => Poll::Ready(Err(Attempt::Cut)),
                                Poll::Ready(()) => Poll::Ready(Err(Attempt::TimedOut(after))),
                                Poll::Pending => Poll::Pending,
                            }
                        })
                        .await
                    }
                };
                if let Some(permit) = permit {
                    match &r {
                        Ok(v) => permit.record(class.verdict(Ok(v))),
                        Err(Attempt::Inner(e)) => permit.record(class.verdict(Err(e))),
                        // Given up (timed out or cut): a failure (and, past the slow-call
                        // threshold, slow).
                        Err(_) => permit.failure(),
                    }
                }
                r
            }
        };
        let result = match &self.retry {
            Some(retry) => retry
                .run_async_classified(&Through(retry.classifier()), is_refused, attempt)
                .await
                .map_err(PolicyError::from_retry),
            None => {
                let mut attempt = attempt;
                attempt()
                    .await
                    .map_err(|e| PolicyError::from_retry(once(e)))
            }
        };
        if let Some(permit) = permit {
            permit.record(bulkhead_verdict(&result, class));
        }
        result
    }
}

/// What a whole call (its attempts and backoffs) tells an [adaptive](crate::bulkhead::adaptive)
/// bulkhead: the classifier's verdict on the value or the last error; a drop when a time limit
/// ended it or the breaker opened after attempts ran; nothing when no attempt ran.
fn bulkhead_verdict<T, E, C: Classify<T, E>>(
    result: &Result<T, PolicyError<E>>,
    class: &C,
) -> Verdict {
    match result {
        Ok(v) => class.verdict(Ok(v)),
        Err(PolicyError::Failed { last, .. } | PolicyError::BudgetExhausted { last, .. }) => {
            class.verdict(Err(last))
        }
        Err(PolicyError::DeadlineExceeded { .. } | PolicyError::TimedOut { .. }) => {
            Verdict::Failure
        }
        Err(PolicyError::Breaker { attempts, .. }) if *attempts > 0 => Verdict::Failure,
        Err(PolicyError::Breaker { .. } | PolicyError::Drain(_) | PolicyError::Bulkhead(_)) => {
            Verdict::Ignore
        }
    }
}

/// Whether an attempt never reached the dependency: the breaker refused it.
fn is_refused<E>(e: &Attempt<E>) -> bool {
    matches!(e, Attempt::Refused(_))
}

/// The end of a policy without a retry: one attempt.
fn once<E>(last: Attempt<E>) -> RetryError<Attempt<E>> {
    RetryError::Exhausted { attempts: 1, last }
}

/// Builds a [`Policy`]; see [`Policy::builder`]. Each setter may change one type parameter (the
/// clock of the primitive it takes, the classifier, the fallback).
///
/// ```
/// use resile::drain::Drainer;
/// use resile::policy::Policy;
/// use std::sync::Arc;
/// let policy = Policy::builder().drainer(Arc::new(Drainer::new())).build()?;
/// assert!(policy.drainer().is_some() && policy.breaker().is_none());
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build()`"]
pub struct PolicyBuilder<
    D: Clock = SystemClock,
    H: Clock = SystemClock,
    B: Clock = SystemClock,
    R: Clock = SystemClock,
    K = ErrIsFailure,
    F = NoFallback,
    C = ErrIsFailure,
> {
    drainer: Option<Arc<Drainer<D>>>,
    bulkhead: Option<Arc<Bulkhead<H>>>,
    breaker: Option<Arc<CircuitBreaker<B>>>,
    retry: Option<Retry<R, K>>,
    fallback: F,
    classify: C,
    attempt_timeout: Option<Duration>,
    timer: Option<SharedTimer>,
}

impl<D: Clock, H: Clock, B: Clock, R: Clock, K, F, C> fmt::Debug
    for PolicyBuilder<D, H, B, R, K, F, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("drainer", &self.drainer)
            .field("bulkhead", &self.bulkhead)
            .field("breaker", &self.breaker)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl<D: Clock, H: Clock, B: Clock, R: Clock, K, F, C> PolicyBuilder<D, H, B, R, K, F, C> {
    /// Admit each call through `drainer` first: once it drains, calls are refused with
    /// [`PolicyError::Drain`] and the guard of each admitted call is held until it ends.
    pub fn drainer<D2: Clock>(
        self,
        drainer: Arc<Drainer<D2>>,
    ) -> PolicyBuilder<D2, H, B, R, K, F, C> {
        PolicyBuilder {
            drainer: Some(drainer),
            bulkhead: self.bulkhead,
            breaker: self.breaker,
            retry: self.retry,
            fallback: self.fallback,
            classify: self.classify,
            attempt_timeout: self.attempt_timeout,
            timer: self.timer,
        }
    }

    /// Hold a slot of `bulkhead` for the whole call (all attempts and backoffs), waiting up to
    /// its max wait for one. An [adaptive](crate::bulkhead::adaptive) bulkhead hears how the
    /// call ended: the [classifier](Self::classify)'s verdict on its value or last error (a
    /// failure is a drop), a drop when a time limit ended it, nothing when no attempt ran.
    pub fn bulkhead<H2: Clock>(
        self,
        bulkhead: Arc<Bulkhead<H2>>,
    ) -> PolicyBuilder<D, H2, B, R, K, F, C> {
        PolicyBuilder {
            drainer: self.drainer,
            bulkhead: Some(bulkhead),
            breaker: self.breaker,
            retry: self.retry,
            fallback: self.fallback,
            classify: self.classify,
            attempt_timeout: self.attempt_timeout,
            timer: self.timer,
        }
    }

    /// Run each attempt through `breaker`: every `Err` of the operation is recorded as a
    /// failure (unless [`classify`](Self::classify) says otherwise), and a refusal ends the call
    /// with [`PolicyError::Breaker`].
    pub fn breaker<B2: Clock>(
        self,
        breaker: Arc<CircuitBreaker<B2>>,
    ) -> PolicyBuilder<D, H, B2, R, K, F, C> {
        PolicyBuilder {
            drainer: self.drainer,
            bulkhead: self.bulkhead,
            breaker: Some(breaker),
            retry: self.retry,
            fallback: self.fallback,
            classify: self.classify,
            attempt_timeout: self.attempt_timeout,
            timer: self.timer,
        }
    }

    /// Make up to `retry`'s `max_attempts` attempts, retries paid from its budget with its
    /// backoff, within its deadline, retrying the errors its classifier accepts.
    pub fn retry<R2: Clock, K2>(
        self,
        retry: Retry<R2, K2>,
    ) -> PolicyBuilder<D, H, B, R2, K2, F, C> {
        PolicyBuilder {
            drainer: self.drainer,
            bulkhead: self.bulkhead,
            breaker: self.breaker,
            retry: Some(retry),
            fallback: self.fallback,
            classify: self.classify,
            attempt_timeout: self.attempt_timeout,
            timer: self.timer,
        }
    }

    /// Say what each result of the operation counts as for the breaker (see
    /// [`crate::classify`]): [`Verdict::Failure`] (the default for every error),
    /// [`Verdict::Ignore`] (the attempt's permit is released and nothing is recorded: a caller's
    /// bad request says nothing about the dependency's health) or [`Verdict::Success`] (an
    /// expected "not found").
    ///
    /// This is the breaker's view only: whether the error is retried is still the retry's
    /// classifier's call, and the call still returns the error.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, State};
    /// use resile::classify::Verdict;
    /// use resile::policy::{Policy, PolicyError};
    /// use std::sync::Arc;
    ///
    /// let breaker = Arc::new(CircuitBreaker::builder().count_window(2).minimum_calls(2).build()?);
    /// let policy = Policy::builder()
    ///     .breaker(breaker.clone())
    ///     .classify(|r: Result<&(), &u16>| match r {
    ///         Err(e) if *e < 500 => Verdict::Ignore,
    ///         Err(_) => Verdict::Failure,
    ///         Ok(_) => Verdict::Success,
    ///     })
    ///     .build()?;
    /// for _ in 0..10 {
    ///     assert!(matches!(policy.call(|| Err::<(), _>(400)), Err(PolicyError::Failed { last: 400, .. })));
    /// }
    /// assert_eq!((breaker.state(), breaker.metrics().calls), (State::Closed, 0));
    /// let _ = policy.call(|| Err::<(), _>(503));
    /// let _ = policy.call(|| Err::<(), _>(503));
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    pub fn classify<C2>(self, classify: C2) -> PolicyBuilder<D, H, B, R, K, F, C2> {
        PolicyBuilder {
            drainer: self.drainer,
            bulkhead: self.bulkhead,
            breaker: self.breaker,
            retry: self.retry,
            fallback: self.fallback,
            classify,
            attempt_timeout: self.attempt_timeout,
            timer: self.timer,
        }
    }

    /// Give up an attempt of [`call_async`](Policy::call_async) that runs longer than `timeout`
    /// (measured on the policy's [timer](Self::timer)): the breaker counts it as a failure, the
    /// retry may retry it, and a call whose last attempt timed out ends with
    /// [`PolicyError::TimedOut`]. When less than `timeout` is left of the retry's deadline, the
    /// attempt is cut at the deadline instead (see the [module docs](self)). The blocking
    /// [`call`](Policy::call) cannot interrupt its operation and ignores it. At least 1 ns.
    ///
    /// ```
    /// use resile::clock::ManualClock;
    /// use resile::policy::{Policy, PolicyError};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new(); // its sleeps end at once: every attempt that waits times out
    /// let policy = Policy::builder()
    ///     .attempt_timeout(Duration::from_millis(200))
    ///     .timer(clock)
    ///     .build()?;
    /// let hung = policy.call_async(|| std::future::pending::<Result<(), &str>>());
    /// let e = futures::executor::block_on(hung).unwrap_err();
    /// assert!(matches!(e, PolicyError::TimedOut { attempts: 1, .. }));
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// The timer an attempt's time limit sleeps on: the attempt timeout, and the retry's
    /// deadline cutting an attempt in flight (default: the retry's
    /// [timer](crate::retry::RetryBuilder::timer), or
    /// [`ThreadTimer`](crate::timer::ThreadTimer) without a retry; see [`crate::timer`]). The
    /// bulkhead's wait and the retry's backoff use their own.
    pub fn timer(mut self, timer: impl Timer) -> Self {
        self.timer = Some(SharedTimer::new(timer));
        self
    }

    /// Answer with `fallback(&error)` when it returns `Some` (e.g. cached data while the breaker
    /// is open).
    pub fn fallback<T, E, F2>(self, fallback: F2) -> PolicyBuilder<D, H, B, R, K, F2, C>
    where
        F2: Fn(&PolicyError<E>) -> Option<T>,
    {
        PolicyBuilder {
            drainer: self.drainer,
            bulkhead: self.bulkhead,
            breaker: self.breaker,
            retry: self.retry,
            fallback,
            classify: self.classify,
            attempt_timeout: self.attempt_timeout,
            timer: self.timer,
        }
    }

    /// The policy. Every layer was validated when it was built, so this cannot fail today; it
    /// returns `Result` like every builder of the crate, so that a future check is not a
    /// breaking change.
    ///
    /// # Errors
    /// None yet (see above).
    #[allow(
        clippy::type_complexity,
        reason = "the policy's seven parameters, each inferred"
    )]
    pub fn build(self) -> Result<Policy<D, H, B, R, K, F, C>, ConfigError> {
        if self.attempt_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "attempt_timeout",
                Duration::ZERO,
                "a non-zero duration",
            ));
        }
        let timer = match (self.timer, &self.retry) {
            (Some(timer), _) => timer,
            (None, Some(retry)) => retry.timer().clone(),
            (None, None) => SharedTimer::default(),
        };
        Ok(Policy {
            drainer: self.drainer,
            bulkhead: self.bulkhead,
            breaker: self.breaker,
            retry: self.retry,
            fallback: self.fallback,
            classify: self.classify,
            attempt_timeout: self.attempt_timeout,
            timer,
        })
    }
}
