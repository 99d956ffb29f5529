//! The time-based window: N buckets covering a span of time.
//!
//! # Implementation details
//!
//! Time is cut into *epochs* of one bucket each (`epoch = now / bucket_nanos`); epoch `e` lives
//! in bucket `e % N`, and `lap = e / N` tells the epochs of one bucket apart. Three kinds of word:
//!
//! ```text
//! totals: AtomicU64   running sum of every live bucket, 3 lanes (layout: LANE_BITS)  } one
//! head:   AtomicU64   the newest epoch any operation has seen; only grows            } line
//! words:  Box<[CachePadded<[AtomicU64; 16]>]>   per stripe of threads, N x 3 lane words:
//!         VALID | lap tag | count (layout: TAG_SHIFT); stripe s's word j = bucket * 3 + lane is
//!         words[s * chunks + j / 16][j % 16] (each stripe's words on lines of their own)
//! ```
//!
//! An adder writes the lane words of its own stripe (the [`thread_stripe`] of the calling
//! thread), so threads on different stripes share only the totals' line; everything below holds
//! for each lane word on its own, and an advance stamps every stripe's words of the buckets it
//! kills. The stripes are [`stripe_count`]'s, fewer where the window has many buckets (at most
//! `MAX_WORD_CHUNKS` padded chunks in all), down to one.
//!
//! Epoch `e` is *live* while `head - e < N`. The totals count exactly the live lane words, plus,
//! while operations are in flight, amounts on their way in or out.
//!
//! **Advancing.** An operation at epoch `e > head` moves `head` to `e` with one CAS. The winner
//! *stamps* the buckets whose epoch changed, at most `N` of them however long the idle time was:
//! each lane word (of every stripe) whose tag is not the live lap of its bucket is replaced by `(live lap, 0)`, and
//! the counts removed are subtracted from the totals in one `fetch_sub`. A stamp changes the word
//! even when its count is 0, so that a recorder that decided "my epoch is live" just before the
//! head moved finds its CAS failing and looks again.
//!
//! **Adding** `delta` at epoch `e` (`add`, `try_add`, `record`):
//! 1. advance the head to `e` (above); if `e` is already dead, add nothing;
//! 2. check-and-add on the totals in one CAS (`try_add`'s admission and the debit are this one
//!    step, so concurrent `try_add`s can never admit past the predicate's limit); lanes saturate
//!    at [`TimeWindow::MAX_LANE`], and only what the totals took goes on;
//! 3. for each lane with a non-zero amount, CAS the lane word of bucket `e % N` in the caller's
//!    stripe: load the word,
//!    then the head; if `e` is dead now, undo the lane's amount on the totals (the event aged out
//!    while it was being added); if the word carries `e`'s lap, add to its count; otherwise the
//!    word holds a dead epoch whose stamp has not happened yet: replace it with `(lap(e), amount)`
//!    and subtract the dead count from the totals (helping the stamper).
//!
//! **Exactly once or aged out.** Every amount leaves a lane word only through a successful CAS,
//! and the thread whose CAS removed it subtracts it from the totals; every amount enters the
//! totals before its word and is undone if it never reaches a word. So once no operation is in
//! flight, the totals equal the sum of the words, and a word of a dead epoch has been stamped
//! (zeroed) by the advance that killed it: an event raced by a rotation is either in a live word
//! (counted once) or was removed with its word (aged out). The totals never go below zero, as an
//! amount is always added to them before any thread can remove it from a word.
//!
//! **Fast calls** (a window built by `with_fast_calls`, the breaker's): per stripe of threads, a
//! ring of `S` words (`N` rounded up to a power of two), laid out as lane words but tagged with
//! the epoch itself (mod 2^42) rather than its lap, holds lane-0 counts added by `add_fast`:
//! epoch `e` goes to slot `e & (S - 1)` of the calling thread's stripe with a single CAS and no
//! totals update, so threads on different stripes never write one cache line, and placing a call
//! takes one division (`now / bucket`), not two. The `N` live epochs fall in distinct slots.
//! Fast counts never enter the totals, so nothing subtracts them: a read loads the head, then
//! sums the fast words (every stripe) tagged with the live epoch of their slot (a word of a dead
//! epoch counts nothing, so fast words need no stamping). `add_fast` takes the epoch-liveness
//! check and the dead-word replacement of step 3 above, with nothing to give back.
//!
//! ```text
//! fast: Box<[CachePadded<[AtomicU64; 16]>]>   stripes x chunks: stripe s's word of slot i is
//!       fast[s * chunks + i / 16][i % 16]      (each stripe's words on lines of their own)
//! ```
//!
//! The stripes are [`stripe_count`]'s, fewer where the window has many buckets (at most
//! `MAX_FAST_CHUNKS` padded chunks in all: 8 KiB on x86_64), so a full read stays a few hundred
//! loads.
//!
//! **Caveats.** While an advance is stamping (at most `3N` CASes per stripe) a concurrent reader can still
//! see counts of the epochs that just died, and an adder that helps the stamper takes out the
//! dead counts of its own lanes only, so for that moment a read can show more failures than
//! calls ([`Tally`] clamps failures and slow calls to calls). A lap tag keeps 42 bits, so a
//! bucket whose word was last written `k * 2^42` laps ago (`k >= 1`: 2^42 laps of `N` buckets)
//! is taken for a live one if the clock then lands on exactly that lap; its stale count (if any)
//! then lingers for one more span. A fast word is tagged with its epoch, not its lap, so the same
//! holds after `k * 2^42` *buckets*: about 1.2 hours of idle time for 1 ns buckets, 51 days for
//! 1 us buckets, 139 years for 1 ms buckets.

