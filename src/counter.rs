//! Counters written on a hot path by many threads at once, read rarely.
//!
//! One shared `AtomicU64` written by every thread is one cache line bouncing between cores: each
//! `fetch_add` waits for the line, so a path that is otherwise read-only stops scaling. Here each
//! thread adds to its own stripe (picked by [`thread_stripe`]), so threads on different stripes
//! never contend, and a read sums the stripes. Three kinds:
//!
//! - [`StatCounters`]: counts that only grow and feed `metrics()` (a breaker refusing while open,
//!   a full bulkhead failing fast, a retry budget's and a drainer's lifetime counts). The first
//!   threads own a cell each and add with a plain load and store; see its docs.
//! - [`StripedCounters`] (below): counts a reader takes and zeroes (the adaptive limit's samples),
//!   every add a `fetch_add` on the caller's stripe.
//! - [`TakeCounter`]: one count that adders raise by one and takers take (a count window's
//!   deferred successes): the first threads own a cell and add with a plain load and store, as
//!   for [`StatCounters`], and a take marks what it took instead of zeroing; see its docs.
//!
//! # Layout of [`StripedCounters`]
//!
//! ```text
//! cells: Box<[CachePadded<[AtomicU64; LANES]>]>   stripes = stripe_count(): a power of two
//!   cells[i][lane]  the adds to `lane` by threads whose thread_stripe() & (stripes - 1) == i
//! ```
//!
//! A counter with several lanes (the retry budget's deposits, granted and refused) keeps them in
//! one padded cell per stripe: a thread's adds to any lane touch one line it alone (usually)
//! writes.
//!
//! # Orderings
//!
//! These are statistics: no decision reads them and nothing is published through them, so no
//! access needs a happens-before edge.
//!
//! - `add`: `fetch_add(Relaxed)` on the caller's stripe; each stripe is one atomic, so no add is
//!   lost.
//! - a max lane: `fetch_max(Relaxed)` on the caller's stripe (from [`mine`](StripedCounters::mine)),
//!   an RMW like `add`, so none is lost either.
//! - `take_sum_of`, `take_max_of`: a `Relaxed` `swap(0)` per stripe: each stripe's modification
//!   order puts every RMW on it before or after the swap, so each add or max is taken by exactly
//!   one take (or left for the next). Nothing else is published through them.
//! - `sum`: a `Relaxed` load per stripe; taken while adders run it may miss adds in flight (as a
//!   single counter read a moment earlier would), and it is exact once the adders are quiescent
//!   (joined, or otherwise synchronised with the reader). Each stripe only grows, so successive
//!   sums by one reader never go down.
//!
//! # Cost of [`StripedCounters`]
//!
//! Memory: `stripes × size_of::<CachePadded<..>>()` (128 bytes on x86_64 and aarch64), so 512 B
//! on 2 CPUs and 4 KiB at the 32-stripe cap, allocated once when the owning primitive is built;
//! `add` and `sum` never allocate. `add`: a thread-local read, an index and one uncontended
//! `fetch_add`. `sum`: one load per stripe.

use crate::sync::{AtomicU64, Ordering, stripe_count, thread_stripe};
use crossbeam_utils::CachePadded;

/// Padded cells of `LANES` lanes, all zero (one allocation), for either kind of counter.
fn zeroed<const LANES: usize>(n: usize) -> Box<[CachePadded<[AtomicU64; LANES]>]> {
    (0..n)
        .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
        .collect()
}

/// The total of `lane` over `cells`: a `Relaxed` load each (exact once adders are quiescent).
fn lane_sum<const LANES: usize>(cells: &[CachePadded<[AtomicU64; LANES]>], lane: usize) -> u64 {
    cells
        .iter()
        .map(|c| c[lane].load(Ordering::Relaxed))
        .fold(0, u64::wrapping_add)
}

