//! The retry budget: how many retries a client may send to a dependency over a sliding window.
//!
//! Retries amplify an outage: when a dependency slows down every caller retries, and the extra
//! load makes it slower still (a retry storm). A budget caps the retries across all requests, so
//! once it is spent the callers fail fast instead.
//!
//! Two modes share one type:
//!
//! - **fixed**: at most `max_retries` retries per sliding `window`, in any
//!   interval that long (a spent retry counts until its bucket is a whole window old);
//! - **ratio** (Finagle's and Linkerd's): retries ≤ `ratio` × original requests over the window,
//!   plus a floor of `min_per_sec` retries per second of the window. The floor is a reserve that
//!   comes back as spent retries age out of the window, so it refills with time, not with
//!   traffic: a budget never stays empty after an idle spell (linkedin/venice#1498).
//!
//! Call [`deposit`](RetryBudget::deposit) once per original request and
//! [`try_withdraw`](RetryBudget::try_withdraw) when a retry is decided (before the backoff wait,
//! so retries sleeping in backoff are counted: envoy#30205). `try_withdraw` checks and debits in
//! one atomic step of the window (one compare-and-swap on its newest bucket), so however many
//! threads race, the budget is never overdrawn (tower's `TpsBudget` checks and then debits
//! separately and can overdraw). A deposit is one compare-and-swap too.
//!
//! ```
//! use resile::budget::RetryBudget;
//! use resile::clock::ManualClock;
//! use std::time::Duration;
//!
//! // The guide's budget: 100 retries per minute.
//! let clock = ManualClock::new();
//! let budget = RetryBudget::builder()
//!     .max_retries(100)
//!     .window(Duration::from_secs(60))
//!     .clock(clock.clone())
//!     .build()?;
//! let granted = (0..1000)
//!     .filter(|_| {
//!         budget.deposit();
//!         clock.advance(Duration::from_millis(10));
//!         budget.try_withdraw().is_ok()
//!     })
//!     .count();
//! assert_eq!(granted, 100);
//! assert!(!budget.can_retry());
//! clock.advance(Duration::from_secs(60)); // the retries age out of the window
//! assert_eq!(budget.balance(), 100);
//! # Ok::<(), resile::error::ConfigError>(())
//! ```

use crate::clock::{Clock, SystemClock, duration_to_nanos};
use crate::counter::StatCounters;
use crate::error::ConfigError;
use crate::window::TimeWindow;
use ledger::{Ledger, REQUESTS, RETRIES};
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

mod error;
mod ledger;

pub use error::BudgetExhausted;

/// Ratios are kept in thousandths of a retry per request.
const SCALE: u64 = 1000;
/// The longest window a budget accepts.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// The most retries a window can hold (the width of its counts): bounds `max_retries` and the
/// ratio mode's floor.
pub const MAX_RETRIES: u32 = ledger::MAX_COUNT as u32;

/// How a budget decides, kept as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// At most `max` retries in the window.
    Fixed { max: u64 },
    /// At most `ratio_milli × requests / 1000 + reserve` retries in the window.
    Ratio { ratio_milli: u64, reserve: u64 },
}

impl Mode {
    /// The retries the window allows in total given its `[requests, retries]` (pure; rounds
    /// down, against the retrier). Never above [`MAX_RETRIES`], so the retries count can never
    /// saturate and let a withdraw through uncounted.
    #[inline]
    fn allowance(self, lanes: [u64; 2]) -> u64 {
        let a = match self {
            Mode::Fixed { max } => max,
            Mode::Ratio {
                ratio_milli,
                reserve,
            } => ratio_milli * lanes[REQUESTS] / SCALE + reserve,
        };
        a.min(u64::from(MAX_RETRIES))
    }

    /// Retries still available given the window's `[requests, retries]` (pure).
    #[inline]
    fn balance(self, lanes: [u64; 2]) -> u64 {
        self.allowance(lanes).saturating_sub(lanes[RETRIES])
    }
}

