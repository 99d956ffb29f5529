//! The builder: every setting, its default, and the validation that keeps every limit inside
//! the packed word.

use super::state::{MAX_PROBES, MAX_TICKS, NOT_SLOW, Params, TICK_NANOS, Thresholds};
use super::{Breach, CircuitBreaker, StateChange};
use crate::clock::{Clock, SystemClock, duration_to_nanos};
use crate::error::ConfigError;
use crate::window::{CountWindow, TimeWindow};
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// The longest open period, half-open timeout or growth cap the breaker's word can hold:
/// `2^24 - 2` ticks of `2^20` ns, about 4 h 53 min.
pub const MAX_DURATION: Duration = Duration::from_nanos(MAX_TICKS * TICK_NANOS);

/// The largest `minimum_calls` and `failure_count_threshold` (the largest count a window lane
/// holds).
pub const MAX_COUNT: u32 = TimeWindow::MAX_LANE;

/// Shared, so a builder clones (a registry builds every key's breaker from one template) and
/// each breaker built from the clones calls the same hook.
pub(crate) type Hook = crate::sync::StdArc<dyn Fn(&StateChange) + Send + Sync + 'static>;
/// Shared for the same reason as [`Hook`].
pub(crate) type BreachHook = crate::sync::StdArc<dyn Fn(&Breach) + Send + Sync + 'static>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum WindowSpec {
    Count(u32),
    Time(Duration, u32),
}

/// The window a built breaker records into.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

/// Configures a [`CircuitBreaker`]; [`build`](BreakerBuilder::build) validates every setting.
///
/// Defaults follow resilience4j: a count window of 100 calls, `minimum_calls` 100, failure-rate
/// threshold 50 %, no slow-call rule, no absolute failure count, open for 60 s (no growth),
/// 10 half-open probes. resilience4j has no half-open timeout by default; here it is 60 s, so a
/// half-open breaker whose probes never report cannot stay stuck.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use std::time::Duration;
///
/// // The guide's breaker: open after 5 failures in 60 s once 10 calls were seen; test again
/// // after 60 s.
/// let breaker = CircuitBreaker::builder()
///     .name("database")
///     .time_window(Duration::from_secs(60), 60)
///     .minimum_calls(10)
///     .failure_rate_threshold(None)
///     .failure_count_threshold(5)
///     .open_for(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// assert_eq!(breaker.name(), "database");
///
/// let err = CircuitBreaker::builder().half_open_probes(0).build().unwrap_err();
/// assert_eq!(err.field(), "half_open_probes");
/// ```
#[must_use = "a builder does nothing until `build()`"]
pub struct BreakerBuilder<C: Clock = SystemClock> {
    clock: C,
    name: Cow<'static, str>,
    settings: Settings,
    hook: Option<Hook>,
    breach_hook: Option<BreachHook>,
}

/// Every setting a running breaker can change (see
/// [`CircuitBreaker::reconfigure`]), and its window, which it cannot.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    window: WindowSpec,
    minimum_calls: u32,
    failure_rate: Option<f64>,
    failure_count: Option<u32>,
    slow: Option<(Duration, f64)>,
    open_for: Duration,
    growth: Option<(f64, Duration)>,
    probes: u32,
    half_open_timeout: Duration,
    metrics_only: bool,
}

impl<C: Clock + fmt::Debug> fmt::Debug for BreakerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("BreakerBuilder")
            .field("clock", &self.clock)
            .field("name", &self.name)
            .field("window", &s.window)
            .field("minimum_calls", &s.minimum_calls)
            .field("failure_rate", &s.failure_rate)
            .field("failure_count", &s.failure_count)
            .field("slow", &s.slow)
            .field("open_for", &s.open_for)
            .field("growth", &s.growth)
            .field("probes", &s.probes)
            .field("half_open_timeout", &s.half_open_timeout)
            .field("metrics_only", &s.metrics_only)
            .field("hook", &self.hook.is_some())
            .field("breach_hook", &self.breach_hook.is_some())
            .finish()
    }
}

