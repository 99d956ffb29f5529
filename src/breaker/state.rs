//! # Implementation details: the packed state word and its pure transition functions.
//!
//! The whole state a decision needs lives in one `u64`. Every function in this module is pure:
//! `(word, now, params) -> next word (+ verdict)`. The CAS loops that apply them live in
//! `mod.rs`; these functions are unit-tested alone (below) and fuzzed through the breaker.
//!
//! ## Bit layout
//!
//! ```text
//!  63                       39 38        29 28   24 23   19 18   14 13    9 8      5   4     3    2  0
//! +---------------------------+------------+-------+-------+-------+-------+--------+------+-----+-----+
//! | DEADLINE (25 bits, ticks) | GEN (10)   | SLOW  | FAIL  | RES   | ADM   |ATTEMPTS| HOLD |CLEAN|STATE|
//! +---------------------------+------------+-------+-------+-------+-------+--------+------+-----+-----+
//!                                          |<-------- AUX (20 bits) ------>|
//! ```
//!
//! - `STATE` (3 bits): [`CLOSED`], [`OPEN`], [`HALF_OPEN`], [`FORCED_OPEN`], [`DISABLED`].
//! - `CLEAN` (closed only): the window holds no failure and no slow call, so a fast success
//!   cannot trip anything and needs no decision. A count window must also be full: every slot
//!   already holds a fast success, so a fast success changes nothing and is not written anywhere,
//!   which keeps the healthy closed path free of shared writes. A time window counts it with one
//!   CAS on its bucket's fast word (the window's module docs), skipping the totals.
//! - `HOLD` (closed only): the winner of a transition into closed is emptying the window;
//!   results are not recorded until it clears the bit, so a stale tally can never trip the fresh
//!   closed period.
//! - `ATTEMPTS` (4 bits, saturating at 15): consecutive opens without a close; picks the open
//!   duration (growing per re-open, capped). Zero in closed, disabled and forced-open.
//! - `AUX` (20 bits), by state:
//!   - half-open: four 5-bit counters: `ADM` probes admitted and not given back, `RES` probe
//!     results, `FAIL` failed probe results, `SLOW` slow probe results (`SLOW, FAIL <= RES <= ADM
//!     <= probes <= 31`).
//!   - closed: `SEQ`, a 20-bit wrapping sequence bumped by every failed or slow record in
//!     metrics-only mode, so that a success that saw a tally breaching nothing cannot clear
//!     `BREACHED` over a failure that landed after its look (see `settled`). An enforcing
//!     breaker's failures leave it alone: they write the word only to trip or to clear `CLEAN`.
//!   - open: `FINE` (bits 9-18), the deadline's low 10 bits, and `CAUSE` (bits 19-22), the
//!     [`TripReason`] code of a [trip](super::CircuitBreaker::trip_for) (0: the breaker's own
//!     decision); bits 23-28 zero.
//!   - forced-open: `CAUSE` (bits 19-22), the [`TripReason`] code; the rest zero.
//!   - disabled: zero.
//! - `GEN` (10 bits, wrapping): bumped by every transition. A permit carries the generation it
//!   was admitted in; a result is counted only while the word still has that generation and the
//!   state it was admitted in, so a result from an earlier state is never a probe (resilience4j
//!   #1090, #1432). A permit would have to outlive 1024 transitions to be mistaken.
//! - `DEADLINE` (25 bits): in open, the high 25 bits of the moment a probe may be admitted, in
//!   units of `2^10` ns (1.024 µs), whose low 10 bits are `FINE`: an open period ends within
//!   about a microsecond of its length. In half-open, the tick at which an undecided half-open
//!   re-opens; a tick is `2^20` ns (about 1.05 ms). In closed, its lowest bit is `BREACHED`
//!   (metrics-only mode: the window breaches a threshold and the breach has been reported); zero
//!   in the other states.
//!
//! ## State table
//!
//! | from \ to   | closed            | open                  | half-open         | forced-open | disabled  |
//! |-------------|-------------------|-----------------------|-------------------|-------------|-----------|
//! | closed      | `reset`           | breach (recording thread); `trip_for` | `force_half_open` | `trip`, `force_open` | `disable` |
//! | open        | `reset`           | `trip_for` ending later than the deadline | first acquirer after the deadline; `force_half_open` | `trip`, `force_open` | `disable` |
//! | half-open   | decision: healthy, or `reset` | decision: breach, or timeout (acquirer); `trip_for` | - | `trip`, `force_open` | `disable` |
//! | forced-open | `reset`           | -                     | `force_half_open` | `trip` with another reason (no transition) | `disable` |
//! | disabled    | `reset`           | `trip_for`            | `force_half_open` | `trip`, `force_open`| -         |
//!
//! Every transition bumps `GEN` and is one successful CAS; only its winner runs the hook, so each
//! transition is reported once however many threads raced for it. Counter updates (probe
//! admission, release, result; `SEQ`; `CLEAN`; clearing `HOLD`; a forced-open's `CAUSE`) keep
//! `GEN`. A timed trip never shortens a refusal in force: over forced-open, or over an open
//! deadline at least as late as its own, it changes nothing.
//!
//! In metrics-only mode a breach never leaves closed: the recorder whose CAS sets `BREACHED`
//! reports it, once; later breaching records find the bit set and report nothing, until a fast
//! success whose tally breaches nothing clears it (over the very word it loaded before
//! recording, as `CLEAN` is set, so a failure or a report since wins).
//!
//! ## Orderings
//!
//! - Every load of the word: `Acquire`, pairing with the CAS that wrote it, for the two things
//!   the word publishes (the next two lines).
//! - Every CAS of the word: `AcqRel` (failure `Acquire`). The move to closed empties the window
//!   *before* its CAS clears `HOLD`, so a recorder that reads `HOLD` clear records into the
//!   emptied window.
//! - The transition stamp's `fetch_max`, before each transition's CAS: `Relaxed`; a thread that
//!   loads the new word with `Acquire` then reads a stamp at least that new with a `Relaxed`
//!   load (see "Time and wrap-around").
//! - The window's own accesses: its own orderings (it is linearizable). The `SEQ` argument
//!   (metrics-only `BREACHED`) needs only the word's single modification order plus program
//!   order (a failure's window record precedes its `SEQ` bump; a `settled` caller's load
//!   precedes its window record), which `AcqRel` read-modify-writes on one location give.
//! - `CLEAN` is a store-buffering pair, two `SeqCst` fences. A failed or slow record writes the
//!   window (a read-modify-write of its running totals that adds the failure), then a fence,
//!   then loads the word, and clears `CLEAN` if it finds it set. A success that sets `CLEAN`
//!   (its CAS), then a fence, then reads the window's totals, and clears the flag again if they
//!   hold a failure or a slow call (or, in a count window, fewer calls than its size). Whichever
//!   fence comes first in the fences' single total order, the other thread's read sees the
//!   first thread's write (C++20 [atomics.fences]): the recorder sees `CLEAN` and clears it, or
//!   the setter sees the failure and clears it. So once both have returned, `CLEAN` is set only
//!   over a window that holds no failure and no slow call. A failure that leaves the totals
//!   alone (its slot already held one, in a count window) adds nothing to clear: the recorder
//!   that put that failure there added it and runs the pair. Clearing `CLEAN` is always safe (a
//!   success then only takes the recording path), so a setter that finds a stale failure which
//!   deferred successes will evict, or clears a flag another setter has just set, costs one
//!   slower record, never a wrong decision. This keeps the enforcing breaker's failures off the
//!   word (one fence and one load, no write), so admissions on other cores keep its line.
//!
//! A recorder checks the generation and `HOLD` before it writes to the window, so a result
//! admitted in an earlier period is dropped, except in one race: a recorder preempted between
//! that check and its window write, while another thread resets the breaker (or closes it from
//! half-open), writes into the new closed period's window. There it counts, as resilience4j
//! counts every late result in the current state's window; it makes no decision itself (the
//! decision's CAS carries the old generation), but a failed or slow one then clears the new
//! period's `CLEAN` (and in metrics-only mode bumps its `SEQ`), so the flag never claims a
//! window that holds it is clean. Dropping it outright would need the window's own writes to
//! carry the generation.
//!
//! The race the flag itself leaves: a success that read `CLEAN` just before a concurrent failure
//! cleared it is taken as landing before that failure, so it makes no decision itself (into a
//! count window it writes nothing; into a time window it is counted). Where the failure's own
//! decision did not trip, a trip that this success would have completed (the minimum number of
//! calls reached over the failure) comes with the next result recorded instead.
//!
//! ## Time and wrap-around
//!
//! The deadline is stored in units of `2^10` ns modulo `2^35` (in open; in half-open the low 10
//! bits are zero, a whole tick). Durations are refused by the builder (and by a timed trip)
//! unless they fit in [`MAX_TICKS`] (`2^24 - 2` ticks, about 4.9 hours), so a deadline is always
//! less than `2^24` ticks after the moment its state was entered. [`remaining`] takes the wrapped
//! difference `deadline - now` modulo `2^35`: between 1 and `2^34 - 1` units means "that many to
//! go"; anything else means the deadline has passed. That holds across the field's wrap (tested
//! with a clock just below it) while the state is younger than `2^24` ticks. An older state (a
//! breaker left untouched in open or half-open for hours) would see its deadline come round
//! again, so the time also carries [`Now::held`]: a lower bound on the state's age, from the
//! breaker's transition stamp (a plain `u64` of nanoseconds). Once it reaches `2^24` ticks the
//! deadline has passed, whatever the tick field says.
//!
//! The stamp is a lower bound because every transition raises it (`fetch_max` with the
//! transition's `now`) *before* the CAS that installs the new state, and a reader loads it after
//! loading the word with `Acquire`: a reader that sees a state sees a stamp at least as late as
//! that state's entry. A CAS that loses has raised it anyway, past the entry of the state it lost
//! to. When that state is a new one, the raise is harmless (the state is young, and the tick
//! field alone reads its deadline right). When it is the same state, changed by a half-open probe
//! admitted, given back or reported (open changes nothing but by a transition), a CAS loop keeps
//! the reading it took before (`at_next` in `mod.rs`), so the loser still sees the state's true
//! age and its retry lands the transition; until it does, another reader may take that old state
//! for a young one.

