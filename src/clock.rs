//! Time, injected.
//!
//! Every primitive reads time through a [`Clock`]: a monotonic count of nanoseconds since the
//! clock's own epoch. Nanoseconds in a `u64` last 584 years, so a reading never wraps in practice;
//! primitives that pack a timestamp into a narrower field document how that field survives
//! wrap-around.
//!
//! - [`SystemClock`] (the default): precise, backed by [`std::time::Instant`].
//! - [`CoarseClock`]: `CLOCK_MONOTONIC_COARSE` on Linux, Android and FreeBSD, several times
//!   cheaper at a resolution of one scheduler tick (1 to 4 ms), read through rustix, which calls
//!   the kernel's vDSO directly; elsewhere it falls back to [`SystemClock`]. Good for windows whose
//!   buckets are much longer than a tick.
//! - [`RecentClock`]: one atomic load a read, at the resolution of whoever updates it:
//!   a ticker thread it starts ([`RecentClock::with_ticker`], say every millisecond) or the
//!   caller's own event loop ([`RecentClock::update`]). The choice for the hottest paths, where a
//!   `CoarseClock` read would be most of a call's cost: the cached time of nginx and of
//!   Seastar's `lowres_clock`.
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
#[cfg(not(resile_loom))]
use crate::sync::{StdArc, StdWeak};
#[cfg(not(resile_loom))]
use crossbeam_utils::CachePadded;
use std::fmt;
#[cfg(not(resile_loom))]
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A monotonic source of time: nanoseconds since the clock's own epoch.
///
/// Readings never decrease. Implementations must be cheap to call and safe to share between
/// threads; primitives hold their clock by value, so a shared clock is a cheap handle (as
/// [`ManualClock`] is).
///
/// Implement it to drive primitives from a time source you own, such as an event loop's cached
/// tick, and pass it to a builder's `clock`:
///
/// ```
/// use resile::{budget::RetryBudget, clock::Clock};
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering::Relaxed}};
///
/// /// Milliseconds, stored by the caller's event loop once a turn.
/// struct LoopTime(Arc<AtomicU64>);
/// impl Clock for LoopTime {
///     fn now(&self) -> u64 { self.0.load(Relaxed) * 1_000_000 }
/// }
/// let millis = Arc::new(AtomicU64::new(0));
/// let builder = RetryBudget::builder().max_retries(1).window(std::time::Duration::from_secs(1));
/// let budget = builder.clock(LoopTime(millis.clone())).build()?;
/// assert!(budget.try_withdraw().is_ok() && budget.try_withdraw().is_err());
/// millis.store(1_100, Relaxed); // 1.1 s later, by the loop's time
/// assert_eq!(budget.clock().now(), 1_100_000_000);
/// // The spent retry aged out: its bucket (the first of ten, of 100 ms) is a whole window old.
/// assert!(budget.try_withdraw().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

/// A cheap, coarse monotonic clock: `CLOCK_MONOTONIC_COARSE` on Linux, Android and FreeBSD
/// (resolution one scheduler tick, 1 to 4 ms), [`SystemClock`] elsewhere. Its epoch is the moment
/// it was created.
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
    source: Source,
}

/// What a [`CoarseClock`] reads.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// `CLOCK_MONOTONIC_COARSE`, which read `epoch` nanoseconds at creation.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    Coarse { epoch: u64 },
    /// The precise clock: on targets without a coarse one, or where reading it failed.
    Precise(SystemClock),
}

/// `CLOCK_MONOTONIC_COARSE` through rustix, which calls the vDSO's `clock_gettime` (Linux on
/// x86, x86_64, arm, aarch64 and riscv64), falling back to the system call where there is no
/// vDSO, or the C library's (Android, FreeBSD, other Linux architectures, and under miri).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
mod coarse {
    use rustix::time::{ClockId, DynamicClockId, Timespec, clock_gettime, clock_gettime_dynamic};

    /// One read that reports failure (a kernel built without the clock, a sandbox that refuses
    /// the call) instead of panicking, as [`read`] would.
    pub(super) fn probe() -> Option<u64> {
        clock_gettime_dynamic(DynamicClockId::Known(ClockId::MonotonicCoarse))
            .ok()
            .map(nanos)
    }