/// Cells for counters whose first threads own a cell each: [`stripe_count`] owned cells, then
/// half as many shared ones (at least one); returns the cells and how many are owned.
fn owned_and_shared<const LANES: usize>() -> (Box<[CachePadded<[AtomicU64; LANES]>]>, usize) {
    let owned = stripe_count();
    let shared = (owned / 2).max(1);
    (zeroed(owned + shared), owned)
}

/// The calling thread's cell of `cells`, whose first `owned` cells belong to one thread each,
/// and whether the caller owns it: thread `t = thread_stripe()` owns `cells[t]` for `t < owned`,
/// and later threads share `cells[owned + t % shared]`.
#[inline]
fn owned_or_shared<const LANES: usize>(
    cells: &[CachePadded<[AtomicU64; LANES]>],
    owned: usize,
) -> (&[AtomicU64; LANES], bool) {
    let t = thread_stripe();
    if let Some(cell) = cells.get(t).filter(|_| t < owned) {
        return (cell, true);
    }
    let shared = cells.len() - owned;
    // `shared >= 1`, so the index is below `cells.len()`.
    (&cells[owned + t % shared], false)
}

/// Adds `n` to `cell` and returns its new value: a `Relaxed` load and store when the caller
/// owns it (no other thread writes it, so the load reads the owner's own last store), else a
/// `Relaxed` `fetch_add`.
#[inline]
fn add_as(cell: &AtomicU64, n: u64, owner: bool) -> u64 {
    if owner {
        let v = cell.load(Ordering::Relaxed).wrapping_add(n);
        cell.store(v, Ordering::Relaxed);
        v
    } else {
        cell.fetch_add(n, Ordering::Relaxed).wrapping_add(n)
    }
}

/// `LANES` striped `u64` counters sharing their stripes. See the [module docs](self).
pub(crate) struct StripedCounters<const LANES: usize> {
    cells: Box<[CachePadded<[AtomicU64; LANES]>]>,
}

/// One striped counter.
#[cfg(test)]
pub(crate) type StripedCounter = StripedCounters<1>;

impl<const LANES: usize> StripedCounters<LANES> {
    /// All lanes zero, with [`stripe_count`] stripes (allocated here, once).
    pub(crate) fn new() -> Self {
        let stripes = stripe_count();
        debug_assert!(stripes.is_power_of_two());
        Self {
            cells: zeroed(stripes),
        }
    }

    /// The calling thread's stripe: its lanes, for a caller that updates several.
    #[inline]
    pub(crate) fn mine(&self) -> &[AtomicU64; LANES] {
        // `cells.len()` is a power of two, so the mask keeps the index in range.
        &self.cells[thread_stripe() & (self.cells.len() - 1)]
    }

    /// Adds `n` to `lane`: one `Relaxed` `fetch_add` on this thread's stripe.
    #[cfg(test)]
    #[inline]
    pub(crate) fn add_to(&self, lane: usize, n: u64) {
        self.mine()[lane].fetch_add(n, Ordering::Relaxed);
    }

    /// The total of `lane` over all stripes (`Relaxed` loads; exact once adders are quiescent).
    pub(crate) fn sum_of(&self, lane: usize) -> u64 {
        lane_sum(&self.cells, lane)
    }

    /// Each stripe's value of `lane` (`Relaxed` loads), for a lane that packs several fields.
    pub(crate) fn each(&self, lane: usize) -> impl Iterator<Item = u64> + '_ {
        self.cells
            .iter()
            .map(move |c| c[lane].load(Ordering::Relaxed))
    }

    /// Takes each stripe's value of `lane` and zeroes it (a `Relaxed` `swap(0)` each), for a
    /// lane that packs several fields.
    pub(crate) fn take_each(&self, lane: usize) -> impl Iterator<Item = u64> + '_ {
        self.cells
            .iter()
            .map(move |c| c[lane].swap(0, Ordering::Relaxed))
    }

    /// Takes the total of `lane` and zeroes it: one `swap(0)` per stripe, so every add lands
    /// either in this total or after it, never in both and never in neither.
    pub(crate) fn take_sum_of(&self, lane: usize) -> u64 {
        self.cells
            .iter()
            .map(|c| c[lane].swap(0, Ordering::Relaxed))
            .fold(0, u64::saturating_add)
    }

    /// Takes the largest value of `lane` (raised by `fetch_max` on [`mine`](Self::mine)) and
    /// zeroes it, one `swap(0)` per stripe.
    pub(crate) fn take_max_of(&self, lane: usize) -> u64 {
        self.cells
            .iter()
            .map(|c| c[lane].swap(0, Ordering::Relaxed))
            .fold(0, u64::max)
    }

    /// How many stripes this counter has.
    #[cfg(test)]
    fn stripes(&self) -> usize {
        self.cells.len()
    }
}

