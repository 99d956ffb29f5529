//! The drainer's packed word: its layout, its state tables, who moves each field and the ordering
//! of every access, then the pure functions of a `u64` that make each decision.
//!
//! One `AtomicU64` holds everything a decision needs:
//!
//! ```text
//!  63            38   37    36     35     34      33       32      31 30 29               0
//! +----------------+-----+------+------+-------+--------+---------+-----+------------------+
//! | entries (26 b) |COMPL| HELD |ORPHAN|DRAINED|DRAINING|NOT_READY| ovf |  in-flight count |
//! +----------------+-----+------+------+-------+--------+---------+-----+------------------+
//! ```
//!
//! - **count** (bits 0..=31): live guards, borrowed and owned, plus for an instant each `enter`
//!   that the word itself refuses (one racing the start of draining, or finding the count full).
//!   Once draining has started, `enter` reads a flag on a cache line of its own (`refusing`,
//!   stored after `DRAINING`) and refuses without touching the word. At most [`MAX_IN_FLIGHT`]
//!   (2^30) are admitted: an `enter` that sees bit 30 or 31 set in the previous count refuses
//!   with [`DrainRefused::Full`]. Bits 30..=31 are headroom: a refused `enter` adds one before it
//!   undoes it, so up to 3 x 2^30 racing refusals fit before the count could touch the flags.
//! - **NOT_READY**: `is_ready()` is false. Set by `mark_not_ready` or `start_draining`; never
//!   cleared.
//! - **DRAINING**: new work is refused. Set by `start_draining` (with NOT_READY); never cleared.
//! - **DRAINED**: draining and no admitted work is left. Set once, by the drain's completer;
//!   never cleared.
//! - **ORPHANED**: the [`Drainer`] has been dropped while owned guards may live. Set once, by
//!   its drop; never cleared.
//! - **HELD**: the completer is finishing the drain (storing the time, waking waiters) and keeps
//!   the state alive until it clears the bit.
//! - **COMPLETER**: a completer is on its way although the count reads above zero (the undo of
//!   an `enter` that found the count at zero while draining sets it), so no later undo takes
//!   its place.
//! - **entries** (bits 38..=63): `enter` calls, counted mod 2^26 in the same `fetch_add` that
//!   counts the guard. The call whose add carries out of bit 63 (it sees the field all ones) adds
//!   one to a separate wrap counter, so [`DrainMetrics::admitted`] stays exact without a second atomic
//!   operation on the hot path. `admitted = entries - late refusals` (those the word refused).
//!
//! | phase      | bits set                   | who moves it on                                    |
//! |------------|----------------------------|----------------------------------------------------|
//! | serving    | -                          | `mark_not_ready` -> not-ready; `start_draining` -> draining |
//! | not-ready  | NOT_READY                  | `start_draining` -> draining                       |
//! | draining   | NOT_READY, DRAINING        | the completer -> drained                           |
//! | drained    | NOT_READY, DRAINING, DRAINED | nobody: final                                    |
//!
//! **The completer** is the one operation that leaves the count at zero while draining, with
//! `COMPLETER` clear: `start_draining` finding no work in flight, the last guard's drop, or the
//! undo of a refused `enter` whose own add found the count above zero. Once the count has been
//! zero while draining, no admitted guard is left and none can be made, so the completer sets
//! `DRAINED` (with `HELD`) by a compare-exchange loop whatever the count reads by then: only
//! refused `enter` calls on their way to undo can have raised it. One completer per drain, so
//! the broadcast fires once and every waiter is woken once. A waiter returns only on DRAINED
//! (or, after its deadline, on a word that shows the count at zero while draining).
//!
//! **The state's lifetime** is decided on the same word, so an owned guard needs no reference
//! count of its own: the state is freed by the one operation that leaves the word `ORPHANED`,
//! with a count of zero, `HELD` clear and no completion pending (draining and not drained with
//! a count of zero). That is the drainer's drop finding nothing else alive, the last guard's
//! drop after the drainer's, or the completer clearing `HELD`. Nothing but the completer
//! touches the state after giving up its unit; a guard whose release is not the last reads only
//! the value its `fetch_sub` returned.
//!
//! | lifetime              | word                                   | freed by                     |
//! |-----------------------|----------------------------------------|------------------------------|
//! | drainer alive         | ORPHANED clear                         | -                            |
//! | orphaned, guards live | ORPHANED, count > 0                    | the release leaving 0        |
//! | orphaned, completing  | ORPHANED, HELD or a pending completion | the completer clearing HELD  |
//! | orphaned, empty       | ORPHANED, count 0, nothing pending     | whoever made it so: once     |
//!
//! # Orderings
//!
//! - `enter`, the load of `refusing`: `Acquire`; it is stored (`Release`) after `DRAINING`, so
//!   an `enter` that reads it set is ordered after the word became `DRAINING`.
//! - `enter`, the `fetch_add`: `Relaxed`; admission is its place in the word's modification
//!   order beside `start_draining`'s `fetch_or`, and a new guard publishes nothing.
//! - a guard's drop: `fetch_sub(Release)`, so the guarded work (and every access the guard made
//!   to the state) happens-before whatever reads the count reaching zero.
//! - the undo of an `enter` that found a completion pending: compare-exchange `Release`, as a
//!   drop.
//! - the completer's compare-exchange: `AcqRel`. Acquire: each `Release` exit heads a release
//!   sequence it reads from, so the completer sees all the guarded work; Release: waiters that
//!   load DRAINED with `Acquire` see it too.
//! - the completer's clearing of HELD: `fetch_and(AcqRel)`: Release orders its accesses before
//!   a free by the drainer's drop; Acquire lets it free after that drop.
//! - the drainer's drop: `fetch_or(ORPHANED, AcqRel)`: Release orders its accesses before a
//!   free by the last guard; Acquire lets it free after the guards' `Release` exits.
//! - the free: an `Acquire` fence after the RMW that decided it, so every access by the others,
//!   each released by their RMW on the word, happens-before the deallocation.
//! - `start_draining`: `fetch_or(AcqRel)`; it publishes the drain start time, stored before it.
//! - readers (`is_ready`, `is_draining`, waits): `Acquire`.
//! - clones of a guard: `fetch_add(Relaxed)` (like `Arc::clone`: the clone is made from a live
//!   guard, so the count cannot be zero and nothing needs publishing).
//!
//! The waiter lists are `Notify` broadcasts (`src/wait/notify.rs`): touched only by waiters and
//! by the one transition that fires them.

