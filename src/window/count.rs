//! The count-based window: the outcomes of the last N calls.
//!
//! # Implementation details
//!
//! A ring of `size` one-byte slots, a claim cursor and one packed totals word; the cursor and
//! the totals share one padded cache line. Beside them, per thread cell, a count of deferred
//! plain successes:
//!
//! ```text
//! hot.totals: AtomicU64    biased counts of the ring's contents (layout below)
//! hot.cursor: AtomicU64    claims; slot = cursor % size
//! slots:  Box<[AtomicU8]>  EMPTY or an outcome code
//! hot.deferred: OnceLock<TakeCounter>  plain successes recorded but not yet claimed, per
//!               thread cell; allocated by the first deferral
//! ```
//!
//! A record that changes the ring writes both counters, one right after the other: on one line,
//! the second finds the line the first just took, so contended records move one line between
//! cores where two separately padded words moved two (figures in BENCHMARKS.md). The slots stay
//! apart: packed into the same line as 3-bit codes, every record contended on that one line and
//! a slot's write became a CAS loop, which cost more at 1 and 2 threads.
//!
//! `record(o)`:
//! 1. (fast path) if `o` is a plain success and the totals say "full of plain successes", the
//!    new outcome would replace a plain success with a plain success: nothing changes, so return
//!    the totals having written nothing (a healthy breaker writes no shared cache line);
//! 2. take the deferred successes, `k` of them (a load of each thread cell, and a
//!    compare-and-swap of the taken mark of each that holds some), and claim `k + 1` slots at
//!    once: `c = cursor.fetch_add(k + 1)`; claims `c..c + k` are plain successes, claim `c + k`
//!    is `o` (of claims that lap the ring only the last `size` are written: the earlier ones
//!    would be overwritten by the later);
//! 3. for each claim, slot `i = claim % size`: if `slots[i]` already holds the claim's code,
//!    leave it (the claim takes effect at that load, as a swap of the code for itself would);
//!    else `old = slots[i].swap(code)` and add `enc(code) - enc(old)` to a delta;
//! 4. `totals.fetch_add(delta)` (wrapping, field by field; see [`TOTALS_BIAS`]), skipped when
//!    the delta is zero.
//!
//! Every change to a slot is a `swap` whose caller applies exactly `enc(new) - enc(old)` to the
//! totals, so for each slot the deltas telescope to `enc(final contents)`: once every recorder
//! has returned, the totals equal the sum over the ring's contents, whatever the interleaving.
//! Two claims that map to the same slot (the cursor lapped the ring while a recorder was between
//! its claim and its swap) both land in that slot, and the later swap evicts the earlier outcome:
//! under such a race the ring may keep the second-newest of two outcomes for one lap. Nothing is
//! invented and the counts always describe the ring's actual contents.
//!
//! # Deferred successes
//!
//! In a full window a plain success never raises a count: it replaces the oldest outcome, so
//! the failures and slow calls stay or fall and `calls` stays at `size`. A caller that only acts
//! when the totals could cross a threshold (the breaker) records it with
//! [`record_success_lazily`](CountWindow::record_success_lazily): when the totals as they stand
//! (an upper bound on the failures and slow calls the success would leave) cannot cross it, the
//! success adds one to its thread's cell of `deferred` (a plain load and store on a line that
//! thread alone writes, for the first threads; a `fetch_add` on a shared cell for the rest; see
//! [`TakeCounter`]) and claims no slot. The next `record`, `snapshot` or `reset`, or the lazy
//! success that fills its cell to `batch` (`min(size, 64)`), takes every cell's count and claims
//! those successes before its own outcome.
//!
//! A deferred success takes effect when a take claims it, so every decision is exact over the
//! claims before it. A record counts each success deferred before it began (in the
//! happens-before sense) by its own take, by the coherence of that success's cell, and claims
//! it first; the one exception is a success that a racing take holds and has not yet claimed:
//! the record then counts, in that success's place, the older outcome it will evict (at most
//! one per success that take carries, each cell holding fewer than `batch`), just as a record
//! misses the outcome of any recorder still in flight. A single thread's records are exact in
//! every case: its decisions are those of the sequential model, which the fuzz targets check.
//! Successes and records that overlap in time may land in either order, as with an immediate
//! claim; all plain successes are alike, so their order among themselves is no matter. What
//! else a reader can see is stale failures that deferred successes will evict: a lazy
//! success's own totals (which its caller only compares with its threshold) and the ring
//! between takes. The next `record`, `snapshot` or `reset`, or a cell reaching `batch`, claims
//! them; at most `cells x (batch - 1)` deferred successes wait at once (plus one per thread
//! beyond the first sharing a cell).
//!
//! [`reset`](CountWindow::reset) discards the deferred successes, swaps every slot to `EMPTY`
//! and subtracts what it removed, so it keeps the same telescoping invariant while racing
//! recorders.

