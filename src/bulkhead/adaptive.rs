//! Adaptive concurrency limits: algorithms that move a [`Bulkhead`](super::Bulkhead)'s limit
//! from what its calls report (latency and drops), in the manner of TCP congestion control.
//!
//! A static limit is a guess that is wrong whenever the dependency's capacity moves. An adaptive
//! bulkhead keeps the guess honest: every permit reports how its call went
//! ([`BulkheadPermit::success`](super::BulkheadPermit::success),
//! [`dropped`](super::BulkheadPermit::dropped), [`ignore`](super::BulkheadPermit::ignore), or
//! the [`Unreported`] rule when it is dropped without a word), the reports are summed per
//! window, and once per window a [`LimitAlgorithm`] turns the window's [`WindowSummary`] into the
//! next limit.
//!
//! ```
//! use resile::bulkhead::Bulkhead;
//! use resile::bulkhead::adaptive::Aimd;
//! use resile::clock::ManualClock;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let b = Bulkhead::builder()
//!     .adaptive(Aimd::default().initial_limit(20).min_limit(5))
//!     .adaptive_window(Duration::from_secs(1))
//!     .clock(clock.clone())
//!     .build()?;
//! assert_eq!(b.limit(), 20);
//! // A window with a dropped call (a timeout, an overload answer): the limit backs off.
//! for _ in 0..9 {
//!     b.try_acquire()?.success();
//! }
//! clock.advance(Duration::from_secs(1));
//! b.try_acquire()?.dropped(); // the tenth report closes the window
//! assert_eq!(b.limit(), 18); // 20 × 0.9
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The algorithms
//!
//! All three follow Netflix's `concurrency-limits` (`AIMDLimit`, `VegasLimit`, `Gradient2Limit`)
//! with its defaults, applied once per window to the window's aggregate as its `WindowedLimit`
//! does (the window's minimum RTT for Vegas, its mean RTT for Gradient2 and for AIMD's timeout,
//! its largest in-flight count for the app-limited guards):
//!
//! | algorithm | signal | on each window |
//! | --- | --- | --- |
//! | [`Aimd`] | drops; mean RTT over a timeout | a drop or a slow window: `limit × backoff_ratio` (at least one less); otherwise, if `2 × max_in_flight ≥ limit`: `limit + 1` |
//! | [`Vegas`] | RTT against the no-load RTT | `queue = ⌈limit·(1 − rtt_noload/rtt)⌉`; `queue ≤ log10(limit)`: `+ 6·log10(limit)`; `< 3·log10`: `+ log10`; `> 6·log10`: `− log10`; a drop: `− log10`; the no-load RTT is re-probed every `probe_multiplier × limit` windows (with jitter) |
//! | [`Gradient2`] | long (EMA) against short RTT | `gradient = clamp(tolerance·long/short, 0.5, 1)`; `new = limit·gradient + queue_size`, smoothed; `long × 0.9` while `long/short > 2`; held while `max_in_flight < limit/2` |
//!
//! Each update is a pure function of the summary and the algorithm's own state: no atomics, no
//! clock. The bulkhead runs it in the one caller that wins the window's close (see the
//! bulkhead's module docs), so an algorithm needs no synchronisation of its own.
//!
//! # Time
//!
//! A call's RTT is the difference of two readings of the bulkhead's
//! [clock](super::BulkheadBuilder::clock): one when the permit is granted, one when it reports.
//! [`RecentClock`](crate::clock::RecentClock) costs a load per reading and resolves
//! milliseconds, enough for calls of milliseconds and more; for calls of microseconds use
//! [`SystemClock`](crate::clock::SystemClock) (the default). A window closes on the first report
//! at or after its deadline that finds enough samples: no timer, no extra clock reading.

use super::MAX_LIMIT;
use crate::error::ConfigError;
use std::fmt;
use std::time::Duration;

