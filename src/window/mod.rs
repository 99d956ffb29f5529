//! Sliding windows: the recent history a circuit breaker and a retry budget decide on.
//!
//! - [`CountWindow`]: the outcomes of the last N calls, in a ring of N slots.
//! - [`TimeWindow`]: N buckets covering a span of time; three counting lanes per bucket.
//!
//! Both keep running totals beside the ring, so a decision reads one word instead of summing the
//! ring. Neither takes a lock or allocates after construction.
//!
//! The time window's raw lanes and its fast success path, which the breaker and the budget use
//! and the crate's fuzz targets, loom models and benchmarks drive directly, are public only with
//! the feature `unstable-internals`, outside the crate's semver promise.
//!
//! ```
//! use resile::window::{CountWindow, Outcome, Tally};
//!
//! let w = CountWindow::new(3).unwrap();
//! w.record(Outcome::Failure);
//! w.record(Outcome::Success);
//! w.record(Outcome::SlowSuccess);
//! assert_eq!(w.record(Outcome::Success), Tally { calls: 3, failures: 0, slow: 1 });
//! ```

/// Declares an item `pub` (hidden from the docs) with feature `unstable-internals`, and
/// crate-private without it: the window internals the fuzz targets, loom models and benchmarks
/// drive, which are not the crate's stable API.
macro_rules! internal {
    ($(#[$meta:meta])* pub $($item:tt)*) => {
        #[cfg(feature = "unstable-internals")]
        $(#[$meta])*
        #[doc(hidden)]
        pub $($item)*

        #[cfg(not(feature = "unstable-internals"))]
        $(#[$meta])*
        #[allow(dead_code, reason = "used by the breaker or budget under some features only")]
        pub(crate) $($item)*
    };
}

mod count;
mod time;

pub use count::CountWindow;
#[cfg(feature = "unstable-internals")]
pub use time::Lanes;
pub use time::TimeWindow;

/// The outcome of one call, as a window records it.
///
/// Classify a call by whether it failed and whether it took longer than the slow-call
/// threshold; each outcome counts once as a call, and in the failure and slow lanes it names:
///
/// ```
/// use resile::window::{Outcome, Tally};
/// use std::time::Duration;
///
/// let slow_threshold = Duration::from_millis(200);
/// let o = Outcome::new(false, Duration::from_millis(350) > slow_threshold);
/// assert_eq!(o, Outcome::SlowSuccess);
/// assert!(o.is_slow() && !o.is_failure());
/// assert_eq!(o.tally(), Tally { calls: 1, failures: 0, slow: 1 });
/// assert_eq!(Outcome::new(true, true).tally(), Tally { calls: 1, failures: 1, slow: 1 });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded within the slow-call threshold.
    Success,
    /// The call failed within the slow-call threshold.
    Failure,
    /// The call succeeded, but took longer than the slow-call threshold.
    SlowSuccess,
    /// The call failed, and took longer than the slow-call threshold.
    SlowFailure,
}

impl Outcome {
    /// The outcome of a call that failed or not, and was slow or not.
    #[inline]
    pub const fn new(failed: bool, slow: bool) -> Self {
        match (failed, slow) {
            (false, false) => Outcome::Success,
            (true, false) => Outcome::Failure,
            (false, true) => Outcome::SlowSuccess,
            (true, true) => Outcome::SlowFailure,
        }
    }

    /// Whether the call failed.
    #[inline]
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure | Outcome::SlowFailure)
    }

    /// Whether the call was slow.
    #[inline]
    pub const fn is_slow(self) -> bool {
        matches!(self, Outcome::SlowSuccess | Outcome::SlowFailure)
    }

    /// This outcome as a one-call [`Tally`].
    #[inline]
    pub const fn tally(self) -> Tally {
        Tally {
            calls: 1,
            failures: self.is_failure() as u32,
            slow: self.is_slow() as u32,
        }
    }
}

