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

/// Why a circuit breaker refused a call.
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
    retry_after: Option<std::time::Duration>,
    refusal: Refusal,
}

impl CircuitOpen {
    /// A refusal by `refusal`, with `retry_after` until a probe may be admitted.
    pub fn new(refusal: Refusal, retry_after: Option<std::time::Duration>) -> Self {
        Self {
            retry_after,
            refusal,
        }
    }

    /// How long until the breaker admits a probe; `None` when forced open.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// The state that refused.
    pub fn refusal(&self) -> Refusal {
        self.refusal
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.refusal, self.retry_after) {
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