/// One window's reports, summed: what a [`LimitAlgorithm`] decides from.
///
/// ```
/// use resile::bulkhead::adaptive::WindowSummary;
/// let w = WindowSummary { count: 4, rtt_sum: 40_000, rtt_min: 7_000, drops: 1, max_in_flight: 3 };
/// assert_eq!(w.mean_rtt(), Some(10_000));
/// assert_eq!(WindowSummary::default().mean_rtt(), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WindowSummary {
    /// Calls reported with a latency: successes and drops (a drop's latency is how long the
    /// call ran before it was given up or refused downstream: a call that timed out shows the
    /// latency that failed it, as Netflix's windowed limits count it).
    pub count: u64,
    /// The sum of their RTTs, in clock nanoseconds (saturating).
    pub rtt_sum: u64,
    /// The smallest RTT of the successes among them, in nanoseconds: a drop's latency counts
    /// in the mean, not in the minimum (a call refused at once downstream says nothing of the
    /// RTT without queueing). 0 when no success was reported; the successes' mean when a
    /// window's close split their smallest off into the window before.
    pub rtt_min: u64,
    /// Of those, the calls reported dropped (timed out, refused downstream, overloaded).
    pub drops: u64,
    /// The most calls in flight as any of the window's reported calls ended, that call counted.
    /// Every peak of concurrency is ended by a release that sees it, so this is the peak that
    /// Netflix's limiters take at acquire, seen from the other end.
    pub max_in_flight: u32,
}

impl WindowSummary {
    /// The mean RTT in nanoseconds of the reports with a latency (successes and drops), if any.
    pub fn mean_rtt(&self) -> Option<u64> {
        self.rtt_sum.checked_div(self.count)
    }

    /// The successes: the reports with a latency that were not drops.
    ///
    /// ```
    /// use resile::bulkhead::adaptive::WindowSummary;
    /// let w = WindowSummary { count: 4, drops: 1, ..Default::default() };
    /// assert_eq!(w.successes(), 3);
    /// ```
    pub fn successes(&self) -> u64 {
        self.count.saturating_sub(self.drops)
    }
}

/// A limit algorithm: given a closed window's [`WindowSummary`] and the limit now, the next
/// limit. The bulkhead calls [`update`](Self::update) once per window, from one thread at a time
/// (the window's closer), so `&mut self` is the algorithm's own state across windows.
///
/// ```
/// use resile::bulkhead::adaptive::{LimitAlgorithm, WindowSummary};
/// use resile::error::ConfigError;
///
/// /// Halves on any drop, else grows by one.
/// #[derive(Debug)]
/// struct Halve;
/// impl LimitAlgorithm for Halve {
///     fn initial_limit(&self) -> u32 { 8 }
///     fn update(&mut self, limit: u32, w: &WindowSummary) -> u32 {
///         if w.drops > 0 { (limit / 2).max(1) } else { limit + 1 }
///     }
/// }
/// let mut h = Halve;
/// assert_eq!(h.update(8, &WindowSummary { drops: 1, ..Default::default() }), 4);
/// assert!(h.validate().is_ok());
/// ```
pub trait LimitAlgorithm: fmt::Debug + Send + 'static {
    /// The limit the bulkhead starts with.
    fn initial_limit(&self) -> u32;

    /// The next limit after a window summed in `window`, the limit now being `limit`. The
    /// bulkhead clamps the answer to 1..=[`MAX_LIMIT`].
    fn update(&mut self, limit: u32, window: &WindowSummary) -> u32;

    /// The estimated RTT with no queueing, in nanoseconds, if the algorithm keeps one (for the
    /// bulkhead's metrics).
    fn no_load_rtt(&self) -> Option<u64> {
        None
    }

    /// Checks the configuration; the bulkhead's builder calls it. Errors name the field.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Checks `min <= initial <= max` within 1..=[`MAX_LIMIT`].
fn check_limits(min: u32, initial: u32, max: u32) -> Result<(), ConfigError> {
    if !(1..=MAX_LIMIT).contains(&max) {
        return Err(ConfigError::new(
            "max_limit",
            max,
            format!("1..={MAX_LIMIT}"),
        ));
    }
    if !(1..=max).contains(&min) {
        return Err(ConfigError::new("min_limit", min, format!("1..={max}")));
    }
    if !(min..=max).contains(&initial) {
        return Err(ConfigError::new(
            "initial_limit",
            initial,
            format!("{min}..={max}"),
        ));
    }
    Ok(())
}

/// A float setting that must lie in `range` (which NaN never does).
fn check_f64(
    field: &'static str,
    v: f64,
    ok: impl Fn(f64) -> bool,
    allowed: &'static str,
) -> Result<(), ConfigError> {
    if ok(v) {
        Ok(())
    } else {
        Err(ConfigError::new(field, v, allowed))
    }
}

/// `max(1, ⌊log10(limit)⌋)`: the step Netflix's Vegas scales its thresholds by.
#[inline]
pub(crate) fn log10_step(limit: u32) -> u32 {
    limit.max(1).ilog10().max(1)
}

