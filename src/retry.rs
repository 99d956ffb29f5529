//! The retry loop: attempts, a shared [`RetryBudget`], [`Backoff`] and a deadline across all
//! attempts, sync or async.
//!
//! For up to `max_attempts` attempts: run the operation; on an error the classifier calls
//! retryable, compute the backoff, check the deadline, **withdraw from the budget** (refused:
//! give up with [`RetryError::BudgetExhausted`]), wait, and try again. The withdraw happens when the
//! retry is decided, before the wait, so retries sleeping in backoff count against the budget
//! (envoy#30205); a retry the deadline rules out is never debited. Each run deposits one original
//! request into the budget when its first attempt returns (under a [`Policy`](crate::policy),
//! not if the breaker refused it: a request that never reached the dependency earns no retry).
//!
//! The helper never picks a runtime: [`Retry::run`] blocks the thread between attempts and
//! [`Retry::run_async`] awaits, both on the [timer](crate::timer) set with
//! [`RetryBuilder::timer`] (a shared timer thread by default; tokio's, another runtime's sleep
//! function, or a [`ManualClock`](crate::clock::ManualClock) that tests move on instead of
//! waiting).
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
//!     .timer(clock.clone()) // each backoff moves the manual clock on: no wall time passes
//!     .retry_if(|e: &&str| *e != "bad request")
//!     .build()?;
//!
//! let mut calls = 0;
//! let out = retry.run(|| { calls += 1; if calls < 3 { Err("busy") } else { Ok(calls) } });
//! assert_eq!(out, Ok(3));
//! assert_eq!(budget.metrics().retries_granted, 2);
//!
//! let out: Result<(), _> = retry.run(|| Err("bad request"));
//! assert_eq!(out, Err(RetryError::NotRetryable { attempts: 1, last: "bad request" }));
//! # Ok::<(), resile::error::ConfigError>(())
//! ```

use crate::backoff::Backoff;
use crate::budget::BudgetExhausted;
use crate::budget::RetryBudget;
use crate::classify::{Classify, ErrIsFailure, RetryIf};
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

use crate::sync::{AtomicU64, Ordering};
use crate::timer::{SharedTimer, Timer};

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

/// A seeded jitter source: run `n` draws from a small rng seeded with `seed` and `n`, so a
/// single-threaded sequence of runs replays exactly and concurrent runs never share an rng (no
/// lock: one relaxed `fetch_add` per run that retries).
#[derive(Debug)]
struct Seed {
    seed: u64,
    runs: AtomicU64,
}