use super::{DrainRefused, Phase};

/// One guard in the count field.
pub(super) const ONE: u64 = 1;
/// The count field.
pub(super) const COUNT_MASK: u64 = (1 << 32) - 1;
/// The most guards that can be alive at once; an `enter` beyond it is refused with
/// [`DrainRefused::Full`] instead of overflowing into the phase bits.
pub const MAX_IN_FLIGHT: u64 = 1 << 30;
/// A previous count with any of these bits set means the count is full.
pub(super) const FULL_MASK: u64 = COUNT_MASK & !(MAX_IN_FLIGHT - 1);
/// `is_ready()` is false.
pub(super) const NOT_READY: u64 = 1 << 32;
/// New work is refused.
pub(super) const DRAINING: u64 = 1 << 33;
/// Draining, and no admitted work is left.
pub(super) const DRAINED: u64 = 1 << 34;
/// The [`Drainer`] has been dropped: the last guard to go frees the core.
pub(super) const ORPHANED: u64 = 1 << 35;
/// The completer holds the core while it finishes the drain.
pub(super) const HELD: u64 = 1 << 36;
/// A completer is on its way (set by the undo of an `enter` refused while the count was zero),
/// so a later undo that leaves the count at zero does not complete the drain a second time.
pub(super) const COMPLETER: u64 = 1 << 37;
/// The entries field: `enter` calls mod 2^26.
pub(super) const ENTRY_SHIFT: u32 = 38;
pub(super) const ENTRY_ONE: u64 = 1 << ENTRY_SHIFT;
/// The number of values the entries field holds.
pub(super) const ENTRY_WRAP: u64 = 1 << (64 - ENTRY_SHIFT);
/// A previous word at or above this has the entries field all ones: this `enter` carried.
pub(super) const ENTRY_CARRY: u64 = !0 << ENTRY_SHIFT;
/// What `enter` adds.
pub(super) const ENTER: u64 = ONE | ENTRY_ONE;
/// `enter` refuses if the previous word has any of these bits.
pub(super) const REFUSE_MASK: u64 = DRAINING | FULL_MASK;