/// A float limit as the bulkhead's integer limit: truncated, at least 1, at most `MAX_LIMIT`.
#[inline]
fn trunc(limit: f64) -> u32 {
    // `as` saturates (NaN to 0), so the clamp keeps the answer a valid limit.
    (limit as u32).clamp(1, MAX_LIMIT)
}

/// Additive increase, multiplicative decrease on drops (Netflix `AIMDLimit`).
///
/// A window with a drop, or whose mean RTT is over [`timeout`](Self::timeout), sets the limit to
/// `max(min_limit, min(limit - 1, ⌊limit × backoff_ratio⌋))`; otherwise, if the window was not
/// app-limited (`2 × max_in_flight ≥ limit`), to `min(max_limit, limit + 1)`. An empty window
/// changes nothing. Defaults: initial 20, min 20, max 200, backoff 0.9, timeout 5 s.
///
/// ```
/// use resile::bulkhead::adaptive::{Aimd, LimitAlgorithm, WindowSummary};
/// let mut a = Aimd::default().min_limit(1);
/// let busy = WindowSummary { count: 10, rtt_sum: 10_000, rtt_min: 1_000, drops: 0, max_in_flight: 10 };
/// assert_eq!(a.update(20, &busy), 21);
/// assert_eq!(a.update(20, &WindowSummary { drops: 1, ..busy }), 18);
/// assert_eq!(Aimd::default().backoff_ratio(1.0).validate().unwrap_err().field(), "backoff_ratio");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aimd {
    initial: u32,
    min: u32,
    max: u32,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Default for Aimd {
    fn default() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Aimd {
    /// The limit to start with (default 20).
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }

    /// The least limit (default 20).
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }

    /// The greatest limit (default 200).
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// The factor a drop multiplies the limit by: `[0.5, 1)` (default 0.9).
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A window whose mean RTT is over this counts as a drop: more than zero (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl LimitAlgorithm for Aimd {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn update(&mut self, limit: u32, w: &WindowSummary) -> u32 {
        let timeout = u64::try_from(self.timeout.as_nanos()).unwrap_or(u64::MAX);
        let slow = w.mean_rtt().is_some_and(|rtt| rtt > timeout);
        let next = if w.drops > 0 || slow {
            let backed = (f64::from(limit) * self.backoff_ratio) as u32;
            backed.min(limit.saturating_sub(1)).max(1)
        } else if w.successes() > 0 && u64::from(w.max_in_flight) * 2 >= u64::from(limit) {
            limit.saturating_add(1)
        } else {
            limit
        };
        next.clamp(self.min, self.max)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_f64(
            "backoff_ratio",
            self.backoff_ratio,
            |r| (0.5..1.0).contains(&r),
            "0.5..1.0",
        )?;
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", self.timeout, "more than 0s"));
        }
        Ok(())
    }
}

/// The RTT-based limit of TCP Vegas (Netflix `VegasLimit`).
///
/// Per window, with `rtt` the window's least RTT and `step = max(1, ⌊log10(limit)⌋)`:
/// 1. every `probe_multiplier × limit × jitter` windows (jitter in `[0.5, 1)`), `rtt` becomes the
///    no-load RTT and the limit holds (the re-probe that lets the baseline rise);
/// 2. a first or lower `rtt` becomes the no-load RTT and the limit holds;
/// 3. otherwise `queue = ⌈limit·(1 − rtt_noload/rtt)⌉`, and: a drop: `limit − step`; app-limited
///    (`2 × max_in_flight < limit`): hold; `queue ≤ step`: `limit + 6·step`; `queue < 3·step`:
///    `limit + step`; `queue > 6·step`: `limit − step`; else hold. The new value is clamped to
///    `[min_limit, max_limit]` and smoothed (`(1 − s)·old + s·new`).
///
/// A window with drops but no success decreases at once. Defaults: initial 20, min 1, max 1000,
/// smoothing 1, probe multiplier 30. Netflix's jitter is random; here it comes from a xorshift
/// generator in the state, seeded by [`seed`](Self::seed), so a run can be replayed.
///
/// ```
/// use resile::bulkhead::adaptive::{LimitAlgorithm, Vegas, WindowSummary};
/// let mut v = Vegas::default();
/// let w = |rtt: u64| WindowSummary { count: 10, rtt_sum: 10 * rtt, rtt_min: rtt, drops: 0, max_in_flight: 20 };
/// assert_eq!(v.update(20, &w(1_000)), 20); // the first window sets the no-load RTT
/// assert_eq!(v.no_load_rtt(), Some(1_000));
/// assert_eq!(v.update(20, &w(1_000)), 26); // no queue: + 6·log10(20)
/// assert_eq!(v.update(26, &w(2_000)), 25); // queue 13 > 6: − 1
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Vegas {
    initial: u32,
    min: u32,
    max: u32,
    smoothing: f64,
    probe_multiplier: u32,
    seed: u64,
    // State across windows.
    estimate: f64,
    rtt_noload: u64,
    probe_count: u64,
    jitter: f64,
    rng: u64,
}

