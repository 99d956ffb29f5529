//! # Implementation details: the breaker's live configuration, read without a lock.
//!
//! A [`reconfigure`](super::CircuitBreaker::reconfigure) changes the thresholds, the minimum
//! number of calls, the open period and its growth, the half-open probes and timeout and the
//! slow-call rule of a running breaker. Every decision reads them, so they must be read without
//! a lock, and a decision must see one configuration whole: a minimum number of calls from one
//! and a failure rate from the other could trip a breaker that neither would.
//!
//! ## Layout
//!
//! [`Params`] is packed into [`WORDS`] `u64`s (the encoding is [`encode`]). Two slots hold a copy
//! each; `active` names the one readers use. A slot has its own `version`, odd while a writer is
//! filling it (a sequence lock per slot).
//!
//! | who | does |
//! |---|---|
//! | a reader (every decision) | loads `active`, then the slot's `version` (retry while odd), its words, and `version` again; a changed `version` means a writer refilled the slot meanwhile: retry |
//! | the writer (one at a time: `reconfigure` holds the breaker's settings lock) | fills the inactive slot (`version` odd, words, `version` even), then points `active` at it |
//!
//! A reader never waits for a writer that is filling a slot it reads through `active`: the
//! writer fills only the other slot. A reader retries only when a writer refilled the slot it
//! was reading, which takes a whole completed reconfigure in between (the writer fills the slot
//! `active` left).
//!
//! ## Orderings
//!
//! - `active` load: `Acquire`, pairing with the writer's `Release` store, so the slot it names is
//!   seen filled.
//! - First `version` load: `Acquire`, pairing with the writer's final `Release` store of the
//!   even version, so the words of that fill are seen.
//! - Word loads and stores: `Relaxed`; the fences order them.
//! - The reader's `fence(Acquire)` after its word loads, and the writer's `fence(Release)` after
//!   its odd `version` store and before its word stores: a reader that loaded any word of a later
//!   fill synchronizes with that fill's fence, so its second `version` load sees the odd version
//!   (or later) and it retries.
//! - Second `version` load: `Relaxed` (ordered by the fence above).
//! - The writer's odd `version` store: `Relaxed` (ordered by its fence); the even one and
//!   `active`'s: `Release`.

use super::state::{Params, Thresholds};
use crate::sync::{AtomicU64, AtomicUsize, Ordering, fence, spin_loop};

/// How many `u64`s a [`Params`] packs into.
const WORDS: usize = 7;

/// [`Params`] as [`WORDS`] words: `min_calls | failure_count << 32`; `failure_rate_ppm |
/// slow_rate_ppm << 20 | probes << 40 | needed << 46 | enforce << 52` (rates are at most
/// 10^6 < 2^20, probes and needed at most 31); then `open_nanos`, `growth`, `growth_max`,
/// `half_open_nanos`, `slow_nanos`.
fn encode(p: &Params) -> [u64; WORDS] {
    [
        u64::from(p.thresholds.min_calls) | u64::from(p.thresholds.failure_count) << 32,
        u64::from(p.thresholds.failure_rate_ppm)
            | u64::from(p.thresholds.slow_rate_ppm) << 20
            | u64::from(p.probes) << 40
            | u64::from(p.needed) << 46
            | u64::from(p.enforce) << 52,
        p.open_nanos,
        p.growth,
        p.growth_max,
        p.half_open_nanos,
        p.slow_nanos,
    ]
}

const RATE: u64 = (1 << 20) - 1;

/// The [`Thresholds`] in the first two words.
fn decode_thresholds(w0: u64, w1: u64) -> Thresholds {
    Thresholds {
        min_calls: w0 as u32,
        failure_count: (w0 >> 32) as u32,
        failure_rate_ppm: (w1 & RATE) as u32,
        slow_rate_ppm: ((w1 >> 20) & RATE) as u32,
    }
}

fn decode(w: [u64; WORDS]) -> Params {
    const SMALL: u64 = (1 << 6) - 1;
    Params {
        thresholds: decode_thresholds(w[0], w[1]),
        probes: ((w[1] >> 40) & SMALL) as u32,
        needed: ((w[1] >> 46) & SMALL) as u32,
        enforce: (w[1] >> 52) & 1 == 1,
        open_nanos: w[2],
        growth: w[3],
        growth_max: w[4],
        half_open_nanos: w[5],
        slow_nanos: w[6],
    }
}

