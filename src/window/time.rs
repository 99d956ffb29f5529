//! The time-based window: N buckets covering a span of time.
//!
//! # Implementation details
//!
//! Time is cut into *epochs* of one bucket each (`epoch = now / bucket_nanos`); epoch `e` lives
//! in bucket `e % N`, and `lap = e / N` tells the epochs of one bucket apart. Three kinds of word:
//!
//! ```text
//! totals: CachePadded<AtomicU64>   running sum of every live bucket, 3 lanes (layout: LANE_BITS)
//! head:   CachePadded<AtomicU64>   the newest epoch any operation has seen; only grows
//! words:  Box<[AtomicU64]>         N x 3 lane words: VALID | lap tag | count (layout: TAG_SHIFT)
//! ```
//!
//! Epoch `e` is *live* while `head - e < N`. The totals count exactly the live lane words, plus,
//! while operations are in flight, amounts on their way in or out.
//!
//! **Locating.** An operation first loads the head `h`; if `now` falls in `h`'s own bucket (`now -
//! h * bucket_nanos < bucket_nanos`: a multiply, the common case) its epoch is `h` and nothing
//! moves. Otherwise `e = now / bucket_nanos` (the only division), and it advances if `e > h`.
//! The lap and bucket of `e` come from a multiply by a precomputed reciprocal of `N`, not a
//! division (`split`).
//!
//! **Advancing.** An operation at epoch `e > head` moves `head` to `e` with one CAS. The winner
//! *stamps* the buckets whose epoch changed, at most `N` of them however long the idle time was:
//! each lane word whose tag is not the live lap of its bucket is replaced by `(live lap, 0)`, and
//! the counts removed are subtracted from the totals in one `fetch_sub`. A stamp changes the word
//! even when its count is 0, so that a recorder that decided "my epoch is live" just before the
//! head moved finds its CAS failing (or its `fetch_add` returning another tag) and looks again.
//!
//! **Adding** `delta` at epoch `e` (`add`, `try_add`, `record`):
//! 1. advance the head to `e` (above); if `e` is already dead, add nothing;
//! 2. check-and-add on the totals in one CAS (`try_add`'s admission and the debit are this one
//!    step, so concurrent `try_add`s can never admit past the predicate's limit); lanes saturate
//!    at [`TimeWindow::MAX_LANE`], and only what the totals took goes on;
//! 3. for each lane with a non-zero amount, add to the lane word of bucket `e % N`. Load the word.
//!    *Fast path*, the word carries `e`'s lap (the advance that made `e` the head stamped it):
//!    `fetch_add` the amount and check the tag the `fetch_add` returns. The count cannot carry
//!    into the tag, since it and the amount are both already in the totals, whose lane is at most
//!    `MAX_LANE`. If the tag is still `e`'s lap, done: the amount is in `e`'s word, counted once,
//!    or, if `e` died meanwhile, removed with the word by the stamp still pending on it. If the tag
//!    changed between the load and the `fetch_add` (`e` died and the word was stamped or replaced,
//!    or a reset zeroed it), the amount sits in a foreign word: CAS it back out while the tag is
//!    still the one the `fetch_add` returned and undo it on the totals; if the tag changed again
//!    first, whoever changed it removed the whole count, this amount included, and subtracted it
//!    from the totals (aged out). *CAS path*, any other tag: load the head; if `e` is dead now,
//!    undo the lane's amount on the totals (the event aged out while it was being added);
//!    otherwise the word holds a dead epoch whose stamp has not happened yet (or `0`): CAS it to
//!    `(lap(e), amount)` and subtract the dead count from the totals (helping the stamper); if
//!    the CAS fails, look again.
//!
//! **Exactly once or aged out.** Every amount leaves a lane word only through a successful CAS
//! (a stamp, a replace, a take-back) or a reset's swap, and the thread that removed it subtracts
//! it from the totals; every amount enters the
//! totals before its word and is undone if it never reaches a word. So once no operation is in
//! flight, the totals equal the sum of the words, and a word of a dead epoch has been stamped
//! (zeroed) by the advance that killed it: an event raced by a rotation is either in a live word
//! (counted once) or was removed with its word (aged out). The totals never go below zero, as an
//! amount is always added to them before any thread can remove it from a word.
//!
//! **Caveats.** While an advance is stamping (at most `3N` CASes) a concurrent reader can still
//! see counts of the epochs that just died. A lap tag keeps 42 bits, so a bucket whose word was
//! last written `k * 2^42` laps ago (with `k >= 1`, e.g. more than 1.3 hours of idle time for a
//! 1 ns bucket, 139 years for a 1 us bucket) is taken for a live one if the clock then lands on
//! exactly that lap; its stale count (if any) then lingers for one more span.

