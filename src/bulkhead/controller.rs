//! The adaptive limit's controller: striped per-window accumulators and the window word whose
//! CAS picks the one caller that closes a window.
//!
//! # Accumulators
//!
//! ```text
//! lanes: StripedCounters<6>, per stripe:
//!   [SAMPLES]    reports with an RTT (successes and drops), packed:  one CAS (see below)
//!                  63 ............... 24  23 ...... 0
//!                [ RTT sum, ns (40 bits) ][ count (24) ]
//!   [COUNT_WIDE] reports spilled from SAMPLES       fetch_add
//!   [SUM_WIDE]   their RTTs (ns)                    fetch_add
//!   [RTT_MIN]    u64::MAX - rtt of a success: fetch_max, if above the lane  (zeroed: none)
//!   [DROPS]      drops              fetch_add 1
//!   [PEAK]       in flight + 1      fetch_max, if above the lane  (0: no report)
//! ```
//!
//! A report is one CAS on its stripe's `SAMPLES` word ([`pack_sample`], a pure function), which
//! adds one to the count and its RTT to the sum (a drop adds one to `DROPS` as well). When
//! either field would overflow, the CAS instead restarts the word from this report alone, and
//! the reporter adds the word's old fields to the wide lanes; an RTT too long for the field goes
//! to the wide lanes directly. So no field ever wraps, and a success costs one RMW rather than
//! one per field.
//!
//! A report touches only its own thread's stripe: plain RMWs, no lock, no allocation; a max
//! lane is loaded first and raised only by a report above it. The closer
//! takes each lane with one `swap(0)` per stripe. A report racing the close may land some lanes
//! in the closing window and the rest in the next (its count in one, its minimum RTT in the
//! other; a spill's old fields in the next), but every add lands in exactly one window: none is
//! counted twice and none is lost.
//!
//! # The window word
//!
//! ```text
//!    63 ........................................ 1      0
//! [ deadline: clock nanos when the window may close ][CLOSING]
//! ```
//!
//! | CLOSING | now vs deadline | meaning                                                   |
//! |---------|-----------------|-----------------------------------------------------------|
//! | 0       | `<`             | open: reports accumulate                                  |
//! | 0       | `>=`            | due: the next report CASes `CLOSING` in                   |
//! | 1       | any             | closing: its winner alone reads the lanes and the algorithm |
//!
//! The winner of the CAS that sets `CLOSING` takes the lanes; with fewer than `min_samples`
//! reports it leaves the lanes untouched and reopens the same window;
//! otherwise it takes them, runs the algorithm, CASes the new limit into the bulkhead's word,
//! and stores the next deadline with `CLOSING` clear. The algorithm's state, the no-load RTT and
//! the window counters are written only by that winner; the algorithm sits behind a lock that
//! only the winner takes, so it is never contended (and needs no `unsafe`).
//!
//! # Orderings
//!
//! - Report RMWs on the lanes: `Relaxed` (see [`crate::counter`]): they carry no data but
//!   themselves, and each is an RMW, so the closer's swaps see each one before or after.
//! - A max lane's load before its `fetch_max`: `Relaxed`: a value at least the report's, read
//!   before the closer's swap, is what an RMW at that point would have left (the report's max
//!   in the closing window); read after it, the report raises the next window's lane.
//! - The due check's load of the window word: `Relaxed`: a stale value only delays the close to
//!   a later report, or makes its CAS fail.
//! - The closing CAS: `Acquire` on success, pairing with the previous winner's `Release` reopen,
//!   so that winner's metric writes happen-before this winner's (the algorithm's lock orders its
//!   own state);
//!   `Relaxed` on failure (the loser does nothing).
//! - The reopen store: `Release`, for the next winner's `Acquire`.
//! - The limit's CAS into the bulkhead's word: `AcqRel`, as `Bulkhead::set_limit`.
//! - Metric stores and loads (no-load RTT, drops, windows): `Relaxed`: snapshots.

