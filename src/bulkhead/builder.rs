//! The bulkhead's builder.

use super::{Bulkhead, MAX_LIMIT, MAX_WAIT};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::timer::{SharedTimer, Timer};
use std::borrow::Cow;
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
#[must_use = "a builder does nothing until `build()`"]
pub struct BulkheadBuilder<C: Clock = SystemClock> {
    name: Cow<'static, str>,
    limit: u32,
    max_wait: Duration,
    clock: C,
    timer: SharedTimer,
}

impl BulkheadBuilder<SystemClock> {
    pub(super) fn new() -> Self {
        Self {
            name: Cow::Borrowed("bulkhead"),
            limit: 25,
            max_wait: Duration::ZERO,
            clock: SystemClock::new(),
            timer: SharedTimer::default(),
        }
    }
}

impl<C: Clock> BulkheadBuilder<C> {
    /// The name its metrics, events and `Debug` report (default `"bulkhead"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
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
            timer: self.timer,
        }
    }

    /// The timer of async waits with a deadline ([`Bulkhead::call_async`],
    /// [`Bulkhead::acquire_timeout`], the tower layer): default [`ThreadTimer`](crate::timer::ThreadTimer); see
    /// [`crate::timer`]. It is asked for a sleep only when a wait has to queue.
    pub fn timer(mut self, timer: impl Timer) -> Self {
        self.timer = SharedTimer::new(timer);
        self
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
            self.timer,
        ))
    }
}