use crate::error::ConfigError;
use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::fmt;
use std::time::Duration;

use super::{Outcome, Tally};

/// Three counting lanes (for a breaker: calls, failures, slow calls; for a retry budget:
/// requests, retries, unused).
///
/// Each lane of a window's totals saturates at [`TimeWindow::MAX_LANE`]: an add that would take a
/// lane past it adds only up to it, and the excess is never recorded in any bucket, so it never
/// comes back out. A rate computed from two lanes one of which saturated is biased toward the
/// other lane; size the window so that the peak rate times the span stays below `MAX_LANE`.
pub type Lanes = [u32; 3];

/// Bits per lane of the totals word and of a lane word's count.
///
/// Totals word (`totals`):
///
/// ```text
///  63  62       42 41       21 20        0
/// +---+-----------+-----------+-----------+
/// | 0 |  lane 2   |  lane 1   |  lane 0   |
/// +---+-----------+-----------+-----------+
/// ```
///
/// | field  | meaning                                   | written by                           |
/// |--------|-------------------------------------------|--------------------------------------|
/// | lane j | sum of lane j over live buckets (+ in flight) | adders (CAS: check-and-add; `fetch_sub`: undo, dead counts they replaced), advancers (`fetch_sub` of stamped counts), `reset` |
///
/// Each lane stays within `0..=MAX_LANE` (module docs), so whole-word `fetch_sub`s never borrow
/// across lanes. Orderings: `Relaxed`. The admission check and the add are one CAS on one
/// location, which is atomic at any ordering; that an amount is added here before anyone removes
/// it from a word follows from the lane words' release/acquire chain (below), which orders the
/// add before the removal's `fetch_sub` in this word's modification order.
const LANE_BITS: u32 = 21;
const LANE_MASK: u64 = (1 << LANE_BITS) - 1;

/// Lane word layout (`words[bucket * 3 + lane]`):
///
/// ```text
///    63   62               21 20        0
/// +-------+-------------------+-----------+
/// | VALID | lap mod 2^42      |   count   |
/// +-------+-------------------+-----------+
/// ```
///
/// | state                 | meaning                                | set by                    |
/// |-----------------------|----------------------------------------|---------------------------|
/// | `0`                   | never written (or reset): no epoch     | `new`, `reset`            |
/// | `VALID, live lap, c`  | `c` events of the bucket's live epoch  | adders (`fetch_add` to `c`, or CAS) |
/// | `VALID, dead lap, c`  | `c` events of an epoch that died; its stamp is pending | (left by time) |
/// | `VALID, live lap, 0`  | stamped: the epoch started empty        | advancers, adders         |
///
/// A dead word is cleared by whoever CASes it first: the advancer (stamp) or an adder of the
/// live epoch (replace); either subtracts the count it removed. An adder's fast-path
/// `fetch_add` changes only the count, and only of a word it just saw carrying its own lap; if
/// the tag changed in between, its amount is in a foreign word (`VALID, other lap, c + a`, or
/// `0, a` after a reset) until it CASes `a` back out (take-back) or the next stamp or replace
/// removes it with the rest of the count.
///
/// Orderings: word CASes and `fetch_add`s are `AcqRel` and word loads `Acquire`, head CASes
/// `AcqRel` and head loads `Acquire`. A thread that writes lap `l` to a word has first seen (or made) `head >= e`;
/// a thread that then reads that word with `Acquire` and loads the head afterwards therefore sees
/// `head >= e` too, so "this word's lap is not the live lap under the head I just read" always
/// means "its epoch is dead", never "its epoch is newer than my view of the head".
const TAG_SHIFT: u32 = LANE_BITS;
const LAP_BITS: u32 = 42;
const LAP_MASK: u64 = (1 << LAP_BITS) - 1;
const VALID: u64 = 1 << 63;
const COUNT_MASK: u64 = LANE_MASK;
const TAG_MASK: u64 = !COUNT_MASK;

#[inline]
const fn tag(lap: u64) -> u64 {
    VALID | ((lap & LAP_MASK) << TAG_SHIFT)
}

#[inline]
const fn count(word: u64) -> u64 {
    word & COUNT_MASK
}