use super::adaptive::{LimitAlgorithm, LimitChange, Unreported, WindowSummary};
use crate::classify::Verdict;
use crate::counter::StripedCounters;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use std::fmt;
use std::sync::Arc as StdArc;
use std::time::Duration;

const SAMPLES: usize = 0;
const COUNT_WIDE: usize = 1;
const SUM_WIDE: usize = 2;
const RTT_MIN: usize = 3;
const DROPS: usize = 4;
const PEAK: usize = 5;

/// The `SAMPLES` word's count field: its low bits.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The largest RTT sum the word holds (its high 40 bits).
const SUM_MAX: u64 = u64::MAX >> COUNT_BITS;

/// The `SAMPLES` word after one more report of `rtt` nanoseconds (`rtt <= SUM_MAX`), and the
/// `(count, rtt sum)` to spill to the wide lanes: the word's old fields when either would
/// overflow (the word then holds this report alone), else nothing.
#[inline]
const fn pack_sample(word: u64, rtt: u64) -> (u64, Option<(u64, u64)>) {
    let (count, sum) = unpack_samples(word);
    if count < COUNT_MASK && sum <= SUM_MAX - rtt {
        (((sum + rtt) << COUNT_BITS) | (count + 1), None)
    } else {
        ((rtt << COUNT_BITS) | 1, Some((count, sum)))
    }
}

/// The `(count, rtt sum)` a `SAMPLES` word holds.
#[inline]
const fn unpack_samples(word: u64) -> (u64, u64) {
    (word & COUNT_MASK, word >> COUNT_BITS)
}

/// The window word's closing flag.
const CLOSING: u64 = 1;
/// The latest deadline the word holds.
const MAX_DEADLINE: u64 = u64::MAX >> 1;

/// Raises a max lane to `n`: a load, and the `fetch_max` only when `n` is higher (a new minimum
/// RTT or peak is rare, so most reports skip the RMW). A load that sees a value at least `n`
/// from before the closer's swap is as if this report's max had landed in the closing window,
/// whose max it does not change.
#[inline]
fn raise(lane: &AtomicU64, n: u64) {
    if lane.load(Ordering::Relaxed) < n {
        lane.fetch_max(n, Ordering::Relaxed);
    }
}

/// The window word for a window ending at `deadline`, open.
#[inline]
const fn open(deadline: u64) -> u64 {
    (if deadline < MAX_DEADLINE {
        deadline
    } else {
        MAX_DEADLINE
    }) << 1
}

/// The deadline in a window word.
#[inline]
const fn deadline(w: u64) -> u64 {
    w >> 1
}

/// Whether a window word is open and due at `now`.
#[inline]
pub(crate) const fn is_due(w: u64, now: u64) -> bool {
    w & CLOSING == 0 && now >= deadline(w)
}

/// A report's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Dropped,
    Ignored,
}

/// A classified result as a report: a failure, for a concurrency limit, is a drop.
impl From<Verdict> for Outcome {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Success => Outcome::Success,
            Verdict::Failure => Outcome::Dropped,
            Verdict::Ignore => Outcome::Ignored,
        }
    }
}

impl From<Unreported> for Outcome {
    fn from(u: Unreported) -> Self {
        match u {
            Unreported::Success => Outcome::Success,
            Unreported::Dropped => Outcome::Dropped,
            Unreported::Ignored => Outcome::Ignored,
        }
    }
}

/// The hook given every closed window's [`LimitChange`].
pub(crate) type Hook = StdArc<dyn Fn(LimitChange) + Send + Sync>;

/// Makes a fresh algorithm for each bulkhead a builder builds (the builder stays `Clone`).
pub(crate) trait AlgorithmFactory: fmt::Debug + Send + Sync {
    fn make(&self) -> Box<dyn LimitAlgorithm>;
    fn initial_limit(&self) -> u32;
    fn validate(&self) -> Result<(), crate::error::ConfigError>;
}

impl<A: LimitAlgorithm + Clone + Sync> AlgorithmFactory for A {
    fn make(&self) -> Box<dyn LimitAlgorithm> {
        Box::new(self.clone())
    }