#[cfg(test)]
impl StripedCounter {
    /// Adds `n`: one `Relaxed` `fetch_add` on this thread's stripe.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.add_to(0, n);
    }

    /// The total over all stripes (`Relaxed` loads; exact once adders are quiescent).
    pub(crate) fn sum(&self) -> u64 {
        self.sum_of(0)
    }
}

/// `LANES` statistics counters that only grow, whose adds are usually plain stores: the first
/// threads to ask for a stripe number each own a cell, so their add is a load and a store on a
/// line no other thread writes (no locked instruction); later threads share striped cells with
/// `fetch_add`, as [`StripedCounters`] do. A read sums all cells.
///
/// For counts that feed `metrics()` (refusals, lifetime counts). Counts that a reader takes and
/// zeroes need [`StripedCounters`] (a zeroing take racing an owner's plain store could lose the
/// add), or [`TakeCounter`], whose takes mark what they took and never write an adder's cell.
///
/// ```text
/// cells: Box<[CachePadded<[AtomicU64; LANES]>]>   owned + shared cells
///   cells[t]                    thread t's own, for t = thread_stripe() < owned
///   cells[owned + (t % shared)] every later thread's, by fetch_add
/// ```
///
/// `owned` is [`stripe_count`] (twice the cores, as a power of two: the threads a server starts
/// first, its runtime's workers among them); `shared` is half of it, at least one.
///
/// Orderings:
///
/// - an owner's add: a `Relaxed` load and a `Relaxed` store of its own cell. [`thread_stripe`]
///   hands each number below `owned` to one thread only, ever, so no other thread writes that
///   cell: the load reads the owner's own last store and no add is lost.
/// - a later thread's add: `fetch_add(Relaxed)` on its shared cell; an RMW, so none is lost.
/// - `sum_of`: a `Relaxed` load per cell, as for [`StripedCounters::sum_of`]: exact once the
///   adders are quiescent, never lower than a sum the same reader took before.
///
/// Memory: `1.5 × stripe_count()` padded cells (128 bytes each on x86_64 and aarch64), allocated
/// once when the owning primitive is built; nothing allocates after.
pub(crate) struct StatCounters<const LANES: usize> {
    cells: Box<[CachePadded<[AtomicU64; LANES]>]>,
    /// How many cells are owned, one thread each (a power of two; the shared ones follow).
    owned: usize,
}

/// One statistics counter.
pub(crate) type StatCounter = StatCounters<1>;

impl<const LANES: usize> StatCounters<LANES> {
    /// All lanes zero (allocated here, once).
    pub(crate) fn new() -> Self {
        let (cells, owned) = owned_and_shared();
        Self { cells, owned }
    }

    /// Adds `n` to `lane`: a load and a store of this thread's own cell, or a `fetch_add` on a
    /// shared one (see the orderings above).
    #[inline]
    pub(crate) fn add_to(&self, lane: usize, n: u64) {
        let (cell, owner) = owned_or_shared(&self.cells, self.owned);
        add_as(&cell[lane], n, owner);
    }

    /// The total of `lane` over all cells (`Relaxed` loads; exact once adders are quiescent).
    pub(crate) fn sum_of(&self, lane: usize) -> u64 {
        lane_sum(&self.cells, lane)
    }
}