use super::{Divisor, Outcome, Tally};
use crate::counter::TakeCounter;
use crate::error::ConfigError;
use crate::sync::{AtomicU8, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::fmt;
use std::sync::OnceLock;

/// Bits per field of the totals word.
///
/// ```text
///  63  62          42 41          21 20           0
/// +---+--------------+--------------+--------------+
/// | 0 | slow + BIAS  | fail + BIAS  | calls + BIAS |
/// +---+--------------+--------------+--------------+
/// ```
///
/// | field    | meaning                                   | written by                       |
/// |----------|-------------------------------------------|----------------------------------|
/// | calls    | non-empty slots                           | every recorder (`fetch_add`), `reset` |
/// | failures | slots holding `Failure` / `SlowFailure`   | same                             |
/// | slow     | slots holding `SlowSuccess` / `SlowFailure` | same                           |
///
/// Orderings (the window publishes nothing but its counts):
///
/// - the cursor's `fetch_add`, each slot's `swap`, the totals' `fetch_add`/`fetch_sub`:
///   `Relaxed`; each is one atomic location whose read-modify-writes are totally ordered, so no
///   update is lost.
/// - the totals' loads: `Relaxed`; a reader that needs "the counts after these calls" gets it
///   from whatever synchronised it with those calls (a join, the breaker's own state word).
/// - `deferred` itself: std's `OnceLock` (its `get` an acquire load, its first
///   `get_or_init` a release of the cells it allocated); a take that a deferral happens
///   before finds the cells, and a take that finds none has nothing it must count.
/// - a cell of `deferred`: [`TakeCounter`]'s orderings. Each deferred success is taken by
///   exactly one take, and a take misses no success that returned before it began unless
///   another take already has it.
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const CALLS_SHIFT: u32 = 0;
const FAILURES_SHIFT: u32 = FIELD_BITS;
const SLOW_SHIFT: u32 = 2 * FIELD_BITS;

/// Each field holds `count + BIAS`. Between a recorder's `swap`s and its `fetch_add` the totals
/// may lag the ring, so a field can dip below its true count by up to [`DELTA_SPAN`] per recorder
/// in flight (and rise above by as much). The bias keeps such a dip from borrowing from the field
/// above: it allows 2^20 / 64 = 16,384 concurrent recorders each in the middle of its longest
/// span, and `MAX_SIZE + 2^20 < 2^21` allows them above. Readers
/// subtract the bias and clamp to `0..=size` (failures and slow to `0..=calls`).
const BIAS: u64 = 1 << (FIELD_BITS - 1);
/// The most slot changes a recorder makes before adding their delta to the totals: a claim of a
/// batch of deferred successes adds its delta every `DELTA_SPAN` changed slots, so the totals
/// never lag one recorder by more (see [`BIAS`]).
const DELTA_SPAN: u32 = 64;
/// The most deferred successes a thread cell holds before the lazy success that reaches it claims
/// them all (fewer in a smaller window: `min(size, DEFER_BATCH)`).
const DEFER_BATCH: u32 = 64;
/// The totals word of an empty window.
pub(crate) const TOTALS_BIAS: u64 =
    (BIAS << CALLS_SHIFT) | (BIAS << FAILURES_SHIFT) | (BIAS << SLOW_SHIFT);

/// Slot codes: `EMPTY`, or `PRESENT | FAILED? | SLOW?`.
const EMPTY: u8 = 0;
const PRESENT: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

/// What each slot code contributes to the (unbiased) totals word.
const ENC: [u64; 8] = {
    let mut t = [0u64; 8];
    let mut code = 0;
    while code < 8 {
        if code & PRESENT as usize != 0 {
            t[code] = (1 << CALLS_SHIFT)
                | (((code & FAILED as usize != 0) as u64) << FAILURES_SHIFT)
                | (((code & SLOW as usize != 0) as u64) << SLOW_SHIFT);
        }
        code += 1;
    }
    t
};

#[inline]
const fn code(o: Outcome) -> u8 {
    match o {
        Outcome::Success => PRESENT,
        Outcome::Failure => PRESENT | FAILED,
        Outcome::SlowSuccess => PRESENT | SLOW,
        Outcome::SlowFailure => PRESENT | FAILED | SLOW,
    }
}

/// The outcome a slot code stands for (`None` for an empty slot).
#[inline]
const fn outcome_of(code: u8) -> Option<Outcome> {
    if code & PRESENT == 0 {
        None
    } else {
        Some(Outcome::new(code & FAILED != 0, code & SLOW != 0))
    }
}

/// The change to the totals word when a slot goes from `old` to `new` (wrapping per field).
#[inline]
const fn delta(old: u8, new: u8) -> u64 {
    ENC[(new & 7) as usize].wrapping_sub(ENC[(old & 7) as usize])
}

/// Decodes a (biased) totals word, clamping transient under- and overshoot.
#[inline]
fn decode(word: u64, size: u32) -> Tally {
    let field = |shift: u32, max: u32| -> u32 {
        let biased = (word >> shift) & FIELD_MASK;
        // `max` <= 2^16 < BIAS, so the clamp keeps the result in `0..=max`.
        biased.saturating_sub(BIAS).min(u64::from(max)) as u32
    };
    let calls = field(CALLS_SHIFT, size);
    Tally {
        calls,
        failures: field(FAILURES_SHIFT, calls),
        slow: field(SLOW_SHIFT, calls),
    }
}

/// The totals word of a window full of plain successes.
#[inline]
const fn full_of_successes(size: u32) -> u64 {
    TOTALS_BIAS + ((size as u64) << CALLS_SHIFT)
}

/// The two counters every record that claims a slot writes, on one cache line.
struct Hot {
    /// The packed totals (see [`FIELD_BITS`]); read on every record, written on most.
    totals: AtomicU64,
    /// The claim cursor; never wraps in practice (2^64 claims).
    cursor: AtomicU64,
    /// Plain successes recorded into the full window and not yet claimed, per thread cell;
    /// allocated by the first deferred success (a window that never defers, such as an idle
    /// breaker's, keeps no cells), never freed before the window.
    deferred: OnceLock<TakeCounter>,
}

/// The outcomes of the last `size` calls, with running totals.
///
/// Lock-free: [`record`](Self::record) is (once a success was ever deferred, see the module
/// docs) a load of each thread cell's deferred successes, then at most one `fetch_add` on a
/// cursor, one `swap` of a byte per claimed slot whose outcome changes and one `fetch_add` on
/// the totals; when the evicted outcome equals the new one it is the `fetch_add` on the cursor
/// and a load of the slot, and only a load when it records a plain success into a window
/// already full of plain successes.
///
/// Memory: a byte per slot and the padded line of the cursor and totals, allocated by
/// [`new`](Self::new); the first deferred success allocates a padded line per thread cell
/// (one and a half times twice the CPUs rounded up to a power of two, at most 48: 768 B on
/// 2 CPUs, 6 KiB at the cap), and nothing allocates after.
///
/// Under concurrent recording the totals are exact at every quiescent point (every call has
/// returned, and a `snapshot` taken): they equal the ring's contents. While records are in
/// flight a reader may see a total off by the slots in-flight recorders are changing; reads
/// clamp to `0..=size`.
///
/// ```
/// use resile::window::{CountWindow, Outcome};
/// let w = CountWindow::new(2).unwrap();
/// w.record(Outcome::Failure);
/// w.record(Outcome::Success);
/// let t = w.record(Outcome::Success); // the failure falls out
/// assert_eq!((t.calls, t.failures), (2, 0));
/// ```
pub struct CountWindow {
    /// The totals and the cursor, on one cache line.
    hot: CachePadded<Hot>,
    slots: Box<[AtomicU8]>,
    size: u32,
    /// A thread cell's deferred successes that make a lazy success claim them all.
    batch: u64,
    /// `claim % size` without a `div` instruction.
    per_lap: Divisor,
}

impl CountWindow {
    /// The largest window this type can hold (65,536 slots; the totals' 21-bit fields leave room
    /// for the bias, see the module docs).
    pub const MAX_SIZE: u32 = 1 << 16;

    /// A window of the last `size` calls, `1..=MAX_SIZE`.
    ///
    /// ```
    /// use resile::window::CountWindow;
    /// assert_eq!(CountWindow::new(0).unwrap_err().field(), "window_size");
    /// ```
    pub fn new(size: u32) -> Result<Self, ConfigError> {
        if size == 0 || size > Self::MAX_SIZE {
            return Err(ConfigError::new(
                "window_size",
                size,
                format!("1..={}", Self::MAX_SIZE),
            ));
        }
        Ok(Self {
            hot: CachePadded::new(Hot {
                totals: AtomicU64::new(TOTALS_BIAS),
                cursor: AtomicU64::new(0),
                deferred: OnceLock::new(),
            }),
            slots: (0..size).map(|_| AtomicU8::new(EMPTY)).collect(),
            size,
            batch: u64::from(size.min(DEFER_BATCH)),
            per_lap: Divisor::new(size as u64),
        })
    }

    /// The number of slots.
    #[inline]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Records one outcome, evicting the oldest once full; returns the totals just after.
    #[inline]
    pub fn record(&self, outcome: Outcome) -> Tally {
        if let Outcome::Success = outcome {
            // Relaxed: see the totals' ordering note.
            if self.hot.totals.load(Ordering::Relaxed) == full_of_successes(self.size) {
                // The ring holds only plain successes: replacing the oldest by a plain success
                // changes neither the counts nor (as a multiset) the contents.
                return self.full_of_successes_tally();
            }
        }
        self.claim(self.take_deferred(), Some(code(outcome)))
    }

    internal! {
        /// Records a plain success for a caller that acts on the totals only when `matters` says
        /// they could cross its threshold, as a breaker does; returns totals that are exact when
        /// `matters` held for the totals as they stood, and otherwise those totals.
        ///
        /// In a full window a plain success never raises a count, so the totals before it bound
        /// the totals after it from above: when they do not matter, the success is deferred (a
        /// plain store on this thread's cell, usually; no shared line written) and claimed by the
        /// next record, [`snapshot`](Self::snapshot) or [`reset`](Self::reset), or by the lazy
        /// success that fills its cell (see the module docs).
        #[inline]
        pub fn record_success_lazily(&self, matters: impl FnOnce(&Tally) -> bool) -> Tally {
            self.record_success_deferring(matters).0
        }
    }

    /// [`record_success_lazily`](Self::record_success_lazily), and whether the success was
    /// deferred: then `matters` returned `false` for the totals returned, and the caller need
    /// not ask it again.
    #[inline]
    pub(crate) fn record_success_deferring(
        &self,
        matters: impl FnOnce(&Tally) -> bool,
    ) -> (Tally, bool) {
        // Relaxed: see the totals' ordering note.
        let word = self.hot.totals.load(Ordering::Relaxed);
        if word == full_of_successes(self.size) {
            return (self.full_of_successes_tally(), false);
        }
        let now = decode(word, self.size);
        if now.calls == self.size && !matters(&now) {
            // See the deferred cells' ordering note.
            if self.hot.deferred.get_or_init(TakeCounter::new).add_one() < self.batch {
                return (now, true);
            }
            // This cell is full: claim every cell's successes, this one's among them.
            return (self.claim(self.take_deferred(), None), false);
        }
        (self.claim(self.take_deferred(), Some(PRESENT)), false)
    }

    internal! {
        /// How many slots have been claimed, ever: one per recorded outcome, deferred
        /// successes once a take claims them, none for a plain success into a window full of
        /// plain successes (which writes nothing). For models that check no outcome is lost or
        /// claimed twice.
        pub fn claims(&self) -> u64 {
            // Relaxed: exact once the recorders are quiescent, like the totals.
            self.hot.cursor.load(Ordering::Relaxed)
        }
    }

    /// The totals of a window full of plain successes.
    #[inline]
    fn full_of_successes_tally(&self) -> Tally {
        Tally {
            calls: self.size,
            failures: 0,
            slow: 0,
        }
    }

    /// Takes every thread cell's deferred successes (a load of each, and a compare-and-swap of
    /// the taken mark of each that holds some); the caller claims them. Nothing to take, and no
    /// cell read, while no success was ever deferred.
    #[inline]
    fn take_deferred(&self) -> u64 {
        match self.hot.deferred.get() {
            None => 0,
            Some(cells) => Self::take_cells(cells),
        }
    }

    #[inline(never)]
    fn take_cells(cells: &TakeCounter) -> u64 {
        cells.take()
    }

    /// Claims `successes` plain successes, then `last` (if any), as consecutive claims, and
    /// returns the totals after them.
    #[inline]
    fn claim(&self, successes: u64, last: Option<u8>) -> Tally {
        match (successes, last) {
            (0, None) => self.totals(),
            (0, Some(code)) => self.claim_one(code),
            (k, last) => self.claim_batch(k, last),
        }
    }

    /// Claims one slot for `code`: the common case, with no batch bookkeeping.
    #[inline]
    fn claim_one(&self, code: u8) -> Tally {
        // Relaxed: the cursor only spreads claims over the slots; correctness of the counts rests
        // on each slot's swap, not on the cursor.
        let claim = self.hot.cursor.fetch_add(1, Ordering::Relaxed);
        let i = self.per_lap.div_rem(claim).1 as usize;
        let Some(slot) = self.slots.get(i) else {
            return self.totals(); // unreachable: i < size == slots.len()
        };
        let d = Self::put(slot, code);
        self.add_delta(d)
    }

    /// [`claim`](Self::claim) of `successes > 0` deferred successes, then `last`.
    #[inline(never)]
    fn claim_batch(&self, successes: u64, last: Option<u8>) -> Tally {
        let n = successes + u64::from(last.is_some());
        // Relaxed, as in `claim_one`.
        let first = self.hot.cursor.fetch_add(n, Ordering::Relaxed);
        // Of claims that lap the ring only the last `size` are written: each earlier one's slot
        // is claimed again later in this batch, whose swap would evict it.
        let skip = n.saturating_sub(u64::from(self.size));
        let mut i = self.per_lap.div_rem(first + skip).1 as usize;
        let mut d = 0u64;
        let mut changed = 0u32;
        for claim in skip..n {
            let code = match last {
                Some(c) if claim == n - 1 => c,
                _ => PRESENT,
            };
            let Some(slot) = self.slots.get(i) else {
                break; // unreachable: i < size == slots.len()
            };
            let step = Self::put(slot, code);
            if step != 0 {
                d = d.wrapping_add(step);
                changed += 1;
                if changed == DELTA_SPAN {
                    // Keep the totals' lag behind this recorder within the bias (see `BIAS`).
                    self.hot.totals.fetch_add(d, Ordering::Relaxed);
                    (d, changed) = (0, 0);
                }
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
        self.add_delta(d)
    }

    /// Puts `code` in `slot`; returns the change to the totals. Relaxed, load and swap: each
    /// slot's modification order is all the telescoping argument needs. A slot that already
    /// holds the code is left unwritten: the claim then takes effect at the load, as a swap of
    /// the code for itself would (its delta is zero), so a shared line is only read, not
    /// written, on most records of a window whose contents change rarely.
    #[inline]
    fn put(slot: &AtomicU8, code: u8) -> u64 {
        if slot.load(Ordering::Relaxed) == code {
            return 0;
        }
        // Zero when a racing recorder wrote the same code between the load and the swap.
        delta(slot.swap(code, Ordering::Relaxed), code)
    }

    /// Adds `d` to the totals (nothing when zero) and returns the totals after.
    #[inline]
    fn add_delta(&self, d: u64) -> Tally {
        if d == 0 {
            return self.totals();
        }
        let before = self.hot.totals.fetch_add(d, Ordering::Relaxed);
        decode(before.wrapping_add(d), self.size)
    }

    /// The totals word as it stands, deferred successes not claimed.
    #[inline]
    fn totals(&self) -> Tally {
        decode(self.hot.totals.load(Ordering::Relaxed), self.size)
    }

    /// Whether the totals word as it stands is that of a full ring of plain successes (a
    /// `Relaxed` load: the breaker's fence orders it); deferred successes not claimed, so a
    /// stale failure they will evict still counts.
    #[inline]
    pub(crate) fn is_full_of_successes(&self) -> bool {
        self.hot.totals.load(Ordering::Relaxed) == full_of_successes(self.size)
    }

    /// The current totals, deferred successes claimed first.
    #[inline]
    pub fn snapshot(&self) -> Tally {
        self.claim(self.take_deferred(), None)
    }

    /// The ring's contents, oldest first as far as the cursor tells (for tests and debugging; it
    /// reads every slot, so it is not atomic with concurrent records). Deferred successes are
    /// claimed first.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.snapshot();
        let start = self.hot.cursor.load(Ordering::Relaxed) % u64::from(self.size);
        let n = self.slots.len();
        (0..n)
            .filter_map(|k| {
                let i = (start as usize + k) % n;
                outcome_of(self.slots[i].load(Ordering::Relaxed))
            })
            .collect()
    }

    /// Empties the window, deferred successes included. Outcomes recorded concurrently with a
    /// reset may survive it; the totals still equal the ring's contents once both have returned.
    pub fn reset(&self) {
        self.take_deferred();
        let mut removed = 0u64;
        for slot in self.slots.iter() {
            let old = slot.swap(EMPTY, Ordering::Relaxed);
            removed = removed.wrapping_add(ENC[(old & 7) as usize]);
        }
        self.hot.totals.fetch_sub(removed, Ordering::Relaxed);
    }
}

impl fmt::Debug for CountWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountWindow")
            .field("size", &self.size)
            .field("totals", &self.snapshot())
            .finish()
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::SlowSuccess,
        Outcome::SlowFailure,
    ];

    /// The plain sequential model: the last `size` outcomes.
    struct Model {
        size: usize,
        ring: VecDeque<Outcome>,
    }

    impl Model {
        fn new(size: u32) -> Self {
            Self {
                size: size as usize,
                ring: VecDeque::new(),
            }
        }
        fn record(&mut self, o: Outcome) -> Tally {
            if self.ring.len() == self.size {
                self.ring.pop_front();
            }
            self.ring.push_back(o);
            self.tally()
        }
        fn tally(&self) -> Tally {
            let mut t = Tally::default();
            for o in &self.ring {
                t.calls += 1;
                t.failures += o.is_failure() as u32;
                t.slow += o.is_slow() as u32;
            }
            t
        }
    }

    fn sorted(mut v: Vec<Outcome>) -> Vec<u8> {
        let mut c: Vec<u8> = v.drain(..).map(code).collect();
        c.sort_unstable();
        c
    }

    /// A small deterministic generator (xorshift), so the test needs no dependency.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn matches_sequential_model() {
        // Under miri, which interprets every step, a shorter run and a smaller large window
        // (each step reads the whole ring).
        let (large, steps) = if cfg!(miri) { (100, 120) } else { (1000, 5000) };
        for size in [1, 2, 3, 7, 64, large] {
            let w = CountWindow::new(size).unwrap();
            let mut m = Model::new(size);
            let mut next = rng(u64::from(size));
            for step in 0..steps {
                let r = next();
                if r % 97 == 0 {
                    w.reset();
                    m.ring.clear();
                } else {
                    // Bias towards successes so the fast path runs often.
                    let o = if r % 3 == 0 {
                        ALL[(r >> 8) as usize % 4]
                    } else {
                        Outcome::Success
                    };
                    assert_eq!(w.record(o), m.record(o), "size {size} step {step}");
                }
                assert_eq!(w.snapshot(), m.tally());
                assert_eq!(
                    sorted(w.outcomes()),
                    sorted(m.ring.iter().copied().collect())
                );
            }
        }
    }

    #[test]
    fn lazy_successes_match_the_model_where_they_matter_and_bound_it_elsewhere() {
        let (large, steps) = if cfg!(miri) { (100, 120) } else { (1000, 5000) };
        for size in [1, 2, 3, 7, 64, 65, large] {
            let w = CountWindow::new(size).unwrap();
            let mut m = Model::new(size);
            let mut next = rng(u64::from(size) + 5);
            for step in 0..steps {
                let r = next();
                if r % 211 == 0 {
                    w.reset();
                    m.ring.clear();
                } else if r % 3 == 0 {
                    let o = ALL[(r >> 8) as usize % 4];
                    assert_eq!(w.record(o), m.record(o), "size {size} step {step}");
                } else {
                    // A threshold on the failures, as a breaker's would be.
                    let limit = (r >> 16) as u32 % (size + 1);
                    let mut asked = None;
                    let got = w.record_success_lazily(|t| {
                        asked = Some(*t);
                        t.failures >= limit
                    });
                    let want = m.record(Outcome::Success);
                    match asked {
                        // Asked and it mattered: exact.
                        Some(t) if t.failures >= limit => assert_eq!(got, want, "step {step}"),
                        // Asked and it did not: the totals as they stood, an upper bound.
                        Some(t) => {
                            assert_eq!(t.calls, size);
                            assert_eq!(got.calls, want.calls);
                            assert!(got.failures >= want.failures && got.slow >= want.slow);
                            assert!(got.failures < limit, "a deferred success breached");
                        }
                        // Not asked: the window was not full (claimed at once) or full of
                        // plain successes.
                        None => assert_eq!(got, want, "size {size} step {step}"),
                    }
                }
                if r % 5 == 0 {
                    assert_eq!(w.snapshot(), m.tally(), "size {size} step {step}");
                    assert_eq!(
                        sorted(w.outcomes()),
                        sorted(m.ring.iter().copied().collect())
                    );
                }
            }
        }
    }

    #[test]
    fn a_deferred_success_writes_no_shared_line_until_its_cell_fills() {
        let w = CountWindow::new(100).unwrap();
        w.record(Outcome::Failure);
        for _ in 0..99 {
            w.record(Outcome::Success);
        }
        let cursor = w.hot.cursor.load(Ordering::Relaxed);
        let totals = w.hot.totals.load(Ordering::Relaxed);
        let never = |_: &Tally| false;
        for _ in 0..w.batch - 1 {
            assert_eq!(w.record_success_lazily(never).failures, 1);
        }
        assert_eq!(w.hot.cursor.load(Ordering::Relaxed), cursor);
        assert_eq!(w.hot.totals.load(Ordering::Relaxed), totals);
        // The cell fills: every deferred success is claimed, and the failure falls out.
        let t = w.record_success_lazily(never);
        assert_eq!((t.calls, t.failures), (100, 0));
        assert_eq!(w.hot.cursor.load(Ordering::Relaxed), cursor + w.batch);
        assert_eq!(w.take_deferred(), 0);
    }

    #[test]
    fn a_record_claims_the_deferred_successes_before_its_own_outcome() {
        let w = CountWindow::new(4).unwrap();
        for o in [
            Outcome::Failure,
            Outcome::Success,
            Outcome::Success,
            Outcome::Success,
        ] {
            w.record(o);
        }
        let never = |_: &Tally| false;
        assert_eq!(w.record_success_lazily(never).failures, 1);
        assert_eq!(w.record_success_lazily(never).failures, 1);
        // Three claims: the two successes, then the failure; the oldest failure is gone.
        let t = w.record(Outcome::SlowFailure);
        assert_eq!((t.calls, t.failures, t.slow), (4, 1, 1));
        // A reset drops what is deferred.
        w.record_success_lazily(never);
        w.reset();
        assert_eq!(w.snapshot(), Tally::default());
        assert_eq!(w.outcomes(), Vec::new());
    }

    #[test]
    fn evicts_the_oldest_outcome() {
        let w = CountWindow::new(3).unwrap();
        let mut m = Model::new(3);
        for o in [
            Outcome::SlowFailure,
            Outcome::Failure,
            Outcome::SlowSuccess,
            Outcome::Success,
            Outcome::Success,
            Outcome::Success,
        ] {
            assert_eq!(w.record(o), m.record(o));
        }
        assert_eq!(
            w.snapshot(),
            Tally {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn full_of_successes_records_without_writing() {
        let w = CountWindow::new(4).unwrap();
        for _ in 0..4 {
            w.record(Outcome::Success);
        }
        let cursor = w.hot.cursor.load(Ordering::Relaxed);
        let totals = w.hot.totals.load(Ordering::Relaxed);
        for _ in 0..10 {
            assert_eq!(
                w.record(Outcome::Success),
                Tally {
                    calls: 4,
                    failures: 0,
                    slow: 0
                }
            );
        }
        assert_eq!(w.hot.cursor.load(Ordering::Relaxed), cursor);
        assert_eq!(w.hot.totals.load(Ordering::Relaxed), totals);
        // A failure still lands and then ages out after `size` successes.
        assert_eq!(w.record(Outcome::Failure).failures, 1);
        for _ in 0..3 {
            assert_eq!(w.record(Outcome::Success).failures, 1);
        }
        assert_eq!(w.record(Outcome::Success).failures, 0);
    }

    #[test]
    fn config_errors_name_field_and_range() {
        for bad in [0, CountWindow::MAX_SIZE + 1, u32::MAX] {
            let e = CountWindow::new(bad).unwrap_err();
            assert_eq!(e.field(), "window_size");
            assert_eq!(e.allowed(), format!("1..={}", CountWindow::MAX_SIZE));
        }
        const { assert!(CountWindow::MAX_SIZE >= 1024) };
        let w = CountWindow::new(CountWindow::MAX_SIZE).unwrap();
        assert_eq!(w.size(), CountWindow::MAX_SIZE);
    }

    #[test]
    fn biased_fields_never_borrow() {
        // A transient negative in one field leaves the neighbours intact.
        let word = TOTALS_BIAS.wrapping_add(delta(PRESENT | FAILED, EMPTY));
        assert_eq!(decode(word, 4), Tally::default());
        let word = word.wrapping_add(delta(EMPTY, PRESENT | FAILED));
        assert_eq!(word, TOTALS_BIAS);
        assert_eq!(
            decode(full_of_successes(9), 9),
            Tally {
                calls: 9,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn concurrent_records_are_exact_after_join() {
        use std::sync::Arc;
        let records = if cfg!(miri) { 300 } else { 20_000 };
        for size in [1, 3, 64] {
            let w = Arc::new(CountWindow::new(size).unwrap());
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let w = w.clone();
                    std::thread::spawn(move || {
                        let mut next = rng(t + 11);
                        for _ in 0..records {
                            let r = next();
                            if r % 4 == 0 {
                                w.record(ALL[(r >> 8) as usize % 4]);
                            } else if r % 4 == 1 {
                                w.record(Outcome::Success);
                            } else {
                                // Deferred unless a quarter of the window failed.
                                w.record_success_lazily(|t| 4 * t.failures >= t.calls);
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let contents = w.outcomes();
            assert_eq!(w.take_deferred(), 0, "outcomes() claims what is deferred");
            assert_eq!(contents.len(), size as usize);
            let mut expect = Tally::default();
            for o in &contents {
                expect.calls += 1;
                expect.failures += o.is_failure() as u32;
                expect.slow += o.is_slow() as u32;
            }
            assert_eq!(w.snapshot(), expect);
            // The raw word carries no transient residue once quiescent.
            let raw = w.hot.totals.load(Ordering::Relaxed);
            let unbiased = raw.wrapping_sub(TOTALS_BIAS);
            assert_eq!(unbiased & FIELD_MASK, u64::from(expect.calls));
        }
    }
}