use crate::error::ConfigError;
use crate::sync::{AtomicU64, Ordering, stripe_count, thread_stripe};
use crossbeam_utils::CachePadded;
use std::fmt;
use std::time::Duration;

use super::{Divisor, Outcome, Tally};

internal! {
    /// Three counting lanes (for a breaker: calls, failures, slow calls; for a retry budget:
    /// requests, retries, unused).
    ///
    /// Each lane of a window's totals saturates at [`TimeWindow::MAX_LANE`]: an add that would take a
    /// lane past it adds only up to it, and the excess is never recorded in any bucket, so it never
    /// comes back out. A rate computed from two lanes one of which saturated is biased toward the
    /// other lane; size the window so that the peak rate times the span stays below `MAX_LANE`.
    ///
    /// ```
    /// use resile::{clock::{Clock, ManualClock}, window::{Lanes, TimeWindow}};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let w = TimeWindow::new(Duration::from_secs(10), 10)?;
    /// assert_eq!(w.add(clock.now(), [5, 0, 0]), [5, 0, 0]); // 5 requests
    /// // A retry only while retries stay under 20% of requests: checked and added in one step.
    /// let under_20_percent = |l: Lanes| (l[1] + 1) * 5 <= l[0];
    /// assert_eq!(w.try_add(clock.now(), [0, 1, 0], under_20_percent), Ok([5, 1, 0]));
    /// assert_eq!(w.try_add(clock.now(), [0, 1, 0], under_20_percent), Err([5, 1, 0]));
    /// assert_eq!(w.add(clock.now(), [0, 0, u32::MAX])[2], TimeWindow::MAX_LANE); // saturates
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(w.totals(clock.now()), [0, 0, 0]); // aged out
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub type Lanes = [u32; 3];
}

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
/// across lanes. Orderings:
///
/// - the check-and-add CAS: `Relaxed`; the check and the add are one CAS on one location, which
///   is atomic at any ordering.
/// - the `fetch_sub`s (an undo, a replaced or stamped count): `Relaxed`; that an amount is added
///   here before anyone removes it follows from the lane words' release/acquire chain (below),
///   which orders the add before the removal in this word's modification order.
/// - loads: `Relaxed`: a snapshot.
const LANE_BITS: u32 = 21;
const LANE_MASK: u64 = (1 << LANE_BITS) - 1;

/// Lane word layout (word `bucket * 3 + lane` of a stripe):
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
/// | `VALID, live lap, c`  | `c` events of the bucket's live epoch  | adders (add to `c`)       |
/// | `VALID, dead lap, c`  | `c` events of an epoch that died; its stamp is pending | (left by time) |
/// | `VALID, live lap, 0`  | stamped: the epoch started empty        | advancers, adders         |
///
/// A dead word is cleared by whoever CASes it first: the advancer (stamp) or an adder of the
/// live epoch (replace); either subtracts the count it removed.
///
/// Orderings, all for one invariant: a thread that writes lap `l` to a word has first seen (or
/// made) `head >= e`; a thread that then reads that word with `Acquire` and loads the head
/// afterwards therefore sees `head >= e` too, so "this word's lap is not the live lap under the
/// head I just read" always means "its epoch is dead", never "its epoch is newer than my view of
/// the head".
///
/// - lane word CASes: `AcqRel`: release the head load that justified the lap; acquire the value
///   replaced.
/// - lane word loads: `Acquire`, pairing with the CAS that wrote the lap.
/// - head CASes: `AcqRel`; head loads: `Acquire`, pairing with the CAS that moved the head.
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

