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