/// A copy of the settings, the clock and the hooks (shared: both builders' breakers call the
/// same hooks).
impl<C: Clock + Clone> Clone for BreakerBuilder<C> {
    fn clone(&self) -> Self {
        Self {
            clock: self.clock.clone(),
            name: self.name.clone(),
            settings: self.settings.clone(),
            hook: self.hook.clone(),
            breach_hook: self.breach_hook.clone(),
        }
    }
}

impl BreakerBuilder<SystemClock> {
    pub(crate) fn new() -> Self {
        Self::with_settings(
            Cow::Borrowed("circuit-breaker"),
            Settings {
                window: WindowSpec::Count(100),
                minimum_calls: 100,
                failure_rate: Some(0.5),
                failure_count: None,
                slow: None,
                open_for: Duration::from_secs(60),
                growth: None,
                probes: 10,
                half_open_timeout: Duration::from_secs(60),
                metrics_only: false,
            },
        )
    }

    /// A builder holding `settings`, as a reconfigure hands it out.
    pub(crate) fn with_settings(name: Cow<'static, str>, settings: Settings) -> Self {
        BreakerBuilder {
            clock: SystemClock::new(),
            name,
            settings,
            hook: None,
            breach_hook: None,
        }
    }

    /// What a reconfigure takes from the builder its closure returned: the settings, unless it
    /// changed something a running breaker cannot take (checked against `live`).
    pub(crate) fn into_settings(
        self,
        name: &str,
        live: &Settings,
    ) -> Result<Settings, ConfigError> {
        let kept = "as built: a running breaker keeps it";
        if self.hook.is_some() {
            return Err(ConfigError::new("on_state_change", "a new hook", kept));
        }
        if self.breach_hook.is_some() {
            return Err(ConfigError::new("on_breach", "a new hook", kept));
        }
        if self.name != name {
            return Err(ConfigError::new("name", self.name, name.to_owned()));
        }
        if self.settings.window != live.window {
            let (field, allowed) = match live.window {
                WindowSpec::Count(n) => ("count_window", format!("{n} calls, {kept}")),
                WindowSpec::Time(span, b) => {
                    ("time_window", format!("{span:?} in {b} buckets, {kept}"))
                }
            };
            let value = match self.settings.window {
                WindowSpec::Count(n) => format!("count_window({n})"),
                WindowSpec::Time(span, b) => format!("time_window({span:?}, {b})"),
            };
            return Err(ConfigError::new(field, value, allowed));
        }
        Ok(self.settings)
    }
}

impl<C: Clock> BreakerBuilder<C> {
    /// Uses `clock` for every time reading (a [`ManualClock`](crate::clock::ManualClock) in
    /// tests, a [`CoarseClock`](crate::clock::CoarseClock) or a
    /// [`RecentClock`](crate::clock::RecentClock) for cheaper readings).
    pub fn clock<D: Clock>(self, clock: D) -> BreakerBuilder<D> {
        BreakerBuilder {
            clock,
            name: self.name,
            settings: self.settings,
            hook: self.hook,
            breach_hook: self.breach_hook,
        }
    }

    /// A name for logs and the `Debug` output.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Decide on the last `calls` outcomes (`1..=65536`). A count window needs no clock reading
    /// on the closed path (unless slow calls are detected).
    pub fn count_window(mut self, calls: u32) -> Self {
        self.settings.window = WindowSpec::Count(calls);
        self
    }

    /// Decide on the outcomes of the last `span`, kept in `buckets` buckets (`1..=1024`; `span`
    /// must divide into whole-nanosecond buckets). Every record reads the clock.
    pub fn time_window(mut self, span: Duration, buckets: u32) -> Self {
        self.settings.window = WindowSpec::Time(span, buckets);
        self
    }