use crate::window::{Outcome, Tally};

/// `STATE` field mask.
pub(crate) const STATE_MASK: u64 = 0b111;
/// Closed: calls pass and are recorded in the window.
pub(crate) const CLOSED: u64 = 0;
/// Open: calls are refused until the deadline.
pub(crate) const OPEN: u64 = 1;
/// Half-open: a few probes are admitted; their results decide.
pub(crate) const HALF_OPEN: u64 = 2;
/// Forced open: every call refused until `reset` or `disable`.
pub(crate) const FORCED_OPEN: u64 = 3;
/// Disabled: every call passes, nothing is recorded.
pub(crate) const DISABLED: u64 = 4;

/// Closed only: the window holds no failure and no slow call (a count window: and is full).
pub(crate) const CLEAN: u64 = 1 << 3;
/// Closed only: the window is being emptied; results are dropped.
pub(crate) const HOLD: u64 = 1 << 4;
/// Closed only, in metrics-only mode: the window breaches a threshold, and the breach has been
/// reported (the lowest bit of the `DEADLINE` field, unused in closed).
const BREACHED: u64 = 1 << DEADLINE_SHIFT;

const ATTEMPTS_SHIFT: u32 = 5;
/// The largest `ATTEMPTS` value; further re-opens saturate here.
pub(crate) const MAX_ATTEMPTS: u64 = 15;

const FIELD_MAX: u64 = 31;
const ADM_SHIFT: u32 = 9;
const RES_SHIFT: u32 = 14;
const FAIL_SHIFT: u32 = 19;
const SLOW_SHIFT: u32 = 24;
const SEQ_SHIFT: u32 = 9;
const SEQ_MASK: u64 = (1 << 20) - 1;

const GEN_SHIFT: u32 = 29;
const GEN_MASK: u64 = (1 << 10) - 1;

const DEADLINE_SHIFT: u32 = 39;
const DEADLINE_MASK: u64 = (1 << 25) - 1;
/// A live deadline is always less than this many ticks ahead.
const HORIZON: u64 = 1 << 24;

/// log2 of the tick in nanoseconds.
pub(crate) const TICK_SHIFT: u32 = 20;
/// log2 of an open deadline's unit in nanoseconds.
const FINE_SHIFT: u32 = 10;
/// One open deadline unit in nanoseconds (1 024 ns).
pub(crate) const FINE_NANOS: u64 = 1 << FINE_SHIFT;
/// The bits of an open deadline below the `DEADLINE` field, kept in `FINE`.
const FINE_BITS: u32 = TICK_SHIFT - FINE_SHIFT;
const FINE_MASK: u64 = (1 << FINE_BITS) - 1;
const FINE_SHIFT_IN_WORD: u32 = 9;
/// A whole deadline (`DEADLINE` and `FINE`) in units: 35 bits.
const UNITS_MASK: u64 = (1 << (25 + FINE_BITS)) - 1;
/// A live deadline is always less than this many units ahead.
const UNITS_HORIZON: u64 = HORIZON << FINE_BITS;
const CAUSE_SHIFT: u32 = 19;
const CAUSE_MASK: u64 = 0xF;
/// One tick in nanoseconds (1 048 576 ns).
pub(crate) const TICK_NANOS: u64 = 1 << TICK_SHIFT;
/// The longest duration the word can hold, in ticks.
pub(crate) const MAX_TICKS: u64 = HORIZON - 2;
/// The largest number of half-open probes the word can count.
pub(crate) const MAX_PROBES: u32 = FIELD_MAX as u32;

/// A breaker's state.
///
/// [`state`](super::CircuitBreaker::state) reports the state as last moved: open moves on to
/// half-open only when a call asks, after the open period.
///
/// ```
/// use resile::breaker::{CircuitBreaker, State};
/// use resile::clock::ManualClock;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::builder().clock(clock.clone()).minimum_calls(1).build()?;
/// breaker.try_acquire()?.failure();
/// assert_eq!(breaker.state(), State::Open);
/// clock.advance(Duration::from_secs(61)); // past the default 60 s open period
/// assert_eq!(breaker.state(), State::Open); // nothing asked yet
/// let probe = breaker.try_acquire()?;
/// assert_eq!(breaker.state(), State::HalfOpen);
/// probe.success();
/// assert_eq!(breaker.state(), State::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass; their outcomes are recorded and may trip the breaker.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// A limited number of probe calls pass; their results close or re-open the breaker.
    HalfOpen,
    /// Every call is refused until [`reset`](super::CircuitBreaker::reset).
    ForcedOpen,
    /// Every call passes and nothing is recorded, until [`reset`](super::CircuitBreaker::reset).
    Disabled,
}