/// The lap of bucket `i`'s live epoch when the head is `head` (wrapping for a bucket that has no
/// live epoch yet; that lap is never an adder's, so it only ever tags an empty word).
#[inline]
const fn live_lap(head: u64, n: u64, i: u64) -> u64 {
    let lap = head / n;
    if i <= head % n {
        lap
    } else {
        lap.wrapping_sub(1)
    }
}

/// `min(2^64 / n, u64::MAX)` for `n >= 1`, the multiplier of [`split`].
const fn reciprocal(n: u64) -> u64 {
    let r = (1u128 << 64) / n as u128;
    if r > u64::MAX as u128 {
        u64::MAX
    } else {
        r as u64
    }
}

/// `(e / n, e % n)` with a multiply by `recip = reciprocal(n)` instead of a division.
///
/// `q = floor(e * recip / 2^64)` is the quotient or one less: `e / n - e * recip / 2^64 =
/// e * (2^64 / n - recip) / 2^64 < e / 2^64 < 1`, as `0 <= 2^64 / n - recip <= 1`. So the
/// remainder `e - q * n` is below `2n`, and one correction step finishes.
#[inline]
const fn split(e: u64, n: u64, recip: u64) -> (u64, u64) {
    let q = ((e as u128 * recip as u128) >> 64) as u64;
    let r = e - q * n;
    if r >= n { (q + 1, r - n) } else { (q, r) }
}

#[inline]
const fn pack(l: Lanes) -> u64 {
    (l[0] as u64) | ((l[1] as u64) << LANE_BITS) | ((l[2] as u64) << (2 * LANE_BITS))
}

#[inline]
const fn unpack(t: u64) -> Lanes {
    [
        (t & LANE_MASK) as u32,
        ((t >> LANE_BITS) & LANE_MASK) as u32,
        ((t >> (2 * LANE_BITS)) & LANE_MASK) as u32,
    ]
}

/// The pure step of the check-and-add: the totals after adding `delta` to `totals`, each lane
/// saturating at `MAX_LANE`, and the amounts actually added.
#[inline]
const fn add_saturating(totals: u64, delta: Lanes) -> (u64, Lanes) {
    let cur = unpack(totals);
    let max = TimeWindow::MAX_LANE;
    let mut applied = [0u32; 3];
    let mut j = 0;
    while j < 3 {
        let room = max - cur[j];
        applied[j] = if delta[j] < room { delta[j] } else { room };
        j += 1;
    }
    (totals + pack(applied), applied)
}

/// The pure step of adding `amount` of epoch `(lap, live)` to a lane word.
#[inline]
const fn word_add(word: u64, lap: u64, amount: u64) -> WordStep {
    if word & TAG_MASK == tag(lap) {
        let c = count(word) + amount;
        // c <= MAX_LANE: the totals already hold `amount` and every word's count.
        let c = if c > COUNT_MASK { COUNT_MASK } else { c };
        WordStep {
            next: tag(lap) | c,
            removed: 0,
        }
    } else {
        WordStep {
            next: tag(lap) | amount,
            removed: count(word),
        }
    }
}

struct WordStep {
    next: u64,
    removed: u64,
}

/// Counts over the last `span` of time, kept in `buckets` buckets of `span / buckets` each.
///
/// An event counts from the moment it is added until its bucket falls out of the span; so the
/// window covers between `span - bucket` and `span` of history. "Now" is the newest time any
/// operation has passed in: an add with an older `now` still lands in its own bucket if that
/// bucket is live, and is dropped if it has aged out.
///
/// Lock-free; an add is a CAS on the totals plus one `fetch_add` on a lane word per non-zero lane
/// (a CAS in the rare case that the word still holds a dead epoch), and
/// after any idle time the first operation stamps at most `3 * buckets` words (never a loop over
/// the elapsed periods). Nothing allocates after [`new`](Self::new).
///
/// ```
/// use resile::window::{TimeWindow, Outcome};
/// use std::time::Duration;
/// let w = TimeWindow::new(Duration::from_secs(10), 10).unwrap();
/// w.record(0, Outcome::Failure);
/// assert_eq!(w.tally(5_000_000_000).failures, 1);
/// assert_eq!(w.tally(10_000_000_000).failures, 0); // aged out
/// ```
pub struct TimeWindow {
    totals: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    words: Box<[AtomicU64]>,
    bucket_nanos: u64,
    buckets: u64,
    /// `min(2^64 / buckets, u64::MAX)`: splits an epoch into lap and bucket by a multiply
    /// ([`split`](Self::split)) instead of a division.
    recip: u64,
}