    /// No decision before the window holds this many calls (`1..=MAX_COUNT`). A count window
    /// caps it at its size, as resilience4j does; a time window does not.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.settings.minimum_calls = calls;
        self
    }

    /// Trip when failures / calls `>=` `rate`, in `(0, 1]` (compared in millionths); `None`
    /// turns the rule off.
    pub fn failure_rate_threshold(mut self, rate: impl Into<Option<f64>>) -> Self {
        self.settings.failure_rate = rate.into();
        self
    }

    /// Also trip when the window holds at least `failures` failures (`1..=MAX_COUNT`, and at most
    /// the size of a count window). In half-open the count is `min(failures, decision point)`.
    pub fn failure_count_threshold(mut self, failures: u32) -> Self {
        self.settings.failure_count = Some(failures);
        self
    }

    /// Count a call as slow when it takes strictly longer than `threshold`, and trip when slow
    /// calls / calls `>=` `rate` (in `(0, 1]`). Off by default, because it reads the clock when a
    /// permit is taken and when it reports.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.settings.slow = Some((threshold, rate));
        self
    }

    /// How long the breaker stays open before admitting a probe (`0..=MAX_DURATION`), rounded up
    /// to a whole tick of about 1.05 ms.
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.settings.open_for = duration;
        self
    }

    /// Each consecutive re-open (from half-open, without a close between) multiplies the open
    /// period by `multiplier` (`1.0..=1000.0`), up to `max` (`open_for..=MAX_DURATION`).
    ///
    /// Each period is the previous one times `multiplier`, rounded down to a whole nanosecond, in
    /// integer arithmetic on the `f64`'s exact value: exact for a whole-number multiplier (1 s
    /// growing by 2.0 is 2 s, then 4 s), and less than a nanosecond short of the exact product at
    /// each step for any other.
    pub fn open_for_growth(mut self, multiplier: f64, max: Duration) -> Self {
        self.settings.growth = Some((multiplier, max));
        self
    }

    /// At most this many calls pass while half-open (`1..=31`); the decision comes after
    /// `min(minimum_calls, probes)` results.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.settings.probes = probes;
        self
    }

    /// A half-open breaker that has not decided within `timeout` (`1ns..=MAX_DURATION`) re-opens
    /// on the next acquire.
    pub fn half_open_timeout(mut self, timeout: Duration) -> Self {
        self.settings.half_open_timeout = timeout;
        self
    }

    /// Records every result and reports each breach of a threshold (to
    /// [`on_breach`](Self::on_breach) and in [`BreakerMetrics::breaches`]), but never opens on
    /// its own evidence: the breaker stays closed and refuses nothing. Operators roll a breaker
    /// out this way, watch what it would have done, then let it act with a
    /// [`reconfigure`](CircuitBreaker::reconfigure). A breach is reported once, when it begins;
    /// the next is reported after a success whose window breaches nothing. Trips by other code
    /// ([`trip`](CircuitBreaker::trip), [`force_open`](CircuitBreaker::force_open)) still act:
    /// they are commands, not evidence.
    ///
    /// ```
    /// use resile::breaker::{Breach, CircuitBreaker, State};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let breaker = CircuitBreaker::builder()
    ///     .count_window(4)
    ///     .minimum_calls(4)
    ///     .metrics_only(true)
    ///     .on_breach(move |b: &Breach| log.lock().unwrap().push(b.failure_rate))
    ///     .build()?;
    /// for ok in [true, false, false, false, false] {
    ///     let permit = breaker.try_acquire()?; // never refused
    ///     if ok { permit.success() } else { permit.failure() }
    /// }
    /// assert_eq!(breaker.state(), State::Closed);
    /// assert_eq!(*seen.lock().unwrap(), [0.75]); // one breach, reported when it began
    /// assert_eq!(breaker.metrics().breaches, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`BreakerMetrics::breaches`]: super::BreakerMetrics::breaches
    pub fn metrics_only(mut self, metrics_only: bool) -> Self {
        self.settings.metrics_only = metrics_only;
        self
    }

    /// Runs `hook` once per state transition, on the thread that made it, after the transition.
    pub fn on_state_change(mut self, hook: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.hook = Some(crate::sync::StdArc::new(hook));
        self
    }

    /// Runs `hook` once per breach of a threshold by the closed window, on the thread whose
    /// result breached it, with the counts and rates that crossed: at the trip, or in
    /// [metrics-only](Self::metrics_only) mode when the breach begins.
    pub fn on_breach(mut self, hook: impl Fn(&Breach) + Send + Sync + 'static) -> Self {
        self.breach_hook = Some(crate::sync::StdArc::new(hook));
        self
    }

    /// Validates the settings and builds the breaker.
    pub fn build(self) -> Result<CircuitBreaker<C>, ConfigError> {
        let window = match self.settings.window {
            WindowSpec::Count(n) => Window::Count(CountWindow::new(n)?),
            WindowSpec::Time(span, buckets) => {
                Window::Time(TimeWindow::with_fast_calls(span, buckets)?)
            }
        };
        let params = self.settings.params(&window)?;
        Ok(CircuitBreaker::from_parts(
            self.clock,
            self.name,
            window,
            self.settings,
            params,
            self.hook,
            self.breach_hook,
        ))
    }
}