impl Default for Vegas {
    fn default() -> Self {
        Self {
            initial: 20,
            min: 1,
            max: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
            seed: 0x9E37_79B9_7F4A_7C15,
            estimate: 20.0,
            rtt_noload: 0,
            probe_count: 0,
            jitter: 0.0,
            rng: 0,
        }
        .reseeded()
    }
}

/// One step of xorshift64 (never 0 from a non-zero state).
#[inline]
pub(crate) fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The jitter from a generator state: `0.5 + 0.5 × u` with `u` uniform in `[0, 1)` (53 bits).
#[inline]
pub(crate) fn jitter_of(x: u64) -> f64 {
    0.5 + 0.5 * ((x >> 11) as f64 / (1u64 << 53) as f64)
}

impl Vegas {
    /// The state restarted from the configuration: estimate at the initial limit, no no-load RTT,
    /// the generator at the seed (0 is taken as 1) and its first jitter drawn.
    fn reseeded(mut self) -> Self {
        self.estimate = f64::from(self.initial);
        self.rtt_noload = 0;
        self.probe_count = 0;
        self.rng = xorshift(self.seed.max(1));
        self.jitter = jitter_of(self.rng);
        self
    }

    /// The limit to start with (default 20).
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial = limit;
        self.reseeded()
    }

    /// The least limit (default 1).
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }

    /// The greatest limit (default 1000).
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// How much of each new estimate is taken: `(0, 1]` (default 1, all of it).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Re-probe the no-load RTT every `multiplier × limit` windows, jittered: 1 to 10 000
    /// (default 30).
    pub fn probe_multiplier(mut self, multiplier: u32) -> Self {
        self.probe_multiplier = multiplier;
        self
    }

    /// The seed of the probe jitter's generator (default fixed, so runs replay).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self.reseeded()
    }

    /// The limit the estimate stands for.
    fn current(&self) -> u32 {
        trunc(self.estimate)
    }
}

impl LimitAlgorithm for Vegas {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn update(&mut self, _limit: u32, w: &WindowSummary) -> u32 {
        let est = self.estimate;
        let step = f64::from(log10_step(est as u32));
        let new = if w.successes() == 0 {
            if w.drops == 0 {
                return self.current();
            }
            est - step
        } else {
            let rtt = w.rtt_min.max(1);
            self.probe_count += 1;
            if self.jitter * f64::from(self.probe_multiplier) * est <= self.probe_count as f64 {
                self.rng = xorshift(self.rng);
                self.jitter = jitter_of(self.rng);
                self.probe_count = 0;
                self.rtt_noload = rtt;
                return self.current();
            }
            if self.rtt_noload == 0 || rtt < self.rtt_noload {
                self.rtt_noload = rtt;
                return self.current();
            }
            let queue = (est * (1.0 - self.rtt_noload as f64 / rtt as f64)).ceil();
            if w.drops > 0 {
                est - step
            } else if f64::from(w.max_in_flight) * 2.0 < est {
                return self.current();
            } else if queue <= step {
                est + 6.0 * step
            } else if queue < 3.0 * step {
                est + step
            } else if queue > 6.0 * step {
                est - step
            } else {
                return self.current();
            }
        };
        let new = new.clamp(f64::from(self.min), f64::from(self.max));
        self.estimate = (1.0 - self.smoothing) * est + self.smoothing * new;
        self.current()
    }

    fn no_load_rtt(&self) -> Option<u64> {
        (self.rtt_noload != 0).then_some(self.rtt_noload)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_f64(
            "smoothing",
            self.smoothing,
            |s| s > 0.0 && s <= 1.0,
            "(0, 1]",
        )?;
        if !(1..=10_000).contains(&self.probe_multiplier) {
            return Err(ConfigError::new(
                "probe_multiplier",
                self.probe_multiplier,
                "1..=10000",
            ));
        }
        Ok(())
    }
}

