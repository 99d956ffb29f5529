//! The four patterns composed, in the order a request meets them.
//!
//! A [`Policy`] runs one operation through any subset of:
//!
//! 1. **drain admission**: a [`Drainer`] refuses new work once the process is shutting down;
//! 2. a **bulkhead** permit: a [`Bulkhead`] caps how many calls run at once, failing fast or
//!    waiting up to its [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait);
//! 3. up to `max_attempts` **attempts** of a [`Retry`], retries paid from its budget with its
//!    backoff, inside its deadline;
//! 4. each attempt through a [`CircuitBreaker`], which records the outcome and refuses attempts
//!    while the dependency is down;
//!
//! and, when any of them refuses or the last attempt fails, an optional **fallback** (the guide
//! answers from a cache when the breaker is open). The drain guard and the bulkhead permit are
//! held across all attempts and backoffs of one call, and released when it ends.
//!
//! A call that does not succeed returns a [`PolicyError`] that says which layer refused and why.
//! A breaker refusal ends the call (it is never retried: the breaker said the dependency is down,
//! and its [`retry_after`](PolicyError::retry_after) says for how long). Every other error of the
//! operation is retried when the retry's classifier says so; the breaker records it as a failure,
//! unless [`PolicyBuilder::classify`] says it is ignored or counts as a success.
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
//!     .build()?;
//! let policy = Policy::builder()
//!     .drainer(drainer.clone())
//!     .bulkhead(reads)
//!     .breaker(breaker)
//!     .retry(retry)
//!     .fallback(|e: &PolicyError<&str>| e.is_breaker_open().then_some("cached"))
//!     .build()?;
//!
//! // The fake sleep moves the manual clock: no wall time passes.
//! let sleep = |d| clock.advance(d);
//! let mut calls = 0;
//! let v = policy.call_with_sleep(|| { calls += 1; if calls < 2 { Err("timeout") } else { Ok("fresh") } }, sleep);
//! assert_eq!(v, Ok("fresh"));
//!
//! // The dependency dies: the breaker opens after 4 failures in its window, and the fallback
//! // answers from the cache instead of waiting on it.
//! let v = policy.call_with_sleep(|| Err("timeout"), |d| clock.advance(d));
//! assert_eq!(v, Ok("cached"));
//!
//! drainer.start_draining();
//! let e = policy.call_with_sleep(|| Ok("fresh"), |d| clock.advance(d)).unwrap_err();
//! assert!(matches!(e, PolicyError::Drain(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::breaker::{BreakerError, CircuitBreaker, CircuitOpen, ErrorClass};
use crate::bulkhead::{Bulkhead, BulkheadError};
use crate::clock::{Clock, SystemClock};
use crate::drain::{DrainRefused, Drainer};
use crate::error::ConfigError;
use crate::retry::{AlwaysRetry, Classify, Retry, RetryError};
use crate::sync::{AtomicU64, Ordering};
use crate::wait::timer::LazyTimer;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
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
    /// The operation failed, and the retry's deadline passed or would pass during the backoff.
    DeadlineExceeded {
        /// Attempts that ran.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
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
            | Self::Failed { attempts, .. } => *attempts,
        }
    }

    /// The operation's last error, when the call ended on one.
    pub fn last(&self) -> Option<&E> {
        match self {
            Self::BudgetExhausted { last, .. }
            | Self::DeadlineExceeded { last, .. }
            | Self::Failed { last, .. } => Some(last),
            _ => None,
        }
    }

    /// The operation's last error, by value.
    pub fn into_last(self) -> Option<E> {
        match self {
            Self::BudgetExhausted { last, .. }
            | Self::DeadlineExceeded { last, .. }
            | Self::Failed { last, .. } => Some(last),
            _ => None,
        }
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

    fn from_retry(e: RetryError<BreakerError<E>>) -> Self {
        let attempts = e.attempts();
        let kind = match &e {
            RetryError::BudgetExhausted { .. } => 0,
            RetryError::DeadlineExceeded { .. } => 1,
            _ => 2,
        };
        match e.into_last() {
            BreakerError::Refused(open) => Self::Breaker {
                open,
                attempts: attempts.saturating_sub(1),
            },
            BreakerError::Inner(last) => match kind {
                0 => Self::BudgetExhausted { attempts, last },
                1 => Self::DeadlineExceeded { attempts, last },
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
            Self::DeadlineExceeded { last, .. } => {
                write!(
                    f,
                    "gave up after {n} attempt{s} (deadline exceeded): {last}"
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
            Self::BudgetExhausted { last, .. }
            | Self::DeadlineExceeded { last, .. }
            | Self::Failed { last, .. } => Some(last),
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

/// What an operation's error counts as for the policy's breaker: implemented by
/// [`AllErrorsFail`] (the default) and by every `Fn(&E) -> ErrorClass`; set it with
/// [`PolicyBuilder::classify`].
///
/// ```
/// use resile::breaker::ErrorClass;
/// use resile::policy::ClassifyError;
/// let not_found_is_fine = |e: &u16| if *e == 404 { ErrorClass::Success } else { ErrorClass::Failure };
/// assert_eq!(not_found_is_fine.classify(&404), ErrorClass::Success);
/// assert_eq!(not_found_is_fine.classify(&503), ErrorClass::Failure);
/// ```
pub trait ClassifyError<E> {
    /// What `error` counts as: a failure, ignored (the permit is released, nothing recorded),
    /// or a success.
    fn classify(&self, error: &E) -> ErrorClass;
}

/// The default breaker classification of a [`Policy`]: every error of the operation is a
/// failure.
///
/// ```
/// use resile::breaker::ErrorClass;
/// use resile::policy::{AllErrorsFail, ClassifyError};
/// assert_eq!(AllErrorsFail.classify(&"not found"), ErrorClass::Failure);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct AllErrorsFail;

impl<E> ClassifyError<E> for AllErrorsFail {
    #[inline]
    fn classify(&self, _: &E) -> ErrorClass {
        ErrorClass::Failure
    }
}

impl<E, C: Fn(&E) -> ErrorClass> ClassifyError<E> for C {
    #[inline]
    fn classify(&self, error: &E) -> ErrorClass {
        self(error)
    }
}

/// The retry's classifier, widened to an attempt through the breaker: a breaker refusal is never
/// retried.
struct Through<'a, K>(&'a K);

impl<E, K: Classify<E>> Classify<BreakerError<E>> for Through<'_, K> {
    #[inline]
    fn is_retryable(&self, e: &BreakerError<E>) -> bool {
        match e {
            BreakerError::Refused(_) => false,
            BreakerError::Inner(e) => self.0.is_retryable(e),
        }
    }

    fn retry_after(&self, e: &BreakerError<E>) -> Option<Duration> {
        match e {
            BreakerError::Refused(_) => None,
            BreakerError::Inner(e) => self.0.retry_after(e),
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
    K = AlwaysRetry,
    F = NoFallback,
    C = AllErrorsFail,
> {
    drainer: Option<Arc<Drainer<D>>>,
    bulkhead: Option<Arc<Bulkhead<H>>>,
    breaker: Option<Arc<CircuitBreaker<B>>>,
    retry: Option<Retry<R, K>>,
    fallback: F,
    seed: Option<Seed>,
    classify: C,
}

/// A policy's jitter source when seeded: call `n` draws from a small rng seeded with `seed` and
/// `n`, so a single-threaded run replays exactly and concurrent calls never share an rng (no
/// lock: one relaxed `fetch_add` per call that retries).
#[derive(Debug)]
struct Seed {
    seed: u64,
    calls: AtomicU64,
}

impl Seed {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            calls: AtomicU64::new(0),
        }
    }

    /// The rng of the next call. Relaxed: the counter only has to hand out distinct numbers.
    fn next_rng(&self) -> SmallRng {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        // SmallRng's seeding scrambles the u64, so consecutive calls get unrelated streams.
        SmallRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

impl<D: Clock, H: Clock, B: Clock, R: Clock + Clone, K: Clone, F: Clone, C: Clone> Clone
    for Policy<D, H, B, R, K, F, C>
{
    /// A policy sharing the same primitives. A seeded policy's clone continues from the calls
    /// made so far, with its own counter: the two then draw the same sequence.
    fn clone(&self) -> Self {
        Self {
            drainer: self.drainer.clone(),
            bulkhead: self.bulkhead.clone(),
            breaker: self.breaker.clone(),
            retry: self.retry.clone(),
            fallback: self.fallback.clone(),
            seed: self.seed.as_ref().map(|s| Seed {
                seed: s.seed,
                calls: AtomicU64::new(s.calls.load(Ordering::Relaxed)),
            }),
            classify: self.classify.clone(),
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
            .field("rng_seed", &self.seed.as_ref().map(|s| s.seed))
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
            seed: None,
            classify: AllErrorsFail,
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
    /// wait) and between attempts (`std::thread::sleep`).
    ///
    /// # Errors
    /// The [`PolicyError`] that ended the call, unless the fallback answered it.
    pub fn call<T, E>(&self, op: impl FnMut() -> Result<T, E>) -> Result<T, PolicyError<E>>
    where
        K: Classify<E>,
        F: Fallback<T, E>,
        C: ClassifyError<E>,
    {
        self.call_with_sleep(op, std::thread::sleep)
    }

    /// [`call`](Self::call), waiting between attempts with `sleep` (a test's fake sleep moves a
    /// [`ManualClock`](crate::clock::ManualClock)). A bulkhead wait still blocks the thread.
    ///
    /// # Errors
    /// The [`PolicyError`] that ended the call, unless the fallback answered it.
    pub fn call_with_sleep<T, E>(
        &self,
        op: impl FnMut() -> Result<T, E>,
        sleep: impl FnMut(Duration),
    ) -> Result<T, PolicyError<E>>
    where
        K: Classify<E>,
        F: Fallback<T, E>,
        C: ClassifyError<E>,
    {
        self.run(op, sleep)
            .or_else(|e| self.fallback.fallback(&e).ok_or(e))
    }

    fn run<T, E>(
        &self,
        mut op: impl FnMut() -> Result<T, E>,
        sleep: impl FnMut(Duration),
    ) -> Result<T, PolicyError<E>>
    where
        K: Classify<E>,
        C: ClassifyError<E>,
    {
        let _guard = match &self.drainer {
            Some(d) => Some(d.enter().map_err(PolicyError::Drain)?),
            None => None,
        };
        let _permit = match &self.bulkhead {
            Some(b) => Some(b.blocking_acquire().map_err(PolicyError::Bulkhead)?),
            None => None,
        };
        let breaker = self.breaker.as_deref();
        let class = &self.classify;
        let attempt = || match breaker {
            Some(b) => b.call_with(|e| class.classify(e), &mut op),
            None => op().map_err(BreakerError::Inner),
        };
        match &self.retry {
            Some(retry) => {
                let retryable = Through(retry.classifier());
                match &self.seed {
                    Some(seed) => {
                        retry.run_classified(&retryable, &mut seed.next_rng(), attempt, sleep)
                    }
                    None => retry.run_classified(&retryable, &mut rand::rng(), attempt, sleep),
                }
                .map_err(PolicyError::from_retry)
            }
            None => {
                let mut attempt = attempt;
                attempt().map_err(|e| PolicyError::from_retry(once(e)))
            }
        }
    }

    /// Runs the future `op()` returns through the policy, on any executor: `sleep(d)` is the
    /// runtime's sleep (`tokio::time::sleep`, ...), used between attempts and to bound a wait for
    /// a bulkhead slot by its max wait (zero: fail fast).
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
    /// let sleep = |_| std::future::ready(()); // e.g. tokio::time::sleep
    /// let v = futures::executor::block_on(policy.call_async(|| async { Ok::<_, ()>(1) }, sleep));
    /// assert_eq!(v, Ok(1));
    ///
    /// let _held = bulkhead.try_acquire().unwrap();
    /// let e = futures::executor::block_on(policy.call_async(|| async { Ok::<u8, ()>(1) }, sleep));
    /// assert!(matches!(e, Err(PolicyError::Bulkhead(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The [`PolicyError`] that ended the call, unless the fallback answered it.
    pub async fn call_async<T, E, Op, Fut, S, SFut>(
        &self,
        op: Op,
        sleep: S,
    ) -> Result<T, PolicyError<E>>
    where
        K: Classify<E>,
        F: Fallback<T, E>,
        C: ClassifyError<E>,
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: FnMut(Duration) -> SFut,
        SFut: Future<Output = ()>,
    {
        match self.run_async(op, sleep).await {
            Ok(v) => Ok(v),
            Err(e) => self.fallback.fallback(&e).ok_or(e),
        }
    }

    async fn run_async<T, E, Op, Fut, S, SFut>(
        &self,
        mut op: Op,
        mut sleep: S,
    ) -> Result<T, PolicyError<E>>
    where
        K: Classify<E>,
        C: ClassifyError<E>,
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: FnMut(Duration) -> SFut,
        SFut: Future<Output = ()>,
    {
        let _guard = match &self.drainer {
            Some(d) => Some(d.enter().map_err(PolicyError::Drain)?),
            None => None,
        };
        let _permit = match &self.bulkhead {
            Some(b) => {
                let wait = b.max_wait();
                let permit = if wait.is_zero() {
                    b.try_acquire()
                } else {
                    b.acquire_until(LazyTimer::new(&mut sleep, wait)).await
                };
                Some(permit.map_err(PolicyError::Bulkhead)?)
            }
            None => None,
        };
        let breaker = self.breaker.as_deref();
        let class = &self.classify;
        let attempt = || {
            // The breaker first: a refused attempt never calls `op`, so nothing it does eagerly
            // (building or sending the request) reaches the dependency.
            let admitted = match breaker.map(CircuitBreaker::try_acquire).transpose() {
                Ok(permit) => Ok((permit, op())),
                Err(refused) => Err(refused),
            };
            async move {
                let (permit, fut) = admitted.map_err(BreakerError::Refused)?;
                let r = fut.await;
                if let Some(permit) = permit {
                    permit.resolve(&r, |e| class.classify(e));
                }
                r.map_err(BreakerError::Inner)
            }
        };
        match &self.retry {
            Some(retry) => {
                let rng = match &self.seed {
                    Some(seed) => seed.next_rng(),
                    None => SmallRng::from_rng(&mut rand::rng()),
                };
                retry
                    .run_async_classified(&Through(retry.classifier()), rng, attempt, &mut sleep)
                    .await
                    .map_err(PolicyError::from_retry)
            }
            None => {
                let mut attempt = attempt;
                attempt()
                    .await
                    .map_err(|e| PolicyError::from_retry(once(e)))
            }
        }
    }
}

/// The end of a policy without a retry: one attempt.
fn once<E>(last: BreakerError<E>) -> RetryError<BreakerError<E>> {
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
#[must_use]
pub struct PolicyBuilder<
    D: Clock = SystemClock,
    H: Clock = SystemClock,
    B: Clock = SystemClock,
    R: Clock = SystemClock,
    K = AlwaysRetry,
    F = NoFallback,
    C = AllErrorsFail,
> {
    drainer: Option<Arc<Drainer<D>>>,
    bulkhead: Option<Arc<Bulkhead<H>>>,
    breaker: Option<Arc<CircuitBreaker<B>>>,
    retry: Option<Retry<R, K>>,
    fallback: F,
    seed: Option<u64>,
    classify: C,
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
            .field("rng_seed", &self.seed)
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
            seed: self.seed,
            classify: self.classify,
        }
    }

    /// Hold a slot of `bulkhead` for the whole call (all attempts and backoffs), waiting up to
    /// its max wait for one.
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
            seed: self.seed,
            classify: self.classify,
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
            seed: self.seed,
            classify: self.classify,
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
            seed: self.seed,
            classify: self.classify,
        }
    }

    /// Say what each error of the operation counts as for the breaker:
    /// [`ErrorClass::Failure`] (the default for every error), [`ErrorClass::Ignore`] (the
    /// attempt's permit is released and nothing is recorded: a caller's bad request says nothing
    /// about the dependency's health) or [`ErrorClass::Success`] (an expected "not found").
    ///
    /// This is the breaker's view only: whether the error is retried is still the retry's
    /// classifier's call, and the call still returns the error.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, ErrorClass, State};
    /// use resile::policy::{Policy, PolicyError};
    /// use std::sync::Arc;
    ///
    /// let breaker = Arc::new(CircuitBreaker::builder().count_window(2).minimum_calls(2).build()?);
    /// let policy = Policy::builder()
    ///     .breaker(breaker.clone())
    ///     .classify(|e: &u16| if *e < 500 { ErrorClass::Ignore } else { ErrorClass::Failure })
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
    pub fn classify<E, C2>(self, classify: C2) -> PolicyBuilder<D, H, B, R, K, F, C2>
    where
        C2: Fn(&E) -> ErrorClass,
    {
        PolicyBuilder {
            drainer: self.drainer,
            bulkhead: self.bulkhead,
            breaker: self.breaker,
            retry: self.retry,
            fallback: self.fallback,
            seed: self.seed,
            classify,
        }
    }

    /// Draw the backoff jitter from a seeded rng instead of the thread's: call `n` of the policy
    /// (counted from its build) gets a small rng derived from `seed` and `n`, so a simulation or
    /// test that makes the same calls in the same order sees the same delays on every run. Calls
    /// on several threads still get distinct streams, but which call gets which number then
    /// depends on the schedule. Without it, jitter comes from the thread's rng.
    ///
    /// ```
    /// use resile::backoff::Backoff;
    /// use resile::clock::ManualClock;
    /// use resile::policy::Policy;
    /// use resile::retry::Retry;
    /// use std::time::Duration;
    ///
    /// let delays = || {
    ///     let clock = ManualClock::new();
    ///     let backoff = Backoff::builder().exponential(Duration::from_millis(10), 2).build()?; // full jitter
    ///     let retry = Retry::builder().max_attempts(4).backoff(backoff).clock(clock.clone()).build()?;
    ///     let policy = Policy::builder().retry(retry).rng_seed(42).build()?;
    ///     let mut slept = Vec::new();
    ///     for _ in 0..3 {
    ///         let _ = policy.call_with_sleep(|| Err::<(), _>("busy"), |d| slept.push(d));
    ///     }
    ///     Ok::<_, resile::error::ConfigError>(slept)
    /// };
    /// assert_eq!(delays()?, delays()?);
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
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
            seed: self.seed,
            classify: self.classify,
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
        Ok(Policy {
            drainer: self.drainer,
            bulkhead: self.bulkhead,
            breaker: self.breaker,
            retry: self.retry,
            fallback: self.fallback,
            seed: self.seed.map(Seed::new),
            classify: self.classify,
        })
    }
}