    /// A read, for a clock that [`probe`] has read once: the same call for the same clock, so it
    /// succeeds too (rustix panics if it ever does not).
    #[inline]
    pub(super) fn read() -> u64 {
        nanos(clock_gettime(ClockId::MonotonicCoarse))
    }

    /// A monotonic reading is never negative, and `tv_nsec` is below one second.
    #[inline]
    fn nanos(ts: Timespec) -> u64 {
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }
}

impl CoarseClock {
    /// A coarse clock whose epoch is now.
    ///
    /// It reads `CLOCK_MONOTONIC_COARSE` once, for its epoch; if that read fails, the clock reads
    /// the precise [`SystemClock`] instead, for its whole life. Every later read is then of a
    /// clock already read once, and does not fail.
    pub fn new() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        if let Some(epoch) = coarse::probe() {
            return Self {
                source: Source::Coarse { epoch },
            };
        }
        Self {
            source: Source::Precise(SystemClock::new()),
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
        match self.source {
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
            Source::Coarse { epoch } => coarse::read().saturating_sub(epoch),
            Source::Precise(clock) => clock.now(),
        }
    }
}

/// A clock whose read is one atomic load: it returns the time last stored by
/// [`update`](Self::update), which a ticker thread calls every `resolution`
/// ([`with_ticker`](Self::with_ticker)) or the caller's event loop calls once a turn
/// ([`new`](Self::new), as nginx caches its time). Its epoch is the moment it was created; clones
/// share one reading.
///
/// A read costs what a `Relaxed` load of a shared, rarely written cache line costs, where
/// [`CoarseClock`] makes a vDSO call and [`SystemClock`] reads the TSC (BENCHMARKS.md has the
/// figures). Its resolution is the update interval: a breaker
/// measuring slow calls, or a window with buckets, needs an interval well below the threshold or
/// bucket (1 ms against one-second buckets, say). A clock built by `new` stands still until
/// `update` is called: a breaker would stay open for ever, so use it only from a loop that updates
/// it.
///
/// The ticker thread (named `resile-recent-clock`) holds the clock weakly: it ends when the last
/// clone is dropped. It uses no async runtime.
///
/// ```
/// use resile::clock::{Clock, RecentClock};
/// use std::time::Duration;
///
/// // Updated by the caller's own loop:
/// let clock = RecentClock::new();
/// assert_eq!(clock.now(), 0);
/// clock.update();
/// let t = clock.now();
/// assert_eq!(clock.now(), t); // no time passes between updates
///
/// // Updated every millisecond by a ticker thread, for as long as a clone lives:
/// let ticking = RecentClock::with_ticker(Duration::from_millis(1))?;
/// let breaker = resile::breaker::CircuitBreaker::builder().clock(ticking.clone()).build()?;
/// # assert!(breaker.try_acquire().is_ok());
///
/// // An interval out of range is an `InvalidInput` error that names the field:
/// let e = RecentClock::with_ticker(Duration::ZERO).unwrap_err();
/// assert!(e.to_string().contains("`resolution`"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(resile_loom))]
#[derive(Clone)]
pub struct RecentClock {
    shared: StdArc<Recent>,
}

#[cfg(not(resile_loom))]
struct Recent {
    /// Nanoseconds since `origin` at the last update. Only grows (`fetch_max`). Read and written
    /// `Relaxed`: the reading is a value, not a publication (as for [`ManualClock`]); each
    /// location's modification order alone makes successive reads by one thread never go back.
    nanos: CachePadded<AtomicU64>,
    origin: Instant,
    /// The ticker thread, if any: unparked on drop so that it ends at once.
    ticker: OnceLock<std::thread::Thread>,
}

#[cfg(not(resile_loom))]
impl Drop for Recent {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.get() {
            t.unpark();
        }
    }
}

#[cfg(not(resile_loom))]
impl RecentClock {
    /// The shortest ticker interval [`with_ticker`](Self::with_ticker) accepts.
    pub const MIN_RESOLUTION: Duration = Duration::from_micros(100);
    /// The longest ticker interval [`with_ticker`](Self::with_ticker) accepts.
    pub const MAX_RESOLUTION: Duration = Duration::from_secs(1);