    fn initial_limit(&self) -> u32 {
        LimitAlgorithm::initial_limit(self)
    }

    fn validate(&self) -> Result<(), crate::error::ConfigError> {
        LimitAlgorithm::validate(self)
    }
}

/// The adaptive settings a builder validated.
#[derive(Clone)]
pub(crate) struct Settings {
    /// None: a static bulkhead.
    pub(crate) algorithm: Option<StdArc<dyn AlgorithmFactory>>,
    pub(crate) window: Duration,
    pub(crate) min_samples: u32,
    pub(crate) unreported: Unreported,
    pub(crate) hook: Option<Hook>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            algorithm: None,
            window: Duration::from_secs(1),
            min_samples: 10,
            unreported: Unreported::Success,
            hook: None,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adaptive")
            .field("algorithm", &self.algorithm)
            .field("window", &self.window)
            .field("min_samples", &self.min_samples)
            .field("unreported", &self.unreported)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

/// A closed window, for the caller to apply: the summary and the algorithm's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Closed {
    pub(crate) summary: WindowSummary,
    pub(crate) to: u32,
    pub(crate) no_load_rtt: Option<u64>,
}

/// The controller. See the [module docs](self).
pub(crate) struct Controller {
    lanes: StripedCounters<6>,
    window: AtomicU64,
    window_nanos: u64,
    min_samples: u64,
    pub(crate) unreported: Outcome,
    /// Locked only by the window's closer (see the module docs), so the lock is never contended
    /// and no request's path takes it.
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    /// The algorithm's no-load RTT after the last closed window (0: none).
    no_load_rtt: AtomicU64,
    /// Drops in closed windows.
    drops: AtomicU64,
    /// Windows closed.
    windows: AtomicU64,
    pub(crate) hook: Option<Hook>,
}

impl Controller {
    /// A controller running `algorithm`, whose first window ends `window` after `now`.
    pub(crate) fn new(s: &Settings, algorithm: Box<dyn LimitAlgorithm>, now: u64) -> Self {
        let window_nanos = crate::clock::duration_to_nanos(s.window);
        Self {
            lanes: StripedCounters::new(),
            window: AtomicU64::new(open(now.saturating_add(window_nanos))),
            window_nanos,
            min_samples: u64::from(s.min_samples),
            unreported: s.unreported.into(),
            algorithm: Mutex::new(algorithm),
            no_load_rtt: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            hook: s.hook.clone(),
        }
    }

