//! The bulkhead's builder.

use super::adaptive::{LimitAlgorithm, LimitChange, Unreported};
use super::controller::{AlgorithmFactory, Settings};
use super::{Bulkhead, MAX_LIMIT, MAX_WAIT};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::timer::{SharedTimer, Timer};
use std::borrow::Cow;
use std::sync::Arc as StdArc;
use std::time::Duration;

/// The shortest adaptive window [`BulkheadBuilder::adaptive_window`] accepts.
const MIN_WINDOW: Duration = Duration::from_millis(1);
/// The longest adaptive window: one hour.
const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// The most reports a window may ask for before it closes.
const MAX_MIN_SAMPLES: u32 = 1_000_000;

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
    adaptive: Settings,
}

impl BulkheadBuilder<SystemClock> {
    pub(super) fn new() -> Self {
        Self {
            name: Cow::Borrowed("bulkhead"),
            limit: 25,
            max_wait: Duration::ZERO,
            clock: SystemClock::new(),
            timer: SharedTimer::default(),
            adaptive: Settings::default(),
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

    /// The clock timed waits read (default [`SystemClock`]), and an adaptive bulkhead's RTTs
    /// and windows.
    pub fn clock<C2: Clock>(self, clock: C2) -> BulkheadBuilder<C2> {
        BulkheadBuilder {
            name: self.name,
            limit: self.limit,
            max_wait: self.max_wait,
            clock,
            timer: self.timer,
            adaptive: self.adaptive,
        }
    }

    /// Makes the limit adaptive: `algorithm` ([`Aimd`](super::adaptive::Aimd),
    /// [`Vegas`](super::adaptive::Vegas), [`Gradient2`](super::adaptive::Gradient2) or your
    /// own) moves it once per [window](Self::adaptive_window) from what the permits report. The
    /// bulkhead starts at the algorithm's initial limit (the [`limit`](Self::limit) setting is
    /// not used). Each bulkhead built gets its own clone of the algorithm.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::bulkhead::adaptive::Gradient2;
    /// let b = Bulkhead::builder().adaptive(Gradient2::default().initial_limit(50)).build()?;
    /// assert_eq!(b.limit(), 50);
    /// let e = Bulkhead::builder().adaptive(Gradient2::default().min_limit(0)).build().unwrap_err();
    /// assert_eq!(e.field(), "min_limit");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adaptive(mut self, algorithm: impl LimitAlgorithm + Clone + Sync) -> Self {
        self.adaptive.algorithm = Some(StdArc::new(algorithm) as StdArc<dyn AlgorithmFactory>);
        self
    }

    /// How long an adaptive window lasts at least: 1 ms to 1 h (default 1 s, Netflix's). It
    /// closes on the first report at or after its end that finds
    /// [`adaptive_min_samples`](Self::adaptive_min_samples) reports in it.
    pub fn adaptive_window(mut self, window: Duration) -> Self {
        self.adaptive.window = window;
        self
    }

    /// The fewest reports (successes and drops) a window needs to close: 1 to 1 000 000
    /// (default 10, Netflix's).
    pub fn adaptive_min_samples(mut self, samples: u32) -> Self {
        self.adaptive.min_samples = samples;
        self
    }

    /// What a permit dropped without [`success`](super::BulkheadPermit::success),
    /// [`dropped`](super::BulkheadPermit::dropped) or [`ignore`](super::BulkheadPermit::ignore)
    /// reports (default [`Unreported::Success`]).
    pub fn unreported(mut self, unreported: Unreported) -> Self {
        self.adaptive.unreported = unreported;
        self
    }

    /// A hook given each closed window's [`LimitChange`], called by the report that closed it
    /// after the new limit is in place: once per window, never on the admission path.
    pub fn on_limit_change(mut self, hook: impl Fn(LimitChange) + Send + Sync + 'static) -> Self {
        self.adaptive.hook = Some(StdArc::new(hook));
        self
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
        let limit = match &self.adaptive.algorithm {
            Some(a) => {
                a.validate()?;
                if !(MIN_WINDOW..=MAX_WINDOW).contains(&self.adaptive.window) {
                    return Err(ConfigError::new(
                        "adaptive_window",
                        self.adaptive.window,
                        "1ms..=3600s",
                    ));
                }
                if !(1..=MAX_MIN_SAMPLES).contains(&self.adaptive.min_samples) {
                    return Err(ConfigError::new(
                        "adaptive_min_samples",
                        self.adaptive.min_samples,
                        format!("1..={MAX_MIN_SAMPLES}"),
                    ));
                }
                check_limit(a.initial_limit()).map_err(|_| {
                    ConfigError::new(
                        "initial_limit",
                        a.initial_limit(),
                        format!("1..={MAX_LIMIT}"),
                    )
                })?
            }
            None => check_limit(self.limit)?,
        };
        if self.max_wait > MAX_WAIT {
            return Err(ConfigError::new("max_wait", self.max_wait, "0s..=86400s"));
        }
        Ok(Bulkhead::from_parts(
            self.name,
            limit,
            self.max_wait,
            self.clock,
            self.timer,
            self.adaptive,
        ))
    }
}