impl State {
    /// The state encoded in `word`.
    #[inline]
    pub(crate) fn of(word: u64) -> State {
        match word & STATE_MASK {
            CLOSED => State::Closed,
            OPEN => State::Open,
            HALF_OPEN => State::HalfOpen,
            FORCED_OPEN => State::ForcedOpen,
            _ => State::Disabled,
        }
    }

    /// The state's `STATE` code, which [`of`](Self::of) reads back.
    #[inline]
    pub(crate) const fn code(self) -> u64 {
        match self {
            State::Closed => CLOSED,
            State::Open => OPEN,
            State::HalfOpen => HALF_OPEN,
            State::ForcedOpen => FORCED_OPEN,
            State::Disabled => DISABLED,
        }
    }
}

/// Why a breaker was [tripped](super::CircuitBreaker::trip) by other code: carried by every
/// refusal while the trip lasts ([`CircuitOpen::tripped_by`](super::CircuitOpen::tripped_by)),
/// so a caller or a dashboard can tell a dependency that failed from one taken out on purpose.
///
/// ```
/// use resile::breaker::{CircuitBreaker, State, TripReason};
///
/// let breaker = CircuitBreaker::builder().build()?;
/// breaker.trip(TripReason::HealthCheck);
/// let refused = breaker.try_acquire().unwrap_err();
/// assert_eq!(refused.state(), State::ForcedOpen);
/// assert_eq!(refused.tripped_by(), Some(TripReason::HealthCheck));
/// breaker.reset();
/// assert!(breaker.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TripReason {
    /// An operator, or [`force_open`](super::CircuitBreaker::force_open).
    Manual,
    /// A health check found the dependency down.
    HealthCheck,
    /// An adaptive concurrency limiter shed the dependency.
    AdaptiveLimit,
    /// An outlier detector ejected this host.
    OutlierDetection,
    /// Any other reason.
    Other,
}

impl TripReason {
    /// The reason's `CAUSE` code: never 0, which is the breaker's own decision.
    pub(crate) fn code(self) -> u8 {
        match self {
            TripReason::Manual => 1,
            TripReason::HealthCheck => 2,
            TripReason::AdaptiveLimit => 3,
            TripReason::OutlierDetection => 4,
            TripReason::Other => 5,
        }
    }

    /// The reason of a `CAUSE` code; `None` for 0, the breaker's own decision.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => TripReason::Manual,
            2 => TripReason::HealthCheck,
            3 => TripReason::AdaptiveLimit,
            4 => TripReason::OutlierDetection,
            5 => TripReason::Other,
            _ => return None,
        })
    }

    /// A short name, for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TripReason::Manual => "manual",
            TripReason::HealthCheck => "health check",
            TripReason::AdaptiveLimit => "adaptive limit",
            TripReason::OutlierDetection => "outlier detection",
            TripReason::Other => "other",
        }
    }
}

impl std::fmt::Display for TripReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the pure functions need from the configuration, precomputed by the builder (and by a
/// reconfigure), held in a [`ParamsCell`](super::params::ParamsCell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    /// What a closed window's totals are compared with.
    pub(crate) thresholds: Thresholds,
    /// Half-open probe limit, `1..=MAX_PROBES`.
    pub(crate) probes: u32,
    /// Half-open decides after this many results: `min(minimum_calls, probes)`.
    pub(crate) needed: u32,
    /// The first open period in ns (`<= MAX_TICKS` ticks).
    pub(crate) open_nanos: u64,
    /// The growth multiplier of each re-open, as `f64` bits (`1.0..=1000.0`); 0: no growth.
    pub(crate) growth: u64,
    /// The cap of a grown open period in ns (`open_nanos..=MAX_TICKS` ticks).
    pub(crate) growth_max: u64,
    /// Half-open timeout in ns.
    pub(crate) half_open_nanos: u64,
    /// A call taking strictly longer than this many ns is slow; [`NOT_SLOW`]: no slow-call rule.
    pub(crate) slow_nanos: u64,
    /// A breach trips the breaker; `false` in metrics-only mode, where it is only reported.
    pub(crate) enforce: bool,
}

/// `Params::slow_nanos` without a slow-call rule, and a permit's start when it read no clock.
pub(crate) const NOT_SLOW: u64 = u64::MAX;

impl Params {
    /// The open period in ns for `ATTEMPTS = attempts` (clamped to `1..=MAX_ATTEMPTS`): the first
    /// one, grown by the multiplier once per further attempt, each step rounded down to a
    /// nanosecond and capped.
    pub(crate) fn open_period(&self, attempts: u64) -> u64 {
        let mut d = self.open_nanos;
        if self.growth != 0 {
            let mult = f64::from_bits(self.growth);
            for _ in 1..attempts.clamp(1, MAX_ATTEMPTS) {
                if d >= self.growth_max {
                    break;
                }
                d = times(d, mult).min(self.growth_max);
            }
        }
        d
    }

    /// Whether a call admitted at `start` and ending at `now` is slow.
    #[inline]
    pub(crate) fn is_slow(&self, start: u64, now: u64) -> bool {
        self.slow_nanos != NOT_SLOW
            && start != NOT_SLOW
            && now.saturating_sub(start) > self.slow_nanos
    }
}

/// `nanos * mult` rounded down, exactly, saturating at `u64::MAX`, for `mult` in
/// `1.0..=1000.0` (checked by the builder): `mult` is `mantissa * 2^-shift` with a 53-bit
/// `mantissa` and `shift` in `43..=52`, so the product takes one 128-bit multiplication and a
/// shift.
pub(crate) fn times(nanos: u64, mult: f64) -> u64 {
    let bits = mult.to_bits();
    let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
    // The biased exponent is 1023 for 1.0 and 1032 for 1000.0 (`mult` is normal and positive).
    let shift = 1075 - ((bits >> 52) & 0x7ff);
    let product = (u128::from(nanos) * u128::from(mantissa)) >> shift;
    u64::try_from(product).unwrap_or(u64::MAX)
}

/// What an acquire decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admit the call.
    Admit,
    /// Refuse it: `retry_after` ns until a probe may be admitted (`None` in forced-open), the
    /// state that refused, and the `CAUSE` code of a trip (0: the breaker's own decision).
    Refuse {
        retry_after: Option<u64>,
        state: State,
        cause: u8,
    },
}

/// One step of a CAS loop: the word to install (equal to the old one when nothing changes), what
/// the caller is told, the transition the install makes, if any (`from == to` only for the
/// reset of a closed breaker, a new generation and an empty window but no transition, and for a
/// timed trip over open, a new open state), and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) next: u64,
    pub(crate) verdict: Decision,
    pub(crate) change: Option<(State, State)>,
    pub(crate) why: Why,
}