impl StatCounter {
    /// Adds `n` to this thread's cell.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.add_to(0, n);
    }

    /// The total over all cells (`Relaxed` loads; exact once adders are quiescent).
    pub(crate) fn sum(&self) -> u64 {
        self.sum_of(0)
    }
}

/// One count that threads raise by one and takers take, whose adds are usually plain stores:
/// as for [`StatCounters`], the first threads to ask for a stripe number own a cell each and
/// the rest share cells with `fetch_add`. A take never writes an adder's count: each cell keeps
/// the count its adders reached and the part of it already taken.
///
/// ```text
/// cells: Box<[CachePadded<[AtomicU64; 2]>]>   owned + shared cells, as for StatCounters
///   cells[i][ADDED]  adds to cell i, ever (only grows; the owner's plain store or fetch_add)
///   cells[i][TAKEN]  the part of ADDED that takes have taken (only grows; a taker's CAS)
/// ```
///
/// | cell state            | moved by                      | to                            |
/// |-----------------------|-------------------------------|-------------------------------|
/// | `TAKEN == ADDED`      | an add                        | `ADDED + 1`, `TAKEN` kept     |
/// | `TAKEN < ADDED`       | an add                        | `ADDED + 1`                   |
/// | `TAKEN < ADDED`       | a take (CAS of `TAKEN`)       | `TAKEN = ADDED` as it read it |
///
/// Orderings:
///
/// - an owner's add: a `Relaxed` load and store of `ADDED`, as in [`StatCounters`]; a sharer's:
///   `fetch_add(Relaxed)`. Either way each add is one step of `ADDED`'s modification order.
/// - an adder's read of `TAKEN` (how many of its cell's adds wait): `Relaxed`; a stale value is
///   lower (`TAKEN` only grows), so the count it reports is never below the untaken adds up to
///   its own.
/// - a take: `TAKEN`'s load `Acquire`, then `ADDED`'s load `Relaxed`, then
///   `compare_exchange(taken, added, AcqRel, Acquire)`. The value `taken` was written by an
///   earlier take's CAS right after its own load of `ADDED` read `taken`: acquiring that CAS
///   orders that load before this take's, so (read-read coherence) this take reads `ADDED` at
///   `taken` or later, and `added - taken` never goes below zero. The CASes on `TAKEN` are
///   totally ordered, and each claims the adds between the value it replaced and the value it
///   wrote, so each add is taken by exactly one take once `ADDED` holds it. An add that happens
///   before a take's load of `ADDED` is read by it (coherence): the take claims it unless an
///   earlier take already did.
///
/// Memory: `1.5 × stripe_count()` padded cells, as for [`StatCounters`], allocated once.
pub(crate) struct TakeCounter {
    cells: Box<[CachePadded<[AtomicU64; 2]>]>,
    /// How many cells are owned, one thread each (the shared ones follow).
    owned: usize,
}

/// [`TakeCounter`]'s lane of adds ever made.
const ADDED: usize = 0;
/// [`TakeCounter`]'s lane of adds taken.
const TAKEN: usize = 1;

impl TakeCounter {
    /// Nothing added (allocated here, once).
    pub(crate) fn new() -> Self {
        let (cells, owned) = owned_and_shared();
        Self { cells, owned }
    }

    /// Adds one on this thread's cell; returns how many of that cell's adds up to this one no
    /// take has taken, as far as this thread sees: never fewer than wait untaken (a stale
    /// `TAKEN` is lower), so the adder that brings a cell to `n` untaken adds sees at least `n`.
    /// On a shared cell, adds that other threads make after this one are not in its count.
    #[inline]
    pub(crate) fn add_one(&self) -> u64 {
        let (cell, owner) = owned_or_shared(&self.cells, self.owned);
        let added = add_as(&cell[ADDED], 1, owner);
        // Relaxed: a stale value is lower, so the count returned is not below the truth.
        added.saturating_sub(cell[TAKEN].load(Ordering::Relaxed))
    }