impl Settings {
    /// Validates the settings against `window` and precomputes what the decisions read.
    pub(crate) fn params(&self, window: &Window) -> Result<Params, ConfigError> {
        if self.minimum_calls == 0 || self.minimum_calls > MAX_COUNT {
            return Err(ConfigError::new(
                "minimum_calls",
                self.minimum_calls,
                format!("1..={MAX_COUNT}"),
            ));
        }
        let failure_rate_ppm = match self.failure_rate {
            None => 0,
            Some(r) => ppm("failure_rate_threshold", r)?,
        };
        let failure_count = match (self.failure_count, window) {
            (None, _) => 0,
            (Some(n), Window::Count(w)) if n > w.size() && n <= MAX_COUNT => {
                return Err(ConfigError::new(
                    "failure_count_threshold",
                    n,
                    format!(
                        "1..={} (the count window holds {} calls)",
                        w.size(),
                        w.size()
                    ),
                ));
            }
            (Some(n), _) if (1..=MAX_COUNT).contains(&n) => n,
            (Some(n), _) => {
                return Err(ConfigError::new(
                    "failure_count_threshold",
                    n,
                    format!("1..={MAX_COUNT}"),
                ));
            }
        };
        let (slow_nanos, slow_rate_ppm) = match self.slow {
            None => (NOT_SLOW, 0),
            // A threshold of `u64::MAX` ns (584 years) is no rule at all.
            Some((d, r)) => (
                duration_to_nanos(d).min(NOT_SLOW - 1),
                ppm("slow_calls", r)?,
            ),
        };
        if self.probes == 0 || self.probes > MAX_PROBES {
            return Err(ConfigError::new(
                "half_open_probes",
                self.probes,
                format!("1..={MAX_PROBES}"),
            ));
        }
        let open_nanos = fits("open_for", self.open_for, Duration::ZERO)?;
        let half_open_nanos = fits(
            "half_open_timeout",
            self.half_open_timeout,
            Duration::from_nanos(1),
        )?;
        let (growth, growth_max) = match self.growth {
            None => (0, open_nanos),
            Some((mult, max)) => {
                if !(1.0..=1000.0).contains(&mult) {
                    return Err(ConfigError::new("open_for_growth", mult, "1.0..=1000.0"));
                }
                (mult.to_bits(), fits("open_for_growth", max, self.open_for)?)
            }
        };
        let min_calls = match window {
            Window::Count(w) => self.minimum_calls.min(w.size()),
            Window::Time(_) => self.minimum_calls,
        };
        if failure_rate_ppm == 0 && slow_rate_ppm == 0 && failure_count == 0 {
            return Err(ConfigError::new(
                "failure_rate_threshold",
                "None",
                "a rate in (0, 1] unless a failure count or slow-call rule is set",
            ));
        }
        Ok(Params {
            thresholds: Thresholds {
                min_calls,
                failure_rate_ppm,
                slow_rate_ppm,
                failure_count,
            },
            probes: self.probes,
            needed: self.minimum_calls.min(self.probes),
            open_nanos,
            growth,
            growth_max,
            half_open_nanos,
            slow_nanos,
            enforce: !self.metrics_only,
        })
    }
}