/// Whether an outcome (one call, with or without a failure and a slow call) fits whole: the
/// calls lane has room, and failures and slow calls never outnumber calls, so they have too.
#[inline]
fn calls_have_room(l: Lanes) -> bool {
    l[0] < TimeWindow::MAX_LANE
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

/// Fast words per padded chunk: 128 bytes, the size of `CachePadded` on x86_64 and aarch64.
const FAST_CHUNK: usize = 16;
/// The most padded chunks of fast words a window allocates (8 KiB at 128 bytes a chunk).
const MAX_FAST_CHUNKS: usize = 64;
/// The most padded chunks of lane words a window allocates across its stripes (8 KiB at 128
/// bytes a chunk), unless one stripe alone needs more (over 341 buckets).
const MAX_WORD_CHUNKS: usize = 64;

/// Padded chunks of 16 words, `per` per stripe for as many stripes (a power of two, at most
/// [`stripe_count`]) as fit in `cap` chunks, and at least one: `(chunks, stripes - 1)`.
fn striped_chunks(per: usize, cap: usize) -> (Box<[CachePadded<[AtomicU64; FAST_CHUNK]>]>, usize) {
    let fit = if per >= cap {
        1
    } else {
        1 << (cap / per).ilog2()
    };
    let stripes = stripe_count().min(fit).max(1);
    let chunks = (0..stripes * per)
        .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
        .collect();
    (chunks, stripes - 1)
}

#[derive(Debug)]
struct Hot {
    totals: AtomicU64,
    head: AtomicU64,
}

/// Counts over the last `span` of time, kept in `buckets` buckets of `span / buckets` each.
///
/// An event counts from the moment it is added until its bucket falls out of the span; so the
/// window covers between `span - bucket` and `span` of history. "Now" is the newest time any
/// operation has passed in: an add with an older `now` still lands in its own bucket if that
/// bucket is live, and is dropped if it has aged out.
///
/// Lock-free; an add is a CAS on the totals plus a CAS on one lane word per non-zero lane, and
/// after any idle time the first operation stamps at most `3 * buckets` words per stripe of
/// threads (never a loop over
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
    /// The running totals and the head epoch, on one cache line: every operation reads both and
    /// writes the totals, and the head changes at most once per bucket period.
    hot: CachePadded<Hot>,
    /// The lane words, per stripe of threads (layout in the module docs).
    words: Box<[CachePadded<[AtomicU64; FAST_CHUNK]>]>,
    /// Chunks per stripe of `words`: `3 * buckets` words rounded up to whole chunks.
    word_chunks: usize,
    /// `stripes - 1` for `words` (a power of two of stripes).
    word_mask: usize,
    /// Lane 0 counts added by [`add_fast`](Self::add_fast): per stripe, one word per bucket,
    /// laid out as a lane word, kept out of the totals and summed (live laps only) when the
    /// totals are read (layout in the module docs). Empty unless built by
    /// [`with_fast_calls`](Self::with_fast_calls).
    fast: Box<[CachePadded<[AtomicU64; FAST_CHUNK]>]>,
    /// Chunks per stripe of `fast`: `buckets` words rounded up to whole chunks.
    fast_chunks: usize,
    /// `stripes - 1` for `fast` (a power of two of stripes); unused while `fast` is empty.
    fast_mask: usize,
    /// `slots - 1`: a stripe's fast words form a ring of `buckets` rounded up to a power of two
    /// slots, epoch `e` in slot `e & fast_slot_mask`, each word tagged with its epoch.
    fast_slot_mask: u64,
    bucket_nanos: u64,
    buckets: u64,
    /// `now / bucket_nanos` and `now / span` without a `div` instruction.
    per_bucket: Divisor,
    per_span: Divisor,
}