/// Why a step moves the word: what its winner reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Nothing to report (a counter update, or no change).
    Nothing,
    /// The closed window breached a threshold: a trip, or in metrics-only mode the first record
    /// of a breach (`BREACHED` set, no transition).
    Breach,
    /// The probes' results breached a threshold: re-open.
    ProbesBreached,
    /// The probes' results were healthy: close.
    ProbesHealthy,
    /// Half-open did not decide in time: re-open.
    HalfOpenTimeout,
    /// The open period ended: half-open.
    OpenPeriodEnded,
    /// A trip with this `CAUSE` code.
    Tripped(u8),
    /// `force_half_open`.
    ForcedHalfOpen,
    /// `reset`.
    Reset,
    /// `disable`.
    Disabled,
}

#[inline]
pub(crate) fn state_bits(w: u64) -> u64 {
    w & STATE_MASK
}

/// Whether `w` is closed in `generation`, not held, with `CLEAN` set: one masked compare.
#[inline]
pub(crate) fn is_clean(w: u64, generation_: u32) -> bool {
    w & (STATE_MASK | CLEAN | HOLD | (GEN_MASK << GEN_SHIFT))
        == CLOSED | CLEAN | (u64::from(generation_) << GEN_SHIFT)
}

/// The generation in `w`.
#[inline]
pub(crate) fn generation(w: u64) -> u32 {
    ((w >> GEN_SHIFT) & GEN_MASK) as u32
}

#[inline]
fn attempts(w: u64) -> u64 {
    (w >> ATTEMPTS_SHIFT) & 0xF
}

#[inline]
fn field(w: u64, shift: u32) -> u64 {
    (w >> shift) & FIELD_MAX
}

/// Half-open counters `(admitted, results, failures, slow)`.
#[inline]
pub(crate) fn probes(w: u64) -> (u32, u32, u32, u32) {
    (
        field(w, ADM_SHIFT) as u32,
        field(w, RES_SHIFT) as u32,
        field(w, FAIL_SHIFT) as u32,
        field(w, SLOW_SHIFT) as u32,
    )
}

/// A word of `state` with `deadline` already in place (from [`open_deadline`] or
/// [`tick_deadline`], or 0).
fn make(state: u64, generation: u64, attempts: u64, deadline: u64) -> u64 {
    state
        | (attempts.min(MAX_ATTEMPTS) << ATTEMPTS_SHIFT)
        | ((generation & GEN_MASK) << GEN_SHIFT)
        | deadline
}

#[inline]
fn next_gen(w: u64) -> u64 {
    ((w >> GEN_SHIFT) + 1) & GEN_MASK
}

/// The word bits of an open deadline `d` ns after `now`, rounded up to a unit: the breaker waits
/// at least `d` and less than `d` + 1 024 ns.
#[inline]
fn open_deadline(now: u64, d: u64) -> u64 {
    let units = now.saturating_add(d).div_ceil(FINE_NANOS);
    (((units >> FINE_BITS) & DEADLINE_MASK) << DEADLINE_SHIFT)
        | ((units & FINE_MASK) << FINE_SHIFT_IN_WORD)
}

/// The word bits of a half-open deadline `d` ns after `now`, rounded up to a whole tick.
#[inline]
fn tick_deadline(now: u64, d: u64) -> u64 {
    (now.saturating_add(d).div_ceil(TICK_NANOS) & DEADLINE_MASK) << DEADLINE_SHIFT
}

/// The `CAUSE` code in an open or forced-open `w`: 0 for the breaker's own decision.
#[inline]
pub(crate) fn cause(w: u64) -> u8 {
    ((w >> CAUSE_SHIFT) & CAUSE_MASK) as u8
}

/// The time a pure function decides at (see "Time and wrap-around" above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Now {
    /// Nanoseconds since the clock's epoch.
    pub(crate) nanos: u64,
    /// At most the time, in nanoseconds, since the word's state was entered.
    pub(crate) held: u64,
}

impl Now {
    /// `nanos`, with the breaker's transition stamp as read after the word.
    #[inline]
    pub(crate) fn new(nanos: u64, stamp: u64) -> Self {
        Self {
            nanos,
            held: nanos.saturating_sub(stamp),
        }
    }
}

/// A state this old (in ns) has passed any deadline it set.
const STALE_NANOS: u64 = HORIZON << TICK_SHIFT;

/// Nanoseconds from `t` to the deadline in an open or half-open `w`, or `None` when it has
/// passed.
#[inline]
pub(crate) fn remaining(w: u64, t: Now) -> Option<u64> {
    let fine = if state_bits(w) == OPEN {
        (w >> FINE_SHIFT_IN_WORD) & FINE_MASK
    } else {
        0
    };
    let deadline = (((w >> DEADLINE_SHIFT) & DEADLINE_MASK) << FINE_BITS) | fine;
    let now_units = (t.nanos >> FINE_SHIFT) & UNITS_MASK;
    let ahead = deadline.wrapping_sub(now_units) & UNITS_MASK;
    if ahead == 0 || ahead >= UNITS_HORIZON || t.held >= STALE_NANOS {
        None
    } else {
        Some((ahead << FINE_SHIFT) - (t.nanos & (FINE_NANOS - 1)))
    }
}

/// A closed window's thresholds: all that the decision on a closed window's totals reads (the
/// first two words of the live configuration, so a plain success loads no more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Thresholds {
    /// Closed: no decision below this many calls (already capped at a count window's size).
    pub(crate) min_calls: u32,
    /// Failure-rate threshold in millionths; 0 = off.
    pub(crate) failure_rate_ppm: u32,
    /// Slow-call-rate threshold in millionths; 0 = off.
    pub(crate) slow_rate_ppm: u32,
    /// Absolute failure count that trips; 0 = off.
    pub(crate) failure_count: u32,
}

impl Thresholds {
    /// Whether counts `(calls, failures, slow)` breach a threshold. Rates compare in millionths
    /// with `>=`; the failure count (0 = off) with `>=`.
    #[inline]
    pub(crate) fn breaches(&self, calls: u32, failures: u32, slow: u32) -> bool {
        let calls = u64::from(calls);
        (self.failure_rate_ppm != 0
            && u64::from(failures) * 1_000_000 >= u64::from(self.failure_rate_ppm) * calls)
            || (self.slow_rate_ppm != 0
                && u64::from(slow) * 1_000_000 >= u64::from(self.slow_rate_ppm) * calls)
            || (self.failure_count != 0 && failures >= self.failure_count)
    }

    /// Whether a closed window's totals trip the breaker.
    #[inline]
    pub(crate) fn closed_breach(&self, t: Tally) -> bool {
        t.calls >= self.min_calls && t.calls > 0 && self.breaches(t.calls, t.failures, t.slow)
    }
}

/// Whether counts `(calls, failures, slow)` breach a threshold, with `count_limit` as the
/// absolute failure count (0 = off). Rates compare in millionths with `>=`.
#[inline]
pub(crate) fn breached(calls: u32, failures: u32, slow: u32, count_limit: u32, p: &Params) -> bool {
    Thresholds {
        failure_count: count_limit,
        ..p.thresholds
    }
    .breaches(calls, failures, slow)
}

/// Whether a closed window's totals trip the breaker.
#[inline]
pub(crate) fn closed_breach(t: Tally, p: &Params) -> bool {
    p.thresholds.closed_breach(t)
}

fn open_word(w: u64, now: u64, attempts: u64, p: &Params) -> u64 {
    let attempts = attempts.clamp(1, MAX_ATTEMPTS);
    make(
        OPEN,
        next_gen(w),
        attempts,
        open_deadline(now, p.open_period(attempts)),
    )
}