/// An exponential moving average that starts as a plain mean over its first `warmup` samples
/// (Netflix's `ExpAvgMeasurement`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct ExpAvg {
    value: f64,
    sum: f64,
    count: u32,
    window: u32,
    warmup: u32,
}

impl ExpAvg {
    fn new(window: u32, warmup: u32) -> Self {
        Self {
            value: 0.0,
            sum: 0.0,
            count: 0,
            window,
            warmup,
        }
    }

    fn add(&mut self, x: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += x;
            self.value = self.sum / f64::from(self.count);
        } else {
            let factor = 2.0 / (f64::from(self.window) + 1.0);
            self.value = self.value * (1.0 - factor) + x * factor;
        }
        self.value
    }
}

/// The gradient of a long-term RTT average against the window's (Netflix `Gradient2Limit`).
///
/// Per window, with `short` the window's mean RTT and `long` an exponential average of it over
/// [`long_window`](Self::long_window) windows (a plain mean over the first 10):
/// `long × 0.9` when `long/short > 2` (recovery after a long overload); hold while app-limited
/// (`max_in_flight < limit/2`); else `gradient = clamp(tolerance·long/short, 0.5, 1)`,
/// `new = limit·gradient + queue_size`, smoothed as `limit·(1 − s) + new·s`, clamped to
/// `[min_limit, max_limit]`. Drops are not its signal (an empty window changes nothing).
/// Defaults: initial 20, min 20, max 200, smoothing 0.2, queue size 4, long window 600,
/// tolerance 1.5.
///
/// ```
/// use resile::bulkhead::adaptive::{Gradient2, LimitAlgorithm, WindowSummary};
/// let mut g = Gradient2::default();
/// let w = WindowSummary { count: 10, rtt_sum: 10_000, rtt_min: 1_000, drops: 0, max_in_flight: 20 };
/// // No queueing (gradient 1): 20·0.8 + (20 + 4)·0.2 = 20.8.
/// assert_eq!(g.update(20, &w), 20);
/// assert_eq!(g.no_load_rtt(), Some(1_000));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Gradient2 {
    initial: u32,
    min: u32,
    max: u32,
    smoothing: f64,
    queue_size: u32,
    tolerance: f64,
    long_window: u32,
    // State across windows.
    estimate: f64,
    long: ExpAvg,
}

impl Default for Gradient2 {
    fn default() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            queue_size: 4,
            tolerance: 1.5,
            long_window: 600,
            estimate: 20.0,
            long: ExpAvg::new(600, 10),
        }
    }
}

impl Gradient2 {
    /// The limit to start with (default 20).
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial = limit;
        self.estimate = f64::from(limit);
        self
    }

    /// The least limit (default 20).
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }

    /// The greatest limit (default 200).
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// How much of each new estimate is taken: `(0, 1]` (default 0.2).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How many calls the limit may grow by while latency holds: 0 to 1000 (default 4).
    pub fn queue_size(mut self, size: u32) -> Self {
        self.queue_size = size;
        self
    }

    /// How far the window's RTT may rise over the long average before the limit shrinks:
    /// `[1, 100]` (default 1.5).
    pub fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The long average's span in windows: 1 to 100 000 (default 600).
    pub fn long_window(mut self, windows: u32) -> Self {
        self.long_window = windows;
        self.long = ExpAvg::new(windows, 10);
        self
    }
}

impl LimitAlgorithm for Gradient2 {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn update(&mut self, _limit: u32, w: &WindowSummary) -> u32 {
        let Some(short) = w.mean_rtt() else {
            return trunc(self.estimate);
        };
        let short = short.max(1) as f64;
        let est = self.estimate;
        let long = self.long.add(short);
        if long / short > 2.0 {
            self.long.value *= 0.9;
        }
        if f64::from(w.max_in_flight) < est / 2.0 {
            return trunc(est);
        }
        let gradient = (self.tolerance * long / short).clamp(0.5, 1.0);
        let new = est * gradient + f64::from(self.queue_size);
        let new = est * (1.0 - self.smoothing) + new * self.smoothing;
        self.estimate = new.clamp(f64::from(self.min), f64::from(self.max));
        trunc(self.estimate)
    }

