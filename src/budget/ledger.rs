//! The retry budget's sliding window: buckets of (requests, retries) in which only the newest
//! bucket is ever written, the others *sealed*, with their sums kept in one word. The requests
//! lane sums the newest `N` buckets, the retries lane the newest `R`, where `R` is `N` or `N + 1`
//! (the budget's fixed mode keeps a spent retry for a whole window: see its docs).
//!
//! A deposit or a withdrawal is one compare-and-swap on the newest bucket's lane word; the
//! withdrawal's check reads the sealed sums and the newest bucket's two words, and its debit is
//! the CAS on the retries word, so concurrent withdrawals serialise on that one word and can
//! never admit past the limit. Compared with a window that keeps running totals beside its
//! buckets (two CASes per event), this halves the shared writes of the budget's hot path.
//!
//! # Words
//!
//! ```text
//! hot:   head: AtomicU64   the newest epoch (now / bucket) any operation has seen; only grows } one
//!        sums: AtomicU64   tag 22 | sealed requests 21 | sealed retries 21  (SUM_* below)   } line
//! words: Box<[AtomicU64]>  2 per slot (requests, retries): SEALED | VALID | tag 41 | count 21
//! ```
//!
//! Epoch `e` lives in slot `e % S`, where `S` is `L = max(N, R)` rounded up to a power of two
//! (so the slot is a mask, not a division), and the `L` live epochs always fall in distinct
//! slots. Under head `E` the live epochs are `E-L+1 ..= E`; `E` is the *open* one, the rest are
//! *sealed*: `sums` holds the sum of their counts (each lane over its own span: requests over
//! `E-N+1 ..= E-1`, retries over `E-R+1 ..= E-1`), tagged with the low bits of the epoch `E` it
//! is for.
//!
//! # Operations
//!
//! Every operation first brings the head up to its own epoch `f` (`advance`), then works at the
//! head's epoch `E >= f` (an operation whose clock read is older than the head is counted in the
//! newest bucket, where it lives at least as long as in its own).
//!
//! - **Opening.** A lane word of slot `E % S` not tagged `E` (never written, or holding an
//!   epoch `E - kS` that died) is replaced by `(tag E, 0)` with one CAS, but only after a load of
//!   the head (taken after loading the word) still reads `E`: then no word can carry a newer
//!   epoch (its writer saw the head at that epoch first), so the word is dead.
//! - **Adding** (deposit, withdrawal): CAS `(tag E, c)` to `(tag E, c + 1)`. A withdrawal loads
//!   the retries word, then the requests word, and admits only if
//!   `allowance(sums.requests + requests) > sums.retries + retries`; its CAS succeeds only if the
//!   retries word is unchanged, so at that instant retries are exactly what it checked and
//!   requests at least what it read: it never overdraws.
//! - **Refusing.** A refusal has no CAS to validate it, so it stands only on counts the bucket
//!   held at one instant: a requests word tagged `E` (its count then, or its final count once
//!   sealed) with the retries read before it (which only grew since) are the bucket's state at
//!   the later read, or at its seal. A requests word not tagged `E` reads as none, which is
//!   `E`'s count only if the slot was not yet reopened for `E + S`: a head loaded after the word
//!   and still at `E` proves it; any other head and the withdrawal starts over at the head.
//! - **Sums.** Before anything reads or leaves head `E`, `sums` must be for `E`. Whoever finds it
//!   stale computes it: each bucket of an epoch `d` in `E-L+1 ..= E-1` is *sealed*, its words
//!   CASed to carry `SEALED` (or, if not tagged `d`, replaced by `(SEALED, tag d, 0)` under the
//!   same head check as opening), and the sealed counts are summed; then one CAS installs
//!   `(tag E, sums)`. A sealed word never changes again while its epoch is live, so every helper
//!   computes the same sums, and an adder that was still working at `d` finds its CAS failing
//!   and moves to the head.
//! - **Advancing** from `h` to `f`: sums for `h` first, then one CAS on the head. Only once the
//!   sums for the new head are installed is the move visible to any decision, and computing them
//!   sealed the bucket `h`: an adder at `h` either lands before that seal (and is counted in the
//!   new sums) or fails its CAS and retries at the new head. So each operation takes effect at
//!   one instant under one consistent (head, sums, open bucket).
//!
//! # Orderings
//!
//! The invariant every load below relies on: a thread that writes tag `e` to a word has loaded
//! the head at `e` (or later) before; a thread that reads that word with `Acquire` and loads the
//! head afterwards sees the head at `e` or later too. So "the word is not tagged `E` and the head
//! (loaded after it) still reads `E`" always means "the word is dead" (or, for an open word,
//! "not opened yet"), never "the word belongs to an epoch newer than my view of the head".
//!
//! - `head` load (`settle`, `open_word`, `seal`, `totals`, `refusal_holds`), `Acquire`: pairs
//!   with the CAS that moved it, so the sums that CAS's thread installed first are visible.
//! - `head` CAS (`advance`), `AcqRel`: releases the sums for the old head installed before it;
//!   on failure `Acquire`, the caller reloads anyway.
//! - `sums` load (`sums_at`), `Acquire`: pairs with its installing CAS, so the seals it summed
//!   are visible and no later load reads a sealed word as open.
//! - `sums` CAS (`install_sums`), `AcqRel`: releases the seals it summed; acquires a rival's sums
//!   when it loses.
//! - lane word load (`open_word`, `open_count_of`, `seal`), `Acquire`: pairs with the CAS that
//!   wrote its tag, so the head load after it sees that epoch (the invariant above).
//! - lane word CAS (opening, adding, sealing), `AcqRel`: releases the head load that justified
//!   its tag; acquires the value it replaced, so its retry loop works on the latest count.
//! - requests word load, then `head` load, in a refusal (`try_debit`): the order of the two is
//!   the invariant above, which is why the head is loaded after the word and not before.
//!
//! # Caveats
//!
//! A lane word's tag keeps 41 bits of the epoch and the sums' 22 bits. A word last written
//! exactly `k * 2^41` epochs ago is taken for a live one, as in
//! [`TimeWindow`](crate::window::TimeWindow) (its stale count lingers for one span). The head
//! never jumps from `h` to an epoch with the same low 22 bits (it stops one epoch short and moves
//! on), so a sums word is never taken for a head it was not computed for, unless a thread that
//! read the sums is stalled across `2^22` bucket periods before its CAS.