    /// Takes every add no take has taken yet, and returns how many; a cell with nothing to
    /// take is only read.
    #[inline]
    pub(crate) fn take(&self) -> u64 {
        let mut sum = 0u64;
        for cell in self.cells.iter() {
            // Acquire, then Relaxed, then AcqRel: see the orderings above.
            let mut taken = cell[TAKEN].load(Ordering::Acquire);
            loop {
                let added = cell[ADDED].load(Ordering::Relaxed);
                if added == taken {
                    break;
                }
                match cell[TAKEN].compare_exchange(
                    taken,
                    added,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        sum = sum.saturating_add(added.wrapping_sub(taken));
                        break;
                    }
                    Err(now) => taken = now,
                }
            }
        }
        sum
    }
}

impl std::fmt::Debug for TakeCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waiting: u64 = self
            .cells
            .iter()
            .map(|c| {
                let taken = c[TAKEN].load(Ordering::Relaxed);
                c[ADDED].load(Ordering::Relaxed).saturating_sub(taken)
            })
            .fold(0, u64::saturating_add);
        f.debug_struct("TakeCounter")
            .field("waiting", &waiting)
            .field("owned", &self.owned)
            .finish()
    }
}

impl<const LANES: usize> Default for StatCounters<LANES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const LANES: usize> std::fmt::Debug for StatCounters<LANES> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sums: [u64; LANES] = std::array::from_fn(|lane| self.sum_of(lane));
        f.debug_struct("StatCounters")
            .field("sums", &sums)
            .field("owned", &self.owned)
            .finish()
    }
}