/// Lifetime counters of a budget, plus its balance when read.
///
/// Read by [`RetryBudget::metrics`]. The counters only grow; the balance comes back as spent
/// retries age out of the window:
///
/// ```
/// use resile::budget::RetryBudget;
/// use resile::clock::ManualClock;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let builder = RetryBudget::builder().max_retries(2).window(Duration::from_secs(10));
/// let budget = builder.clock(clock.clone()).build()?;
/// budget.deposit();
/// let granted: Vec<bool> = (0..3).map(|_| budget.try_withdraw().is_ok()).collect();
/// assert_eq!(granted, [true, true, false]);
/// let m = budget.metrics();
/// assert_eq!((m.deposits, m.retries_granted, m.retries_refused, m.balance), (1, 2, 1, 0));
/// // The two retries age out once their bucket (the first of ten, of 1 s) is a whole window old.
/// clock.advance(Duration::from_secs(11));
/// let m = budget.metrics();
/// assert_eq!((m.retries_granted, m.balance), (2, 2)); // the lifetime count keeps them
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BudgetMetrics {
    /// Original requests deposited.
    pub deposits: u64,
    /// Retries granted by [`RetryBudget::try_withdraw`].
    pub retries_granted: u64,
    /// Retries refused by [`RetryBudget::try_withdraw`] (the "budget exhausted" count).
    pub retries_refused: u64,
    /// Retries available now.
    pub balance: u64,
}

/// The lifetime counters' lanes in one [`StatCounters`]. Statistics only: no decision reads
/// them, so every access is `Relaxed`; each thread adds to its own cell (its own cache line),
/// so counting does not serialise deposits and withdraws that the window lets run in parallel.
mod lane {
    pub(super) const DEPOSITS: usize = 0;
    pub(super) const GRANTED: usize = 1;
    pub(super) const REFUSED: usize = 2;
}

/// A retry budget shared by every caller of one dependency (put it in an `Arc`, or a `static`
/// through a lazy cell).
///
/// # State
///
/// The decision state is the budget's window, a ledger of `buckets` buckets of (requests,
/// retries) in which only the newest bucket is written and the older ones are sealed, their sums
/// kept in one word (bit layouts, states and orderings in `budget/ledger.rs`); the budget adds no
/// packed word of its own:
///
/// | what | written by | how |
/// |---|---|---|
/// | newest bucket's `requests` word | [`deposit`](Self::deposit), ratio mode only | one CAS: count + 1 |
/// | newest bucket's `retries` word | [`try_withdraw`](Self::try_withdraw) | one CAS, after checking `allowance(requests) > retries` against the sealed sums and the words it read: the CAS succeeds only if the retries it checked are still the retries, so the check and the debit are one atomic step |
/// | sealed sums, head epoch | the first operation in a new bucket period | seals the previous bucket, sums the sealed ones, one CAS each |
/// | counters `deposits`, `granted`, `refused` | deposit, try_withdraw | `add_to(lane, 1)`: a `Relaxed` load and store of this thread's own cell (a `fetch_add` on a shared cell for threads past the owned ones; see `counter.rs`) |
///
/// Orderings (each access of the ledger is listed in `budget/ledger.rs`):
///
/// - the retries word's CAS: the no-overdraw promise: every withdraw sees every earlier debit
///   of the same bucket.
/// - the seal: a debit either lands before its bucket is sealed and is in the sums, or fails and
///   retries in the newest bucket.
/// - a refusal, which no CAS validates, stands only on counts its bucket held at one instant (a
///   requests word read as its own bucket's, or as not yet opened with the head unmoved), else it
///   starts over at the newest bucket, so a withdraw is never refused while the window holds a
///   retry.
/// - the counters: `Relaxed`; nothing is published through them.
///
/// A fixed-mode deposit reads no clock and touches only its counter. Each operation reads the
/// clock at most once.
///
/// ```
/// use resile::budget::RetryBudget;
/// use resile::clock::ManualClock;
/// use std::time::Duration;
///
/// // Finagle's shape: 20% of requests, plus 1 retry a second of the 10 s window.
/// let clock = ManualClock::new();
/// let budget = RetryBudget::builder()
///     .ratio(0.2)
///     .min_per_sec(1)
///     .window(Duration::from_secs(10))
///     .clock(clock.clone())
///     .build()?;
/// assert_eq!(budget.balance(), 10); // the floor, with no traffic at all
/// for _ in 0..50 {
///     budget.deposit();
/// }
/// assert_eq!(budget.balance(), 20); // 10 + 20% of 50
/// while budget.try_withdraw().is_ok() {}
/// let m = budget.metrics();
/// assert_eq!((m.deposits, m.retries_granted, m.retries_refused, m.balance), (50, 20, 1, 0));
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
pub struct RetryBudget<C: Clock = SystemClock> {
    name: Cow<'static, str>,
    window: Ledger,
    mode: Mode,
    clock: C,
    counters: StatCounters<3>,
}

