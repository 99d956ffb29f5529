//! The packed state word: pure functions of a `u64`, no atomics.
//!
//! # Layout
//!
//! ```text
//!    63        62        61       60 ........... 31   30 ............ 0
//! [CLOSED][WAITERS][ORPHANED][ limit (30 bits)     ][ in_flight (31 bits) ]
//! ```
//!
//! # State table
//!
//! | CLOSED | WAITERS | in_flight vs limit | meaning                                            |
//! |--------|---------|--------------------|----------------------------------------------------|
//! | 0      | 0       | `<`                | open, a slot free: `try_acquire` takes it          |
//! | 0      | 0       | `>=`               | full, nobody queued: a caller may queue            |
//! | 0      | 1       | any                | waiters queued: newcomers are refused or queue behind them; a freed slot is handed to the head |
//! | 1      | 0       | any                | closed: nothing admitted; in-flight work finishes  |
//! | 1      | 1       | any                | closed, waiters not yet refused (until `close` takes the lock) |
//!
//! `in_flight > limit` happens after a shrink: releases bring it down; nothing is admitted until
//! it is below the limit.
//!
//! # Who sets and clears each field
//!
//! - `in_flight`: `+1` by the admission CAS (`try_acquire`, fast path, only if `!WAITERS`) and by
//!   a hand-off (under the queue lock, only if `in_flight < limit`); `-1` by a release
//!   (`fetch_sub`, never below 0: each release matches one admission).
//! - `limit`: only `set_limit`'s CAS, which keeps every other field.
//! - `WAITERS`: set and cleared only under the queue lock, so under the lock it is set exactly
//!   when the queue is non-empty. A waiter sets it (`fetch_or`) after queueing itself and then
//!   re-checks capacity (the hand-off loop); the lock holder that empties the queue clears it.
//! - `CLOSED`: set once by `close` (`fetch_or`), never cleared.
//! - `ORPHANED`: set once by the [`Bulkhead`]'s drop (`fetch_or`, under the queue lock), never
//!   cleared; from then on the release that leaves `in_flight` at 0 frees the shared state
//!   (see `Core`). Every transition above keeps it.
//!
//! # Why no wakeup is lost
//!
//! A releaser's `fetch_sub` and a waiter's `fetch_or(WAITERS)` are read-modify-writes of the same
//! atomic, so one comes first in its modification order. If the `fetch_sub` is first, the waiter's
//! re-check after its `fetch_or` (under the lock) sees the freed slot and takes it. If the
//! `fetch_or` is first, the `fetch_sub` returns a word with `WAITERS` set, and the releaser takes
//! the lock, which the waiter held while queueing, and hands the slot to the head of the queue.
//! No fence is needed.
//!
//! # Orderings
//!
//! - Admission CAS: `Acquire` on success, so the previous holder's work (published by its
//!   release) happens before the new holder's; `Relaxed` on failure (the value is only retried).
//! - Release `fetch_sub`: `Release`, pairing with the next admission's `Acquire` (read-modify-
//!   writes extend the release sequence, so the pairing holds through other RMWs).
//! - An owned permit's release, a CAS when nobody is queued and the bulkhead lives: `Release`,
//!   as the `fetch_sub`.
//! - The bulkhead's drop, `fetch_or(ORPHANED)`: `AcqRel`: Release orders its accesses before a
//!   free by the last permit; Acquire lets it free after the permits' `Release` exits.
//! - The free: an `Acquire` fence after the RMW that decided it, so every other access to the
//!   state (each released by an RMW on the word) happens-before the deallocation.
//! - Everything under the queue lock uses `AcqRel`: the lock already orders it, and the slow path
//!   is not worth a subtler argument. A hand-off reaches its waiter through the slot's
//!   `Release`/`Acquire` (see [`crate::wait::queue`]).
//! - Metric loads are `Relaxed`: a snapshot, not a synchronisation.
//! - The in-flight load of an adaptive permit's report, just before its release: `Relaxed`, a
//!   count for the algorithm (as a metric), not a synchronisation.
//! - The idle check of a registry's eviction (in flight, limit, closed): `Relaxed`; the
//!   registry's entry word, not this one, decides the race with a lookup.

/// Bits of `in_flight`.
pub(crate) const COUNT_BITS: u32 = 31;
/// Mask of `in_flight`, unshifted.
pub(crate) const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Bits of `limit`.
pub(crate) const LIMIT_BITS: u32 = 30;
/// One call in flight.
pub(crate) const ONE: u64 = 1;
/// Where `limit` starts.
pub(crate) const LIMIT_SHIFT: u32 = COUNT_BITS;
/// The `limit` field, in place.
pub(crate) const LIMIT_MASK: u64 = ((1 << LIMIT_BITS) - 1) << LIMIT_SHIFT;
/// The [`Bulkhead`](super::Bulkhead) is gone; the last owned permit frees the state.
pub(crate) const ORPHANED: u64 = 1 << 61;
/// Somebody is queued (see the module docs for who may touch it).
pub(crate) const WAITERS: u64 = 1 << 62;
/// Closed: nothing new is admitted.
pub(crate) const CLOSED: u64 = 1 << 63;