impl TimeWindow {
    /// The largest number of buckets.
    pub const MAX_BUCKETS: u32 = 1024;
    internal! {
        /// The largest count a lane holds over the whole window (2,097,151); adds past it saturate
        /// (see [`Lanes`]).
        pub const MAX_LANE: u32 = (1 << LANE_BITS) - 1;
    }

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
        let word_chunks = (3 * buckets as usize).div_ceil(FAST_CHUNK);
        let (words, word_mask) = striped_chunks(word_chunks, MAX_WORD_CHUNKS);
        Ok(Self {
            hot: CachePadded::new(Hot {
                totals: AtomicU64::new(0),
                head: AtomicU64::new(0),
            }),
            words,
            word_chunks,
            word_mask,
            fast: Box::new([]),
            fast_chunks: 0,
            fast_mask: 0,
            fast_slot_mask: 0,
            bucket_nanos: span_n / u64::from(buckets),
            buckets: u64::from(buckets),
            per_bucket: Divisor::new(span_n / u64::from(buckets)),
            per_span: Divisor::new(span_n),
        })
    }

    internal! {
        /// [`new`](Self::new), plus per-bucket words of lane-0 counts, one per stripe of threads,
        /// that [`add_fast`](Self::add_fast) writes with one compare-and-swap on the caller's stripe
        /// and a read sums (what a circuit breaker's time window is built with). They take at most
        /// 8 KiB, allocated here.
        ///
        /// ```
        /// use resile::window::TimeWindow;
        /// use std::time::Duration;
        /// let w = TimeWindow::with_fast_calls(Duration::from_secs(10), 10).unwrap();
        /// w.add_fast(0);
        /// w.add(0, [1, 1, 0]);
        /// assert_eq!(w.totals(0), [2, 1, 0]);
        /// assert_eq!(w.totals(10_000_000_000), [0, 0, 0]); // aged out
        /// ```
        pub fn with_fast_calls(span: Duration, buckets: u32) -> Result<Self, ConfigError> {
            let mut w = Self::new(span, buckets)?;
            let slots = buckets.next_power_of_two() as usize;
            let chunks = slots.div_ceil(FAST_CHUNK);
            // Both are at least 1 (buckets <= MAX_BUCKETS = MAX_FAST_CHUNKS * FAST_CHUNK).
            let fit = 1 << (MAX_FAST_CHUNKS / chunks).ilog2();
            let stripes = stripe_count().min(fit);
            w.fast = (0..stripes * chunks)
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect();
            w.fast_chunks = chunks;
            w.fast_mask = stripes - 1;
            w.fast_slot_mask = slots as u64 - 1;
            Ok(w)
        }
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

    /// Stripe `s`'s lane word of `bucket`.
    #[inline]
    fn word(&self, s: usize, bucket: u64, lane: usize) -> &AtomicU64 {
        let j = bucket as usize * 3 + lane;
        &self.words[s * self.word_chunks + j / FAST_CHUNK][j % FAST_CHUNK]
    }

    /// The epoch of `now` and its (lap, bucket). `lap = epoch / N = now / span` (nested floor
    /// divisions), so the two multiplications are independent and overlap, and run before any
    /// atomic does.
    #[inline]
    fn locate(&self, now: u64) -> (u64, (u64, u64)) {
        let epoch = self.per_bucket.div(now);
        let lap = self.per_span.div(now);
        (epoch, (lap, epoch - lap * self.buckets))
    }

    /// Moves the head to at least `epoch`; returns the head seen or set.
    #[inline]
    fn advance(&self, epoch: u64) -> u64 {
        let mut h = self.hot.head.load(Ordering::Acquire);
        while h < epoch {
            match self
                .hot
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
            for s in 0..=self.word_mask {
                for lane in 0..3 {
                    let c = self.stamp_word(s, i, lane);
                    removed += c << (lane as u32 * LANE_BITS);
                }
            }
            i = if i == 0 { n - 1 } else { i - 1 };
        }
        if removed != 0 {
            self.hot.totals.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    /// Stamps stripe `s`'s lane word of bucket `i` with the bucket's live lap unless it already
    /// has it; returns the count removed.
    fn stamp_word(&self, s: usize, i: u64, lane: usize) -> u64 {
        let w = self.word(s, i, lane);
        let mut cur = w.load(Ordering::Acquire);
        loop {
            let want = tag(live_lap(
                self.hot.head.load(Ordering::Acquire),
                self.buckets,
                i,
            ));
            if cur & TAG_MASK == want {
                return 0;
            }
            match w.compare_exchange(cur, want, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return count(cur),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Adds `amount` of epoch `epoch` to `w`, a word of the epoch's bucket tagged with `lap` (the
    /// epoch's lap for a lane word, the epoch itself for a fast word); `Ok(dead count
    /// replaced)`, or `Err(())` if the epoch died first.
    #[inline]
    fn add_word(&self, w: &AtomicU64, epoch: u64, lap: u64, amount: u64) -> Result<u64, ()> {
        let mut cur = w.load(Ordering::Acquire);
        loop {
            // The head is >= epoch: this thread advanced it at least that far.
            let h = self.hot.head.load(Ordering::Acquire);
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

    internal! {
        /// Adds `delta` at time `now`; returns the totals over the span ending at `now`.
        #[inline]
        pub fn add(&self, now: u64, delta: Lanes) -> Lanes {
            match self.try_add(now, delta, |_| true) {
                Ok(t) | Err(t) => t,
            }
        }
    }

    internal! {
        /// Adds `delta` at `now` only if `admit(totals before the add)` holds, in one atomic step;
        /// `Ok(totals after)` or `Err(totals unchanged)`.
        ///
        /// The check and the add are one compare-and-swap on the running totals, so threads racing
        /// `try_add` never admit past the predicate's limit. `admit` may run more than once (once per
        /// lost race). A `now` whose bucket has already aged out (older than the span that ends at
        /// the newest time seen) is refused without calling `admit`: nothing could be debited there.
        /// So a retry budget never admits a withdrawal it did not debit; `add` and `record` with such
        /// a `now` add nothing.
        #[inline]
        pub fn try_add(
            &self,
            now: u64,
            delta: Lanes,
            admit: impl Fn(Lanes) -> bool,
        ) -> Result<Lanes, Lanes> {
            self.try_add_counted(now, delta, admit)
                .map(|t| self.with_fast(t))
                .map_err(|t| self.with_fast(t))
        }
    }

    /// [`try_add`](Self::try_add), returning the running totals without the fast calls.
    #[inline]
    fn try_add_counted(
        &self,
        now: u64,
        delta: Lanes,
        admit: impl Fn(Lanes) -> bool,
    ) -> Result<Lanes, Lanes> {
        let (epoch, at) = self.locate(now);
        let head = self.advance(epoch);
        let mut t = self.hot.totals.load(Ordering::Relaxed);
        if head - epoch >= self.buckets {
            return Err(unpack(t));
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
            match self.hot.totals.compare_exchange_weak(
                t,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break (next, applied),
                Err(seen) => t = seen,
            }
        };
        let mut give_back = 0u64;
        let mut dead = false;
        let stripe = thread_stripe() & self.word_mask;
        // The lanes in reverse (slow calls, failures, calls), the opposite of `reset`'s order: an
        // add racing a reset then survives it as a suffix of this order (calls; failures and
        // calls; or all), never as a failure or a slow call without its call.
        for (lane, &a) in applied.iter().enumerate().rev() {
            if a == 0 {
                continue;
            }
            let shift = lane as u32 * LANE_BITS;
            if !dead {
                match self.add_word(self.word(stripe, at.1, lane), epoch, at.0, u64::from(a)) {
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
            let before = self.hot.totals.fetch_sub(give_back, Ordering::Relaxed);
            Ok(unpack(before - give_back))
        }
    }

    internal! {
        /// Adds one to lane 0 at `now` with one compare-and-swap on the bucket's fast word of the
        /// calling thread's stripe, leaving the running totals alone: the breaker's success path
        /// while its window holds no failure, where the count needs no decision. Reads
        /// ([`totals`](Self::totals), [`tally`](Self::tally) and what [`add`](Self::add) returns)
        /// include it; the predicate of [`try_add`](Self::try_add) sees the totals without it. A
        /// `now` whose bucket has aged out adds nothing, as in [`add`](Self::add). A window built by
        /// [`new`](Self::new) has no fast words: there it is `add(now, [1, 0, 0])`.
        #[inline(always)]
        pub fn add_fast(&self, now: u64) {
            if self.fast.is_empty() {
                self.add(now, [1, 0, 0]);
                return;
            }
            // Fast words are tagged with the epoch itself and kept in a power-of-two ring of slots,
            // so one division (`now / bucket`) places the call.
            let epoch = self.per_bucket.div(now);
            let slot = (epoch & self.fast_slot_mask) as usize;
            let w = self.fast_word(thread_stripe() & self.fast_mask, slot);
            self.advance(epoch);
            // Nothing to give back: a dead count replaced here was never in the totals.
            let _ = self.add_word(w, epoch, epoch, 1);
        }
    }

    /// Stripe `s`'s fast word of slot `i`.
    #[inline]
    fn fast_word(&self, s: usize, i: usize) -> &AtomicU64 {
        &self.fast[s * self.fast_chunks + i / FAST_CHUNK][i % FAST_CHUNK]
    }

    /// `lanes` with the fast counts live under the head (loaded now) added to lane 0.
    #[inline]
    fn with_fast(&self, mut lanes: Lanes) -> Lanes {
        if !self.fast.is_empty() {
            let head = self.hot.head.load(Ordering::Acquire);
            lanes[0] = lanes[0].saturating_add(self.fast_sum(head));
        }
        lanes
    }

    /// The fast words tagged with the live epoch of their slot under `head`, summed (a word of a
    /// dead epoch counts nothing: it aged out, and no stamp is needed to zero it).
    fn fast_sum(&self, head: u64) -> u32 {
        let mut sum = 0u64;
        for i in 0..=self.fast_slot_mask {
            // The newest epoch at or before the head in slot `i`, `back` epochs ago: live if
            // within the span (and not before epoch 0).
            let back = head.wrapping_sub(i) & self.fast_slot_mask;
            if back >= self.buckets || back > head {
                continue;
            }
            let live = tag(head - back);
            for s in 0..=self.fast_mask {
                let v = self.fast_word(s, i as usize).load(Ordering::Acquire);
                if v & TAG_MASK == live {
                    sum += count(v);
                }
            }
        }
        u32::try_from(sum).unwrap_or(u32::MAX)
    }

    /// Records one call outcome at `now`; returns the totals just after. An outcome that finds
    /// the calls lane full (at [`MAX_LANE`](Self::MAX_LANE)) is dropped whole, so that failures
    /// and slow calls never outnumber the calls they are counted against.
    #[inline]
    pub fn record(&self, now: u64, outcome: Outcome) -> Tally {
        match self.try_add(now, outcome.tally().into(), calls_have_room) {
            Ok(t) | Err(t) => t.into(),
        }
    }

    /// [`record`](Self::record) returning the totals without the fast calls: failures and slow
    /// calls exact, calls a lower bound (the breaker's dirty path, which sums the fast words only
    /// when that bound could breach a threshold).
    #[inline]
    pub(crate) fn record_counted(&self, now: u64, outcome: Outcome) -> Tally {
        match self.try_add_counted(now, outcome.tally().into(), calls_have_room) {
            Ok(t) | Err(t) => t.into(),
        }
    }

    /// Whether the running totals as they stand count a failure or a slow call (a `Relaxed`
    /// load: the breaker's fence orders it); the head is not advanced, so a count that has just
    /// aged out may still show.
    #[inline]
    pub(crate) fn counts_failures_or_slow(&self) -> bool {
        let [_, failures, slow] = unpack(self.hot.totals.load(Ordering::Relaxed));
        failures != 0 || slow != 0
    }

    /// The totals over the span ending at `now`, as a breaker reads them.
    #[inline]
    pub fn tally(&self, now: u64) -> Tally {
        self.totals(now).into()
    }

    internal! {
        /// The totals over the span ending at `now` (a `now` older than the newest seen reads the
        /// span ending at the newest).
        #[inline]
        pub fn totals(&self, now: u64) -> Lanes {
            self.advance(self.per_bucket.div(now));
            self.with_fast(unpack(self.hot.totals.load(Ordering::Relaxed)))
        }
    }

    /// Empties the window. Events added concurrently with a reset may survive it; the totals
    /// still equal the buckets' contents once both have returned.
    pub fn reset(&self) {
        // Each stripe's words in index order: calls, failures, slow calls per bucket (see
        // `try_add_counted` for why that order).
        let mut removed = 0u64;
        for (c, chunk) in self.words.iter().enumerate() {
            for (o, w) in chunk.iter().enumerate() {
                let j = (c % self.word_chunks) * FAST_CHUNK + o;
                let old = w.swap(0, Ordering::AcqRel);
                removed += count(old) << ((j % 3) as u32 * LANE_BITS);
            }
        }
        if removed != 0 {
            self.hot.totals.fetch_sub(removed, Ordering::Relaxed);
        }
        for w in self.fast.iter().flat_map(|c| c.iter()) {
            w.swap(0, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeWindow")
            .field("span", &self.span())
            .field("buckets", &self.buckets)
            .field("head_epoch", &self.hot.head.load(Ordering::Relaxed))
            .field("totals", &unpack(self.hot.totals.load(Ordering::Relaxed)))
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
        fn add(&mut self, now: u64, d: Lanes) -> Lanes {
            match self.try_add(now, d, |_| true) {
                Ok(t) | Err(t) => t,
            }
        }
        fn try_add(
            &mut self,
            now: u64,
            delta: Lanes,
            admit: impl Fn(Lanes) -> bool,
        ) -> Result<Lanes, Lanes> {
            let e = self.advance(now);
            let cur = self.sum();
            if self.head - e >= self.n || !admit(cur) {
                return Err(cur);
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
                    // An outcome goes in whole while calls have room, else not at all.
                    let whole = |t: Lanes| t[0] < TimeWindow::MAX_LANE;
                    let expect = match m.try_add(now, o.tally().into(), whole) {
                        Ok(t) | Err(t) => Tally::from(t),
                    };
                    assert_eq!(w.record(now, o), expect, "{ctx}");
                }
                5 => {
                    // Large adds drive the lanes into saturation.
                    let big = (r >> 8) as u32 % (TimeWindow::MAX_LANE / 2);
                    let d = [big, big / 3, 1];
                    assert_eq!(w.add(now, d), m.add(now, d), "{ctx}");
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
        // Shorter runs under miri, which interprets every step.
        let (steps, long_steps) = if cfg!(miri) {
            (25, 200)
        } else {
            (3_000, 20_000)
        };
        for (k, &(span, buckets)) in configs.iter().enumerate() {
            for (s, &start) in starts.iter().enumerate() {
                run_against_model(span, buckets, start, (k * 31 + s) as u64 + 1, steps);
            }
        }
        run_against_model(1_024_000, 1024, 0, 99, long_steps);
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
    fn an_outcome_that_finds_the_calls_lane_full_is_dropped_whole() {
        let sec = 1_000_000_000;
        let w = TimeWindow::new(Duration::from_secs(10), 10).unwrap();
        w.add(0, [TimeWindow::MAX_LANE, 0, 0]);
        for _ in 0..5 {
            w.record(sec, Outcome::SlowFailure);
        }
        let full = w.tally(sec);
        assert_eq!(
            (full.calls, full.failures, full.slow),
            (TimeWindow::MAX_LANE, 0, 0)
        );
        // Once the full bucket ages out, no failure is left without its call.
        let t = w.tally(10 * sec);
        assert_eq!((t.calls, t.failures, t.slow), (0, 0, 0));
        w.record(10 * sec, Outcome::Failure);
        let t = w.tally(10 * sec);
        assert_eq!((t.calls, t.failures, t.slow), (1, 1, 0));
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
    fn fast_calls_count_with_the_rest_and_age_out() {
        use std::sync::Arc;
        const N: u32 = if cfg!(miri) { 200 } else { 10_000 }; // calls per thread, even
        let w = Arc::new(TimeWindow::with_fast_calls(Duration::from_millis(10), 5).unwrap());
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for k in 0..N {
                        if t % 2 == 0 {
                            w.add_fast(1_000);
                        } else {
                            w.add(1_000, [1, k % 2, 0]);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(w.totals(1_000), [4 * N, N, 0]);
        assert_eq!(w.totals(9_999_999), [4 * N, N, 0], "bucket 0 still live");
        assert_eq!(w.totals(10_000_000), [0, 0, 0], "aged out");
        w.add_fast(10_000_000);
        w.reset();
        assert_eq!(w.totals(10_000_000), [0, 0, 0]);

        // Without fast words, a fast call is a plain add to lane 0.
        let plain = TimeWindow::new(Duration::from_millis(10), 5).unwrap();
        plain.add_fast(0);
        plain.add(0, [0, 1, 0]);
        assert_eq!(plain.totals(0), [1, 1, 0]);
    }

    #[test]
    fn fast_words_are_a_power_of_two_ring_striped_within_their_memory_cap() {
        for buckets in [1, 10, 16, 17, 100, 1000, TimeWindow::MAX_BUCKETS] {
            let span = Duration::from_micros(u64::from(buckets));
            let w = TimeWindow::with_fast_calls(span, buckets).unwrap();
            let stripes = w.fast_mask + 1;
            assert!(stripes.is_power_of_two() && stripes <= stripe_count());
            let slots = buckets.next_power_of_two();
            assert_eq!(w.fast_slot_mask, u64::from(slots) - 1);
            assert_eq!(w.fast_chunks, (slots as usize).div_ceil(FAST_CHUNK));
            assert_eq!(w.fast.len(), stripes * w.fast_chunks);
            assert!(w.fast.len() <= MAX_FAST_CHUNKS, "{buckets} buckets");
            // As many stripes as fit, up to one per stripe of the counters.
            assert!(stripes == stripe_count() || 2 * w.fast.len() > MAX_FAST_CHUNKS);
        }
    }

    #[test]
    fn fast_calls_on_many_threads_and_buckets_are_exact_and_age_out_by_bucket() {
        // 40 buckets of 1 ms in a ring of 64 slots: slot i's words sit in chunk i / 16 of each
        // stripe.
        let w = TimeWindow::with_fast_calls(Duration::from_millis(40), 40).unwrap();
        let ms = 1_000_000;
        // Thread t's k-th call lands in bucket (t + 6k) % 40 (all of them live at 39 ms).
        let bucket = |t: u64, k: u64| (t + 6 * k) % 40;
        const K: u64 = if cfg!(miri) { 200 } else { 4_000 }; // calls per thread
        std::thread::scope(|s| {
            for t in 0..6u64 {
                let w = &w;
                s.spawn(move || {
                    for k in 0..K {
                        w.add_fast(bucket(t, k) * ms);
                    }
                });
            }
        });
        assert_eq!(w.totals(39 * ms)[0], 6 * K as u32);
        // At 40 ms bucket 0 dies: exactly the calls that landed in it leave.
        let in_bucket_0 = (0..6u64)
            .flat_map(|t| (0..K).map(move |k| bucket(t, k)))
            .filter(|&b| b == 0)
            .count() as u32;
        assert!(in_bucket_0 > 0);
        assert_eq!(w.totals(40 * ms)[0], 6 * K as u32 - in_bucket_0);
        assert_eq!(w.totals(79 * ms)[0], 0);
    }

    #[test]
    fn concurrent_adds_are_exact_after_join() {
        use std::sync::Arc;
        // Adds per thread (fewer under miri, which interprets each).
        const N: u32 = if cfg!(miri) { 300 } else { 10_000 };
        const M: u64 = if cfg!(miri) { 600 } else { 20_000 };
        // A still clock: every add counts.
        let w = Arc::new(TimeWindow::new(Duration::from_millis(10), 5).unwrap());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for k in 0..N {
                        w.add(1_000, [1, k % 2, k % 3 / 2]);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Lane 2 takes one add for every k with k % 3 == 2: N / 3 of them.
        assert_eq!(w.totals(1_000), [4 * N, 4 * (N / 2), 4 * (N / 3)]);

        // A moving clock: after join the totals equal the live words, and they all age out.
        let w = Arc::new(TimeWindow::new(Duration::from_micros(8), 4).unwrap());
        let clock = ManualClock::new();
        let hs: Vec<_> = (0..3)
            .map(|t| {
                let (w, clock) = (w.clone(), clock.clone());
                std::thread::spawn(move || {
                    for k in 0..M {
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
        let head = w.hot.head.load(Ordering::Relaxed);
        let mut live = [0u32; 3];
        for i in 0..w.buckets {
            for s in 0..=w.word_mask {
                for (lane, l) in live.iter_mut().enumerate() {
                    let word = w.word(s, i, lane).load(Ordering::Relaxed);
                    if word & TAG_MASK == tag(live_lap(head, w.buckets, i)) {
                        *l += count(word) as u32;
                    } else {
                        assert_eq!(count(word), 0, "a dead word keeps a count");
                    }
                }
            }
        }
        assert_eq!(t, live);
        assert!(t[1] <= 1_000);
        assert_eq!(w.totals(now + 8_000), [0, 0, 0]);
    }
}