    /// A clock reading 0 that moves only when [`update`](Self::update) is called.
    pub fn new() -> Self {
        Self {
            shared: StdArc::new(Recent {
                nanos: CachePadded::new(AtomicU64::new(0)),
                origin: Instant::now(),
                ticker: OnceLock::new(),
            }),
        }
    }

    /// A clock updated every `resolution` by a ticker thread that lives as long as the clock (any
    /// clone of it).
    ///
    /// Each call starts its own thread: make one clock and clone it into every primitive. A
    /// process that forks keeps only the forking thread, so a clock made before `fork` stands
    /// still in the child: make it after forking (in each worker), or drive it with
    /// [`update`](Self::update).
    ///
    /// # Errors
    /// An [`InvalidInput`](std::io::ErrorKind::InvalidInput) error wrapping a
    /// [`ConfigError`](crate::error::ConfigError) for `resolution` when it is outside
    /// [`MIN_RESOLUTION`](Self::MIN_RESOLUTION)`..=`[`MAX_RESOLUTION`](Self::MAX_RESOLUTION);
    /// the operating system's error when the thread cannot be started.
    pub fn with_ticker(resolution: Duration) -> std::io::Result<Self> {
        if !(Self::MIN_RESOLUTION..=Self::MAX_RESOLUTION).contains(&resolution) {
            let e = crate::error::ConfigError::new("resolution", resolution, "100µs..=1s");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
        }
        let clock = Self::new();
        clock.shared.update();
        let ticker = spawn_ticker(StdArc::downgrade(&clock.shared), resolution)?;
        // A fresh `OnceLock`: this set is the first and cannot fail.
        let _ = clock.shared.ticker.set(ticker.thread().clone());
        Ok(clock)
    }

    /// Stores the time now (a precise [`Instant`] read) as the reading, unless a later one is
    /// already stored: safe to call from any number of threads.
    pub fn update(&self) {
        self.shared.update();
    }
}

#[cfg(not(resile_loom))]
impl Recent {
    fn update(&self) {
        let now = duration_to_nanos(self.origin.elapsed());
        self.nanos.fetch_max(now, Ordering::Relaxed);
    }
}

/// Starts the thread that updates `clock` every `every` until the clock is gone.
#[cfg(not(resile_loom))]
fn spawn_ticker(
    clock: StdWeak<Recent>,
    every: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("resile-recent-clock".into())
        .spawn(move || {
            loop {
                // Woken early (spuriously, or by the clock's drop) it just looks again.
                std::thread::park_timeout(every);
                match clock.upgrade() {
                    Some(c) => c.update(),
                    None => return,
                }
            }
        })
}

#[cfg(not(resile_loom))]
impl Default for RecentClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(resile_loom))]
impl fmt::Debug for RecentClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecentClock")
            .field("nanos", &self.now())
            .field("ticker", &self.shared.ticker.get().is_some())
            .finish()
    }
}

