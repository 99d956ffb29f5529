//! Time, injected.
//!
//! Every primitive reads time through a [`Clock`]: a monotonic count of nanoseconds since the
//! clock's own epoch. Nanoseconds in a `u64` last 584 years, so a reading never wraps in practice;
//! primitives that pack a timestamp into a narrower field document how that field survives
//! wrap-around.
//!
//! - [`SystemClock`] (the default): precise, backed by [`std::time::Instant`] (about 30 ns a read
//!   on a KVM guest with the `tsc` clocksource).
//! - [`CoarseClock`]: `CLOCK_MONOTONIC_COARSE` on Linux, several times cheaper at a resolution of
//!   one scheduler tick (1 to 4 ms); elsewhere it falls back to [`SystemClock`]. Good for windows
//!   whose buckets are much longer than a tick.
//! - [`ManualClock`]: moved only by [`ManualClock::advance`] and [`ManualClock::set`]; cheap to
//!   clone (clones share one reading), and usable inside loom models. Tests use it and never wall
//!   time.
//!
//! ```
//! use resile::clock::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let seen_by_primitive = clock.clone();
//! clock.advance(Duration::from_millis(250));
//! assert_eq!(seen_by_primitive.now(), 250_000_000);
//! ```

use crate::sync::{Arc, AtomicU64, Ordering};
use std::fmt;
use std::time::{Duration, Instant};

/// A monotonic source of time: nanoseconds since the clock's own epoch.
///
/// Readings never decrease. Implementations must be cheap to call and safe to share between
/// threads; primitives hold their clock by value, so a shared clock is a cheap handle (as
/// [`ManualClock`] is).
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's epoch.
    fn now(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn now(&self) -> u64 {
        (**self).now()
    }
}

/// Converts a duration to clock nanoseconds, saturating at `u64::MAX`.
#[inline]
pub fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The precise default clock, backed by [`Instant`]; its epoch is the moment it was created.
///
/// ```
/// use resile::clock::{Clock, SystemClock};
/// let clock = SystemClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    epoch: Instant,
}

impl SystemClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> u64 {
        duration_to_nanos(self.epoch.elapsed())
    }
}

/// A cheap, coarse monotonic clock: `CLOCK_MONOTONIC_COARSE` on Linux and Android (resolution one
/// scheduler tick, 1 to 4 ms), [`SystemClock`] elsewhere. Its epoch is the moment it was created.
///
/// Use it where the decision needs time only at the granularity of a window bucket, such as a
/// time-based window with one-second buckets.
///
/// ```
/// use resile::clock::{Clock, CoarseClock};
/// let clock = CoarseClock::new();
/// assert!(clock.now() <= clock.now());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct CoarseClock {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    epoch: u64,
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    inner: SystemClock,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn coarse_monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`, and `CLOCK_MONOTONIC_COARSE` is a clock id
    // every Linux kernel since 2.6.32 supports; the call writes only through the pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

impl CoarseClock {
    /// A coarse clock whose epoch is now.
    pub fn new() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            Self {
                epoch: coarse_monotonic_nanos(),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            Self {
                inner: SystemClock::new(),
            }
        }
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now(&self) -> u64 {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            coarse_monotonic_nanos().saturating_sub(self.epoch)
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            self.inner.now()
        }
    }
}

/// A clock moved only by hand: the clock for tests, fuzzing and loom models.
///
/// Clones share one reading, so a test keeps a clone and advances the clock a primitive holds.
/// It starts at 0 (or at any reading through [`ManualClock::starting_at`], for example just below
/// the maximum of a primitive's packed tick field).
///
/// ```
/// use resile::clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::starting_at(u64::MAX - 10);
/// assert_eq!(clock.now(), u64::MAX - 10);
/// clock.set(5);
/// clock.advance(Duration::from_nanos(7));
/// assert_eq!(clock.now(), 12);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock reading 0.
    pub fn new() -> Self {
        Self::starting_at(0)
    }

    /// A manual clock reading `nanos`.
    pub fn starting_at(nanos: u64) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(nanos)),
        }
    }

    /// Moves the clock forward by `d` (saturating at `u64::MAX`).
    pub fn advance(&self, d: Duration) {
        let d = duration_to_nanos(d);
        // Relaxed: the reading is a value, not a publication; any data a test hands across
        // threads along with a time goes through its own synchronisation.
        let mut cur = self.nanos.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(d);
            match self
                .nanos
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Sets the reading to `nanos`. Tests may move it backwards to check that a primitive
    /// tolerates a non-monotonic source; real clocks never do.
    pub fn set(&self, nanos: u64) {
        self.nanos.store(nanos, Ordering::Relaxed);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("nanos", &self.nanos.load(Ordering::Relaxed))
            .finish()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_one_reading() {
        let a = ManualClock::new();
        let b = a.clone();
        a.advance(Duration::from_secs(2));
        assert_eq!(b.now(), 2_000_000_000);
        b.set(7);
        assert_eq!(a.now(), 7);
    }

    #[test]
    fn manual_clock_saturates_instead_of_wrapping() {
        let c = ManualClock::starting_at(u64::MAX - 1);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now(), u64::MAX);
    }

    #[test]
    fn real_clocks_are_monotonic() {
        let s = SystemClock::new();
        let c = CoarseClock::new();
        let (mut ls, mut lc) = (0, 0);
        for _ in 0..1000 {
            let (ns, nc) = (s.now(), c.now());
            assert!(ns >= ls && nc >= lc);
            (ls, lc) = (ns, nc);
        }
    }

    #[test]
    fn durations_saturate() {
        assert_eq!(duration_to_nanos(Duration::MAX), u64::MAX);
        assert_eq!(duration_to_nanos(Duration::from_micros(3)), 3_000);
    }
}
