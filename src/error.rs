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

// Each primitive's refusal type lives in its own section below, owned by that primitive's
// module. Keep the sections apart so that work on one never touches another.
//
// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

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

// (end of bulkhead section)
//
// ---------------------------------------------------------------------------------------------
// Graceful drainer
// ---------------------------------------------------------------------------------------------

// (end of graceful drainer section)