// The layout's invariants, checked at compile time: the fields do not overlap, and the count's
// headroom (bits 30..=31) lies below the phase bits.
const _: () = assert!(COUNT_MASK < NOT_READY && MAX_IN_FLIGHT < COUNT_MASK);
const _: () = assert!(FULL_MASK & (NOT_READY | DRAINING | DRAINED) == 0);
const _: () = assert!(DRAINED < ORPHANED && ORPHANED < HELD && HELD < COMPLETER);
const _: () = assert!(COMPLETER < ENTRY_ONE);

/// The lane of `Drainer::refused` for refusals by `refusing`, which never touch the word.
pub(super) const EARLY: usize = 0;
/// The lane for refusals by the word, whose entry is counted there.
pub(super) const LATE: usize = 1;

/// "Not yet" in the timestamp slots.
pub(super) const UNSET: u64 = u64::MAX;

/// Whether an `enter` whose `fetch_add` returned `prev` is admitted.
#[inline]
pub(super) fn admission(prev: u64) -> Result<(), DrainRefused> {
    if prev & DRAINING != 0 {
        Err(DrainRefused::Draining)
    } else if prev & FULL_MASK != 0 {
        Err(DrainRefused::Full)
    } else {
        Ok(())
    }
}

/// Whether the `enter` whose `fetch_add` returned `prev` carried out of the entries field.
#[inline]
pub(super) fn carried(prev: u64) -> bool {
    prev >= ENTRY_CARRY
}

/// Whether `word` is "draining, not yet drained, nothing in flight": the state whose observer
/// must try to complete the drain.
#[inline]
pub(super) fn completes_drain(word: u64) -> bool {
    word & (DRAINING | DRAINED | COUNT_MASK) == DRAINING
}

/// Whether the operation that left (or saw) `word` is the drain's completer: the count is zero
/// while draining, not yet drained, and no completer is already on its way.
#[inline]
pub(super) fn makes_completer(word: u64) -> bool {
    completes_drain(word) && word & COMPLETER == 0
}

/// Whether the operation that left `word` frees the core: the drainer is gone, no guard is left,
/// and no completion is pending or running.
#[inline]
pub(super) fn frees(word: u64) -> bool {
    word & (ORPHANED | HELD | COUNT_MASK) == ORPHANED && !completes_drain(word)
}

/// The phase a word is in.
#[inline]
pub(super) fn phase_of(word: u64) -> Phase {
    if word & DRAINED != 0 {
        Phase::Drained
    } else if word & DRAINING != 0 {
        Phase::Draining
    } else if word & NOT_READY != 0 {
        Phase::NotReady
    } else {
        Phase::Serving
    }
}

/// The guards alive in `word` (a drained word reports 0 even while a refused `enter` is undoing).
#[inline]
pub(super) fn in_flight_of(word: u64) -> u64 {
    if word & DRAINED != 0 {
        0
    } else {
        word & COUNT_MASK
    }
}

/// The entries field of `word`.
#[inline]
pub(super) fn entries_of(word: u64) -> u64 {
    word >> ENTRY_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_word_functions() {
        assert_eq!(admission(0), Ok(()));
        assert_eq!(admission(NOT_READY | 5), Ok(()));
        assert_eq!(admission(DRAINING | NOT_READY), Err(DrainRefused::Draining));
        assert_eq!(admission(MAX_IN_FLIGHT - 1), Ok(()));
        assert_eq!(admission(MAX_IN_FLIGHT), Err(DrainRefused::Full));
        assert!(!carried(ENTRY_CARRY - 1));
        assert!(carried(ENTRY_CARRY));
        assert!(completes_drain(DRAINING | NOT_READY | (7 << ENTRY_SHIFT)));
        assert!(!completes_drain(DRAINING | NOT_READY | 1));
        assert!(!completes_drain(DRAINING | NOT_READY | DRAINED));
        assert!(!completes_drain(NOT_READY));
        assert_eq!(phase_of(0), Phase::Serving);
        assert_eq!(phase_of(NOT_READY | 3), Phase::NotReady);
        assert_eq!(phase_of(NOT_READY | DRAINING | 3), Phase::Draining);
        assert_eq!(phase_of(NOT_READY | DRAINING | DRAINED | 1), Phase::Drained);
        assert_eq!(in_flight_of(NOT_READY | DRAINING | DRAINED | 1), 0);
        assert_eq!(in_flight_of(NOT_READY | 9 | (3 << ENTRY_SHIFT)), 9);
    }
}