use crate::sync::{AtomicU64, Ordering};
use crate::window::Divisor;
use crossbeam_utils::CachePadded;

/// The requests lane.
pub(super) const REQUESTS: usize = 0;
/// The retries lane.
pub(super) const RETRIES: usize = 1;

/// Bits of a count, in a lane word and in each lane of the sums word.
const COUNT_BITS: u32 = 21;
/// The largest count a lane holds (a bucket's or the sealed sums'); counts saturate there.
pub(super) const MAX_COUNT: u64 = (1 << COUNT_BITS) - 1;

/// Lane word layout:
///
/// ```text
///     63     62    61              21 20        0
/// +--------+-------+------------------+-----------+
/// | SEALED | VALID | epoch mod 2^41   |   count   |
/// +--------+-------+------------------+-----------+
/// ```
///
/// | state                   | meaning                              | moved by                       |
/// |-------------------------|--------------------------------------|--------------------------------|
/// | `0`                     | never written                        | (`new`)                        |
/// | `VALID, e, c`           | the open bucket's `c` events of `e`  | adders: `c + 1`; opening: from any word not tagged with the head epoch |
/// | `SEALED, VALID, d, c`   | final count of a past epoch `d`      | sums computers: from `VALID, d, c`, or from a dead word (`c = 0`) |
///
/// A word tagged `d` leaves it only by opening for a later epoch `d + kS`, which needs the head
/// at that epoch: `d` has died by then.
const VALID: u64 = 1 << 62;
const SEALED: u64 = 1 << 63;
const TAG_SHIFT: u32 = COUNT_BITS;
const TAG_BITS: u32 = 41;
/// The bits that say whose word it is: `SEALED` aside, a word is epoch `e`'s iff these equal
/// `tag(e)`.
const ID_MASK: u64 = VALID | (((1 << TAG_BITS) - 1) << TAG_SHIFT);