/// The largest limit the word holds: 2^30 - 1.
pub const MAX_LIMIT: u32 = (1 << LIMIT_BITS) - 1;

// The fields do not overlap, and a full count fits its field.
const _: () = assert!(LIMIT_MASK & (COUNT_MASK | ORPHANED | WAITERS | CLOSED) == 0);
const _: () = assert!(ORPHANED & (COUNT_MASK | WAITERS | CLOSED) == 0);
const _: () = assert!(MAX_LIMIT as u64 <= COUNT_MASK);

/// A fresh word: nothing in flight, `limit`, no flags.
#[inline]
pub(crate) const fn new(limit: u32) -> u64 {
    (limit as u64) << LIMIT_SHIFT
}

/// Calls in flight.
#[inline]
pub(crate) const fn in_flight(w: u64) -> u32 {
    (w & COUNT_MASK) as u32
}

/// The limit.
#[inline]
pub(crate) const fn limit(w: u64) -> u32 {
    ((w & LIMIT_MASK) >> LIMIT_SHIFT) as u32
}

/// Whether anyone is queued.
#[inline]
pub(crate) const fn has_waiters(w: u64) -> bool {
    w & WAITERS != 0
}

/// Whether the bulkhead is closed.
#[inline]
pub(crate) const fn is_closed(w: u64) -> bool {
    w & CLOSED != 0
}

/// `w` with its limit replaced, every other field kept.
#[inline]
pub(crate) const fn with_limit(w: u64, limit: u32) -> u64 {
    (w & !LIMIT_MASK) | ((limit as u64) << LIMIT_SHIFT)
}

/// The outcome of a fail-fast admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Admitted: the word to CAS in.
    Take(u64),
    /// No free slot, or others are queued.
    Full,
    /// Closed.
    Closed,
}

/// Fail-fast admission: open, nobody queued, and a slot free.
#[inline]
pub(crate) const fn admit(w: u64) -> Admit {
    if is_closed(w) {
        Admit::Closed
    } else if has_waiters(w) || in_flight(w) >= limit(w) {
        Admit::Full
    } else {
        Admit::Take(w + ONE)
    }
}

/// A hand-off to the head of the queue (the caller holds the queue lock, and someone is
/// queued): the word with one more in flight, if open and a slot is free.
#[inline]
pub(crate) const fn hand_off(w: u64) -> Option<u64> {
    if !is_closed(w) && in_flight(w) < limit(w) {
        Some(w + ONE)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_LIMIT: u32 = super::MAX_LIMIT;

    #[test]
    fn word_fields_round_trip_and_keep_each_other() {
        let w = new(MAX_LIMIT) | WAITERS | CLOSED | u64::from(MAX_LIMIT - 1);
        assert_eq!(limit(w), MAX_LIMIT);
        assert_eq!(in_flight(w), MAX_LIMIT - 1);
        assert!(has_waiters(w) && is_closed(w));
        let v = with_limit(w, 7);
        assert_eq!(limit(v), 7);
        assert_eq!(in_flight(v), MAX_LIMIT - 1);
        assert!(has_waiters(v) && is_closed(v));
        // The largest in-flight count never carries into the limit.
        let full = new(MAX_LIMIT) | u64::from(MAX_LIMIT - 1);
        let Admit::Take(next) = admit(full) else {
            panic!("a slot was free")
        };
        assert_eq!(in_flight(next), MAX_LIMIT);
        assert_eq!(limit(next), MAX_LIMIT);
        assert_eq!(admit(next), Admit::Full);
    }

    #[test]
    fn admission_rules() {
        let w = new(2);
        assert_eq!(admit(w), Admit::Take(w + 1));
        assert_eq!(admit(w + 2), Admit::Full);
        assert_eq!(admit(w | WAITERS), Admit::Full);
        assert_eq!(admit(w | CLOSED), Admit::Closed);
        assert_eq!(hand_off(w | WAITERS), Some((w | WAITERS) + 1));
        assert_eq!(hand_off(w + 2), None);
        assert_eq!(hand_off(w | CLOSED), None);
        // Shrunk below in flight: nothing until under the limit.
        let shrunk = with_limit(w + 2, 1);
        assert_eq!(admit(shrunk), Admit::Full);
        assert_eq!(hand_off(shrunk), None);
    }
}
