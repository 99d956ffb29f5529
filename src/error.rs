//! The errors: one type per way a call can be refused, and [`ConfigError`] for a builder that
//! was given a value out of range.
//!
//! Every refusal is cheap to build (no allocation) because it is returned on the hot path of an
//! overloaded service. Every type implements [`std::error::Error`], `Clone`, and a `Display` that
//! says which pattern refused and what the caller can do.

use std::borrow::Cow;
use std::fmt;

/// A builder was given a value outside the range it accepts.
///
/// The message names the field, the value given, and the allowed range:
///
/// ```
/// use resile::error::ConfigError;
/// let e = ConfigError::new("window_size", 0, "1..=1024");
/// assert_eq!(e.field(), "window_size");
/// assert_eq!(e.to_string(), "invalid `window_size` = 0: allowed 1..=1024");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    value: String,
    allowed: Cow<'static, str>,
}

impl ConfigError {
    /// An error for `field`, which was given `value` and accepts `allowed`.
    pub fn new(
        field: &'static str,
        value: impl fmt::Debug,
        allowed: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field,
            value: format!("{value:?}"),
            allowed: allowed.into(),
        }
    }

    /// The name of the offending field, as the builder method spells it.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The value that was given, as `Debug` shows it.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The range or rule the field accepts.
    pub fn allowed(&self) -> &str {
        &self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid `{}` = {}: allowed {}",
            self.field, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

// Each primitive's refusal types are in a section of their own below.
//
// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

/// Why a circuit breaker refused a call.
///
/// Read from [`CircuitOpen::refusal`]: an open breaker refuses until its open period ends, then
/// admits probes and refuses the rest as half-open.
///
/// ```
/// use resile::{breaker::CircuitBreaker, clock::ManualClock, error::Refusal};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let builder = CircuitBreaker::builder().clock(clock.clone()).minimum_calls(1);
/// let breaker = builder.open_for(Duration::from_secs(5)).half_open_probes(1).build()?;
/// breaker.try_acquire()?.failure(); // 1 failure in 1 call: open for 5 s
/// let refused = breaker.try_acquire().unwrap_err();
/// assert_eq!(refused.refusal(), Refusal::Open);
/// clock.advance(refused.retry_after().unwrap()); // 5 s, rounded up to the breaker's ~1 ms tick
/// let _probe = breaker.try_acquire()?; // the one probe slot
/// assert_eq!(breaker.try_acquire().unwrap_err().refusal(), Refusal::HalfOpen);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The breaker is open: the dependency failed recently.
    Open,
    /// The breaker is half-open and every probe slot is taken.
    HalfOpen,
    /// The breaker was forced open by hand; only a reset lets calls through.
    ForcedOpen,
}

/// A circuit breaker refused the call without running it.
///
/// Carries how long until the breaker will admit a probe (`None` when it was forced open, which
/// lasts until someone resets it) and which state refused.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use resile::error::Refusal;
///
/// let breaker = CircuitBreaker::builder().build().unwrap();
/// breaker.force_open();
/// let err = breaker.try_acquire().unwrap_err();
/// assert_eq!(err.refusal(), Refusal::ForcedOpen);
/// assert_eq!(err.retry_after(), None);
/// assert_eq!(err.to_string(), "circuit breaker forced open: call refused");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CircuitOpen {
    /// Nanoseconds until a probe may be admitted; [`NO_RETRY_AFTER`] for none. Kept as an
    /// integer so the refusal path does no `Duration` arithmetic.
    retry_after_nanos: u64,
    refusal: Refusal,
}

/// `CircuitOpen::retry_after_nanos` when there is no hint.
const NO_RETRY_AFTER: u64 = u64::MAX;

impl CircuitOpen {
    /// A refusal by `refusal`, with `retry_after` until a probe may be admitted (saturating at
    /// `u64::MAX - 1` nanoseconds, about 584 years).
    pub fn new(refusal: Refusal, retry_after: Option<std::time::Duration>) -> Self {
        let nanos = retry_after.map_or(NO_RETRY_AFTER, |d| {
            crate::clock::duration_to_nanos(d).min(NO_RETRY_AFTER - 1)
        });
        Self::from_nanos(refusal, nanos)
    }

    /// A refusal with `retry_after_nanos` until a probe may be admitted (`u64::MAX`: no hint).
    #[inline]
    pub(crate) const fn from_nanos(refusal: Refusal, retry_after_nanos: u64) -> Self {
        Self {
            retry_after_nanos,
            refusal,
        }
    }

    /// How long until the breaker admits a probe; `None` when forced open. When half-open with
    /// every probe taken it is an estimate: the time until the half-open timeout plus one more
    /// open period, which is the wait if the probes never decide and a call arrives at the
    /// timeout (the re-open is made by the first call after it, and runs from then). The probes
    /// may decide sooner.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        (self.retry_after_nanos != NO_RETRY_AFTER)
            .then(|| std::time::Duration::from_nanos(self.retry_after_nanos))
    }

    /// The state that refused.
    pub fn refusal(&self) -> Refusal {
        self.refusal
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.refusal, self.retry_after()) {
            (Refusal::ForcedOpen, _) => f.write_str("circuit breaker forced open: call refused"),
            (Refusal::Open, Some(d)) => {
                write!(f, "circuit breaker open: call refused, retry after {d:?}")
            }
            (Refusal::HalfOpen, Some(d)) => write!(
                f,
                "circuit breaker half-open with every probe taken: call refused, retry after {d:?}"
            ),
            (_, None) => f.write_str("circuit breaker open: call refused"),
        }
    }
}

impl std::error::Error for CircuitOpen {}

// (end of circuit breaker section)
//
// ---------------------------------------------------------------------------------------------
// Retry budget
// ---------------------------------------------------------------------------------------------