/// A fresh half-open of the next generation, entered at `now`, with no probe admitted.
fn half_open_word(w: u64, now: u64, p: &Params) -> u64 {
    make(
        HALF_OPEN,
        next_gen(w),
        attempts(w),
        tick_deadline(now, p.half_open_nanos),
    )
}

fn closed_word(w: u64) -> u64 {
    make(CLOSED, next_gen(w), 0, 0) | HOLD
}

fn refuse(w: u64, retry_after: Option<u64>, state: State) -> Step {
    let cause = match state {
        State::Open | State::ForcedOpen => cause(w),
        _ => 0,
    };
    Step {
        next: w,
        verdict: Decision::Refuse {
            retry_after,
            state,
            cause,
        },
        change: None,
        why: Why::Nothing,
    }
}

/// `try_acquire` at `t`.
pub(crate) fn acquire(w: u64, t: Now, p: &Params) -> Step {
    match state_bits(w) {
        CLOSED | DISABLED => Step {
            next: w,
            verdict: Decision::Admit,
            change: None,
            why: Why::Nothing,
        },
        FORCED_OPEN => refuse(w, None, State::ForcedOpen),
        OPEN => match remaining(w, t) {
            Some(left) => refuse(w, Some(left), State::Open),
            None => Step {
                next: half_open_word(w, t.nanos, p) | (1 << ADM_SHIFT),
                verdict: Decision::Admit,
                change: Some((State::Open, State::HalfOpen)),
                why: Why::OpenPeriodEnded,
            },
        },
        _ => {
            // HALF_OPEN
            let Some(left) = remaining(w, t) else {
                let step = half_open_timeout(w, t, p);
                // The new open state is entered now.
                let entered = Now { held: 0, ..t };
                return Step {
                    verdict: Decision::Refuse {
                        retry_after: Some(remaining(step.next, entered).unwrap_or(0)),
                        state: State::Open,
                        cause: 0,
                    },
                    ..step
                };
            };
            let (admitted, ..) = probes(w);
            if admitted < p.probes {
                Step {
                    next: w + (1 << ADM_SHIFT),
                    verdict: Decision::Admit,
                    change: None,
                    why: Why::Nothing,
                }
            } else {
                // Every probe is out. Unless they decide first, the first call after the
                // half-open timeout re-opens the breaker, for one open period: the estimate
                // assumes that call comes at the timeout.
                let next_open = p.open_period(attempts(w) + 1);
                refuse(w, Some(left.saturating_add(next_open)), State::HalfOpen)
            }
        }
    }
}

/// Half-open with no decision by its deadline (seen at `t`): re-open.
fn half_open_timeout(w: u64, t: Now, p: &Params) -> Step {
    Step {
        next: open_word(w, t.nanos, attempts(w) + 1, p),
        verdict: Decision::Admit,
        change: Some((State::HalfOpen, State::Open)),
        why: Why::HalfOpenTimeout,
    }
}

/// A probe result of generation `generation`; `None` if it does not count (not half-open, or an
/// earlier generation). Past the half-open timeout it does not count either, and the step is
/// the re-open that the timeout makes.
pub(crate) fn probe_result(
    w: u64,
    generation_: u32,
    outcome: Outcome,
    t: Now,
    p: &Params,
) -> Option<Step> {
    if state_bits(w) != HALF_OPEN || generation(w) != generation_ {
        return None;
    }
    if remaining(w, t).is_none() {
        // The half-open timeout passed before this result: the breaker re-opened then (lazily,
        // now), and the result does not count.
        return Some(half_open_timeout(w, t, p));
    }
    let (admitted, results, failures, slow) = probes(w);
    if results >= admitted {
        // Every admitted probe already reported: a defensive refusal to overflow into ADM.
        return None;
    }
    let results = results + 1;
    let failures = failures + u32::from(outcome.is_failure());
    let slow = slow + u32::from(outcome.is_slow());
    if results < p.needed {
        let mut next = w + (1 << RES_SHIFT);
        if outcome.is_failure() {
            next += 1 << FAIL_SHIFT;
        }
        if outcome.is_slow() {
            next += 1 << SLOW_SHIFT;
        }
        return Some(Step {
            next,
            verdict: Decision::Admit,
            change: None,
            why: Why::Nothing,
        });
    }
    let count_limit = if p.thresholds.failure_count == 0 {
        0
    } else {
        p.thresholds.failure_count.min(p.needed)
    };
    let (next, to, why) = if breached(results, failures, slow, count_limit, p) {
        (
            open_word(w, t.nanos, attempts(w) + 1, p),
            State::Open,
            Why::ProbesBreached,
        )
    } else {
        (closed_word(w), State::Closed, Why::ProbesHealthy)
    };
    Some(Step {
        next,
        verdict: Decision::Admit,
        change: Some((State::HalfOpen, to)),
        why,
    })
}

/// A permit of `generation` given back without a result: frees its half-open slot, if it holds
/// one.
pub(crate) fn release(w: u64, generation_: u32) -> Option<u64> {
    if state_bits(w) != HALF_OPEN || generation(w) != generation_ {
        return None;
    }
    let (admitted, results, ..) = probes(w);
    (admitted > results).then(|| w - (1 << ADM_SHIFT))
}

/// After a closed result of `generation` went into the window: on `breach`, trip (or, in
/// metrics-only mode, set `BREACHED` if it is clear: the breach's one report); and when the
/// record was `dirty` (failed or slow), clear `CLEAN` and, in metrics-only mode, bump `SEQ`.
/// `None` when the word no longer is that closed period, or nothing needs writing: an enforcing
/// breaker's failure that breaches nothing, over a word without `CLEAN`. (`BREACHED` is cleared
/// by [`settled`].)
pub(crate) fn closed_after(
    w: u64,
    generation_: u32,
    breach: bool,
    dirty: bool,
    now: u64,
    p: &Params,
) -> Option<Step> {
    if state_bits(w) != CLOSED || generation(w) != generation_ || w & HOLD != 0 {
        return None;
    }
    if breach && p.enforce {
        return Some(Step {
            next: open_word(w, now, 1, p),
            verdict: Decision::Admit,
            change: Some((State::Closed, State::Open)),
            why: Why::Breach,
        });
    }
    let mut next = w;
    let mut why = Why::Nothing;
    if breach && w & BREACHED == 0 {
        next |= BREACHED;
        why = Why::Breach;
    }
    if dirty {
        next &= !CLEAN;
        if !p.enforce {
            let seq = (((w >> SEQ_SHIFT) & SEQ_MASK) + 1) & SEQ_MASK;
            next = (next & !(SEQ_MASK << SEQ_SHIFT)) | (seq << SEQ_SHIFT);
        }
    }
    (next != w).then_some(Step {
        next,
        verdict: Decision::Admit,
        change: None,
        why,
    })
}