    fn no_load_rtt(&self) -> Option<u64> {
        (self.long.count > 0).then_some(self.long.value as u64)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_f64(
            "smoothing",
            self.smoothing,
            |s| s > 0.0 && s <= 1.0,
            "(0, 1]",
        )?;
        check_f64(
            "rtt_tolerance",
            self.tolerance,
            |t| (1.0..=100.0).contains(&t),
            "1..=100",
        )?;
        if self.queue_size > 1000 {
            return Err(ConfigError::new("queue_size", self.queue_size, "0..=1000"));
        }
        if !(1..=100_000).contains(&self.long_window) {
            return Err(ConfigError::new(
                "long_window",
                self.long_window,
                "1..=100000",
            ));
        }
        Ok(())
    }
}

/// What a permit dropped without a report counts as, set by
/// [`BulkheadBuilder::unreported`](super::BulkheadBuilder::unreported).
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::bulkhead::adaptive::{Aimd, Unreported};
/// let b = Bulkhead::builder().adaptive(Aimd::default()).unreported(Unreported::Ignored).build()?;
/// drop(b.try_acquire()?); // neither a success nor a drop
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unreported {
    /// A success with the permit's latency (the default): the plain RAII use feeds the
    /// algorithm without reporting. (The tower layer and the [`Policy`](crate::policy::Policy)
    /// report each call's result; this rule applies there to a call whose caller went away.)
    #[default]
    Success,
    /// A drop: only explicit [`success`](super::BulkheadPermit::success) reports count as
    /// successes.
    Dropped,
    /// Nothing: only explicit reports count.
    Ignored,
}

/// One change of an adaptive bulkhead's limit, given to the
/// [`on_limit_change`](super::BulkheadBuilder::on_limit_change) hook by the caller that closed
/// the window.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::bulkhead::adaptive::{Aimd, LimitChange};
/// use resile::clock::ManualClock;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let seen = Arc::new(Mutex::new(Vec::<LimitChange>::new()));
/// let clock = ManualClock::new();
/// let b = Bulkhead::builder()
///     .adaptive(Aimd::default())
///     .adaptive_min_samples(1)
///     .on_limit_change({ let seen = seen.clone(); move |c| seen.lock().unwrap().push(c) })
///     .clock(clock.clone())
///     .build()?;
/// clock.advance(Duration::from_secs(1));
/// b.try_acquire()?.dropped();
/// let c = seen.lock().unwrap()[0];
/// assert_eq!((c.from, c.to, c.window.drops), (20, 20, 1)); // AIMD's min is 20
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitChange {
    /// The limit before the window closed.
    pub from: u32,
    /// The limit the algorithm chose (it may equal `from`: every closed window is reported).
    pub to: u32,
    /// The window that decided it.
    pub window: WindowSummary,
    /// The algorithm's no-load RTT estimate after the window, if it keeps one.
    pub no_load_rtt: Option<Duration>,
}

