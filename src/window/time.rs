//! The time-based window: N buckets covering a span of time.
//!
//! PLACEHOLDER IMPLEMENTATION (a mutex around the buckets). The lock-free buckets described in
//! DESIGN.md replace it; the public API below is the contract the breaker and budget code against.

use super::{Outcome, Tally};
use crate::error::ConfigError;
use crate::sync::{Mutex, lock};
use std::time::Duration;

/// Three counting lanes (for a breaker: calls, failures, slow calls; for a retry budget:
/// requests, retries, unused).
pub type Lanes = [u32; 3];

/// Counts over the last `span` of time, kept in `buckets` buckets of `span / buckets` each.
///
/// An event counts from the moment it is added until its bucket falls out of the span; so the
/// window covers between `span - bucket` and `span` of history.
///
/// ```
/// use resile::window::{TimeWindow, Outcome};
/// use std::time::Duration;
/// let w = TimeWindow::new(Duration::from_secs(10), 10).unwrap();
/// w.record(0, Outcome::Failure);
/// assert_eq!(w.tally(5_000_000_000).failures, 1);
/// assert_eq!(w.tally(10_000_000_000).failures, 0); // aged out
/// ```
#[derive(Debug)]
pub struct TimeWindow {
    bucket_nanos: u64,
    inner: Mutex<Vec<(u64, Lanes)>>,
}

impl TimeWindow {
    /// The largest number of buckets.
    pub const MAX_BUCKETS: u32 = 1024;
    /// The largest count a lane holds over the whole window; adds past it saturate.
    pub const MAX_LANE: u32 = (1 << 21) - 1;

    /// A window of `span` in `buckets` buckets; `span` must divide into whole nanosecond buckets.
    pub fn new(span: Duration, buckets: u32) -> Result<Self, ConfigError> {
        if buckets == 0 || buckets > Self::MAX_BUCKETS {
            return Err(ConfigError::new(
                "buckets",
                buckets,
                format!("1..={}", Self::MAX_BUCKETS),
            ));
        }
        let span_n = crate::clock::duration_to_nanos(span);
        if span_n == 0 || span_n % u64::from(buckets) != 0 {
            return Err(ConfigError::new(
                "window",
                span,
                "a non-zero span that divides into whole-nanosecond buckets",
            ));
        }
        Ok(Self {
            bucket_nanos: span_n / u64::from(buckets),
            inner: Mutex::new(vec![(u64::MAX, [0; 3]); buckets as usize]),
        })
    }

    fn totals_locked(&self, v: &[(u64, Lanes)], epoch: u64) -> Lanes {
        let n = v.len() as u64;
        let mut t = [0u32; 3];
        for (e, l) in v {
            if *e != u64::MAX && *e <= epoch && epoch - *e < n {
                for (ti, li) in t.iter_mut().zip(l) {
                    *ti = ti.saturating_add(*li).min(Self::MAX_LANE);
                }
            }
        }
        t
    }

    /// Adds `delta` at time `now`; returns the totals over the span ending at `now`.
    pub fn add(&self, now: u64, delta: Lanes) -> Lanes {
        match self.try_add(now, delta, |_| true) {
            Ok(t) | Err(t) => t,
        }
    }

    /// Adds `delta` at `now` only if `admit(totals before the add)` holds, in one atomic step;
    /// `Ok(totals after)` or `Err(totals unchanged)`.
    pub fn try_add(
        &self,
        now: u64,
        delta: Lanes,
        admit: impl Fn(Lanes) -> bool,
    ) -> Result<Lanes, Lanes> {
        let epoch = now / self.bucket_nanos;
        let mut v = lock(&self.inner);
        let before = self.totals_locked(&v, epoch);
        if !admit(before) {
            return Err(before);
        }
        let idx = (epoch % v.len() as u64) as usize;
        if v[idx].0 != epoch {
            v[idx] = (epoch, [0; 3]);
        }
        for (b, d) in v[idx].1.iter_mut().zip(delta) {
            *b = b.saturating_add(d).min(Self::MAX_LANE);
        }
        Ok(self.totals_locked(&v, epoch))
    }

    /// Records one call outcome at `now`; returns the totals just after.
    pub fn record(&self, now: u64, outcome: Outcome) -> Tally {
        self.add(now, outcome.tally().into()).into()
    }

    /// The totals over the span ending at `now`, as a breaker reads them.
    pub fn tally(&self, now: u64) -> Tally {
        self.totals(now).into()
    }

    /// The totals over the span ending at `now`.
    pub fn totals(&self, now: u64) -> Lanes {
        let v = lock(&self.inner);
        self.totals_locked(&v, now / self.bucket_nanos)
    }

    /// Empties the window.
    pub fn reset(&self) {
        let mut v = lock(&self.inner);
        v.iter_mut().for_each(|b| *b = (u64::MAX, [0; 3]));
    }
}