fn ppm(field: &'static str, rate: f64) -> Result<u32, ConfigError> {
    if rate > 0.0 && rate <= 1.0 {
        Ok(((rate * 1e6).round() as u32).max(1))
    } else {
        Err(ConfigError::new(field, rate, "(0, 1]"))
    }
}

pub(super) fn fits(field: &'static str, d: Duration, min: Duration) -> Result<u64, ConfigError> {
    if d < min || d > MAX_DURATION {
        return Err(ConfigError::new(
            field,
            d,
            format!("{min:?}..={MAX_DURATION:?}"),
        ));
    }
    Ok(duration_to_nanos(d))
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;

    fn field_of<C: Clock>(b: BreakerBuilder<C>) -> &'static str {
        b.build().unwrap_err().field()
    }

    #[test]
    fn every_out_of_range_setting_is_refused_by_name() {
        let b = CircuitBreaker::builder;
        assert_eq!(
            field_of(b().failure_rate_threshold(0.0)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field_of(b().failure_rate_threshold(1.01)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field_of(b().failure_rate_threshold(f64::NAN)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field_of(b().slow_calls(Duration::from_secs(1), -0.1)),
            "slow_calls"
        );
        assert_eq!(field_of(b().count_window(0)), "window_size");
        assert_eq!(field_of(b().count_window(1 << 17)), "window_size");
        assert_eq!(field_of(b().time_window(Duration::ZERO, 10)), "window");
        assert_eq!(
            field_of(b().time_window(Duration::from_secs(1), 0)),
            "buckets"
        );
        assert_eq!(field_of(b().minimum_calls(0)), "minimum_calls");
        assert_eq!(field_of(b().minimum_calls(MAX_COUNT + 1)), "minimum_calls");
        assert_eq!(
            field_of(b().failure_count_threshold(0)),
            "failure_count_threshold"
        );
        // A count window of 10 can never hold 11 failures.
        let e = b()
            .count_window(10)
            .failure_count_threshold(11)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "failure_count_threshold");
        assert!(e.allowed().starts_with("1..=10"), "{e}");
        assert_eq!(field_of(b().half_open_probes(0)), "half_open_probes");
        assert_eq!(
            field_of(b().half_open_probes(MAX_PROBES + 1)),
            "half_open_probes"
        );
        assert_eq!(
            field_of(b().open_for(MAX_DURATION + Duration::from_nanos(1))),
            "open_for"
        );
        assert_eq!(field_of(b().open_for(Duration::MAX)), "open_for");
        assert_eq!(
            field_of(b().half_open_timeout(Duration::ZERO)),
            "half_open_timeout"
        );
        assert_eq!(
            field_of(b().half_open_timeout(Duration::MAX)),
            "half_open_timeout"
        );
        assert_eq!(
            field_of(b().open_for_growth(0.5, Duration::from_secs(600))),
            "open_for_growth"
        );
        assert_eq!(
            field_of(b().open_for_growth(f64::INFINITY, Duration::from_secs(600))),
            "open_for_growth"
        );
        assert_eq!(
            field_of(b().open_for_growth(2.0, Duration::from_secs(1))),
            "open_for_growth"
        );
        assert_eq!(
            field_of(b().failure_rate_threshold(None)),
            "failure_rate_threshold"
        );
        let e = b().half_open_probes(32).build().unwrap_err();
        assert_eq!(e.allowed(), "1..=31");
    }

    #[test]
    fn limits_at_the_edge_are_accepted() {
        let b = CircuitBreaker::builder;
        assert!(b().failure_rate_threshold(1.0).build().is_ok());
        assert!(b().failure_rate_threshold(1e-12).build().is_ok());
        assert!(
            b().open_for(MAX_DURATION)
                .half_open_timeout(MAX_DURATION)
                .build()
                .is_ok()
        );
        assert!(b().open_for(Duration::ZERO).build().is_ok());
        assert!(b().half_open_probes(MAX_PROBES).build().is_ok());
        assert!(b().minimum_calls(MAX_COUNT).build().is_ok());
        assert!(b().open_for_growth(1000.0, MAX_DURATION).build().is_ok());
        assert!(
            b().failure_rate_threshold(None)
                .time_window(Duration::from_secs(60), 60)
                .failure_count_threshold(MAX_COUNT)
                .build()
                .is_ok()
        );
        assert!(
            b().count_window(10)
                .failure_count_threshold(10)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn growth_table_is_capped() {
        let br = CircuitBreaker::builder()
            .open_for(Duration::from_secs(1))
            .open_for_growth(2.0, Duration::from_secs(5))
            .build()
            .unwrap();
        let p = br.params.load();
        let secs: Vec<u64> = (1..6).map(|k| p.open_period(k) / 1_000_000_000).collect();
        assert_eq!(secs, vec![1, 2, 4, 5, 5]);
        assert_eq!(MAX_TICKS * TICK_NANOS, duration_to_nanos(MAX_DURATION));
    }

    /// Growth is integer arithmetic: whole periods for a whole-number multiplier (a float power
    /// may give 3.999... s, truncated to 3 s, for 1 s grown by 2.0 twice), and the product of the
    /// previous period and the multiplier's exact value, rounded down, for any other.
    #[test]
    fn growth_is_exact() {
        let table = |open: Duration, mult: f64, max: Duration| {
            let br = CircuitBreaker::builder()
                .open_for(open)
                .open_for_growth(mult, max)
                .build()
                .unwrap();
            let p = br.params.load();
            std::array::from_fn::<u64, 16, _>(|k| p.open_period(k as u64))
        };
        let secs = table(Duration::from_secs(1), 2.0, MAX_DURATION);
        assert_eq!(
            secs[..4],
            [1_000_000_000, 1_000_000_000, 2_000_000_000, 4_000_000_000]
        );
        let triples = table(Duration::from_nanos(7), 3.0, MAX_DURATION);
        assert_eq!(triples[15], 7 * 3u64.pow(14));
        // 1.01 is a little above 1.01 as an f64; cubed, times 1 s, it is 1.030301 s and a
        // fraction, where `1.01f64.powi(3) * 1e9` truncates to 1_030_300_999 ns.
        let hundredths = table(Duration::from_secs(1), 1.01, MAX_DURATION);
        assert_eq!(hundredths[4], 1_030_301_000);
        // 1.5 is exact in binary: every step that stays whole is exact.
        let halves = table(Duration::from_secs(1), 1.5, MAX_DURATION);
        assert_eq!(
            halves[..5],
            [
                1_000_000_000,
                1_000_000_000,
                1_500_000_000,
                2_250_000_000,
                3_375_000_000
            ]
        );
        // The largest multiplier from the longest period saturates at the cap.
        let top = table(MAX_DURATION, 1000.0, MAX_DURATION);
        assert!(top.iter().all(|&n| n == duration_to_nanos(MAX_DURATION)));
        let capped = table(Duration::from_millis(1), 1000.0, Duration::from_secs(5));
        assert_eq!(
            capped[1..5],
            [1_000_000, 1_000_000_000, 5_000_000_000, 5_000_000_000]
        );
        // A multiplier of 1.0 never grows.
        assert!(
            table(Duration::from_secs(3), 1.0, MAX_DURATION)
                .iter()
                .all(|&n| n == 3_000_000_000)
        );
    }
}