    /// Records a call of `rtt` nanoseconds that ended with `in_flight` calls in flight (itself
    /// counted): a success, or a drop when `dropped` (a drop's RTT is a sample too, as Netflix's
    /// windowed limits count it: a call given up after its timeout shows the latency that made
    /// it fail).
    #[inline]
    pub(crate) fn record(&self, rtt: u64, in_flight: u32, dropped: bool) {
        let lanes = self.lanes.mine();
        if rtt > SUM_MAX {
            lanes[COUNT_WIDE].fetch_add(1, Ordering::Relaxed);
            lanes[SUM_WIDE].fetch_add(rtt, Ordering::Relaxed);
        } else {
            let word = &lanes[SAMPLES];
            let mut cur = word.load(Ordering::Relaxed);
            loop {
                let (next, spill) = pack_sample(cur, rtt);
                match word.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        if let Some((count, sum)) = spill {
                            lanes[COUNT_WIDE].fetch_add(count, Ordering::Relaxed);
                            lanes[SUM_WIDE].fetch_add(sum, Ordering::Relaxed);
                        }
                        break;
                    }
                    Err(seen) => cur = seen,
                }
            }
        }
        if dropped {
            lanes[DROPS].fetch_add(1, Ordering::Relaxed);
        } else {
            raise(&lanes[RTT_MIN], u64::MAX - rtt);
        }
        raise(&lanes[PEAK], u64::from(in_flight) + 1);
    }

    /// Whether the window is due at `now` (one `Relaxed` load).
    #[inline]
    pub(crate) fn due(&self, now: u64) -> bool {
        is_due(self.window.load(Ordering::Relaxed), now)
    }

    /// Tries to close the window at `now`, the limit being `limit`. `None` unless this caller
    /// won the close and the window had enough reports; then the window is reopened, ending
    /// `window` after `now`, and the caller applies [`Closed::to`].
    pub(crate) fn close(&self, now: u64, limit: u32) -> Option<Closed> {
        let w = self.window.load(Ordering::Relaxed);
        if !is_due(w, now) {
            return None;
        }
        if self
            .window
            .compare_exchange(w, w | CLOSING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // This caller alone is past here until the window word is stored again. The guard
        // reopens the window even if the algorithm panics.
        let mut reopen = Reopen {
            window: &self.window,
            to: w,
        };
        if self.reports() < self.min_samples {
            return None; // reopens the same window: the reports stay for the next try
        }
        let summary = self.take();
        let (to, no_load_rtt) = {
            // The closing CAS above makes this caller the lock's only taker until `reopen`
            // stores the window word (see the module docs).
            let mut a = lock(&self.algorithm);
            (
                a.update(limit, &summary).clamp(1, super::MAX_LIMIT),
                a.no_load_rtt(),
            )
        };
        self.no_load_rtt
            .store(no_load_rtt.unwrap_or(0), Ordering::Relaxed);
        self.drops.fetch_add(summary.drops, Ordering::Relaxed);
        self.windows.fetch_add(1, Ordering::Relaxed);
        reopen.to = open(now.saturating_add(self.window_nanos));
        drop(reopen);
        Some(Closed {
            summary,
            to,
            no_load_rtt,
        })
    }

    /// The reports in the open window (each lane read on its own: exact once no report is being
    /// recorded).
    pub(crate) fn reports(&self) -> u64 {
        let packed = self
            .lanes
            .each(SAMPLES)
            .map(|w| unpack_samples(w).0)
            .fold(0, u64::saturating_add);
        packed.saturating_add(self.lanes.sum_of(COUNT_WIDE))
    }

    /// Takes and zeroes the lanes (the closer only).
    fn take(&self) -> WindowSummary {
        let (mut count, mut rtt_sum) = (0u64, 0u64);
        for w in self.lanes.take_each(SAMPLES) {
            let (c, s) = unpack_samples(w);
            count = count.saturating_add(c);
            rtt_sum = rtt_sum.saturating_add(s);
        }
        count = count.saturating_add(self.lanes.take_sum_of(COUNT_WIDE));
        rtt_sum = rtt_sum.saturating_add(self.lanes.take_sum_of(SUM_WIDE));
        let min_inv = self.lanes.take_max_of(RTT_MIN);
        let drops = self.lanes.take_sum_of(DROPS);
        let peak = self.lanes.take_max_of(PEAK);
        // A success's lanes may be split by a close that ran between its RMWs: its count taken
        // here and its minimum with the window before. Successes with no minimum of their own
        // take the window's mean, never a minimum of 0 they did not measure.
        let rtt_min = match min_inv {
            0 if count > drops => rtt_sum / count,
            0 => 0,
            inv => u64::MAX - inv,
        };
        WindowSummary {
            count,
            rtt_sum,
            rtt_min,
            drops,
            max_in_flight: u32::try_from(peak.saturating_sub(1)).unwrap_or(u32::MAX),
        }
    }

    /// The no-load RTT after the last closed window.
    pub(crate) fn no_load_rtt(&self) -> Option<Duration> {
        match self.no_load_rtt.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Drops counted in closed windows.
    pub(crate) fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    /// Windows closed.
    pub(crate) fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }
}

/// Stores the window word when dropped: the closer's exit, also on a panic.
struct Reopen<'a> {
    window: &'a AtomicU64,
    to: u64,
}