/// After a fast success went into the window over `w0` (the word loaded before the record) and
/// its tally breached nothing: `w0` with `BREACHED` cleared (the breach is over; the next one
/// will be reported) and, when the window is `clean`, `CLEAN` set. `None` when that changes
/// nothing. The caller installs it only over `w0` itself, so a breach reported since (it sets
/// `BREACHED`) or, in metrics-only mode, a failed or slow record since (it bumps `SEQ`) wins
/// over this older look; a caller that sets `CLEAN` then checks the window again (the fence
/// pair in "Orderings").
#[inline]
pub(crate) fn settled(w0: u64, clean: bool) -> Option<u64> {
    let next = (w0 & !BREACHED) | if clean { CLEAN } else { 0 };
    (state_bits(w0) == CLOSED && w0 & HOLD == 0 && next != w0).then_some(next)
}

/// A manual move to closed (`reset`, which always happens) or disabled (a no-op when already
/// there). A reset of a closed breaker still starts a new generation with an empty window; its
/// `change` is `(Closed, Closed)`, which the caller treats as no transition (no hook, no stamp).
pub(crate) fn manual(w: u64, to: State) -> Option<Step> {
    let from = State::of(w);
    let (next, why) = match to {
        State::Closed => (closed_word(w), Why::Reset),
        State::Disabled if from == to => return None,
        State::Disabled => (make(DISABLED, next_gen(w), 0, 0), Why::Disabled),
        State::Open | State::HalfOpen | State::ForcedOpen => return None,
    };
    Some(Step {
        next,
        verdict: Decision::Admit,
        change: Some((from, to)),
        why,
    })
}

/// A trip with `cause` (a nonzero [`TripReason`] code) at `now`: forced open until a reset when
/// `open_for` is `None`, else open for `open_for` ns (at most [`MAX_TICKS`] ticks), then
/// half-open as after any open period. `None` when it changes nothing: forced open with the same
/// cause, or a timed trip over forced open or over an open deadline at least as late.
pub(crate) fn trip(w: u64, cause: u8, open_for: Option<u64>, t: Now) -> Option<Step> {
    let from = State::of(w);
    let cause_bits = u64::from(cause) << CAUSE_SHIFT;
    let (next, to) = match open_for {
        None if from == State::ForcedOpen => {
            if self::cause(w) == cause {
                return None;
            }
            // Another reason for the same refusal: no transition, the generation stays.
            let next = (w & !(CAUSE_MASK << CAUSE_SHIFT)) | cause_bits;
            return Some(Step {
                next,
                verdict: Decision::Admit,
                change: None,
                why: Why::Tripped(cause),
            });
        }
        None => (
            make(FORCED_OPEN, next_gen(w), 0, 0) | cause_bits,
            State::ForcedOpen,
        ),
        Some(_) if from == State::ForcedOpen => return None,
        Some(d) => {
            if from == State::Open && remaining(w, t).is_some_and(|left| left >= d) {
                return None;
            }
            let kept = if from == State::Open || from == State::HalfOpen {
                attempts(w)
            } else {
                0
            };
            (
                make(OPEN, next_gen(w), kept, open_deadline(t.nanos, d)) | cause_bits,
                State::Open,
            )
        }
    };
    Some(Step {
        next,
        verdict: Decision::Admit,
        change: Some((from, to)),
        why: Why::Tripped(cause),
    })
}

/// A forced half-open at `now`: a fresh set of probes decides, as after an open period. `None`
/// when already half-open.
pub(crate) fn force_half_open(w: u64, now: u64, p: &Params) -> Option<Step> {
    let from = State::of(w);
    (from != State::HalfOpen).then(|| Step {
        next: half_open_word(w, now, p),
        verdict: Decision::Admit,
        change: Some((from, State::HalfOpen)),
        why: Why::ForcedHalfOpen,
    })
}