impl Seed {
    /// The rng of the next run. Relaxed: the counter only has to hand out distinct numbers.
    fn next_rng(&self) -> SmallRng {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        // SmallRng's seeding scrambles the u64, so consecutive runs get unrelated streams.
        SmallRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
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
pub struct Retry<C: Clock = SystemClock, K = ErrIsFailure> {
    max_attempts: u32,
    backoff: Backoff,
    budget: Option<Arc<dyn Budget>>,
    deadline: Option<u64>,
    clock: C,
    timer: SharedTimer,
    seed: Option<Arc<Seed>>,
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
    /// retryable ([`ErrIsFailure`]), the [`SystemClock`] and the [`ThreadTimer`](crate::timer::ThreadTimer).
    pub fn builder() -> RetryBuilder {
        RetryBuilder {
            max_attempts: 3,
            backoff: Backoff::default(),
            budget: None,
            deadline: None,
            clock: SystemClock::new(),
            timer: SharedTimer::default(),
            seed: None,
            classify: ErrIsFailure,
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
        RunState {
            attempts: 0,
            previous: Duration::ZERO,
            deadline_at: self.deadline.map(|d| self.clock.now().saturating_add(d)),
        }
    }

    /// After an attempt: the first one deposits the original request into the budget, unless
    /// it never reached the dependency (`refused`: a breaker refusal, under the policy), so
    /// requests refused during an outage do not raise the balance retries are paid from.
    fn after_attempt<T, E>(&self, st: &RunState, r: &Result<T, E>, refused: impl Fn(&E) -> bool) {
        if st.attempts == 1 {
            if let Some(b) = &self.budget {
                if !matches!(r, Err(e) if refused(e)) {
                    b.deposit();
                }
            }
        }
    }

    /// After a failed attempt: the delay before the next one (with the error, kept for
    /// [`after_wait`](Self::after_wait)), or why the run ends. The order is the promise:
    /// classify, count attempts, compute the backoff, check the deadline, and only then withdraw
    /// (so a retry that will not happen is never debited, and one that will is debited before
    /// its wait).
    fn after_failure<T, E, R: Rng + ?Sized>(
        &self,
        classify: &impl Classify<T, E>,
        st: &mut RunState,
        last: E,
        rng: &mut R,
    ) -> Result<(Duration, E), RetryError<E>> {
        let attempts = st.attempts;
        if !classify.is_retryable(Err(&last)) {
            return Err(RetryError::NotRetryable { attempts, last });
        }
        if attempts >= self.max_attempts {
            return Err(RetryError::Exhausted { attempts, last });
        }
        let hint = classify.retry_after(Err(&last));
        let delay = self.backoff.hinted_delay(attempts, st.previous, hint, rng);
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

    /// The rng of one run: the seeded sequence's next, or one seeded from the thread's.
    fn rng(&self) -> SmallRng {
        match &self.seed {
            Some(seed) => seed.next_rng(),
            None => SmallRng::from_rng(&mut rand::rng()),
        }
    }

    /// Runs `op` with retries, blocking the thread between attempts with the
    /// [timer](RetryBuilder::timer)'s [`blocking_sleep`](crate::timer::Timer::blocking_sleep).
    ///
    /// # Errors
    /// The [`RetryError`] that ended the run, with the last error.
    pub fn run<T, E>(&self, op: impl FnMut() -> Result<T, E>) -> Result<T, RetryError<E>>
    where
        K: Classify<T, E>,
    {
        self.run_classified(&self.classify, |_| false, op)
    }

    /// The classifier this policy was built with (for [`crate::policy`], which wraps it).
    pub(crate) fn classifier(&self) -> &K {
        &self.classify
    }

    /// The clock the deadline is measured on (for [`crate::policy`], which cuts an attempt at
    /// the deadline).
    pub(crate) fn clock(&self) -> &C {
        &self.clock
    }

    /// The timer the backoff waits on (the policy's attempt limits default to it).
    pub(crate) fn timer(&self) -> &SharedTimer {
        &self.timer
    }

    /// [`run`](Self::run) with `classify` in place of the built classifier: the same loop, for a
    /// caller (the [policy](crate::policy)) whose attempts return a wider error, some of which
    /// (`refused`) never reached the dependency.
    pub(crate) fn run_classified<T, E>(
        &self,
        classify: &impl Classify<T, E>,
        refused: impl Fn(&E) -> bool,
        mut op: impl FnMut() -> Result<T, E>,
    ) -> Result<T, RetryError<E>> {
        let mut st = self.start();
        let mut rng = None;
        loop {
            st.attempts += 1;
            let r = op();
            self.after_attempt(&st, &r, &refused);
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let rng = rng.get_or_insert_with(|| self.rng());
                    let (delay, last) = self.after_failure(classify, &mut st, e, rng)?;
                    self.timer.blocking_sleep(delay);
                    self.after_wait(&st, last)?;
                }
            }
        }
    }

    /// Runs the future `op()` returns with retries, on any executor, waiting between attempts
    /// on the [timer](RetryBuilder::timer).
    ///
    /// ```
    /// use resile::retry::Retry;
    /// use resile::clock::ManualClock;
    ///
    /// // A manual clock as the timer: each backoff moves it on, no wall time passes.
    /// let clock = ManualClock::new();
    /// let retry = Retry::builder().clock(clock.clone()).timer(clock.clone()).build()?;
    /// let mut n = 0;
    /// let out = futures::executor::block_on(retry.run_async(|| {
    ///     n += 1;
    ///     let r = if n < 3 { Err("busy") } else { Ok(n) };
    ///     async move { r }
    /// }));
    /// assert_eq!(out, Ok(3));
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// The [`RetryError`] that ended the run, with the last error.
    pub async fn run_async<T, E, F, Fut>(&self, op: F) -> Result<T, RetryError<E>>
    where
        K: Classify<T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_async_classified(&self.classify, |_| false, op)
            .await
    }

    /// [`run_async`](Self::run_async) with `classify` in place of the built classifier (see
    /// [`run_classified`](Self::run_classified)).
    pub(crate) async fn run_async_classified<T, E, F, Fut>(
        &self,
        classify: &impl Classify<T, E>,
        refused: impl Fn(&E) -> bool,
        mut op: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut st = self.start();
        let mut rng = None;
        loop {
            st.attempts += 1;
            let r = op().await;
            self.after_attempt(&st, &r, &refused);
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let rng = rng.get_or_insert_with(|| self.rng());
                    let (delay, last) = self.after_failure(classify, &mut st, e, rng)?;
                    self.timer.sleep(delay).await;
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
#[must_use = "a builder does nothing until `build()`"]
pub struct RetryBuilder<C: Clock = SystemClock, K = ErrIsFailure> {
    max_attempts: u32,
    backoff: Backoff,
    budget: Option<Arc<dyn Budget>>,
    deadline: Option<Duration>,
    clock: C,
    timer: SharedTimer,
    seed: Option<Arc<Seed>>,
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
    /// dependency. Each run deposits one request (see the [module docs](self)).
    pub fn budget<BC: Clock>(mut self, budget: Arc<RetryBudget<BC>>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// A deadline across all attempts of one run, measured from its start: no retry is started
    /// whose backoff would end at or past it. [`Retry`] itself does not interrupt an attempt
    /// already running; [`Policy::call_async`](crate::policy::Policy::call_async) does, ending
    /// the call with [`PolicyError::DeadlineExceeded`](crate::policy::PolicyError::DeadlineExceeded).
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
            timer: self.timer,
            seed: self.seed,
            classify: self.classify,
        }
    }

    /// The timer the backoff waits on (default [`ThreadTimer`](crate::timer::ThreadTimer); see
    /// [`crate::timer`]):
    /// [`run_async`](Retry::run_async) awaits its sleep, [`run`](Retry::run) its blocking
    /// sleep.
    pub fn timer(mut self, timer: impl Timer) -> Self {
        self.timer = SharedTimer::new(timer);
        self
    }

    /// Seeds the jitter: run `n` draws from an rng seeded with `seed` and `n`, so a test (or a
    /// simulation) replays exactly. Default: each run seeds from the thread's rng.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(Arc::new(Seed {
            seed,
            runs: AtomicU64::new(0),
        }));
        self
    }

    /// Classifies results with `classify`: which errors are retried, and the server's hint of
    /// when (see [`crate::classify`]). Default [`ErrIsFailure`]: every error is retried.
    pub fn classify<K2>(self, classify: K2) -> RetryBuilder<C, K2> {
        RetryBuilder {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            budget: self.budget,
            deadline: self.deadline,
            clock: self.clock,
            timer: self.timer,
            seed: self.seed,
            classify,
        }
    }

    /// Retries only errors for which `retryable` returns true ([`RetryIf`]).
    pub fn retry_if<F: Fn(&E) -> bool, E>(self, retryable: F) -> RetryBuilder<C, RetryIf<F>> {
        self.classify(RetryIf(retryable))
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
            timer: self.timer,
            seed: self.seed,
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