#[inline]
const fn tag(e: u64) -> u64 {
    VALID | ((e & ((1 << TAG_BITS) - 1)) << TAG_SHIFT)
}

#[inline]
const fn count(w: u64) -> u64 {
    w & MAX_COUNT
}

/// Sums word layout:
///
/// ```text
///  63           42 41           21 20           0
/// +---------------+---------------+---------------+
/// | epoch mod 2^22| sealed retries| sealed requests|
/// +---------------+---------------+---------------+
/// ```
///
/// `(E, r, t)`: under head `E`, the sealed buckets `E-N+1 ..= E-1` hold `r` requests and the
/// sealed buckets `E-R+1 ..= E-1` hold `t` retries (each saturating at [`MAX_COUNT`]). Moved
/// only by a CAS from the sums of an earlier head to the sums of the current one; starts as
/// `(0, 0, 0)`, the sums of epoch 0.
const SUM_TAG_SHIFT: u32 = 2 * COUNT_BITS;

#[inline]
const fn sum_tag(e: u64) -> u64 {
    e << SUM_TAG_SHIFT
}

#[inline]
const fn sum_tag_mask() -> u64 {
    !((1 << SUM_TAG_SHIFT) - 1)
}

#[inline]
const fn sums_of(s: u64) -> [u64; 2] {
    [s & MAX_COUNT, (s >> COUNT_BITS) & MAX_COUNT]
}

#[derive(Debug)]
struct Hot {
    head: AtomicU64,
    sums: AtomicU64,
}

/// See the [module docs](self).
pub(super) struct Ledger {
    hot: CachePadded<Hot>,
    /// `words[2 * slot + lane]`.
    words: Box<[AtomicU64]>,
    /// The buckets each lane sums, open one included: `[N, R]`.
    spans: [u64; 2],
    /// The live epochs, `L = max(N, R)`.
    live: u64,
    /// `S - 1`: the slot of epoch `e` is `e & mask`.
    mask: u64,
    /// `now / bucket` without a `div` instruction.
    per_bucket: Divisor,
}

impl Ledger {
    /// Buckets of `bucket_nanos` (`>= 1`) each: requests summed over the newest `buckets`
    /// (`>= 1`), retries over the newest `buckets + 1` if `retries_one_more`, else `buckets`.
    pub(super) fn new(bucket_nanos: u64, buckets: u32, retries_one_more: bool) -> Self {
        let n = u64::from(buckets);
        let spans = [n, n + u64::from(retries_one_more)];
        let live = spans[RETRIES];
        let slots = live.next_power_of_two();
        Self {
            hot: CachePadded::new(Hot {
                head: AtomicU64::new(0),
                sums: AtomicU64::new(0),
            }),
            words: (0..2 * slots).map(|_| AtomicU64::new(0)).collect(),
            spans,
            live,
            mask: slots - 1,
            per_bucket: Divisor::new(bucket_nanos),
        }
    }

    #[inline]
    fn word(&self, slot: u64, lane: usize) -> &AtomicU64 {
        &self.words[slot as usize * 2 + lane]
    }

    #[inline]
    fn slot_of(&self, e: u64) -> u64 {
        e & self.mask
    }

    #[inline]
    fn head(&self) -> u64 {
        self.hot.head.load(Ordering::Acquire)
    }

