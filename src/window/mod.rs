//! Sliding windows: the recent history a circuit breaker and a retry budget decide on.
//!
//! - [`CountWindow`]: the outcomes of the last N calls, in a ring of N slots.
//! - [`TimeWindow`]: N buckets covering a span of time; three counting lanes per bucket.
//!
//! Both keep running totals beside the ring, so a decision reads one word instead of summing the
//! ring. Neither takes a lock or allocates after construction.
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

mod count;
mod time;

pub use count::CountWindow;
pub use time::{Lanes, TimeWindow};

/// The outcome of one call, as a window records it.
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
    fn from([calls, failures, slow]: [u32; 3]) -> Self {
        Tally {
            calls,
            failures,
            slow,
        }
    }
}
