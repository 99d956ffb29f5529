//! The drainer's builder.

use super::Drainer;
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::timer::{SharedTimer, Timer};
use std::borrow::Cow;
use std::time::Duration;

/// The longest not-ready delay a builder accepts.
pub const MAX_NOT_READY_DELAY: Duration = Duration::from_secs(3600);

/// Builds a [`Drainer`]; see [`Drainer::builder`].
///
/// ```
/// use resile::clock::ManualClock;
/// use resile::drain::Drainer;
/// use std::time::Duration;
///
/// let d = Drainer::builder()
///     .not_ready_delay(Duration::from_secs(5))
///     .clock(ManualClock::new())
///     .build()
///     .unwrap();
/// assert_eq!(d.not_ready_delay(), Duration::from_secs(5));
/// assert!(Drainer::builder().not_ready_delay(Duration::from_secs(7200)).build().is_err());
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build()`"]
pub struct DrainBuilder<C: Clock = SystemClock> {
    pub(super) name: Cow<'static, str>,
    pub(super) clock: C,
    pub(super) not_ready_delay: Duration,
    pub(super) timer: SharedTimer,
}

impl<C: Clock> DrainBuilder<C> {
    /// The name its metrics, events and `Debug` report (default `"drainer"`; a
    /// [child](Drainer::child) takes its parent's).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The clock for drain timing and wait deadlines (default [`SystemClock`]).
    pub fn clock<D: Clock>(self, clock: D) -> DrainBuilder<D> {
        DrainBuilder {
            name: self.name,
            clock,
            not_ready_delay: self.not_ready_delay,
            timer: self.timer,
        }
    }

    /// The timer of the async waits with a deadline ([`Drainer::wait_timeout`],
    /// [`Drainer::shutdown`]): default [`ThreadTimer`](crate::timer::ThreadTimer); see
    /// [`crate::timer`].
    pub fn timer(mut self, timer: impl Timer) -> Self {
        self.timer = SharedTimer::new(timer);
        self
    }

    /// How long [`Drainer::shutdown`] and [`Drainer::blocking_shutdown`] keep admitting after marking the drainer not
    /// ready, so load balancers see the failing health check before refusals begin (default 0;
    /// at most [`MAX_NOT_READY_DELAY`]).
    pub fn not_ready_delay(mut self, delay: Duration) -> Self {
        self.not_ready_delay = delay;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Drainer<C>, ConfigError> {
        if self.not_ready_delay > MAX_NOT_READY_DELAY {
            return Err(ConfigError::new(
                "not_ready_delay",
                self.not_ready_delay,
                "0s..=3600s",
            ));
        }
        Ok(Drainer::from_parts(
            self.name,
            self.clock,
            self.not_ready_delay,
            self.timer,
            None,
        ))
    }
}