    /// Moves the head toward `f` (caller saw it at `h < f`); the caller then reloads it.
    #[cold]
    fn advance(&self, h: u64, f: u64) {
        // The head leaves `h` only with the sums for `h` installed, so a sums word is at most
        // one head behind, and the head never lands on an epoch whose tag is the sums'.
        if self.sums_at(h).is_none() {
            return;
        }
        let to = if (f ^ h) & ((1 << (64 - SUM_TAG_SHIFT)) - 1) == 0 {
            f - 1 // same low bits as `h`: f - h >= 2^22, so f - 1 > h
        } else {
            f
        };
        let _ = self
            .hot
            .head
            .compare_exchange(h, to, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The head epoch at or after `f` that an operation at epoch `f` works at, with the sums for
    /// it installed.
    #[inline]
    fn settle(&self, f: u64) -> (u64, [u64; 2]) {
        loop {
            let h = self.head();
            if f > h {
                self.advance(h, f);
                continue;
            }
            if let Some(s) = self.sums_at(h) {
                return (h, s);
            }
        }
    }

    /// The sums for head `e`, computing and installing them if they are stale; `None` if the head
    /// moved past `e` meanwhile.
    #[inline]
    fn sums_at(&self, e: u64) -> Option<[u64; 2]> {
        let s = self.hot.sums.load(Ordering::Acquire);
        if s & sum_tag_mask() == sum_tag(e) {
            return Some(sums_of(s));
        }
        self.install_sums(e, s)
    }

    #[cold]
    fn install_sums(&self, e: u64, seen: u64) -> Option<[u64; 2]> {
        let mut sums = [0u64; 2];
        // The sealed epochs e-1, e-2, ... down to e-L+1 (none below 0), each in its own slot;
        // a lane sums those within its span.
        for k in 1..self.live.min(e.saturating_add(1)) {
            let d = e - k;
            for (lane, sum) in sums.iter_mut().enumerate() {
                if k < self.spans[lane] {
                    *sum += self.seal(self.word(self.slot_of(d), lane), d, e)?;
                }
            }
        }
        let next = sum_tag(e)
            | sums[REQUESTS].min(MAX_COUNT)
            | (sums[RETRIES].min(MAX_COUNT) << COUNT_BITS);
        match self
            .hot
            .sums
            .compare_exchange(seen, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(sums_of(next)),
            Err(cur) if cur & sum_tag_mask() == sum_tag(e) => Some(sums_of(cur)),
            Err(_) => None,
        }
    }

    /// Seals `w`, a word of the slot of past epoch `d`, for sums at head `e`; its final count,
    /// or `None` if the head moved past `e`.
    fn seal(&self, w: &AtomicU64, d: u64, e: u64) -> Option<u64> {
        let mut cur = w.load(Ordering::Acquire);
        loop {
            let next = if cur & ID_MASK == tag(d) {
                if cur & SEALED != 0 {
                    return Some(count(cur));
                }
                cur | SEALED
            } else {
                // Not `d`'s: never written, or an epoch of this slot that died before `d`
                // (nothing happened at `d`), unless the head moved on. Seal it empty, so that no
                // late adder at `d` can open it now.
                if self.head() != e {
                    return None;
                }
                SEALED | tag(d)
            };
            match w.compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(count(next)),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Lane `lane`'s word of the open slot of head `e`, opened if need be, and its value;
    /// `None` if the head moved past `e`.
    #[inline]
    fn open_word(&self, lane: usize, e: u64) -> Option<(&AtomicU64, u64)> {
        let w = self.word(self.slot_of(e), lane);
        let mut cur = w.load(Ordering::Acquire);
        loop {
            if cur & (ID_MASK | SEALED) == tag(e) {
                return Some((w, cur));
            }
            // A dead word (see the module docs), or the head moved on.
            if self.head() != e {
                return None;
            }
            match w.compare_exchange(cur, tag(e), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some((w, tag(e))),
                Err(seen) => cur = seen,
            }
        }
    }

    /// The count of lane `lane` in the open bucket of head `e` (0 if not opened yet).
    #[inline]
    fn open_count(&self, lane: usize, e: u64) -> u64 {
        self.open_count_of(lane, e).0
    }

    /// The count of lane `lane`'s word of the slot of `e`, and whether the word is tagged `e`
    /// (if not, the count is 0).
    #[inline]
    fn open_count_of(&self, lane: usize, e: u64) -> (u64, bool) {
        let w = self.word(self.slot_of(e), lane).load(Ordering::Acquire);
        if w & ID_MASK == tag(e) {
            (count(w), true)
        } else {
            (0, false)
        }
    }

    /// Adds one to `lane` at time `now`; `false` if the bucket's count is saturated.
    #[inline]
    pub(super) fn add(&self, now: u64, lane: usize) -> bool {
        let f = self.per_bucket.div(now);
        loop {
            let (e, _) = self.settle(f);
            if let Some((w, cur)) = self.open_word(lane, e) {
                if let Some(added) = self.bump(w, cur, e, |_| Some(true)) {
                    return added;
                }
            }
        }
    }

    /// Adds one retry at `now` if `admit([requests, retries])` holds for the window's counts, in
    /// one atomic step (the CAS on the open bucket's retries word); whether it did.
    #[inline]
    pub(super) fn try_debit(&self, now: u64, admit: impl Fn([u64; 2]) -> bool) -> bool {
        let f = self.per_bucket.div(now);
        loop {
            let (e, sums) = self.settle(f);
            if let Some((w, cur)) = self.open_word(RETRIES, e) {
                // Requests are read after the retries word: they only grow while that word is
                // unchanged, so at the instant of the CAS that validates it there are at least
                // as many as checked here, and a grant never overdraws. A refusal has no CAS to
                // validate it, so it must rest on counts that were the bucket's at one instant:
                // see `refusal_holds`.
                let check = |retries| {
                    let (requests, ours) = self.open_count_of(REQUESTS, e);
                    let lanes = [sums[REQUESTS] + requests, sums[RETRIES] + retries];
                    let admitted = admit(lanes);
                    (admitted || self.refusal_holds(ours, e)).then_some(admitted)
                };
                if let Some(debited) = self.bump(w, cur, e, check) {
                    return debited;
                }
            }
        }
    }

    /// Whether a refusal at head `e` may stand on the requests word read just before: `ours`
    /// says it was tagged `e`. A word tagged `e` holds `e`'s requests (its count then, or its
    /// final count once sealed), which with the retries read before it (a count that only grew
    /// since) make a state the bucket was in at the later of the two reads, or at its seal. A
    /// word not tagged `e` reads as no requests, which is `e`'s count only if the word had not
    /// been reopened for a later epoch of the slot (`e + S`, once `e` died) before it was read:
    /// the head, loaded after the word, still at `e` proves it. Otherwise the caller starts
    /// over at the head.
    #[inline]
    fn refusal_holds(&self, ours: bool, e: u64) -> bool {
        ours || self.head() == e
    }

    /// Adds one to `w`, the open word of head `e` seen as `cur`, if `check(count)` says so and
    /// the count is below [`MAX_COUNT`]: `Some(whether it added)`, or `None` once the word has
    /// left `e` or `check` found its view stale (the caller starts over at the head). A lost
    /// race only reloads the count.
    #[inline]
    fn bump(
        &self,
        w: &AtomicU64,
        mut cur: u64,
        e: u64,
        check: impl Fn(u64) -> Option<bool>,
    ) -> Option<bool> {
        while cur & (ID_MASK | SEALED) == tag(e) {
            if count(cur) == MAX_COUNT || !check(count(cur))? {
                return Some(false);
            }
            match w.compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(true),
                Err(seen) => cur = seen,
            }
        }
        None
    }

    /// `[requests, retries]` in the window ending at `now` (the newest seen, if later).
    pub(super) fn totals(&self, now: u64) -> [u64; 2] {
        let f = self.per_bucket.div(now);
        loop {
            let (e, sums) = self.settle(f);
            let retries = self.open_count(RETRIES, e);
            let requests = self.open_count(REQUESTS, e);
            // The open counts are the head's only if it did not move while they were read.
            if self.head() == e {
                return [sums[REQUESTS] + requests, sums[RETRIES] + retries];
            }
        }
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("spans", &self.spans)
            .field("head", &self.hot.head.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