/// A retry was refused because the [retry budget](crate::budget::RetryBudget) had no retry left
/// in its window.
///
/// Fail fast: the dependency is already being retried as much as the budget allows.
///
/// ```
/// use resile::budget::RetryBudget;
/// use resile::error::BudgetExhausted;
/// use std::time::Duration;
///
/// let budget = RetryBudget::builder().max_retries(1).window(Duration::from_secs(60)).build()?;
/// assert_eq!(budget.try_withdraw(), Ok(()));
/// assert_eq!(budget.try_withdraw(), Err(BudgetExhausted));
/// assert_eq!(BudgetExhausted.to_string(), "retry budget exhausted: failing fast instead of retrying");
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BudgetExhausted;

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry budget exhausted: failing fast instead of retrying")
    }
}

impl std::error::Error for BudgetExhausted {}

/// Why the [retry helper](crate::retry::Retry) gave up; each variant carries the last error the
/// operation returned and the number of attempts made (the original one included).
///
/// ```
/// use resile::error::RetryError;
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

// (end of retry budget section)
//
// ---------------------------------------------------------------------------------------------
// Bulkhead
// ---------------------------------------------------------------------------------------------

/// Why a [bulkhead](crate::bulkhead::Bulkhead) refused a call: it was full, a wait for a slot
/// ran out of time, or the bulkhead is closed.
///
/// Building one never allocates (the name is `&'static str`).
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::error::BulkheadError;
///
/// let b = Bulkhead::builder().name("db").limit(1).build().unwrap();
/// let _held = b.try_acquire().unwrap();
/// let e = b.try_acquire().unwrap_err();
/// assert_eq!(e, BulkheadError::Full { name: "db", limit: 1 });
/// assert!(e.is_full());
/// assert_eq!(e.to_string(), "bulkhead `db` is full (limit 1 in flight); retry later or shed the call");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadError {
    /// Every slot was taken (or others were already queued for one) and the caller did not wait.
    Full {
        /// The bulkhead's name.
        name: &'static str,
        /// Its limit when the call was refused.
        limit: u32,
    },
    /// The caller waited for a slot and none came in time.
    TimedOut {
        /// The bulkhead's name.
        name: &'static str,
        /// How long the caller waited, by the bulkhead's clock.
        waited: std::time::Duration,
    },
    /// The bulkhead was closed: it admits nothing new, and its waiters were woken with this error.
    Closed {
        /// The bulkhead's name.
        name: &'static str,
    },
}

impl BulkheadError {
    /// The name of the bulkhead that refused.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Full { name, .. } | Self::TimedOut { name, .. } | Self::Closed { name } => name,
        }
    }

    /// Whether the bulkhead was full and the caller did not wait.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }

    /// Whether a wait for a slot timed out.
    pub fn is_timed_out(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }

    /// Whether the bulkhead was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed { .. })
    }
}

impl fmt::Display for BulkheadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { name, limit } => write!(
                f,
                "bulkhead `{name}` is full (limit {limit} in flight); retry later or shed the call"
            ),
            Self::TimedOut { name, waited } => write!(
                f,
                "bulkhead `{name}`: no slot came free within {waited:?}; retry later or shed the call"
            ),
            Self::Closed { name } => {
                write!(f, "bulkhead `{name}` is closed and admits no new work")
            }
        }
    }
}

impl std::error::Error for BulkheadError {}

// (end of bulkhead section)
//
// ---------------------------------------------------------------------------------------------
// Graceful drainer
// ---------------------------------------------------------------------------------------------

/// [`Drainer::enter`](crate::drain::Drainer::enter) refused to admit new work.
///
/// Refusals happen before any work starts, so the caller can answer at once (HTTP 503 with
/// `Connection: close`, gRPC `UNAVAILABLE`) and the client can retry on another instance.
///
/// ```
/// use resile::drain::Drainer;
/// use resile::error::Refused;
///
/// let drainer = Drainer::new();
/// drainer.start_draining();
/// let err = drainer.enter().unwrap_err();
/// assert_eq!(err, Refused::Draining);
/// assert_eq!(err.to_string(), "drainer refused new work: draining for shutdown");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refused {
    /// Draining has started: no new work is admitted. Send the caller elsewhere.
    Draining,
    /// The in-flight count is at its maximum
    /// ([`MAX_IN_FLIGHT`](crate::drain::MAX_IN_FLIGHT)); admitting more would overflow it.
    Full,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Draining => f.write_str("drainer refused new work: draining for shutdown"),
            Refused::Full => f.write_str("drainer refused new work: in-flight count is full"),
        }
    }
}

impl std::error::Error for Refused {}

/// A drain wait reached its deadline with work still in flight.
///
/// The drainer only reports: forcing the remaining work closed is the caller's decision.
///
/// ```
/// use resile::drain::Drainer;
/// use std::time::Duration;
///
/// let drainer = Drainer::new();
/// let _guard = drainer.enter().unwrap();
/// drainer.start_draining();
/// let timeout = drainer.wait_timeout(Duration::ZERO).unwrap_err();
/// assert_eq!(timeout.in_flight(), 1);
/// assert_eq!(timeout.to_string(), "drain timed out after 0ns with 1 still in flight");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DrainTimeout {
    pub(crate) in_flight: u64,
    pub(crate) waited: std::time::Duration,
}

impl DrainTimeout {
    /// How many guards were still alive at the deadline (the work that will be abandoned).
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// How long the call waited.
    pub fn waited(&self) -> std::time::Duration {
        self.waited
    }
}

impl fmt::Display for DrainTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drain timed out after {:?} with {} still in flight",
            self.waited, self.in_flight
        )
    }
}

impl std::error::Error for DrainTimeout {}

// (end of graceful drainer section)