/// Counts of outcomes in a window.
///
/// Returned by the windows' `record`, [`CountWindow::snapshot`] and [`TimeWindow::tally`]; a
/// breaker compares its rates with the thresholds.
///
/// ```
/// use resile::window::{CountWindow, Outcome, Tally};
///
/// let w = CountWindow::new(4)?;
/// for o in [Outcome::Success, Outcome::Failure, Outcome::SlowFailure, Outcome::Success] {
///     w.record(o);
/// }
/// let t = w.snapshot();
/// assert_eq!(t, Tally { calls: 4, failures: 2, slow: 1 });
/// assert_eq!((t.failure_rate(), t.slow_rate()), (0.5, 0.25));
/// assert_eq!(<[u32; 3]>::from(t), [4, 2, 1]); // a time window's lanes
/// assert_eq!(Tally::default().failure_rate(), 0.0); // no calls, no rate
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tally {
    /// Calls recorded (every outcome counts once).
    pub calls: u32,
    /// Calls that failed (slow or not).
    pub failures: u32,
    /// Calls that were slow (failed or not).
    pub slow: u32,
}

impl Tally {
    /// `failures / calls`, or 0 with no calls.
    #[inline]
    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            f64::from(self.failures) / f64::from(self.calls)
        }
    }

    /// `slow / calls`, or 0 with no calls.
    #[inline]
    pub fn slow_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            f64::from(self.slow) / f64::from(self.calls)
        }
    }
}

impl From<Tally> for [u32; 3] {
    fn from(t: Tally) -> Self {
        [t.calls, t.failures, t.slow]
    }
}

impl From<[u32; 3]> for Tally {
    /// Failures and slow calls clamped to calls: a time window read while a rotation is being
    /// stamped can briefly show more (see its caveats); a rate is never above 1.
    fn from([calls, failures, slow]: [u32; 3]) -> Self {
        Tally {
            calls,
            failures: failures.min(calls),
            slow: slow.min(calls),
        }
    }
}

/// Division by a divisor fixed at construction, without a `div` instruction on the hot path.
///
/// `c = ceil(2^128 / d)`; for every `n < 2^64`, `floor(n * c / 2^128) == n / d`: the error term
/// `n * (c - 2^128 / d) / 2^128` is below `2^-64 < 1 / d`, too small to carry `n / d` past the next
/// integer. Two 64x64-bit multiplications replace a 64-bit division, which costs 13 to 45 cycles
/// of latency on the CPUs we measure and sits on the dependency chain of every record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Divisor {
    d: u64,
    /// `ceil(2^128 / d)`, or 0 for `d == 1` (whose constant does not fit).
    c: u128,
}

impl Divisor {
    /// A divisor; `d` must be non-zero (the windows validate their sizes first).
    pub(crate) const fn new(d: u64) -> Self {
        let d = if d == 0 { 1 } else { d };
        let c = if d == 1 { 0 } else { u128::MAX / d as u128 + 1 };
        Self { d, c }
    }

    /// `n / d`.
    #[inline]
    pub(crate) const fn div(self, n: u64) -> u64 {
        if self.c == 0 {
            return n;
        }
        let n = n as u128;
        let hi = n * (self.c >> 64);
        let lo = (n * (self.c as u64 as u128)) >> 64;
        ((hi + lo) >> 64) as u64
    }

    /// `(n / d, n % d)`.
    #[inline]
    pub(crate) const fn div_rem(self, n: u64) -> (u64, u64) {
        let q = self.div(n);
        (q, n - q * self.d)
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::Divisor;

    #[test]
    fn divisor_matches_hardware_division() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let special = [1, 2, 3, 7, 10, 100, 1000, 1023, 1024, 65_536, 1_000_000_000];
        // Fewer random divisors and numerators under miri, which interprets every division.
        let (divisors, numerators) = if cfg!(miri) { (30, 100) } else { (200, 2000) };
        let mut ds: Vec<u64> = special.to_vec();
        ds.extend([u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) + 1, u64::MAX / 3]);
        for _ in 0..divisors {
            let r = next();
            ds.push(r >> (r % 64));
        }
        for d in ds.into_iter().filter(|&d| d != 0) {
            let div = Divisor::new(d);
            let mut ns = vec![0, 1, d - 1, d, d.wrapping_add(1), u64::MAX, u64::MAX - 1];
            ns.extend([u64::MAX / d * d, (u64::MAX / d * d).wrapping_sub(1)]);
            for _ in 0..numerators {
                let r = next();
                ns.push(r >> (r % 64));
            }
            for n in ns {
                assert_eq!(div.div_rem(n), (n / d, n % d), "{n} / {d}");
            }
        }
    }
}