impl TimeWindow {
    /// The largest number of buckets.
    pub const MAX_BUCKETS: u32 = 1024;
    /// The largest count a lane holds over the whole window (2,097,151); adds past it saturate
    /// (see [`Lanes`]).
    pub const MAX_LANE: u32 = (1 << LANE_BITS) - 1;

    /// A window of `span` in `buckets` buckets, `1..=MAX_BUCKETS`; `span` must be non-zero, at
    /// most `u64::MAX` nanoseconds, and divide into whole nanosecond buckets.
    ///
    /// ```
    /// use resile::window::TimeWindow;
    /// use std::time::Duration;
    /// let e = TimeWindow::new(Duration::from_nanos(10), 3).unwrap_err();
    /// assert_eq!(e.field(), "window");
    /// ```
    pub fn new(span: Duration, buckets: u32) -> Result<Self, ConfigError> {
        if buckets == 0 || buckets > Self::MAX_BUCKETS {
            return Err(ConfigError::new(
                "buckets",
                buckets,
                format!("1..={}", Self::MAX_BUCKETS),
            ));
        }
        let span_n = match u64::try_from(span.as_nanos()) {
            Ok(n) if n != 0 && n % u64::from(buckets) == 0 => n,
            _ => {
                return Err(ConfigError::new(
                    "window",
                    span,
                    "a non-zero span of at most u64::MAX ns that divides into whole-nanosecond buckets",
                ));
            }
        };
        Ok(Self {
            totals: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            words: (0..3 * buckets).map(|_| AtomicU64::new(0)).collect(),
            bucket_nanos: span_n / u64::from(buckets),
            buckets: u64::from(buckets),
            recip: reciprocal(u64::from(buckets)),
        })
    }

    /// The number of buckets.
    pub fn buckets(&self) -> u32 {
        self.buckets as u32
    }

    /// The length of one bucket.
    pub fn bucket(&self) -> Duration {
        Duration::from_nanos(self.bucket_nanos)
    }

    /// The span the window covers.
    pub fn span(&self) -> Duration {
        Duration::from_nanos(self.bucket_nanos * self.buckets)
    }

    #[inline]
    fn word(&self, bucket: u64, lane: usize) -> &AtomicU64 {
        &self.words[bucket as usize * 3 + lane]
    }

    /// The epoch of `now`, after moving the head to at least it: `(epoch, head seen or set)`.
    ///
    /// Fast path: `now` falls in the head's own bucket, `head * bucket_nanos <= now <
    /// (head + 1) * bucket_nanos` (no overflow, as `head <= u64::MAX / bucket_nanos`): one load
    /// and one multiply, no division and no write. Otherwise one division, and a CAS if the head
    /// moves.
    #[inline]
    fn locate(&self, now: u64) -> (u64, u64) {
        let h = self.head.load(Ordering::Acquire);
        match now.checked_sub(h * self.bucket_nanos) {
            Some(d) if d < self.bucket_nanos => (h, h),
            _ => {
                let epoch = now / self.bucket_nanos;
                (epoch, self.advance(h, epoch))
            }
        }
    }

