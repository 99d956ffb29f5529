//! The retry loop: attempts, a shared [`RetryBudget`], [`Backoff`] and a deadline across all
//! attempts, sync or async.
//!
//! For up to `max_attempts` attempts: run the operation; on an error the classifier calls
//! retryable, compute the backoff, check the deadline, **withdraw from the budget** (refused:
//! give up with [`RetryError::BudgetExhausted`]), wait, and try again. The withdraw happens when the
//! retry is decided, before the wait, so retries sleeping in backoff count against the budget
//! (envoy#30205); a retry the deadline rules out is never debited. Each run deposits one original
//! request into the budget.
//!
//! The helper never picks a runtime: [`Retry::run`] sleeps the thread, [`Retry::run_with`] takes
//! any sleep function (a test's fake sleep advances a [`ManualClock`](crate::clock::ManualClock)),
//! and [`Retry::run_async`] takes the runtime's sleep (`tokio::time::sleep`,
//! `async_std::task::sleep`, `smol::Timer::after`, `embassy_time::Timer::after`, ...).
//!
//! ```
//! use resile::backoff::{Backoff, Jitter};
//! use resile::budget::RetryBudget;
//! use resile::clock::ManualClock;
//! use resile::retry::RetryError;
//! use resile::retry::Retry;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let budget = Arc::new(
//!     RetryBudget::builder().max_retries(100).clock(clock.clone()).build()?,
//! );
//! let retry = Retry::builder()
//!     .max_attempts(4)
//!     .backoff(Backoff::builder().constant(Duration::from_millis(100)).jitter(Jitter::None).build()?)
//!     .budget(budget.clone())
//!     .deadline(Duration::from_secs(2))
//!     .clock(clock.clone())
//!     .retry_if(|e: &&str| *e != "bad request")
//!     .build()?;
//!
//! // A fake sleep that moves the manual clock: no wall time passes.
//! let sleep = |d| clock.advance(d);
//! let mut calls = 0;
//! let out = retry.run_with(&mut rand::rng(), || { calls += 1; if calls < 3 { Err("busy") } else { Ok(calls) } }, sleep);
//! assert_eq!(out, Ok(3));
//! assert_eq!(budget.metrics().retries_granted, 2);
//!
//! let out: Result<(), _> = retry.run_with(&mut rand::rng(), || Err("bad request"), |d| clock.advance(d));
//! assert_eq!(out, Err(RetryError::NotRetryable { attempts: 1, last: "bad request" }));
//! # Ok::<(), resile::error::ConfigError>(())
//! ```

use crate::backoff::Backoff;
use crate::budget::BudgetExhausted;
use crate::budget::RetryBudget;
use crate::clock::{Clock, SystemClock, duration_to_nanos};
use crate::error::ConfigError;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::future::Future;
// `std`'s `Arc`, not the sync facade's: it is the type users share a budget through, and nothing
// is synchronised through it (under loom the facade's `Arc` could not hold a `dyn Budget`).
use std::sync::Arc;
use std::time::Duration;

/// Decides which errors are worth retrying, and reads a server's hint from an error.
///
/// Implemented by [`AlwaysRetry`] and by every `Fn(&E) -> bool`; implement it on your own type
/// to pass a `Retry-After` or gRPC pushback hint to the backoff.
///
/// ```
/// use resile::retry::Classify;
/// use std::time::Duration;
///
/// enum HttpError { TooMany { retry_after: Duration }, BadRequest }
/// struct Http;
/// impl Classify<HttpError> for Http {
///     fn is_retryable(&self, e: &HttpError) -> bool {
///         matches!(e, HttpError::TooMany { .. })
///     }
///     fn retry_after(&self, e: &HttpError) -> Option<Duration> {
///         match e { HttpError::TooMany { retry_after } => Some(*retry_after), _ => None }
///     }
/// }
/// assert!(!Http.is_retryable(&HttpError::BadRequest));
/// ```
pub trait Classify<E> {
    /// Whether an attempt that failed with `error` may be retried.
    fn is_retryable(&self, error: &E) -> bool;

    /// A delay the server asked for, if `error` carries one; it replaces the computed backoff,
    /// clamped to the backoff's bounds.
    fn retry_after(&self, error: &E) -> Option<Duration> {
        let _ = error;
        None
    }
}

/// The default classifier: every error is retryable.
///
/// ```
/// use resile::retry::{AlwaysRetry, Classify};
/// assert!(AlwaysRetry.is_retryable(&"any error"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysRetry;