/// An adaptive bulkhead's figures, in [`BulkheadMetrics::adaptive`](super::BulkheadMetrics::adaptive)
/// (the limit and the calls in flight are the bulkhead's own fields).
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::bulkhead::adaptive::Vegas;
/// let b = Bulkhead::builder().adaptive(Vegas::default()).build()?;
/// let m = b.metrics().adaptive.unwrap();
/// assert_eq!((m.no_load_rtt, m.drops, m.windows), (None, 0, 0));
/// assert_eq!(Bulkhead::builder().build()?.metrics().adaptive, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveMetrics {
    /// The algorithm's estimate of the RTT with no queueing, after the last closed window.
    pub no_load_rtt: Option<Duration>,
    /// Calls reported dropped, in closed windows.
    pub drops: u64,
    /// Windows closed (each one update of the algorithm).
    pub windows: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(count: u64, rtt: u64, drops: u64, inflight: u32) -> WindowSummary {
        WindowSummary {
            count,
            rtt_sum: count * rtt,
            rtt_min: if count > 0 { rtt } else { 0 },
            drops,
            max_in_flight: inflight,
        }
    }

    #[test]
    fn log10_step_is_at_least_one() {
        assert_eq!(
            [0, 1, 9, 10, 99, 100, 999, 1000].map(log10_step),
            [1, 1, 1, 1, 1, 2, 2, 3]
        );
    }

    #[test]
    fn aimd_by_hand() {
        let mut a = Aimd::default().min_limit(1).max_limit(30);
        // Not app-limited: +1; app-limited (2·9 < 20): hold; empty: hold.
        assert_eq!(a.update(20, &win(5, 1_000, 0, 10)), 21);
        assert_eq!(a.update(20, &win(5, 1_000, 0, 9)), 20);
        assert_eq!(a.update(20, &WindowSummary::default()), 20);
        // A drop: ⌊20 × 0.9⌋ = 18; at 5: ⌊4.5⌋ = 4; at 2: ⌊1.8⌋ = 1; at 1: stays 1 (the floor).
        assert_eq!(a.update(20, &win(5, 1_000, 1, 20)), 18);
        assert_eq!(a.update(5, &win(0, 0, 1, 0)), 4);
        assert_eq!(a.update(2, &win(0, 0, 1, 0)), 1);
        assert_eq!(a.update(1, &win(0, 0, 1, 0)), 1);
        // With ratio 0.99 the decrease is still at least one: min(9, ⌊9.9⌋) = 9.
        let mut slow = Aimd::default().min_limit(1).backoff_ratio(0.99);
        assert_eq!(slow.update(10, &win(0, 0, 1, 0)), 9);
        // Mean RTT over the timeout counts as a drop.
        let mut t = Aimd::default()
            .min_limit(1)
            .timeout(Duration::from_millis(10));
        assert_eq!(t.update(20, &win(2, 10_000_001, 0, 20)), 18);
        assert_eq!(t.update(20, &win(2, 10_000_000, 0, 20)), 21);
        // Clamped to max and min.
        assert_eq!(a.update(30, &win(5, 1_000, 0, 30)), 30);
        assert_eq!(Aimd::default().update(20, &win(1, 1, 1, 1)), 20);
    }

    #[test]
    fn vegas_by_hand() {
        let mut v = Vegas::default().probe_multiplier(10_000);
        // Drops only, before any RTT: 20 − 1.
        assert_eq!(v.update(20, &win(0, 0, 3, 0)), 19);
        // First RTT sets rtt_noload, holds.
        assert_eq!(v.update(19, &win(10, 1_000, 0, 19)), 19);
        assert_eq!(v.no_load_rtt(), Some(1_000));
        // rtt 1100: queue = ⌈19·(1 − 1000/1100)⌉ = ⌈1.727⌉ = 2 > 1, < 3: + 1 → 20.
        assert_eq!(v.update(19, &win(10, 1_100, 0, 19)), 20);
        // rtt 1000: queue 0 ≤ 1: + 6 → 26.
        assert_eq!(v.update(20, &win(10, 1_000, 0, 20)), 26);
        // App-limited (2·12 < 26): hold.
        assert_eq!(v.update(26, &win(10, 1_000, 0, 12)), 26);
        // rtt 1200: queue = ⌈26·(1/6)⌉ = ⌈4.33⌉ = 5, in [3, 6]: hold.
        assert_eq!(v.update(26, &win(10, 1_200, 0, 26)), 26);
        // rtt 2000: queue 13 > 6: − 1 → 25.
        assert_eq!(v.update(26, &win(10, 2_000, 0, 26)), 25);
        // A drop with RTTs: − 1 → 24.
        assert_eq!(v.update(25, &win(10, 1_000, 1, 25)), 24);
        // A lower RTT resets the baseline and holds.
        assert_eq!(v.update(24, &win(10, 500, 0, 24)), 24);
        assert_eq!(v.no_load_rtt(), Some(500));
        // Clamped by max; smoothing blends.
        let mut m = Vegas::default().max_limit(22).smoothing(0.5);
        m.update(20, &win(1, 1_000, 0, 20));
        // New = min(22, 26) = 22; 0.5·20 + 0.5·22 = 21.
        assert_eq!(m.update(20, &win(1, 1_000, 0, 20)), 21);
    }

    #[test]
    fn vegas_reprobes_the_no_load_rtt() {
        let mut v = Vegas::default().initial_limit(2).probe_multiplier(1);
        // jitter·1·2 ≤ probe_count: at most two windows until a probe, which takes any RTT.
        assert_eq!(v.update(2, &win(1, 1_000, 0, 2)), 2);
        let mut probed = false;
        for _ in 0..2 {
            v.update(v.current(), &win(1, 5_000, 0, 2));
            probed |= v.no_load_rtt() == Some(5_000);
        }
        assert!(probed, "a re-probe raised the baseline to 5000");
    }

    #[test]
    fn gradient2_by_hand() {
        let mut g = Gradient2::default().min_limit(1);
        // Empty: hold.
        assert_eq!(g.update(20, &WindowSummary::default()), 20);
        // short 1000, long 1000: gradient min(1, 1.5) = 1; new = 24; 20·0.8 + 24·0.2 = 20.8.
        assert_eq!(g.update(20, &win(10, 1_000, 0, 20)), 20);
        assert!((g.estimate - 20.8).abs() < 1e-9);
        // short 3000, long = (1000 + 3000)/2 = 2000: gradient 1.5·2000/3000 = 1;
        // new = 20.8 + 4 = 24.8; 20.8·0.8 + 24.8·0.2 = 21.6.
        assert_eq!(g.update(20, &win(10, 3_000, 0, 20)), 21);
        assert!((g.estimate - 21.6).abs() < 1e-9);
        // short 9000, long = 13000/3 ≈ 4333: gradient = clamp(0.722) = 0.7222;
        // new = 21.6·0.7222 + 4 = 19.6; 21.6·0.8 + 19.6·0.2 = 21.2.
        let long = 13_000.0 / 3.0;
        let grad = 1.5 * long / 9_000.0;
        let want = 21.6 * 0.8 + (21.6 * grad + 4.0) * 0.2;
        assert_eq!(g.update(21, &win(10, 9_000, 0, 21)), want as u32);
        assert!((g.estimate - want).abs() < 1e-9);
        // App-limited: hold (the long average still moves).
        assert_eq!(g.update(21, &win(10, 1_000, 0, 3)), want as u32);
        assert_eq!(g.long.count, 4);
        // long/short > 2 decays the long average: long = (13000 + 1000 + 100)/5 = 2820 > 200.
        g.update(21, &win(10, 100, 0, 3));
        assert!((g.long.value - 2_820.0 * 0.9).abs() < 1e-9);
    }

    #[test]
    fn gradient2_shrinks_by_at_most_half_and_respects_min() {
        let mut g = Gradient2::default()
            .smoothing(1.0)
            .min_limit(5)
            .queue_size(0);
        for _ in 0..9 {
            assert_eq!(g.update(20, &win(10, 1_000, 0, 20)), 20); // long 1000, gradient 1
        }
        // short 1000x: long = (9000 + 10^6)/10, gradient 1.5·0.1009 floored at 0.5 → 10.
        assert_eq!(g.update(20, &win(1, 1_000_000, 0, 20)), 10);
        assert_eq!(g.update(10, &win(1, 1_000_000, 0, 20)), 5);
        assert_eq!(g.update(5, &win(1, 1_000_000, 0, 20)), 5);
    }

    #[test]
    fn ema_warms_up_as_a_mean_then_decays() {
        let mut e = ExpAvg::new(3, 2);
        assert_eq!(e.add(10.0), 10.0);
        assert_eq!(e.add(20.0), 15.0);
        // factor 2/4 = 0.5.
        assert_eq!(e.add(25.0), 20.0);
    }

    #[test]
    fn validation_names_each_field() {
        let f = |r: Result<(), ConfigError>| r.unwrap_err().field();
        assert_eq!(f(Aimd::default().min_limit(0).validate()), "min_limit");
        assert_eq!(f(Aimd::default().max_limit(0).validate()), "max_limit");
        assert_eq!(
            f(Aimd::default().max_limit(MAX_LIMIT + 1).validate()),
            "max_limit"
        );
        assert_eq!(
            f(Aimd::default().initial_limit(300).validate()),
            "initial_limit"
        );
        assert_eq!(
            f(Aimd::default().backoff_ratio(0.4).validate()),
            "backoff_ratio"
        );
        assert_eq!(
            f(Aimd::default().backoff_ratio(f64::NAN).validate()),
            "backoff_ratio"
        );
        assert_eq!(
            f(Aimd::default().timeout(Duration::ZERO).validate()),
            "timeout"
        );
        assert_eq!(f(Vegas::default().smoothing(0.0).validate()), "smoothing");
        assert_eq!(
            f(Vegas::default().probe_multiplier(0).validate()),
            "probe_multiplier"
        );
        assert_eq!(
            f(Gradient2::default().rtt_tolerance(0.5).validate()),
            "rtt_tolerance"
        );
        assert_eq!(
            f(Gradient2::default().queue_size(1001).validate()),
            "queue_size"
        );
        assert_eq!(
            f(Gradient2::default().long_window(0).validate()),
            "long_window"
        );
        assert!(Aimd::default().validate().is_ok());
        assert!(Vegas::default().validate().is_ok());
        assert!(Gradient2::default().validate().is_ok());
    }
}