impl RetryBudget {
    /// A builder. Without [`max_retries`](BudgetBuilder::max_retries) or
    /// [`ratio`](BudgetBuilder::ratio) it builds Finagle's default: 20% of requests plus 10
    /// retries a second, over 10 s.
    pub fn builder() -> BudgetBuilder {
        BudgetBuilder {
            name: Cow::Borrowed("retry-budget"),
            max_retries: None,
            ratio: None,
            min_per_sec: None,
            window: None,
            buckets: 10,
            clock: SystemClock::new(),
        }
    }
}

impl<C: Clock> RetryBudget<C> {
    /// Records one original request (not a retry). In fixed mode this only counts it for
    /// [`metrics`](Self::metrics); in ratio mode it earns `ratio` retries for the window.
    #[inline]
    pub fn deposit(&self) {
        if let Mode::Ratio { ratio_milli, .. } = self.mode {
            if ratio_milli != 0 {
                self.window.add(self.clock.now(), REQUESTS);
            }
        }
        self.counters.add_to(lane::DEPOSITS, 1);
    }

    /// Takes one retry from the budget if one is available, checking and debiting in one atomic
    /// step: the budget is never overdrawn, whatever the number of threads.
    ///
    /// # Errors
    /// [`BudgetExhausted`] when the window has no retry left; nothing is debited.
    #[inline]
    pub fn try_withdraw(&self) -> Result<(), BudgetExhausted> {
        let mode = self.mode;
        let now = self.clock.now();
        if self
            .window
            .try_debit(now, move |lanes| mode.balance(lanes) > 0)
        {
            self.counters.add_to(lane::GRANTED, 1);
            Ok(())
        } else {
            self.counters.add_to(lane::REFUSED, 1);
            Err(BudgetExhausted)
        }
    }

    /// Whether a retry is available now, without taking it. Another thread may take it first:
    /// decide with [`try_withdraw`](Self::try_withdraw).
    #[inline]
    pub fn can_retry(&self) -> bool {
        self.balance() > 0
    }

    /// The retries available now.
    #[inline]
    pub fn balance(&self) -> u64 {
        self.mode.balance(self.window.totals(self.clock.now()))
    }

    /// Lifetime counters and the current balance.
    pub fn metrics(&self) -> BudgetMetrics {
        BudgetMetrics {
            deposits: self.counters.sum_of(lane::DEPOSITS),
            retries_granted: self.counters.sum_of(lane::GRANTED),
            retries_refused: self.counters.sum_of(lane::REFUSED),
            balance: self.balance(),
        }
    }

    /// The budget's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The retries withdrawn in the window now: zero once every spent retry has aged out.
    #[cfg(feature = "registry")]
    pub(crate) fn retries_in_window(&self) -> u64 {
        self.window.totals(self.clock.now())[RETRIES]
    }