impl<E> Classify<E> for AlwaysRetry {
    #[inline]
    fn is_retryable(&self, _: &E) -> bool {
        true
    }
}

impl<E, F: Fn(&E) -> bool> Classify<E> for F {
    #[inline]
    fn is_retryable(&self, error: &E) -> bool {
        self(error)
    }
}

/// The budget, type-erased so that the retry's clock and the budget's clock are chosen apart.
trait Budget: Send + Sync {
    fn deposit(&self);
    fn try_withdraw(&self) -> Result<(), BudgetExhausted>;
}

impl<C: Clock> Budget for RetryBudget<C> {
    fn deposit(&self) {
        RetryBudget::deposit(self);
    }
    fn try_withdraw(&self) -> Result<(), BudgetExhausted> {
        RetryBudget::try_withdraw(self)
    }
}

/// A validated retry policy: run an operation with retries. Cheap to share (`&self` methods);
/// clone it to give each client its own copy of the same policy and budget.
///
/// See the [module docs](self) for the loop and an example.
///
/// ```
/// use resile::retry::Retry;
///
/// let retry = Retry::builder().max_attempts(3).build()?;
/// let mut n = 0;
/// let out: Result<u32, _> = retry.run(|| { n += 1; if n == 1 { Err("flaky") } else { Ok(n) } });
/// assert_eq!(out, Ok(2));
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Retry<C: Clock = SystemClock, K = AlwaysRetry> {
    max_attempts: u32,
    backoff: Backoff,
    budget: Option<Arc<dyn Budget>>,
    deadline: Option<u64>,
    clock: C,
    classify: K,
}

impl<C: Clock, K> fmt::Debug for Retry<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget.is_some())
            .field("deadline", &self.deadline.map(Duration::from_nanos))
            .finish_non_exhaustive()
    }
}

/// Where one run stands between attempts.
struct RunState {
    attempts: u32,
    previous: Duration,
    deadline_at: Option<u64>,
}

impl Retry {
    /// A builder: 3 attempts, [`Backoff::default`], no budget, no deadline, every error
    /// retryable, the [`SystemClock`].
    pub fn builder() -> RetryBuilder {
        RetryBuilder {
            max_attempts: 3,
            backoff: Backoff::default(),
            budget: None,
            deadline: None,
            clock: SystemClock::new(),
            classify: AlwaysRetry,
        }
    }
}