/// Clears `HOLD` set by the transition into closed of `generation`, if the word is still there.
pub(crate) fn clear_hold(w: u64, generation_: u32) -> Option<u64> {
    (state_bits(w) == CLOSED && generation(w) == generation_ && w & HOLD != 0).then_some(w & !HOLD)
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;

    const T: u64 = TICK_NANOS;

    /// `nanos` in a state just entered.
    fn at(nanos: u64) -> Now {
        Now { nanos, held: 0 }
    }

    fn params() -> Params {
        Params {
            thresholds: Thresholds {
                min_calls: 4,
                failure_rate_ppm: 500_000,
                slow_rate_ppm: 0,
                failure_count: 0,
            },
            probes: 3,
            needed: 2,
            open_nanos: 10 * T,
            growth: 0,
            growth_max: 10 * T,
            half_open_nanos: 20 * T,
            slow_nanos: NOT_SLOW,
            enforce: true,
        }
    }

    /// Open 20 T, doubling per re-open, capped at 50 T.
    fn growing() -> Params {
        Params {
            open_nanos: 20 * T,
            growth: 2.0f64.to_bits(),
            growth_max: 50 * T,
            ..params()
        }
    }

    #[test]
    fn fields_do_not_overlap_and_fill_the_word() {
        let masks = [
            STATE_MASK,
            CLEAN,
            HOLD,
            0xF << ATTEMPTS_SHIFT,
            FIELD_MAX << ADM_SHIFT,
            FIELD_MAX << RES_SHIFT,
            FIELD_MAX << FAIL_SHIFT,
            FIELD_MAX << SLOW_SHIFT,
            GEN_MASK << GEN_SHIFT,
            DEADLINE_MASK << DEADLINE_SHIFT,
        ];
        let mut all = 0u64;
        for m in masks {
            assert_eq!(all & m, 0, "overlap at {m:#x}");
            all |= m;
        }
        assert_eq!(all, u64::MAX);
        // SEQ (closed) reuses exactly the four half-open counters.
        assert_eq!(
            SEQ_MASK << SEQ_SHIFT,
            (FIELD_MAX << ADM_SHIFT)
                | (FIELD_MAX << RES_SHIFT)
                | (FIELD_MAX << FAIL_SHIFT)
                | (FIELD_MAX << SLOW_SHIFT)
        );
    }

    #[test]
    fn closed_admits_without_writing() {
        let s = acquire(0, at(123), &params());
        assert_eq!(s.next, 0);
        assert_eq!(s.verdict, Decision::Admit);
    }

    #[test]
    fn trip_opens_with_next_generation_and_deadline() {
        let p = params();
        let s = closed_after(0, 0, true, true, 5 * T, &p).unwrap();
        assert_eq!(State::of(s.next), State::Open);
        assert_eq!(generation(s.next), 1);
        assert_eq!(s.change, Some((State::Closed, State::Open)));
        assert_eq!(remaining(s.next, at(5 * T)), Some(10 * T));
        // Refused until the deadline, with the exact wait.
        let r = acquire(s.next, at(14 * T + 5), &p);
        assert_eq!(
            r.verdict,
            Decision::Refuse {
                retry_after: Some(T - 5),
                state: State::Open,
                cause: 0,
            }
        );
        // The deadline admits a probe and moves to half-open.
        let h = acquire(s.next, at(15 * T), &p);
        assert_eq!(h.verdict, Decision::Admit);
        assert_eq!(h.change, Some((State::Open, State::HalfOpen)));
        assert_eq!(probes(h.next), (1, 0, 0, 0));
        assert_eq!(generation(h.next), 2);
    }

    #[test]
    fn deadlines_round_up_to_a_tick() {
        let p = params();
        let s = closed_after(0, 0, true, false, 7, &p).unwrap();
        // Opened at 7 ns for 10 ticks: still open at 10 T + 6, not at 11 T.
        assert!(remaining(s.next, at(10 * T + 6)).is_some());
        assert_eq!(remaining(s.next, at(11 * T)), None);
    }

    #[test]
    fn stale_results_do_not_count() {
        let p = params();
        let open = closed_after(0, 0, true, false, 0, &p).unwrap().next;
        let half = acquire(open, at(10 * T), &p).next;
        assert!(closed_after(half, 0, true, true, 10 * T, &p).is_none());
        assert!(probe_result(half, 0, Outcome::Failure, at(10 * T), &p).is_none());
        assert!(probe_result(half, 1, Outcome::Failure, at(10 * T), &p).is_none());
        assert!(release(half, 1).is_none());
        assert!(probe_result(half, 2, Outcome::Failure, at(10 * T), &p).is_some());
    }

    #[test]
    fn half_open_admits_at_most_the_probe_limit_and_release_returns_a_slot() {
        let p = params();
        let open = closed_after(0, 0, true, false, 0, &p).unwrap().next;
        let mut w = acquire(open, at(10 * T), &p).next;
        for _ in 1..3 {
            let s = acquire(w, at(10 * T), &p);
            assert_eq!(s.verdict, Decision::Admit);
            w = s.next;
        }
        let full = acquire(w, at(10 * T), &p);
        assert_eq!(
            full.verdict,
            Decision::Refuse {
                // The estimate: the half-open timeout (20 T), then one open period (10 T).
                retry_after: Some(30 * T),
                state: State::HalfOpen,
                cause: 0,
            }
        );
        let g = generation(w);
        w = release(w, g).unwrap();
        assert_eq!(probes(w).0, 2);
        assert_eq!(acquire(w, at(10 * T), &p).verdict, Decision::Admit);
    }

    #[test]
    fn half_open_decides_after_needed_results() {
        let p = params();
        let open = closed_after(0, 0, true, false, 0, &p).unwrap().next;
        let mut w = acquire(open, at(10 * T), &p).next;
        w = acquire(w, at(10 * T), &p).next;
        let g = generation(w);
        let s = probe_result(w, g, Outcome::Success, at(10 * T), &p).unwrap();
        assert_eq!(s.change, None);
        assert_eq!(probes(s.next), (2, 1, 0, 0));
        // 1 failure of 2 = 50% >= 50%: re-open, with the second attempt's duration.
        let o = probe_result(s.next, g, Outcome::Failure, at(11 * T), &p).unwrap();
        assert_eq!(o.change, Some((State::HalfOpen, State::Open)));
        assert_eq!(attempts(o.next), 2);
        // Both successes: close, with HOLD set and a fresh generation.
        let c = probe_result(s.next, g, Outcome::Success, at(11 * T), &p).unwrap();
        assert_eq!(c.change, Some((State::HalfOpen, State::Closed)));
        assert_eq!(c.next & HOLD, HOLD);
        assert_eq!(attempts(c.next), 0);
        assert_eq!(clear_hold(c.next, generation(c.next)), Some(c.next & !HOLD));
        assert_eq!(clear_hold(c.next, g), None);
    }

    #[test]
    fn open_duration_grows_per_reopen_and_is_capped() {
        let p = growing();
        let mut w = closed_after(0, 0, true, false, 0, &p).unwrap().next;
        let mut now = 0;
        let mut seen = vec![];
        for _ in 0..6 {
            let left = remaining(w, at(now)).unwrap();
            seen.push(left / T);
            now += left;
            let h = acquire(w, at(now), &p);
            assert_eq!(h.change, Some((State::Open, State::HalfOpen)));
            // The probe fails: re-open.
            let g = generation(h.next);
            w = probe_result(h.next, g, Outcome::Failure, at(now), &{
                let mut q = p;
                q.needed = 1;
                q
            })
            .unwrap()
            .next;
        }
        assert_eq!(seen, vec![20, 40, 50, 50, 50, 50]);
    }

    #[test]
    fn half_open_times_out_to_open() {
        let p = params();
        let open = closed_after(0, 0, true, false, 0, &p).unwrap().next;
        let half = acquire(open, at(10 * T), &p).next;
        let s = acquire(half, at(30 * T), &p);
        assert_eq!(s.change, Some((State::HalfOpen, State::Open)));
        assert_eq!(
            s.verdict,
            Decision::Refuse {
                retry_after: Some(10 * T),
                state: State::Open,
                cause: 0,
            }
        );
    }

    #[test]
    fn deadline_survives_the_tick_field_wrapping() {
        let p = params();
        // Three ticks before the 25-bit tick field wraps.
        let start = (DEADLINE_MASK - 2) * T;
        let open = closed_after(0, 0, true, false, start, &p).unwrap().next;
        for k in 0..10 {
            assert_eq!(
                remaining(open, at(start + k * T)),
                Some((10 - k) * T),
                "k = {k}"
            );
        }
        assert_eq!(remaining(open, at(start + 10 * T)), None);
        assert_eq!(
            acquire(open, at(start + 10 * T), &p).change,
            Some((State::Open, State::HalfOpen))
        );
        // And near the top of the u64 clock.
        let top = u64::MAX - 3 * T;
        let open = closed_after(0, 0, true, false, top, &p).unwrap().next;
        // (The u64 clock saturates at its top, 584 years in: there the deadline stays ahead.)
        assert_eq!(remaining(open, at(top)), Some(3 * T + 1));
    }

    #[test]
    fn a_state_older_than_half_the_tick_field_has_passed_its_deadline() {
        let p = params();
        let open = closed_after(0, 0, true, false, 0, &p).unwrap().next;
        // One lap of the tick field later, the field reads as at the trip: 10 T to go.
        let lap = (1u64 << 25) * T;
        assert_eq!(remaining(open, at(lap)), Some(10 * T));
        // The stamp says the state is that old: its deadline has passed.
        let t = Now::new(lap, 0);
        assert_eq!(remaining(open, t), None);
        assert_eq!(
            acquire(open, t, &p).change,
            Some((State::Open, State::HalfOpen))
        );
        // The same from 2^24 ticks on, and not before: a stamp read late only delays it.
        assert_eq!(remaining(open, Now::new(lap, lap - STALE_NANOS)), None);
        assert_eq!(
            remaining(open, Now::new(lap, lap - STALE_NANOS + 1)),
            Some(10 * T)
        );
    }

    #[test]
    fn a_dirty_record_clears_clean_and_writes_nothing_else_when_enforcing() {
        let p = params();
        let w = CLEAN | (3 << SEQ_SHIFT) | (5 << GEN_SHIFT);
        let s = closed_after(w, 5, false, true, 0, &p).unwrap();
        assert_eq!(s.next, (3 << SEQ_SHIFT) | (5 << GEN_SHIFT));
        assert!(
            closed_after(s.next, 5, false, true, 0, &p).is_none(),
            "no CLEAN to clear: the word is not written"
        );
        assert!(closed_after(w | HOLD, 5, true, true, 0, &p).is_none());
        assert!(closed_after(w, 5, false, false, 0, &p).is_none());
    }

    #[test]
    fn a_metrics_only_seq_bump_clears_clean_and_wraps_inside_its_field() {
        let p = Params {
            enforce: false,
            ..params()
        };
        let w = CLEAN | (SEQ_MASK << SEQ_SHIFT) | (5 << GEN_SHIFT);
        let s = closed_after(w, 5, false, true, 0, &p).unwrap();
        assert_eq!(s.next, 5 << GEN_SHIFT);
        let again = closed_after(s.next, 5, false, true, 0, &p).unwrap();
        assert_eq!(again.next, (1 << SEQ_SHIFT) | (5 << GEN_SHIFT));
    }

    #[test]
    fn thresholds_compare_with_greater_or_equal() {
        let mut p = params();
        assert!(!closed_breach(
            Tally {
                calls: 3,
                failures: 3,
                slow: 0
            },
            &p
        ));
        assert!(closed_breach(
            Tally {
                calls: 4,
                failures: 2,
                slow: 0
            },
            &p
        ));
        assert!(!closed_breach(
            Tally {
                calls: 5,
                failures: 2,
                slow: 0
            },
            &p
        ));
        p.thresholds.failure_rate_ppm = 0;
        p.thresholds.slow_rate_ppm = 1_000_000;
        assert!(closed_breach(
            Tally {
                calls: 4,
                failures: 0,
                slow: 4
            },
            &p
        ));
        assert!(!closed_breach(
            Tally {
                calls: 4,
                failures: 0,
                slow: 3
            },
            &p
        ));
        p.thresholds.slow_rate_ppm = 0;
        p.thresholds.failure_count = 3;
        assert!(!closed_breach(
            Tally {
                calls: 9,
                failures: 2,
                slow: 0
            },
            &p
        ));
        assert!(closed_breach(
            Tally {
                calls: 9,
                failures: 3,
                slow: 0
            },
            &p
        ));
    }

    #[test]
    fn manual_moves() {
        let f = trip(0, TripReason::Manual.code(), None, at(0)).unwrap();
        assert_eq!(f.change, Some((State::Closed, State::ForcedOpen)));
        assert!(trip(f.next, TripReason::Manual.code(), None, at(0)).is_none());
        assert_eq!(
            acquire(f.next, at(0), &params()).verdict,
            Decision::Refuse {
                retry_after: None,
                state: State::ForcedOpen,
                cause: TripReason::Manual.code(),
            }
        );
        let d = manual(f.next, State::Disabled).unwrap();
        assert_eq!(acquire(d.next, at(0), &params()).verdict, Decision::Admit);
        let r = manual(d.next, State::Closed).unwrap();
        assert_eq!(State::of(r.next), State::Closed);
        assert_eq!(generation(r.next), 3);
    }

    #[test]
    fn a_trip_forces_open_with_its_cause_and_a_second_reason_is_no_transition() {
        let code = TripReason::HealthCheck.code();
        let f = trip(0, code, None, at(0)).unwrap();
        assert_eq!(
            (State::of(f.next), cause(f.next)),
            (State::ForcedOpen, code)
        );
        assert_eq!(f.why, Why::Tripped(code));
        let other = TripReason::Other.code();
        let g = trip(f.next, other, None, at(0)).unwrap();
        assert_eq!((g.change, cause(g.next)), (None, other));
        assert_eq!(generation(g.next), generation(f.next));
        // A forced open outlasts a timed trip.
        assert!(trip(g.next, code, Some(T), at(0)).is_none());
    }

    #[test]
    fn a_timed_trip_opens_for_its_duration_and_never_shortens_an_open_state() {
        let p = params();
        let code = TripReason::AdaptiveLimit.code();
        let t = trip(0, code, Some(3 * T + 5), at(7)).unwrap();
        assert_eq!(t.change, Some((State::Closed, State::Open)));
        assert_eq!(cause(t.next), code);
        assert_eq!(
            attempts(t.next),
            0,
            "a trip is no re-open of the breaker's own"
        );
        // To the unit: at least the duration, less than 1 024 ns more.
        let left = remaining(t.next, at(7)).unwrap();
        assert!(
            (3 * T + 5..3 * T + 5 + FINE_NANOS).contains(&left),
            "{left}"
        );
        // The breaker's own open period (10 T) is longer: a shorter trip changes nothing.
        let own = closed_after(0, 0, true, true, 0, &p).unwrap().next;
        assert!(trip(own, code, Some(5 * T), at(0)).is_none());
        // A longer one replaces it, keeping the re-open count.
        let longer = trip(own, code, Some(20 * T), at(0)).unwrap();
        assert_eq!(longer.change, Some((State::Open, State::Open)));
        assert_eq!((attempts(longer.next), cause(longer.next)), (1, code));
        assert_eq!(remaining(longer.next, at(0)), Some(20 * T));
        // After it, the first acquire probes, as after any open period.
        let h = acquire(longer.next, at(20 * T), &p);
        assert_eq!(h.change, Some((State::Open, State::HalfOpen)));
        assert_eq!(h.why, Why::OpenPeriodEnded);
    }

    #[test]
    fn force_half_open_starts_fresh_probes() {
        let p = params();
        let open = closed_after(0, 0, true, true, 0, &p).unwrap().next;
        let h = force_half_open(open, 3 * T, &p).unwrap();
        assert_eq!(h.change, Some((State::Open, State::HalfOpen)));
        assert_eq!(probes(h.next), (0, 0, 0, 0));
        assert_eq!(remaining(h.next, at(3 * T)), Some(20 * T));
        assert!(force_half_open(h.next, 3 * T, &p).is_none());
    }

    #[test]
    fn an_open_deadline_keeps_its_fine_bits_across_the_field_wrap() {
        let p = Params {
            open_nanos: 10 * T + 777,
            ..params()
        };
        // Just below the 35-bit unit counter's wrap.
        let start = (UNITS_MASK - 3) * FINE_NANOS + 11;
        let open = closed_after(0, 0, true, false, start, &p).unwrap().next;
        let left = remaining(open, at(start)).unwrap();
        assert!(
            (10 * T + 777..10 * T + 777 + FINE_NANOS).contains(&left),
            "{left}"
        );
        assert!(remaining(open, at(start + left - 1)).is_some());
        assert_eq!(remaining(open, at(start + left)), None);
    }

    #[test]
    fn metrics_only_marks_a_breach_once_and_a_clean_success_ends_it() {
        let p = Params {
            enforce: false,
            ..params()
        };
        let first = closed_after(0, 0, true, true, 0, &p).unwrap();
        assert_eq!((first.change, first.why), (None, Why::Breach));
        assert_eq!(State::of(first.next), State::Closed);
        // Breaching again: the failure still bumps SEQ, but reports nothing.
        let again = closed_after(first.next, 0, true, true, 0, &p).unwrap();
        assert_eq!(again.why, Why::Nothing);
        assert!(closed_after(first.next, 0, true, false, 0, &p).is_none());
        // A fast success that breaches nothing clears the mark (and may set CLEAN).
        let settled_word = settled(again.next, true).unwrap();
        assert_eq!(settled_word & CLEAN, CLEAN);
        assert_eq!(settled(settled_word, true), None);
        assert_eq!(
            closed_after(settled_word & !CLEAN, 0, true, true, 0, &p)
                .unwrap()
                .why,
            Why::Breach,
            "the next breach is reported again"
        );
    }

    #[test]
    fn generation_wraps_inside_its_field() {
        let w = GEN_MASK << GEN_SHIFT;
        let s = manual(w, State::Disabled).unwrap();
        assert_eq!(generation(s.next), 0);
        assert_eq!(s.next, DISABLED);
    }
}