impl Drop for Reopen<'_> {
    fn drop(&mut self) {
        self.window.store(self.to, Ordering::Release);
    }
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("window_nanos", &self.window_nanos)
            .field("min_samples", &self.min_samples)
            .field("windows", &self.windows())
            .finish()
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::bulkhead::adaptive::Aimd;

    fn settings(min_samples: u32) -> Settings {
        Settings {
            window: Duration::from_nanos(100),
            min_samples,
            ..Settings::default()
        }
    }

    fn controller(min_samples: u32) -> Controller {
        Controller::new(
            &settings(min_samples),
            Box::new(Aimd::default().min_limit(1)),
            0,
        )
    }

    #[test]
    fn window_word_fields() {
        assert!(!is_due(open(10), 9));
        assert!(is_due(open(10), 10));
        assert!(!is_due(open(10) | CLOSING, 11));
        assert_eq!(deadline(open(u64::MAX)), MAX_DEADLINE);
    }

    #[test]
    fn a_window_sums_its_reports_and_closes_once() {
        let c = controller(3);
        c.record(30, 4, false);
        c.record(10, 9, false);
        c.record(50, 2, true);
        assert!(c.close(99, 20).is_none(), "not due");
        let closed = c.close(100, 20).unwrap();
        assert_eq!(
            closed.summary,
            WindowSummary {
                count: 3,
                rtt_sum: 90,
                rtt_min: 10,
                drops: 1,
                max_in_flight: 9
            }
        );
        assert_eq!(closed.to, 18);
        assert!(c.close(150, 18).is_none(), "the next window ends at 200");
        assert_eq!((c.drops(), c.windows()), (1, 1));
    }

    #[test]
    fn reports_whose_minimum_went_to_the_window_before_take_their_mean() {
        let c = controller(1);
        // Reports split by a close: their count and sum here, their minimum taken already.
        c.lanes.mine()[SAMPLES].store((50 << COUNT_BITS) | 2, Ordering::Relaxed);
        let closed = c.close(100, 20).unwrap();
        assert_eq!((closed.summary.count, closed.summary.rtt_min), (2, 25));
    }

    #[test]
    fn a_report_adds_to_both_packed_fields_and_spills_before_either_overflows() {
        assert_eq!(pack_sample(0, 7), ((7 << COUNT_BITS) | 1, None));
        let w = (100 << COUNT_BITS) | 3;
        assert_eq!(pack_sample(w, 5), ((105 << COUNT_BITS) | 4, None));
        // The count is full: the old fields spill, the word holds this report alone.
        let full = (9 << COUNT_BITS) | COUNT_MASK;
        assert_eq!(
            pack_sample(full, 5),
            ((5 << COUNT_BITS) | 1, Some((COUNT_MASK, 9)))
        );
        // The sum would pass its field.
        let high = ((SUM_MAX - 4) << COUNT_BITS) | 2;
        assert_eq!(pack_sample(high, 4).1, None);
        assert_eq!(
            pack_sample(high, 5),
            ((5 << COUNT_BITS) | 1, Some((2, SUM_MAX - 4)))
        );
    }

    #[test]
    fn spilled_and_long_reports_are_counted_whole() {
        let c = controller(1);
        let lanes = c.lanes.mine();
        lanes[SAMPLES].store(((SUM_MAX - 1) << COUNT_BITS) | 1, Ordering::Relaxed);
        c.record(10, 1, false); // spills the word's one report
        c.record(SUM_MAX + 1, 1, false); // too long for the field
        let closed = c.close(100, 20).unwrap();
        assert_eq!(closed.summary.count, 3);
        assert_eq!(
            closed.summary.rtt_sum,
            (SUM_MAX - 1).saturating_add(10).saturating_add(SUM_MAX + 1)
        );
        assert_eq!(closed.summary.rtt_min, 10);
    }

    #[test]
    fn too_few_reports_keep_the_window_open() {
        let c = controller(2);
        c.record(5, 0, false);
        assert!(c.close(100, 20).is_none());
        assert!(c.due(100), "reopened, same deadline");
        c.record(7, 0, false);
        let closed = c.close(101, 20).unwrap();
        assert_eq!((closed.summary.count, closed.summary.rtt_min), (2, 5));
        assert_eq!(closed.summary.max_in_flight, 0);
    }
}