impl<const LANES: usize> Default for StripedCounters<LANES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const LANES: usize> std::fmt::Debug for StripedCounters<LANES> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sums: [u64; LANES] = std::array::from_fn(|lane| self.sum_of(lane));
        f.debug_struct("StripedCounters")
            .field("sums", &sums)
            .field("stripes", &self.cells.len())
            .finish()
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::sync::{AtomicBool, MAX_STRIPES};

    #[test]
    fn stripes_are_twice_the_cores_as_a_power_of_two_within_the_cap() {
        let c = StripedCounter::new();
        assert!(c.stripes().is_power_of_two());
        assert!((1..=MAX_STRIPES).contains(&c.stripes()));
        let par = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.stripes(), (2 * par).next_power_of_two().min(MAX_STRIPES));
    }

    #[test]
    fn one_thread_counts_exactly() {
        let c = StripedCounter::new();
        assert_eq!(c.sum(), 0);
        for _ in 0..1000 {
            c.add(1);
        }
        c.add(24);
        assert_eq!(c.sum(), 1024);
    }

    #[test]
    fn thread_stripe_is_stable_per_thread_and_differs_between_threads() {
        let a = thread_stripe();
        assert_eq!(thread_stripe(), a);
        let b = std::thread::spawn(thread_stripe).join().unwrap();
        assert_ne!(a, b);
    }

    /// The two kinds' adds and sums, for tests that run on both.
    trait Counts: Sync {
        fn add(&self, lane: usize, n: u64);
        fn sum(&self, lane: usize) -> u64;
    }

    impl<const LANES: usize> Counts for StripedCounters<LANES> {
        fn add(&self, lane: usize, n: u64) {
            self.add_to(lane, n);
        }
        fn sum(&self, lane: usize) -> u64 {
            self.sum_of(lane)
        }
    }

    impl<const LANES: usize> Counts for StatCounters<LANES> {
        fn add(&self, lane: usize, n: u64) {
            self.add_to(lane, n);
        }
        fn sum(&self, lane: usize) -> u64 {
            self.sum_of(lane)
        }
    }

    /// More threads than stripes (or owned cells) add to lanes 0 and 2 of `c`: the sums are
    /// exact once they have joined (miri reports one core, so two stripes, and interprets every
    /// add: fewer of both there).
    fn exact_after_many_threads_join(c: &impl Counts) {
        const THREADS: u64 = if cfg!(miri) { 8 } else { 64 };
        const ADDS: u64 = if cfg!(miri) { 200 } else { 10_000 };
        std::thread::scope(|s| {
            for t in 0..THREADS {
                s.spawn(move || {
                    for _ in 0..ADDS {
                        c.add(0, 1);
                        c.add(2, t);
                    }
                });
            }
        });
        assert_eq!(c.sum(0), THREADS * ADDS);
        assert_eq!(c.sum(1), 0);
        assert_eq!(c.sum(2), ADDS * (0..THREADS).sum::<u64>());
    }

    /// Four adders and a reader of lane 0: no sum the reader takes is below the one before.
    fn sums_never_go_down_while_adding(c: &impl Counts) {
        const ADDS: u64 = if cfg!(miri) { 500 } else { 50_000 };
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..ADDS {
                        c.add(0, 1);
                    }
                });
            }
            s.spawn(|| {
                let mut last = 0;
                while !done.load(Ordering::Relaxed) {
                    let now = c.sum(0);
                    assert!(now >= last, "{now} < {last}");
                    last = now;
                }
            });
            // Stop the reader once every add is in (the scope then joins the adders).
            while c.sum(0) < 4 * ADDS {
                std::thread::yield_now();
            }
            done.store(true, Ordering::Relaxed);
        });
        assert_eq!(c.sum(0), 4 * ADDS);
    }

    #[test]
    fn sums_are_exact_after_many_threads_join() {
        exact_after_many_threads_join(&StripedCounters::<3>::new());
    }

    #[test]
    fn sums_read_while_adding_never_go_down() {
        sums_never_go_down_while_adding(&StripedCounter::new());
    }

    #[test]
    fn stat_counters_are_exact_after_owners_and_sharers_join() {
        // More threads than owned cells, so some add to their own cell and the rest share.
        let c = StatCounters::<3>::new();
        assert_eq!(c.cells.len(), c.owned + (c.owned / 2).max(1));
        exact_after_many_threads_join(&c);
        // The counting threads have exited; this one adds on top of what they left.
        c.add_to(1, 5);
        c.add_to(1, 1);
        assert_eq!(c.sum_of(1), 6);
        let one = StatCounter::new();
        one.add(5);
        assert_eq!(one.sum(), 5);
    }

    #[test]
    fn a_take_claims_every_add_since_the_last_take_once() {
        let c = TakeCounter::new();
        assert_eq!(c.take(), 0);
        assert_eq!((c.add_one(), c.add_one(), c.add_one()), (1, 2, 3));
        assert_eq!(c.take(), 3);
        assert_eq!(c.take(), 0);
        assert_eq!(c.add_one(), 1);
        assert_eq!(c.take(), 1);
    }

    #[test]
    fn takes_racing_owners_and_sharers_claim_each_add_exactly_once() {
        // More adders than owned cells, and two takers taking while they add: the takes, plus
        // one after all have joined, add up to every add, none twice.
        const ADDERS: u64 = if cfg!(miri) { 6 } else { 48 };
        const ADDS: u64 = if cfg!(miri) { 100 } else { 5_000 };
        let c = TakeCounter::new();
        let taken: u64 = std::thread::scope(|s| {
            let takers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut got = 0u64;
                        for _ in 0..ADDS {
                            got += c.take();
                        }
                        got
                    })
                })
                .collect();
            for _ in 0..ADDERS {
                s.spawn(|| {
                    for _ in 0..ADDS {
                        c.add_one();
                    }
                });
            }
            takers.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(taken + c.take(), ADDERS * ADDS);
        assert_eq!(c.take(), 0);
    }

    #[test]
    fn stat_sums_read_while_adding_never_go_down() {
        sums_never_go_down_while_adding(&StatCounters::<1>::new());
    }
}