impl<C: Clock, K> Retry<C, K> {
    /// The most attempts one run makes, the original included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff policy.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The deadline across all attempts of one run.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline.map(Duration::from_nanos)
    }

    fn start(&self) -> RunState {
        if let Some(b) = &self.budget {
            b.deposit();
        }
        RunState {
            attempts: 0,
            previous: Duration::ZERO,
            deadline_at: self.deadline.map(|d| self.clock.now().saturating_add(d)),
        }
    }

    /// After a failed attempt: the delay before the next one (with the error, kept for
    /// [`after_wait`](Self::after_wait)), or why the run ends. The order is the promise:
    /// classify, count attempts, compute the backoff, check the deadline, and only then withdraw
    /// (so a retry that will not happen is never debited, and one that will is debited before
    /// its wait).
    fn after_failure<E, R: Rng + ?Sized>(
        &self,
        classify: &impl Classify<E>,
        st: &mut RunState,
        last: E,
        rng: &mut R,
    ) -> Result<(Duration, E), RetryError<E>> {
        let attempts = st.attempts;
        if !classify.is_retryable(&last) {
            return Err(RetryError::NotRetryable { attempts, last });
        }
        if attempts >= self.max_attempts {
            return Err(RetryError::Exhausted { attempts, last });
        }
        let hint = classify.retry_after(&last);
        let delay = self
            .backoff
            .delay_with_hint(attempts, st.previous, hint, rng);
        if let Some(at) = st.deadline_at {
            if self.clock.now().saturating_add(duration_to_nanos(delay)) >= at {
                return Err(RetryError::DeadlineExceeded { attempts, last });
            }
        }
        if let Some(b) = &self.budget {
            if b.try_withdraw().is_err() {
                return Err(RetryError::BudgetExhausted { attempts, last });
            }
        }
        st.previous = delay;
        Ok((delay, last))
    }

    /// After the wait: the next attempt may start, unless the wait ended at or past the deadline
    /// (a sleep that woke late). Its retry was paid before the wait and is not refunded: the
    /// budget errs against the retrier.
    fn after_wait<E>(&self, st: &RunState, last: E) -> Result<(), RetryError<E>> {
        match st.deadline_at {
            Some(at) if self.clock.now() >= at => Err(RetryError::DeadlineExceeded {
                attempts: st.attempts,
                last,
            }),
            _ => Ok(()),
        }
    }

    /// Runs `op` with retries, sleeping the thread between attempts, with thread-local
    /// randomness for the jitter.
    ///
    /// # Errors
    /// The [`RetryError`] that ended the run, with the last error.
    pub fn run<T, E>(&self, op: impl FnMut() -> Result<T, E>) -> Result<T, RetryError<E>>
    where
        K: Classify<E>,
    {
        self.run_with(&mut rand::rng(), op, std::thread::sleep)
    }

    /// Runs `op` with retries, drawing jitter from `rng` and waiting with `sleep`.
    ///
    /// # Errors
    /// The [`RetryError`] that ended the run, with the last error.
    pub fn run_with<T, E, R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        op: impl FnMut() -> Result<T, E>,
        sleep: impl FnMut(Duration),
    ) -> Result<T, RetryError<E>>
    where
        K: Classify<E>,
    {
        self.run_classified(&self.classify, rng, op, sleep)
    }

    /// The classifier this policy was built with (for [`crate::policy`], which wraps it).
    pub(crate) fn classifier(&self) -> &K {
        &self.classify
    }

    /// [`run_with`](Self::run_with) with `classify` in place of the built classifier: the same
    /// loop, for a caller (the [policy](crate::policy)) whose attempts return a wider error.
    pub(crate) fn run_classified<T, E, R: Rng + ?Sized>(
        &self,
        classify: &impl Classify<E>,
        rng: &mut R,
        mut op: impl FnMut() -> Result<T, E>,
        mut sleep: impl FnMut(Duration),
    ) -> Result<T, RetryError<E>> {
        let mut st = self.start();
        loop {
            st.attempts += 1;
            match op() {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let (delay, last) = self.after_failure(classify, &mut st, e, rng)?;
                    sleep(delay);
                    self.after_wait(&st, last)?;
                }
            }
        }
    }

    /// Runs the future `op()` returns with retries, waiting with the future `sleep(delay)`
    /// returns, so any runtime works; jitter comes from a small rng seeded from the thread's.
    ///
    /// ```
    /// use resile::retry::Retry;
    /// use resile::clock::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let retry = Retry::builder().clock(clock.clone()).build()?;
    /// let mut n = 0;
    /// let out = futures::executor::block_on(retry.run_async(
    ///     || { n += 1; let r = if n < 3 { Err("busy") } else { Ok(n) }; async move { r } },
    ///     |d| { clock.advance(d); std::future::ready(()) }, // e.g. tokio::time::sleep
    /// ));
    /// assert_eq!(out, Ok(3));
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// The [`RetryError`] that ended the run, with the last error.
    pub async fn run_async<T, E, F, Fut, S, SFut>(
        &self,
        op: F,
        sleep: S,
    ) -> Result<T, RetryError<E>>
    where
        K: Classify<E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: FnMut(Duration) -> SFut,
        SFut: Future<Output = ()>,
    {
        let rng = SmallRng::from_rng(&mut rand::rng());
        self.run_async_with(rng, op, sleep).await
    }

    /// [`run_async`](Self::run_async) with jitter drawn from `rng` (seed it for reproducible
    /// tests).
    ///
    /// # Errors
    /// The [`RetryError`] that ended the run, with the last error.
    pub async fn run_async_with<T, E, R, F, Fut, S, SFut>(
        &self,
        rng: R,
        op: F,
        sleep: S,
    ) -> Result<T, RetryError<E>>
    where
        K: Classify<E>,
        R: Rng,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: FnMut(Duration) -> SFut,
        SFut: Future<Output = ()>,
    {
        self.run_async_classified(&self.classify, rng, op, sleep)
            .await
    }

    /// [`run_async_with`](Self::run_async_with) with `classify` in place of the built
    /// classifier (see [`run_classified`](Self::run_classified)).
    pub(crate) async fn run_async_classified<T, E, R, F, Fut, S, SFut>(
        &self,
        classify: &impl Classify<E>,
        mut rng: R,
        mut op: F,
        mut sleep: S,
    ) -> Result<T, RetryError<E>>
    where
        R: Rng,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: FnMut(Duration) -> SFut,
        SFut: Future<Output = ()>,
    {
        let mut st = self.start();
        loop {
            st.attempts += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let (delay, last) = self.after_failure(classify, &mut st, e, &mut rng)?;
                    sleep(delay).await;
                    self.after_wait(&st, last)?;
                }
            }
        }
    }
}