    /// The name its metrics and `Debug` report.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<C: Clock> fmt::Debug for RetryBudget<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

/// Builds a validated [`RetryBudget`]; see [`RetryBudget::builder`].
///
/// ```
/// use resile::budget::RetryBudget;
/// use std::time::Duration;
///
/// let e = RetryBudget::builder().ratio(11.0).build().unwrap_err();
/// assert_eq!(e.field(), "ratio");
/// let e = RetryBudget::builder().max_retries(5).window(Duration::ZERO).build().unwrap_err();
/// assert_eq!(e.field(), "window");
/// ```
#[must_use = "a builder does nothing until `build()`"]
#[derive(Clone, Debug)]
pub struct BudgetBuilder<C: Clock = SystemClock> {
    name: Cow<'static, str>,
    max_retries: Option<u32>,
    ratio: Option<f64>,
    min_per_sec: Option<u32>,
    window: Option<Duration>,
    buckets: u32,
    clock: C,
}

impl<C: Clock> BudgetBuilder<C> {
    /// The name its metrics and `Debug` report (default `"retry-budget"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Fixed mode: at most `n` retries per window (`1..=`[`MAX_RETRIES`]), in any interval as
    /// long as the window: a spent retry stays counted for between one window and one window
    /// plus one bucket after it was granted. The window defaults to 60 s.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Ratio mode: retries per original request, `0.0..=10.0`, kept in thousandths rounded down.
    /// Defaults: 0.2, with 10 retries a second as the floor, over a 10 s window.
    ///
    /// Requests are counted up to [`MAX_RETRIES`] (about two million) in each bucket and in the
    /// sum of the older buckets; past that a window earns no more retries (erring against the
    /// retrier), so above a few hundred thousand requests a second, shorten the window.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = Some(ratio);
        self
    }

    /// Ratio mode: the floor, in retries per second of the window, available with no traffic
    /// and refilled as spent retries age out.
    pub fn min_per_sec(mut self, n: u32) -> Self {
        self.min_per_sec = Some(n);
        self
    }

