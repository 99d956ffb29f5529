//! One registry entry: its primitive and the entry word that decides, alone, whether the entry
//! may still be handed out or has been evicted.
//!
//! ## The entry word
//!
//! ```text
//!  63                              32 31                               1   0
//! +----------------------------------+----------------------------------+-------+
//! | EPOCH (32 bits, wrapping)        | PINS (31 bits)                   |EVICTED|
//! +----------------------------------+----------------------------------+-------+
//! ```
//!
//! - `EVICTED`: set once, never cleared. A set bit means the entry has left (or is leaving) the
//!   map: no lookup hands it out again; handles taken before keep working on its primitive.
//! - `PINS`: the live [`Handle`](super::Handle)s of the entry. Each pin is one handle (memory),
//!   so the count never reaches 2^31.
//! - `EPOCH`: bumped by every pin (in the same add), never by an unpin: two loads with the same
//!   word saw no pin between them. The eviction scan also reads it as the entry's last-use mark
//!   (a CLOCK-style second chance: an entry pinned since the scan last visited it is kept once
//!   more), so a lookup stamps its use with the add it makes anyway. Its carry out of bit 63 is
//!   dropped by the wrapping add.
//!
//! ## State table
//!
//! | word                  | pin (lookup, handle clone)      | unpin (handle drop) | evict (scan)                      | remove          |
//! |-----------------------|---------------------------------|---------------------|-----------------------------------|-----------------|
//! | live, `PINS = 0`      | `PINS + 1`, `EPOCH + 1`: handed out | -               | CAS to `EVICTED` if the word is the one the idle check followed | set `EVICTED` |
//! | live, `PINS > 0`      | `PINS + 1`, `EPOCH + 1`          | `PINS - 1`         | refused (a handle is live)        | set `EVICTED`   |
//! | `EVICTED`             | refused: the add is undone, the lookup goes to the creation path | `PINS - 1` | - | - |
//!
//! ## Why the eviction never drops evidence
//!
//! The scan loads the word, finds `PINS = 0`, checks the primitive idle, then swaps the word it
//! loaded for the same word with `EVICTED`. The swap succeeds only if no pin (and so no handle,
//! and no use) happened since the load: every pin changes `EPOCH`. A lookup whose pin comes
//! before the swap in the word's modification order makes the swap fail; one whose pin comes
//! after sees `EVICTED` and never uses the entry. So a result recorded through a handle either
//! finished before the idle check read the primitive, and the check saw it, or its handle's pin
//! made the swap fail. The race is decided by the modification order of this one word; the
//! orderings below only make the primitive's state visible to the idle check.
//!
//! ## Memory orderings
//!
//! - pin (`fetch_add`): `Relaxed`. The entry's primitive was published by the map (its insert
//!   and lookup synchronise), and the exclusion against eviction is the word's modification
//!   order, which every ordering respects.
//! - undo of a refused pin (`fetch_sub`): `Relaxed`: the entry is evicted, nothing is read
//!   through it.
//! - unpin (`fetch_sub`): `Release`: what the handle's owner did to the primitive happens before
//!   a scan's `Acquire` load that reads this unpin (or a later value), so the idle check sees it.
//! - scan's load: `Acquire`, pairing with the unpins' `Release`.
//! - evict (`compare_exchange`): `Relaxed` on success and failure: it publishes nothing (the
//!   scan removes the entry from the map under the registry's lock), and its success depends
//!   only on the word's modification order.
//! - remove (`fetch_or`): `Relaxed`, for the same reason.
//! - `is_evicted` (`load`): `Relaxed`: a report, ordering nothing.

use crate::sync::{AtomicU64, Ordering, StdArc};

/// `EVICTED`: the entry has left the map.
pub(crate) const EVICTED: u64 = 1;
/// One pin in `PINS`.
const PIN: u64 = 1 << 1;
/// One step of `EPOCH`.
const EPOCH_ONE: u64 = 1 << 32;
/// `PINS` in place.
const PINS_MASK: u64 = ((1 << 31) - 1) << 1;

/// `PINS` of `word`.
#[inline]
pub(crate) fn pins(word: u64) -> u64 {
    (word & PINS_MASK) >> 1
}

/// `EPOCH` of `word`.
#[inline]
pub(crate) fn epoch(word: u64) -> u32 {
    (word >> 32) as u32
}

/// An entry: the primitive (shared with owned permits through [`primitive`](Slot::primitive))
/// and its entry word.
pub(crate) struct Slot<P> {
    word: AtomicU64,
    primitive: StdArc<P>,
}