    /// Moves the head, last seen at `h`, to at least `epoch`; returns the head seen or set.
    #[inline]
    fn advance(&self, mut h: u64, epoch: u64) -> u64 {
        while h < epoch {
            match self
                .head
                .compare_exchange_weak(h, epoch, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.stamp(h, epoch);
                    return epoch;
                }
                Err(seen) => h = seen,
            }
        }
        h
    }

    /// After the head moved from `from` to `to`: stamps the buckets whose epoch changed (at most
    /// `N`) and subtracts what they held.
    #[cold]
    fn stamp(&self, from: u64, to: u64) {
        let n = self.buckets;
        let k = (to - from).min(n);
        let mut i = to % n;
        let mut removed = 0u64;
        for _ in 0..k {
            for lane in 0..3 {
                let c = self.stamp_word(i, lane);
                removed += c << (lane as u32 * LANE_BITS);
            }
            i = if i == 0 { n - 1 } else { i - 1 };
        }
        if removed != 0 {
            self.totals.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    /// Stamps one lane word with its bucket's live lap unless it already has it; returns the
    /// count removed.
    fn stamp_word(&self, i: u64, lane: usize) -> u64 {
        let w = self.word(i, lane);
        let mut cur = w.load(Ordering::Acquire);
        loop {
            let want = tag(live_lap(self.head.load(Ordering::Acquire), self.buckets, i));
            if cur & TAG_MASK == want {
                return 0;
            }
            match w.compare_exchange(cur, want, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return count(cur),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Adds `amount` of epoch `epoch` to lane `lane`; `Ok(dead count replaced)`, `Err(())` if the
    /// epoch died first and the amount must go back off the totals.
    #[inline]
    fn add_word(&self, epoch: u64, lane: usize, amount: u64) -> Result<u64, ()> {
        let (lap, i) = split(epoch, self.buckets, self.recip);
        let w = self.word(i, lane);
        let want = tag(lap);
        let cur = w.load(Ordering::Acquire);
        if cur & TAG_MASK == want {
            // Fast path: the word carries the epoch's lap, so add to its count in place. The sum
            // cannot carry into the tag: the count and `amount` are both already in the totals,
            // whose lane is at most MAX_LANE = COUNT_MASK (module docs).
            let prev = w.fetch_add(amount, Ordering::AcqRel);
            if prev & TAG_MASK == want {
                // Counted once (or, if the epoch died meanwhile, removed with the word by its
                // pending stamp, which subtracts it from the totals: aged out).
                return Ok(0);
            }
            return Self::take_back(w, prev, amount);
        }
        self.add_word_cas(w, cur, epoch, lap, amount)
    }

    /// The fast path's `fetch_add` of `amount` landed on a word whose tag changed after the load
    /// saw the epoch's lap: the epoch died (a stamp or a newer epoch's adder replaced the word)
    /// or the window was reset. Takes the amount back out of the word: `Err(())`, the caller
    /// takes it off the totals; or, if the word's tag changed again first, whoever changed it
    /// removed the whole count, this amount included, and took it off the totals: `Ok(0)`.
    #[cold]
    fn take_back(w: &AtomicU64, prev: u64, amount: u64) -> Result<u64, ()> {
        let t = prev & TAG_MASK;
        let mut cur = prev + amount;
        loop {
            // `count < amount` only after a reset raced twice (tag 0 again): gone as well.
            if cur & TAG_MASK != t || count(cur) < amount {
                return Ok(0);
            }
            match w.compare_exchange(cur, cur - amount, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Err(()),
                Err(seen) => cur = seen,
            }
        }
    }

    /// The CAS path of [`add_word`](Self::add_word), from the word last seen as `cur`.
    #[cold]
    fn add_word_cas(
        &self,
        w: &AtomicU64,
        mut cur: u64,
        epoch: u64,
        lap: u64,
        amount: u64,
    ) -> Result<u64, ()> {
        loop {
            // The head is >= epoch: this thread advanced it at least that far.
            let h = self.head.load(Ordering::Acquire);
            if h.wrapping_sub(epoch) >= self.buckets {
                return Err(());
            }
            let step = word_add(cur, lap, amount);
            match w.compare_exchange(cur, step.next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(step.removed),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Adds `delta` at time `now`; returns the totals over the span ending at `now`.
    pub fn add(&self, now: u64, delta: Lanes) -> Lanes {
        match self.try_add(now, delta, |_| true) {
            Ok(t) | Err(t) => t,
        }
    }

    /// Adds `delta` at `now` only if `admit(totals before the add)` holds, in one atomic step;
    /// `Ok(totals after)` or `Err(totals unchanged)`.
    ///
    /// The check and the add are one compare-and-swap on the running totals, so threads racing
    /// `try_add` never admit past the predicate's limit. `admit` may run more than once (once per
    /// lost race). An event whose bucket has already aged out (a `now` older than the span) adds
    /// nothing but is still admitted or refused on the current totals.
    pub fn try_add(
        &self,
        now: u64,
        delta: Lanes,
        admit: impl Fn(Lanes) -> bool,
    ) -> Result<Lanes, Lanes> {
        let (epoch, head) = self.locate(now);
        let mut t = self.totals.load(Ordering::Relaxed);
        if head - epoch >= self.buckets {
            let cur = unpack(t);
            return if admit(cur) { Ok(cur) } else { Err(cur) };
        }
        let (after, applied) = loop {
            let cur = unpack(t);
            if !admit(cur) {
                return Err(cur);
            }
            let (next, applied) = add_saturating(t, delta);
            if next == t {
                return Ok(cur);
            }
            match self
                .totals
                .compare_exchange_weak(t, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break (next, applied),
                Err(seen) => t = seen,
            }
        };
        let mut give_back = 0u64;
        let mut dead = false;
        for (lane, &a) in applied.iter().enumerate() {
            if a == 0 {
                continue;
            }
            let shift = lane as u32 * LANE_BITS;
            if !dead {
                match self.add_word(epoch, lane, u64::from(a)) {
                    Ok(removed) => {
                        give_back += removed << shift;
                        continue;
                    }
                    Err(()) => dead = true,
                }
            }
            give_back += u64::from(a) << shift;
        }
        if give_back == 0 {
            Ok(unpack(after))
        } else {
            let before = self.totals.fetch_sub(give_back, Ordering::Relaxed);
            Ok(unpack(before - give_back))
        }
    }

    /// Records one call outcome at `now`; returns the totals just after.
    pub fn record(&self, now: u64, outcome: Outcome) -> Tally {
        self.add(now, outcome.tally().into()).into()
    }

    /// The totals over the span ending at `now`, as a breaker reads them.
    pub fn tally(&self, now: u64) -> Tally {
        self.totals(now).into()
    }

    /// The totals over the span ending at `now` (a `now` older than the newest seen reads the
    /// span ending at the newest).
    pub fn totals(&self, now: u64) -> Lanes {
        self.locate(now);
        unpack(self.totals.load(Ordering::Relaxed))
    }

    /// Empties the window. Events added concurrently with a reset may survive it; the totals
    /// still equal the buckets' contents once both have returned.
    pub fn reset(&self) {
        let mut removed = 0u64;
        for (k, w) in self.words.iter().enumerate() {
            let old = w.swap(0, Ordering::AcqRel);
            removed += count(old) << ((k % 3) as u32 * LANE_BITS);
        }
        if removed != 0 {
            self.totals.fetch_sub(removed, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeWindow")
            .field("span", &self.span())
            .field("buckets", &self.buckets)
            .field("head_epoch", &self.head.load(Ordering::Relaxed))
            .field("totals", &unpack(self.totals.load(Ordering::Relaxed)))
            .finish()
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    /// The plain sequential model: a list of timestamped events (epoch, amounts the totals took).
    struct Model {
        n: u64,
        bucket: u64,
        head: u64,
        events: Vec<(u64, Lanes)>,
    }

    impl Model {
        fn new(span: u64, buckets: u32) -> Self {
            Self {
                n: u64::from(buckets),
                bucket: span / u64::from(buckets),
                head: 0,
                events: Vec::new(),
            }
        }
        fn advance(&mut self, now: u64) -> u64 {
            let e = now / self.bucket;
            self.head = self.head.max(e);
            let (h, n) = (self.head, self.n);
            self.events.retain(|&(ev, _)| h - ev < n);
            e
        }
        fn totals(&mut self, now: u64) -> Lanes {
            self.advance(now);
            self.sum()
        }
        fn sum(&self) -> Lanes {
            let mut t = [0u32; 3];
            for (_, l) in &self.events {
                for j in 0..3 {
                    t[j] += l[j];
                }
            }
            t
        }
        fn try_add(
            &mut self,
            now: u64,
            delta: Lanes,
            admit: impl Fn(Lanes) -> bool,
        ) -> Result<Lanes, Lanes> {
            let e = self.advance(now);
            let cur = self.sum();
            if !admit(cur) {
                return Err(cur);
            }
            if self.head - e >= self.n {
                return Ok(cur);
            }
            let mut applied = [0u32; 3];
            for j in 0..3 {
                applied[j] = delta[j].min(TimeWindow::MAX_LANE - cur[j]);
            }
            self.events.push((e, applied));
            Ok(self.sum())
        }
    }

    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Budget-like predicate: a retry (lane 1) is admitted while retries < requests / 2 + 3.
    fn budget(t: Lanes) -> bool {
        t[1] < t[0] / 2 + 3
    }

    fn run_against_model(span: u64, buckets: u32, start: u64, seed: u64, steps: usize) {
        let w = TimeWindow::new(Duration::from_nanos(span), buckets).unwrap();
        let mut m = Model::new(span, buckets);
        let clock = ManualClock::starting_at(start);
        let bucket = span / u64::from(buckets);
        let mut next = rng(seed);
        for step in 0..steps {
            let r = next();
            let now = clock.now();
            let ctx = format!("span {span} buckets {buckets} start {start} step {step} now {now}");
            match r % 16 {
                0..=4 => {
                    let o = Outcome::new(r & 32 != 0, r & 64 != 0);
                    assert_eq!(
                        w.record(now, o),
                        Tally::from(m.try_add(now, o.tally().into(), |_| true).unwrap()),
                        "{ctx}"
                    );
                }
                5 => {
                    // Large adds drive the lanes into saturation.
                    let big = (r >> 8) as u32 % (TimeWindow::MAX_LANE / 2);
                    let d = [big, big / 3, 1];
                    assert_eq!(w.add(now, d), m.try_add(now, d, |_| true).unwrap(), "{ctx}");
                }
                6 | 7 => {
                    assert_eq!(
                        w.try_add(now, [0, 1, 0], budget),
                        m.try_add(now, [0, 1, 0], budget),
                        "{ctx}"
                    );
                }
                8 => assert_eq!(w.totals(now), m.totals(now), "{ctx}"),
                9..=11 => clock.advance(Duration::from_nanos((r >> 8) % (bucket + 2))),
                12 => clock.advance(Duration::from_nanos((r >> 8) % (span * 2 + 1))),
                13 => {
                    // A far jump (up to 2^40 ns), or, rarely, to the end of time.
                    if r & 0xF00 == 0 {
                        clock.set(u64::MAX - (r >> 60));
                    } else {
                        clock.advance(Duration::from_nanos((r >> 20) & ((1 << 40) - 1)));
                    }
                }
                14 => {
                    // The clock stands still or moves back a little (a caller's stale `now`).
                    clock.set(now.saturating_sub((r >> 8) % (span + 1)));
                }
                _ => {
                    if r & 0x300 == 0 {
                        w.reset();
                        m.events.clear();
                    } else {
                        assert_eq!(w.tally(now), Tally::from(m.totals(now)), "{ctx}");
                    }
                }
            }
            let now = clock.now();
            assert_eq!(w.totals(now), m.totals(now), "{ctx} (after)");
        }
    }

    #[test]
    fn matches_sequential_model() {
        let configs: [(u64, u32); 6] = [(1, 1), (10, 1), (10, 10), (12, 3), (1_000, 4), (7_000, 7)];
        let starts = [
            0,
            5,
            u64::MAX - 3,
            u64::MAX - 50_000,
            (u64::MAX / 10) * 10 - 1,
            1 << 63,
        ];
        for (k, &(span, buckets)) in configs.iter().enumerate() {
            for (s, &start) in starts.iter().enumerate() {
                run_against_model(span, buckets, start, (k * 31 + s) as u64 + 1, 3_000);
            }
        }
        run_against_model(1_024_000, 1024, 0, 99, 20_000);
    }

    #[test]
    fn ages_out_after_the_span_even_after_long_idle() {
        let w = TimeWindow::new(Duration::from_secs(10), 10).unwrap();
        let s = 1_000_000_000u64;
        w.record(0, Outcome::Failure);
        w.record(3 * s, Outcome::Success);
        assert_eq!(
            w.tally(9 * s + s - 1),
            Tally {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        assert_eq!(
            w.tally(10 * s),
            Tally {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        assert_eq!(w.tally(13 * s), Tally::default());
        // A jump of many spans costs one pass over the buckets and leaves nothing behind.
        w.record(14 * s, Outcome::SlowFailure);
        assert_eq!(w.tally(u64::MAX).calls, 0);
        assert_eq!(
            w.record(u64::MAX, Outcome::Failure),
            Tally {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
        // An event older than the span is not counted.
        assert_eq!(w.record(0, Outcome::Failure).calls, 1);
    }

    #[test]
    fn split_by_reciprocal_matches_division() {
        let mut next = rng(7);
        for n in 1..=u64::from(TimeWindow::MAX_BUCKETS) {
            let r = reciprocal(n);
            let mut es = vec![0, 1, n - 1, n, n + 1, u64::MAX, u64::MAX - 1, u64::MAX - n];
            es.extend((u64::MAX / n - 2..=u64::MAX / n).map(|q| q * n));
            es.extend((0..64).map(|_| next()));
            es.extend((0..64).map(|_| next() >> (next() % 64)));
            for e in es {
                assert_eq!(split(e, n, r), (e / n, e % n), "e {e} n {n}");
            }
        }
    }

    #[test]
    fn starts_just_below_the_end_of_time() {
        let clock = ManualClock::starting_at(u64::MAX - 2);
        let w = TimeWindow::new(Duration::from_nanos(4), 2).unwrap();
        w.add(clock.now(), [1, 0, 0]);
        clock.advance(Duration::from_nanos(1));
        w.add(clock.now(), [0, 1, 0]);
        clock.advance(Duration::from_secs(1)); // saturates at u64::MAX
        assert_eq!(w.add(clock.now(), [0, 0, 1]), [1, 1, 1]);
    }

    #[test]
    fn lanes_saturate_without_touching_neighbours() {
        let w = TimeWindow::new(Duration::from_secs(1), 2).unwrap();
        let max = TimeWindow::MAX_LANE;
        assert_eq!(w.add(0, [max, 5, 0]), [max, 5, 0]);
        assert_eq!(w.add(0, [u32::MAX, u32::MAX, 7]), [max, max, 7]);
        // Only what the totals took is recorded, so expiry never underflows.
        assert_eq!(w.add(500_000_000, [1, 0, 0]), [max, max, 7]);
        assert_eq!(w.totals(1_000_000_000), [0, 0, 0]);
    }

    #[test]
    fn try_add_checks_and_adds_in_one_step() {
        let w = TimeWindow::new(Duration::from_secs(1), 4).unwrap();
        let limit = |t: Lanes| t[1] < 2;
        assert_eq!(w.try_add(0, [0, 1, 0], limit), Ok([0, 1, 0]));
        assert_eq!(w.try_add(0, [0, 1, 0], limit), Ok([0, 2, 0]));
        assert_eq!(w.try_add(0, [0, 1, 0], limit), Err([0, 2, 0]));
        assert_eq!(w.try_add(1_000_000_000, [0, 1, 0], limit), Ok([0, 1, 0]));
    }

    #[test]
    fn config_errors_name_field_and_range() {
        for b in [0, TimeWindow::MAX_BUCKETS + 1] {
            let e = TimeWindow::new(Duration::from_secs(1), b).unwrap_err();
            assert_eq!(e.field(), "buckets");
            assert_eq!(e.allowed(), format!("1..={}", TimeWindow::MAX_BUCKETS));
        }
        for (span, b) in [
            (Duration::ZERO, 1),
            (Duration::from_nanos(10), 3),
            (Duration::from_nanos(5), 10),
            (Duration::MAX, 1),
        ] {
            assert_eq!(TimeWindow::new(span, b).unwrap_err().field(), "window");
        }
        let w = TimeWindow::new(Duration::from_secs(30), 10).unwrap();
        assert_eq!(
            (w.span(), w.bucket(), w.buckets()),
            (Duration::from_secs(30), Duration::from_secs(3), 10)
        );
    }

    #[test]
    fn concurrent_adds_are_exact_after_join() {
        use std::sync::Arc;
        // A still clock: every add counts.
        let w = Arc::new(TimeWindow::new(Duration::from_millis(10), 5).unwrap());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for k in 0..10_000u32 {
                        w.add(1_000, [1, k % 2, k % 3 / 2]);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(w.totals(1_000), [40_000, 20_000, 4 * 3_333]);

        // A moving clock: after join the totals equal the live words, and they all age out.
        let w = Arc::new(TimeWindow::new(Duration::from_micros(8), 4).unwrap());
        let clock = ManualClock::new();
        let hs: Vec<_> = (0..3)
            .map(|t| {
                let (w, clock) = (w.clone(), clock.clone());
                std::thread::spawn(move || {
                    for k in 0..20_000u64 {
                        if t == 0 && k % 8 == 0 {
                            clock.advance(Duration::from_nanos(700 + k % 5_000));
                        }
                        w.try_add(clock.now(), [1, 1, 0], |l| l[1] < 1_000).ok();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let now = clock.now();
        let t = w.totals(now);
        let head = w.head.load(Ordering::Relaxed);
        let mut live = [0u32; 3];
        for i in 0..w.buckets {
            for (lane, l) in live.iter_mut().enumerate() {
                let word = w.word(i, lane).load(Ordering::Relaxed);
                if word & TAG_MASK == tag(live_lap(head, w.buckets, i)) {
                    *l += count(word) as u32;
                } else {
                    assert_eq!(count(word), 0, "a dead word keeps a count");
                }
            }
        }
        assert_eq!(t, live);
        assert!(t[1] <= 1_000);
        assert_eq!(w.totals(now + 8_000), [0, 0, 0]);
    }
}