struct Slot {
    version: AtomicU64,
    words: [AtomicU64; WORDS],
}

impl Slot {
    fn new(p: &Params) -> Self {
        Slot {
            version: AtomicU64::new(0),
            words: encode(p).map(AtomicU64::new),
        }
    }
}

/// The live [`Params`] of a breaker: see the [module documentation](self).
pub(crate) struct ParamsCell {
    active: AtomicUsize,
    slots: [Slot; 2],
}

impl ParamsCell {
    pub(crate) fn new(p: Params) -> Self {
        ParamsCell {
            active: AtomicUsize::new(0),
            slots: [Slot::new(&p), Slot::new(&p)],
        }
    }

    /// The configuration now, whole.
    #[inline]
    pub(crate) fn load(&self) -> Params {
        decode(self.read::<WORDS>())
    }

    /// The closed window's thresholds now, of one configuration (two words read).
    #[inline]
    pub(crate) fn load_thresholds(&self) -> Thresholds {
        let [w0, w1] = self.read::<2>();
        decode_thresholds(w0, w1)
    }

    /// The first `N` words of one configuration (`N <= WORDS`).
    #[inline]
    fn read<const N: usize>(&self) -> [u64; N] {
        loop {
            let slot = &self.slots[self.active.load(Ordering::Acquire) & 1];
            let v = slot.version.load(Ordering::Acquire);
            if v & 1 == 0 {
                let words: [u64; N] =
                    std::array::from_fn(|i| slot.words[i].load(Ordering::Relaxed));
                fence(Ordering::Acquire);
                if slot.version.load(Ordering::Relaxed) == v {
                    return words;
                }
            }
            // A reconfigure completed while this read ran (and another is refilling the slot):
            // read the slot `active` names now.
            spin_loop();
        }
    }

    /// Installs `p`. One writer at a time: the caller holds the breaker's settings lock.
    pub(crate) fn store(&self, p: Params) {
        let i = (self.active.load(Ordering::Relaxed) & 1) ^ 1;
        let slot = &self.slots[i];
        let v = slot.version.load(Ordering::Relaxed);
        slot.version.store(v.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (word, x) in slot.words.iter().zip(encode(&p)) {
            word.store(x, Ordering::Relaxed);
        }
        slot.version.store(v.wrapping_add(2), Ordering::Release);
        self.active.store(i, Ordering::Release);
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;

    fn sample() -> Params {
        Params {
            thresholds: Thresholds {
                min_calls: super::super::MAX_COUNT,
                failure_rate_ppm: 1_000_000,
                slow_rate_ppm: 999_999,
                failure_count: 7,
            },
            probes: 31,
            needed: 31,
            open_nanos: 5,
            growth: 2.5f64.to_bits(),
            growth_max: u64::MAX - 1,
            half_open_nanos: 9,
            slow_nanos: u64::MAX,
            enforce: true,
        }
    }

    #[test]
    fn every_field_round_trips_at_its_extremes() {
        let p = sample();
        assert_eq!(decode(encode(&p)), p);
        let q = Params {
            enforce: false,
            thresholds: Thresholds {
                min_calls: 1,
                failure_count: 0,
                failure_rate_ppm: 0,
                ..p.thresholds
            },
            probes: 1,
            needed: 1,
            ..p
        };
        assert_eq!(decode(encode(&q)), q);
    }

    #[test]
    fn a_store_is_what_the_next_load_sees() {
        let cell = ParamsCell::new(sample());
        assert_eq!(cell.load(), sample());
        assert_eq!(cell.load_thresholds(), sample().thresholds);
        for k in 1..5 {
            let s = sample();
            let p = Params {
                thresholds: Thresholds {
                    failure_count: k,
                    ..s.thresholds
                },
                ..s
            };
            cell.store(p);
            assert_eq!(cell.load(), p);
            assert_eq!(cell.load_thresholds(), p.thresholds);
        }
    }
}