/// Builds a validated [`Retry`]; see [`Retry::builder`].
///
/// ```
/// use resile::retry::Retry;
/// let e = Retry::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(e.field(), "max_attempts");
/// ```
#[must_use]
pub struct RetryBuilder<C: Clock = SystemClock, K = AlwaysRetry> {
    max_attempts: u32,
    backoff: Backoff,
    budget: Option<Arc<dyn Budget>>,
    deadline: Option<Duration>,
    clock: C,
    classify: K,
}

impl<C: Clock, K> fmt::Debug for RetryBuilder<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget.is_some())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<C: Clock, K> RetryBuilder<C, K> {
    /// The most attempts per run, the original included (`1..`; 1 means no retry). Default 3.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The backoff between attempts (default [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The retry budget every retry is withdrawn from, shared with other clients of the same
    /// dependency. Each run deposits one request.
    pub fn budget<BC: Clock>(mut self, budget: Arc<RetryBudget<BC>>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// A deadline across all attempts of one run, measured from its start: no retry is started
    /// whose backoff would end at or past it. An attempt already running is not interrupted.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The clock the deadline is measured on (default [`SystemClock`]).
    pub fn clock<C2: Clock>(self, clock: C2) -> RetryBuilder<C2, K> {
        RetryBuilder {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            budget: self.budget,
            deadline: self.deadline,
            clock,
            classify: self.classify,
        }
    }

    /// Retries only errors for which `classify` says so (a closure `Fn(&E) -> bool`, or a
    /// [`Classify`] that also reads server hints).
    pub fn retry_if<K2>(self, classify: K2) -> RetryBuilder<C, K2> {
        RetryBuilder {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            budget: self.budget,
            deadline: self.deadline,
            clock: self.clock,
            classify,
        }
    }

    /// Validates the policy.
    ///
    /// # Errors
    /// A [`ConfigError`] for `max_attempts` of 0 or a zero `deadline`.
    pub fn build(self) -> Result<Retry<C, K>, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                "max_attempts",
                0,
                "1.. (1 means no retry)",
            ));
        }
        if self.deadline == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "deadline",
                Duration::ZERO,
                "a non-zero duration",
            ));
        }
        Ok(Retry {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            budget: self.budget,
            deadline: self.deadline.map(duration_to_nanos),
            clock: self.clock,
            classify: self.classify,
        })
    }
}

/// Why the [retry helper](crate::retry::Retry) gave up; each variant carries the last error the
/// operation returned and the number of attempts made (the original one included).
///
/// ```
/// use resile::retry::RetryError;
/// let e: RetryError<&str> = RetryError::Exhausted { attempts: 3, last: "timeout" };
/// assert_eq!(e.attempts(), 3);
/// assert_eq!(e.last(), &"timeout");
/// assert_eq!(e.to_string(), "gave up after 3 attempts (max_attempts reached): timeout");
/// assert_eq!(e.into_last(), "timeout");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryError<E> {
    /// Every one of `max_attempts` attempts failed with a retryable error.
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
    /// A retry was due, but the retry budget refused it.
    BudgetExhausted {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
    /// The deadline across all attempts passed, or would pass during the next backoff.
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
    /// The operation failed with an error the classifier says is not worth retrying.
    NotRetryable {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
}

impl<E> RetryError<E> {
    /// The number of attempts made, the original one included.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Exhausted { attempts, .. }
            | Self::BudgetExhausted { attempts, .. }
            | Self::DeadlineExceeded { attempts, .. }
            | Self::NotRetryable { attempts, .. } => *attempts,
        }
    }

    /// The error of the last attempt.
    pub fn last(&self) -> &E {
        match self {
            Self::Exhausted { last, .. }
            | Self::BudgetExhausted { last, .. }
            | Self::DeadlineExceeded { last, .. }
            | Self::NotRetryable { last, .. } => last,
        }
    }

    /// The error of the last attempt, by value.
    pub fn into_last(self) -> E {
        match self {
            Self::Exhausted { last, .. }
            | Self::BudgetExhausted { last, .. }
            | Self::DeadlineExceeded { last, .. }
            | Self::NotRetryable { last, .. } => last,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Exhausted { .. } => "max_attempts reached",
            Self::BudgetExhausted { .. } => "retry budget exhausted",
            Self::DeadlineExceeded { .. } => "deadline exceeded",
            Self::NotRetryable { .. } => "error not retryable",
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.attempts();
        let s = if n == 1 { "" } else { "s" };
        write!(
            f,
            "gave up after {n} attempt{s} ({}): {}",
            self.reason(),
            self.last()
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.last())
    }
}