#[cfg(not(resile_loom))]
impl Clock for RecentClock {
    #[inline]
    fn now(&self) -> u64 {
        self.shared.nanos.load(Ordering::Relaxed)
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

/// A manual clock is also a [`Timer`](crate::timer::Timer) for tests: a sleep moves the clock on
/// by its duration and completes at once, so a retry's backoff or a bulkhead's timed wait runs
/// in no wall time, and the clock then reads as if the sleep had happened.
///
/// ```
/// use resile::clock::{Clock, ManualClock};
/// use resile::timer::Timer;
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// futures::executor::block_on(clock.sleep(Duration::from_secs(3)));
/// clock.blocking_sleep(Duration::from_secs(2));
/// assert_eq!(clock.now(), 5_000_000_000);
/// ```
impl crate::timer::Timer for ManualClock {
    fn sleep(&self, duration: Duration) -> crate::timer::Sleep {
        self.advance(duration);
        crate::timer::Sleep::new(std::future::ready(()))
    }

    fn blocking_sleep(&self, duration: Duration) {
        self.advance(duration);
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

    /// The coarse clock is `CLOCK_MONOTONIC` as of the last tick: read between two precise reads
    /// it is never ahead of the second, and it catches up with the first (within a tick; the
    /// generous bound only turns a clock that stands still into a failure rather than a hang).
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    #[test]
    fn coarse_clock_reads_clock_monotonic_as_of_the_last_tick() {
        use rustix::time::{ClockId, clock_gettime};
        let precise = || {
            let ts = clock_gettime(ClockId::Monotonic);
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        assert!(matches!(CoarseClock::new().source, Source::Coarse { .. }));
        for _ in 0..1000 {
            let coarse = coarse::read();
            let after = precise();
            assert!(coarse <= after, "{coarse} > {after}");
        }
        let before = precise();
        while coarse::read() < before {
            assert!(
                precise() - before < 10_000_000_000,
                "the coarse clock stands still"
            );
            std::hint::spin_loop();
        }
    }

    /// A clock whose coarse read failed at creation reads the precise clock, from its own epoch.
    #[test]
    fn coarse_clock_falls_back_to_the_precise_clock() {
        let system = SystemClock::new();
        let c = CoarseClock {
            source: Source::Precise(system),
        };
        let (mut last, mut last_system) = (0, 0);
        for _ in 0..1000 {
            let t = c.now();
            let s = system.now();
            assert!(t >= last && s >= t && t >= last_system);
            (last, last_system) = (t, s);
        }
    }

    #[test]
    fn recent_clock_moves_only_on_update_and_clones_share_it() {
        let a = RecentClock::new();
        let b = a.clone();
        assert_eq!(a.now(), 0);
        // `origin.elapsed()` may still read 0 ns on a coarse host clock; it never goes back.
        let mut last = 0;
        for _ in 0..1000 {
            a.update();
            let t = b.now();
            assert!(t >= last);
            last = t;
            assert_eq!(a.now(), t, "no time passes between updates");
        }
    }

    #[test]
    fn recent_clock_never_goes_back_under_racing_updates() {
        let updates = if cfg!(miri) { 300 } else { 10_000 };
        let c = RecentClock::new();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..updates {
                        c.update();
                    }
                });
            }
            s.spawn(|| {
                let mut last = 0;
                for _ in 0..2 * updates {
                    let t = c.now();
                    assert!(t >= last, "{t} < {last}");
                    last = t;
                }
            });
        });
    }

    #[test]
    fn recent_clock_ticker_moves_time_and_ends_with_the_clock() {
        let clock = RecentClock::new();
        let ticker = spawn_ticker(
            StdArc::downgrade(&clock.shared),
            RecentClock::MIN_RESOLUTION,
        )
        .unwrap();
        let _ = clock.shared.ticker.set(ticker.thread().clone());
        // Nobody but the ticker updates this clock: the reading moves only through it.
        while clock.now() == 0 {
            std::thread::yield_now();
        }
        let seen = clock.now();
        while clock.now() == seen {
            std::thread::yield_now();
        }
        drop(clock);
        // The ticker held the clock weakly, so dropping the last clone ends the thread (join
        // returns); the drop unparked it, so it does not even finish its interval.
        ticker.join().unwrap();
    }

    #[test]
    fn recent_clock_resolution_is_validated() {
        for bad in [
            Duration::ZERO,
            Duration::from_micros(99),
            Duration::from_millis(1001),
        ] {
            let e = RecentClock::with_ticker(bad).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            let inner = e.get_ref().unwrap();
            let config = inner.downcast_ref::<crate::error::ConfigError>().unwrap();
            assert_eq!(config.field(), "resolution");
            assert_eq!(config.allowed(), "100µs..=1s");
        }
        let c = RecentClock::with_ticker(RecentClock::MAX_RESOLUTION).unwrap();
        assert!(format!("{c:?}").contains("ticker: true"));
    }

    #[test]
    fn durations_saturate() {
        assert_eq!(duration_to_nanos(Duration::MAX), u64::MAX);
        assert_eq!(duration_to_nanos(Duration::from_micros(3)), 3_000);
    }
}