impl<P> Slot<P> {
    /// A live entry holding one pin (its creator's handle), at epoch 1.
    pub(crate) fn pinned(primitive: P) -> Self {
        Self {
            word: AtomicU64::new(PIN + EPOCH_ONE),
            primitive: StdArc::new(primitive),
        }
    }

    /// The primitive.
    #[inline]
    pub(crate) fn primitive(&self) -> &StdArc<P> {
        &self.primitive
    }

    /// Adds a pin unless the entry is evicted; `false` (and no pin) if it is.
    #[inline]
    pub(crate) fn pin(&self) -> bool {
        let w = self.word.fetch_add(PIN + EPOCH_ONE, Ordering::Relaxed);
        if w & EVICTED != 0 {
            self.word.fetch_sub(PIN, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Adds a pin for a copy of a live handle: the entry cannot be evicted while that handle
    /// holds its own pin, so the add always counts.
    #[inline]
    pub(crate) fn pin_again(&self) {
        self.word.fetch_add(PIN + EPOCH_ONE, Ordering::Relaxed);
    }

    /// Drops a pin.
    #[inline]
    pub(crate) fn unpin(&self) {
        self.word.fetch_sub(PIN, Ordering::Release);
    }

    /// The word, for a scan's idle check.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    /// Whether the entry may be evicted as far as its handles go, given the word `seen` a scan
    /// loaded: no pin, and no owned permit or copy of the primitive's `Arc` outside the entry.
    /// An `Arc` copy can only be made through a pinned handle, so a copy made after `seen` also
    /// bumped the epoch and fails [`evict`](Slot::evict).
    pub(crate) fn unheld(&self, seen: u64) -> bool {
        if seen & EVICTED != 0 || pins(seen) != 0 || StdArc::strong_count(&self.primitive) != 1 {
            return false;
        }
        // The last copy of the primitive's `Arc` was dropped with a `Release` decrement; this
        // fence makes what its owner did (a permit's record) visible to the idle check, as the
        // `Acquire` load of the word does for handles.
        crate::sync::fence(Ordering::Acquire);
        true
    }

    /// Evicts the entry if its word is still `seen` (no pin since the idle check that followed
    /// `seen`); `true` if this call evicted it.
    pub(crate) fn evict(&self, seen: u64) -> bool {
        self.word
            .compare_exchange(seen, seen | EVICTED, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Evicts the entry whatever its handles (a removal): lookups stop handing it out, live
    /// handles keep working.
    pub(crate) fn remove(&self) {
        self.word.fetch_or(EVICTED, Ordering::Relaxed);
    }

    /// Whether the entry has been evicted or removed.
    #[inline]
    pub(crate) fn is_evicted(&self) -> bool {
        self.word.load(Ordering::Relaxed) & EVICTED != 0
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;

    #[test]
    fn pins_and_epochs() {
        let s = Slot::pinned(());
        let w = s.load();
        assert_eq!((pins(w), epoch(w), w & EVICTED), (1, 1, 0));
        assert!(!s.unheld(w));
        s.unpin();
        let w = s.load();
        assert_eq!((pins(w), epoch(w)), (0, 1));
        assert!(s.unheld(w));
        assert!(s.pin());
        s.unpin();
        assert!(!s.evict(w), "a pin since the load keeps the entry");
        let w = s.load();
        assert_eq!(epoch(w), 2);
        assert!(s.evict(w));
        assert!(s.is_evicted());
        assert!(!s.pin(), "an evicted entry is never handed out");
        assert_eq!(pins(s.load()), 0);
    }

    #[test]
    fn an_outside_arc_keeps_the_entry() {
        let s = Slot::pinned(());
        s.unpin();
        let copy = s.primitive().clone();
        assert!(!s.unheld(s.load()));
        drop(copy);
        assert!(s.unheld(s.load()));
    }

    #[test]
    fn remove_evicts_a_pinned_entry() {
        let s = Slot::pinned(());
        s.remove();
        assert!(s.is_evicted());
        s.unpin();
        assert!(!s.pin());
    }

    #[test]
    fn the_epoch_wraps_without_touching_the_pins() {
        let s = Slot {
            word: AtomicU64::new((u64::from(u32::MAX) << 32) | PIN),
            primitive: StdArc::new(()),
        };
        s.pin_again();
        let w = s.load();
        assert_eq!((pins(w), epoch(w), w & EVICTED), (2, 0, 0));
    }
}
