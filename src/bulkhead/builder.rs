//! The bulkhead's builder.

use super::{Bulkhead, MAX_LIMIT, MAX_WAIT};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use std::time::Duration;

/// Checks a limit for [`BulkheadBuilder::limit`] and [`Bulkhead::set_limit`].
pub(super) fn check_limit(limit: u32) -> Result<u32, ConfigError> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ConfigError::new("limit", limit, format!("1..={MAX_LIMIT}")))
    }
}

/// Configures a [`Bulkhead`]; [`build`](Self::build) validates.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::clock::ManualClock;
/// use std::time::Duration;
///
/// let b = Bulkhead::builder()
///     .name("admin")
///     .limit(2)
///     .max_wait(Duration::from_millis(50))
///     .clock(ManualClock::new())
///     .build()
///     .unwrap();
/// assert_eq!(b.limit(), 2);
///
/// let e = Bulkhead::builder().limit(0).build().unwrap_err();
/// assert_eq!(e.field(), "limit");
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct BulkheadBuilder<C: Clock = SystemClock> {
    name: &'static str,
    limit: u32,
    max_wait: Duration,
    clock: C,
}

impl BulkheadBuilder<SystemClock> {
    pub(super) fn new() -> Self {
        Self {
            name: "bulkhead",
            limit: 25,
            max_wait: Duration::ZERO,
            clock: SystemClock::new(),
        }
    }
}

impl<C: Clock> BulkheadBuilder<C> {
    /// The name errors and metrics report (default `"bulkhead"`).
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// How many calls may run at once: 1 to [`MAX_LIMIT`] (default 25, resilience4j's).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// How long [`Bulkhead::call`], [`Bulkhead::protect`] and [`Bulkhead::blocking_acquire`] wait
    /// for a slot: zero (the default) fails fast; at most [`MAX_WAIT`].
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The clock timed waits read (default [`SystemClock`]).
    pub fn clock<C2: Clock>(self, clock: C2) -> BulkheadBuilder<C2> {
        BulkheadBuilder {
            name: self.name,
            limit: self.limit,
            max_wait: self.max_wait,
            clock,
        }
    }

    /// Validates the configuration and builds the bulkhead. Errors name the field.
    pub fn build(self) -> Result<Bulkhead<C>, ConfigError> {
        let limit = check_limit(self.limit)?;
        if self.max_wait > MAX_WAIT {
            return Err(ConfigError::new("max_wait", self.max_wait, "0s..=86400s"));
        }
        Ok(Bulkhead::from_parts(
            self.name,
            limit,
            self.max_wait,
            self.clock,
        ))
    }
}