    /// The sliding window, `1ns..=`[`MAX_WINDOW`], a whole number of nanoseconds per bucket.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// The number of buckets the window slides by (default 10). In ratio mode the window covers
    /// between `window - window/buckets` and `window` of history, requests and retries alike
    /// (so a retry ages out with the requests that earned it, as in Finagle); in fixed mode a
    /// spent retry is kept one bucket longer (see [`max_retries`](Self::max_retries)).
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// The clock (default [`SystemClock`]; [`CoarseClock`](crate::clock::CoarseClock) and
    /// [`RecentClock`](crate::clock::RecentClock) are several times cheaper and fine for buckets
    /// of a second; tests use [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock<C2: Clock>(self, clock: C2) -> BudgetBuilder<C2> {
        BudgetBuilder {
            name: self.name,
            max_retries: self.max_retries,
            ratio: self.ratio,
            min_per_sec: self.min_per_sec,
            window: self.window,
            buckets: self.buckets,
            clock,
        }
    }

    /// Validates the configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: `max_retries` of 0 or above [`MAX_RETRIES`], or given
    /// together with a ratio or floor; a `ratio` outside `0.0..=10.0` or not a number; a ratio
    /// and floor both zero (a budget that refuses every retry); a floor (`min_per_sec` × window)
    /// above [`MAX_RETRIES`]; a `window` of zero, above [`MAX_WINDOW`] or not divisible into
    /// `buckets`; `buckets` outside `1..=1024`.
    pub fn build(self) -> Result<RetryBudget<C>, ConfigError> {
        let fixed = self.max_retries.is_some();
        if fixed && (self.ratio.is_some() || self.min_per_sec.is_some()) {
            return Err(ConfigError::new(
                "max_retries",
                self.max_retries,
                "not together with `ratio` or `min_per_sec` (fixed or ratio mode, not both)",
            ));
        }
        let default_window = if fixed { 60 } else { 10 };
        let window = self.window.unwrap_or(Duration::from_secs(default_window));
        if window.is_zero() || window > MAX_WINDOW {
            return Err(ConfigError::new(
                "window",
                window,
                format!("1ns..={MAX_WINDOW:?}"),
            ));
        }
        let window_nanos = duration_to_nanos(window);
        let mode = match self.max_retries {
            Some(n) => {
                if n == 0 || n > MAX_RETRIES {
                    return Err(ConfigError::new(
                        "max_retries",
                        n,
                        format!("1..={MAX_RETRIES}"),
                    ));
                }
                Mode::Fixed { max: u64::from(n) }
            }
            None => {
                let ratio = self.ratio.unwrap_or(0.2);
                if !(0.0..=10.0).contains(&ratio) {
                    return Err(ConfigError::new(
                        "ratio",
                        ratio,
                        "0.0..=10.0 retries per request",
                    ));
                }
                // Thousandths, rounded down (against the retrier), except that a ratio equal
                // to `k / 1000` as written (4.35 is 4349.99.. thousandths in binary) reads as `k`.
                let floor = (ratio * 1000.0).floor();
                let ratio_milli = if (floor + 1.0) / 1000.0 <= ratio {
                    floor as u64 + 1
                } else {
                    floor as u64
                };
                let min_per_sec = self.min_per_sec.unwrap_or(10);
                let reserve = u128::from(min_per_sec) * u128::from(window_nanos) / 1_000_000_000;
                if reserve > u128::from(MAX_RETRIES) {
                    return Err(ConfigError::new(
                        "min_per_sec",
                        min_per_sec,
                        format!("at most {MAX_RETRIES} retries over the window"),
                    ));
                }
                if ratio_milli == 0 && reserve == 0 {
                    return Err(ConfigError::new(
                        "ratio",
                        ratio,
                        "above 0.0 (at least 0.001), or a non-zero floor `min_per_sec` × window",
                    ));
                }
                Mode::Ratio {
                    ratio_milli,
                    reserve: reserve as u64,
                }
            }
        };
        if self.buckets == 0 || self.buckets > TimeWindow::MAX_BUCKETS {
            return Err(ConfigError::new(
                "buckets",
                self.buckets,
                format!("1..={}", TimeWindow::MAX_BUCKETS),
            ));
        }
        if window_nanos % u64::from(self.buckets) != 0 {
            return Err(ConfigError::new(
                "window",
                window,
                format!(
                    "a span that divides into {} whole-nanosecond buckets",
                    self.buckets
                ),
            ));
        }
        // Fixed mode keeps each spent retry for a whole window (one bucket more than the
        // window's), so no window-long interval ever holds more than `max_retries`.
        let fixed = matches!(mode, Mode::Fixed { .. });
        let window = Ledger::new(window_nanos / u64::from(self.buckets), self.buckets, fixed);
        Ok(RetryBudget {
            name: self.name,
            window,
            mode,
            clock: self.clock,
            counters: StatCounters::new(),
        })
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const SEC: Duration = Duration::from_secs(1);

    fn fixed(n: u32, window: Duration) -> (RetryBudget<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let b = RetryBudget::builder()
            .max_retries(n)
            .window(window)
            .clock(clock.clone())
            .build()
            .unwrap();
        (b, clock)
    }

    fn ratio(r: f64, min: u32, window: Duration) -> (RetryBudget<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let b = RetryBudget::builder()
            .ratio(r)
            .min_per_sec(min)
            .window(window)
            .clock(clock.clone())
            .build()
            .unwrap();
        (b, clock)
    }

    #[test]
    fn guide_scenario_1000_failing_requests_100_per_minute() {
        let (budget, clock) = fixed(100, 60 * SEC);
        let (mut granted, mut refused) = (0, 0);
        for _ in 0..1000 {
            budget.deposit(); // the original request, which fails
            match budget.try_withdraw() {
                Ok(()) => granted += 1,
                Err(BudgetExhausted) => refused += 1,
            }
            clock.advance(Duration::from_millis(50)); // 1000 requests over 50 s
        }
        assert_eq!((granted, refused), (100, 900));
        let m = budget.metrics();
        assert_eq!(
            (m.deposits, m.retries_granted, m.retries_refused, m.balance),
            (1000, 100, 900, 0)
        );
    }

    #[test]
    fn fixed_budget_slides_bucket_by_bucket() {
        // 10 buckets of 1 s: retries taken at t = 0 s and t = 5 s age out separately, each once
        // its bucket has been a whole window behind (11 s and 16 s).
        let (b, clock) = fixed(4, 10 * SEC);
        assert!(b.try_withdraw().is_ok() && b.try_withdraw().is_ok());
        clock.set(5_000_000_000);
        assert!(b.try_withdraw().is_ok() && b.try_withdraw().is_ok());
        assert_eq!(b.try_withdraw(), Err(BudgetExhausted));
        clock.set(10_999_999_999);
        assert_eq!(b.balance(), 0);
        clock.set(11_000_000_000);
        assert_eq!(b.balance(), 2);
        clock.set(15_999_999_999);
        assert_eq!(b.balance(), 2);
        clock.set(16_000_000_000);
        assert_eq!(b.balance(), 4);
    }

    #[test]
    fn fixed_budget_never_grants_more_than_max_in_any_window_long_interval() {
        // Retries spent at the very end of a bucket are still counted one window later, so a
        // burst there and a burst as soon as they age out are more than a window apart.
        for buckets in [1, 2, 10] {
            let clock = ManualClock::new();
            let b = RetryBudget::builder()
                .max_retries(3)
                .window(10 * SEC)
                .buckets(buckets)
                .clock(clock.clone())
                .build()
                .unwrap();
            let first = 10_000_000_000 / u64::from(buckets) - 1; // the last ns of bucket 0
            clock.set(first);
            assert_eq!((0..5).filter(|_| b.try_withdraw().is_ok()).count(), 3);
            clock.set(first + 10_000_000_000);
            assert_eq!(b.balance(), 0, "{buckets} buckets: one window later");
            clock.set(first + 10_000_000_001);
            assert_eq!(
                b.balance(),
                3,
                "{buckets} buckets: more than a window later"
            );
        }
    }

    #[test]
    fn can_retry_only_peeks() {
        let (b, _clock) = fixed(1, SEC);
        for _ in 0..10 {
            assert!(b.can_retry());
        }
        assert_eq!(b.balance(), 1);
        assert!(b.try_withdraw().is_ok());
        assert!(!b.can_retry());
        assert_eq!(b.metrics().retries_refused, 0);
    }

    #[test]
    fn ratio_rounds_against_the_retrier() {
        // tower#857: 0.6 must not round to one retry per request.
        let (b, _c) = ratio(0.6, 0, 10 * SEC);
        for _ in 0..9 {
            b.deposit();
        }
        assert_eq!(b.balance(), 5); // 5.4 rounds down
        b.deposit();
        assert_eq!(b.balance(), 6);
        let granted = (0..20).filter(|_| b.try_withdraw().is_ok()).count();
        assert_eq!(granted, 6);
        // Thousandths, rounded down: 1/3 is 0.333, so 1000 requests earn 333 retries.
        let (b, _c) = ratio(1.0 / 3.0, 0, 10 * SEC);
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(b.balance(), 333);
        // A decimal ratio is read exactly, not one thousandth short.
        let (b, _c) = ratio(4.35, 0, 10 * SEC);
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(b.balance(), 435);
        // ... but a ratio just below a thousandth is not rounded up to it.
        let (b, _c) = ratio(0.199_999_6, 0, 10 * SEC);
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(b.balance(), 199);
        let e = RetryBudget::builder()
            .ratio(0.000_999_6)
            .min_per_sec(0)
            .build()
            .unwrap_err();
        assert_eq!(
            e.field(),
            "ratio",
            "below one thousandth, with no floor: nothing to grant"
        );
        // The floor of a fractional window rounds down too: 3/s over 1.5 s is 4 retries.
        let (b, _c) = ratio(0.0, 3, Duration::from_millis(1500));
        assert_eq!(b.balance(), 4);
    }

    #[test]
    fn floor_refills_after_idle_time_without_traffic() {
        let (b, clock) = ratio(0.2, 2, 10 * SEC);
        assert_eq!(b.balance(), 20);
        let granted = (0..100).filter(|_| b.try_withdraw().is_ok()).count();
        assert_eq!(granted, 20);
        assert!(!b.can_retry());
        // No deposit at all: an idle spell as long as the window brings the floor back.
        clock.advance(10 * SEC);
        assert_eq!(b.balance(), 20);
        assert_eq!((0..100).filter(|_| b.try_withdraw().is_ok()).count(), 20);
        // And after a very long idle spell too.
        clock.advance(Duration::from_secs(86_400 * 365));
        assert_eq!(b.balance(), 20);
        assert_eq!(b.metrics().deposits, 0);
    }

    #[test]
    fn ratio_deposits_age_out_with_the_window() {
        let (b, clock) = ratio(1.0, 0, 10 * SEC);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.balance(), 10);
        clock.advance(10 * SEC);
        assert_eq!(b.balance(), 0);
        assert_eq!(b.try_withdraw(), Err(BudgetExhausted));
    }

    #[test]
    fn an_idle_jump_onto_the_sums_tag_never_revives_dead_counts() {
        // The sealed sums carry the low 22 bits of their head epoch. Sums with 3 requests are
        // installed for epoch 1; the clock then jumps exactly 2^22 buckets, to an epoch with the
        // same low bits: those sums must not be taken for the new head.
        let clock = ManualClock::new();
        let b = RetryBudget::builder()
            .ratio(1.0)
            .min_per_sec(0)
            .window(Duration::from_nanos(2))
            .buckets(2)
            .clock(clock.clone())
            .build()
            .unwrap();
        for _ in 0..3 {
            b.deposit();
        }
        clock.set(1);
        assert_eq!(b.balance(), 3, "epoch 0 is live at 1, its sums installed");
        clock.set(1 + (1 << 22));
        assert_eq!(b.balance(), 0);
        assert_eq!(b.try_withdraw(), Err(BudgetExhausted));
        b.deposit();
        assert_eq!(b.balance(), 1);
        clock.advance(Duration::from_nanos(1));
        assert_eq!(b.balance(), 1);
        clock.advance(Duration::from_nanos(1));
        assert_eq!(b.balance(), 0);
    }

    #[test]
    fn a_clock_near_its_maximum_keeps_working() {
        let clock = ManualClock::starting_at(u64::MAX - 3_000_000_000);
        let b = RetryBudget::builder()
            .max_retries(2)
            .window(SEC)
            .clock(clock.clone())
            .build()
            .unwrap();
        assert!(b.try_withdraw().is_ok() && b.try_withdraw().is_ok());
        assert!(b.try_withdraw().is_err());
        clock.advance(2 * SEC);
        assert_eq!(b.balance(), 2);
    }

    #[test]
    fn builder_validates_each_field() {
        let f = |b: BudgetBuilder| b.build().unwrap_err().field();
        let b = RetryBudget::builder;
        assert_eq!(f(b().max_retries(0)), "max_retries");
        assert_eq!(f(b().max_retries(MAX_RETRIES + 1)), "max_retries");
        assert_eq!(f(b().max_retries(5).ratio(0.1)), "max_retries");
        assert_eq!(f(b().ratio(-0.1)), "ratio");
        assert_eq!(f(b().ratio(10.001)), "ratio");
        assert_eq!(f(b().ratio(f64::NAN)), "ratio");
        assert_eq!(f(b().ratio(0.0).min_per_sec(0)), "ratio");
        assert_eq!(f(b().min_per_sec(u32::MAX)), "min_per_sec");
        assert_eq!(f(b().window(Duration::ZERO)), "window");
        assert_eq!(f(b().window(MAX_WINDOW + SEC)), "window");
        assert_eq!(f(b().window(Duration::from_nanos(15))), "window");
        assert_eq!(f(b().buckets(0)), "buckets");
        assert_eq!(f(b().buckets(4096)), "buckets");
        let e = b().ratio(11.0).build().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid `ratio` = 11.0: allowed 0.0..=10.0 retries per request"
        );
        // The edges are accepted.
        assert!(b().ratio(10.0).build().is_ok());
        assert!(
            b().max_retries(MAX_RETRIES)
                .window(MAX_WINDOW)
                .build()
                .is_ok()
        );
        assert!(b().ratio(0.0).min_per_sec(1).build().is_ok());
    }

    #[test]
    fn largest_allowance_never_lets_the_retry_lane_saturate() {
        // ratio 10 with many requests would allow more retries than a lane holds: the allowance
        // stops at MAX_RETRIES, so every granted retry is counted.
        let m = Mode::Ratio {
            ratio_milli: 10_000,
            reserve: 0,
        };
        let max = u64::from(MAX_RETRIES);
        assert_eq!(m.allowance([max, 0]), max);
        assert_eq!(m.balance([max, max]), 0);
    }
}
