//! Graceful draining: stop admitting new work, let admitted work finish, report what is left.
//!
//! A [`Drainer`] tracks in-flight work with RAII guards. During a deploy:
//!
//! 1. [`Drainer::mark_not_ready`] flips [`Drainer::is_ready`] to `false` (serve 503 on `/ready`)
//!    while work is still admitted, so load balancers stop routing here before anything is refused;
//! 2. [`Drainer::start_draining`] refuses every new [`Drainer::enter`], in the same atomic step
//!    that counts admissions, so no request slips in after the drain has started;
//! 3. [`Drainer::blocking_wait_timeout`] (blocking) or [`Drainer::wait`] (a future on any executor) returns
//!    [`Drained`] when the last guard drops, or [`DrainTimeout`] with the number still in flight.
//!
//! Long-lived work (streams, websockets, keep-alive loops) watches [`Drainer::is_draining`] or
//! awaits [`Drainer::draining`] to end itself. A [`child`](Drainer::child) drainer holds one guard
//! of its parent, so draining the parent drains the children first.
//!
//! With feature `tracing`, each phase transition is one `INFO` event with target `resile::drain`
//! and field `drainer` (its [name](DrainBuilder::name)), emitted by the one thread that made it:
//! `phase = "not_ready"` (by the `mark_not_ready` that
//! changed it), `phase = "draining"` with `in_flight` (by the `start_draining` that started it)
//! and `phase = "drained"` with `elapsed_ms` since draining started (by whoever completed the
//! drain). [`enter`](Drainer::enter) and guard drops never emit anything.
//!
//! ```
//! use resile::drain::Drainer;
//! use std::time::Duration;
//!
//! let drainer = Drainer::new();
//! let guard = drainer.enter().expect("serving");
//! drainer.mark_not_ready(); // health checks fail, requests still admitted
//! assert!(!drainer.is_ready());
//! let second = drainer.enter().expect("still admitting while not ready");
//! drop(second);
//!
//! assert!(drainer.start_draining()); // this call started it
//! assert!(!drainer.start_draining()); // idempotent
//! assert!(drainer.enter().is_err()); // refused: route elsewhere
//!
//! let timed_out = drainer.blocking_wait_timeout(Duration::ZERO).unwrap_err();
//! assert_eq!(timed_out.in_flight(), 1);
//! drop(guard); // the last guard completes the drain
//! assert!(drainer.blocking_wait_timeout(Duration::from_secs(1)).is_ok());
//! ```
//!
//! The packed word, its state tables and the orderings of every access to it open
//! `src/drain/word.rs`.

mod builder;
mod error;
mod guard;
mod wait;
mod word;

pub use builder::{DrainBuilder, MAX_NOT_READY_DELAY};
pub use error::{DrainRefused, DrainTimeout};
pub use guard::{DrainGuard, OwnedDrainGuard};
pub use wait::{DrainingNotice, Wait};
pub use word::MAX_IN_FLIGHT;
use word::*;

use crate::clock::{Clock, SystemClock, duration_to_nanos};
use crate::counter::StatCounters;
use crate::sync::{
    AtomicU64, Lifetime, Mutex, Ordering, StdArc as Arc, StdWeak as Weak, fence, lock, park_timeout,
};
use crate::timer::SharedTimer;
use crate::wait::Waiter;
use crate::wait::notify::{Notify, Registration};
use crate::wait::timer::LazyTimer;
use crossbeam_utils::CachePadded;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// Where a drainer is in its life. Phases only move forward.
///
/// ```
/// use resile::drain::{Drainer, Phase};
/// let d = Drainer::new();
/// assert_eq!(d.phase(), Phase::Serving);
/// d.mark_not_ready();
/// assert_eq!(d.phase(), Phase::NotReady);
/// d.start_draining();
/// assert_eq!(d.phase(), Phase::Drained); // nothing was in flight
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Ready and admitting.
    Serving,
    /// Not ready (health checks fail) but still admitting.
    NotReady,
    /// Refusing new work; admitted work is still running.
    Draining,
    /// Draining finished: nothing admitted is left.
    Drained,
}

/// A completed drain.
///
/// ```
/// use resile::clock::ManualClock;
/// use resile::drain::Drainer;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let d = Drainer::builder().clock(clock.clone()).build().unwrap();
/// let g = d.enter().unwrap();
/// d.start_draining();
/// clock.advance(Duration::from_millis(40));
/// drop(g);
/// let drained = d.blocking_wait_timeout(Duration::ZERO).unwrap();
/// assert_eq!(drained.elapsed(), Duration::from_millis(40));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Drained {
    elapsed: Duration,
}

impl Drained {
    /// The time from the start of draining to the moment the last admitted guard dropped.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// A snapshot of a drainer's counters. Fields are read one after another, not atomically
/// together; each is exact on its own, except that an `enter` the word itself refuses (one
/// racing the start of draining, or finding the count full) counts in `in_flight`, and in
/// `admitted` while `metrics` reads, until its refusal has been counted.
///
/// ```
/// use resile::drain::{Drainer, Phase};
/// let d = Drainer::new();
/// let g = d.enter().unwrap();
/// d.start_draining();
/// let _ = d.enter();
/// let m = d.metrics();
/// assert_eq!((m.phase, m.in_flight, m.admitted, m.refused), (Phase::Draining, 1, 1, 1));
/// assert!(m.since_draining.is_some());
/// # drop(g);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainMetrics {
    /// The phase.
    pub phase: Phase,
    /// Guards alive (admitted work not yet finished, clones included).
    pub in_flight: u64,
    /// `enter` calls admitted since creation.
    pub admitted: u64,
    /// `enter` calls refused since creation.
    pub refused: u64,
    /// Time since draining started, once it has.
    pub since_draining: Option<Duration>,
}

/// Tracks in-flight work and drains it for shutdown. See the [module docs](self).
///
/// `C` is the clock used for drain timing and wait deadlines; the hot path never reads it.
///
/// ```
/// use resile::drain::Drainer;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let drainer = Arc::new(Drainer::new());
/// let worker = {
///     let guard = drainer.enter_owned().unwrap(); // owned: moves into the thread
///     std::thread::spawn(move || {
///         // ... the request's work ...
///         drop(guard);
///     })
/// };
/// drainer.start_draining();
/// let drained = drainer.blocking_wait_timeout(Duration::from_secs(10)).expect("drained in time");
/// worker.join().unwrap();
/// println!("drained in {:?}", drained.elapsed());
/// ```
pub struct Drainer<C: Clock = SystemClock> {
    /// The state, shared with the owned guards; see [`Core`] for who frees it.
    core: NonNull<Core<C>>,
    _owns: PhantomData<Core<C>>,
}

// SAFETY: a `Drainer` is a unique handle to its `Core`, whose fields are all `Send + Sync` when
// `C` is (atomics, mutexes, the clock); the core is freed exactly once (see `Core`).
unsafe impl<C: Clock> Send for Drainer<C> {}
// SAFETY: as above; every method takes `&self` and goes through atomics or mutexes.
unsafe impl<C: Clock> Sync for Drainer<C> {}

/// What a drainer and its guards share: a heap allocation that outlives the [`Drainer`] while
/// owned guards are alive.
///
/// Its lifetime is decided on the word, so an owned guard costs no reference count of its own:
/// the count field counts the guards, and `ORPHANED` says the drainer is gone. The core is freed
/// by the one read-modify-write that leaves the word orphaned with a count of zero and no drain
/// completion pending (see `frees`): the drainer's drop finding no guard, or the last guard's
/// exit finding the drainer gone. A completion pending means a guard has brought the count to
/// zero while draining and is about to compare-exchange it to `DRAINED`; that exchange adds one
/// unit (a hold) that keeps the core alive while the completer stores the time and wakes the
/// waiters, and the release of the hold frees the core if the drainer is gone by then.
struct Core<C: Clock> {
    /// The word (see the module docs). Alone on its cache line.
    word: CachePadded<AtomicU64>,
    /// 1 once the word is `DRAINING` (stored after it), else 0; on a line of its own that is
    /// written once, so every `enter` can read it without contention and, once draining has
    /// started, refuse without touching the word.
    refusing: CachePadded<AtomicU64>,
    /// How many times the entries field wrapped (bumped by the carrying `enter`).
    entry_wraps: AtomicU64,
    /// Refused `enter` calls, per thread: lane [`EARLY`] for those refused by `refusing` (never
    /// counted in the word), lane [`LATE`] for those the word refused (their entry is counted).
    refused: StatCounters<2>,
    /// Clock reading when draining started, or UNSET.
    started_at: AtomicU64,
    /// Clock reading when the drain completed, or UNSET.
    drained_at: AtomicU64,
    /// Fired once, by the transition to DRAINED.
    drained: Notify,
    /// Fired once, by the first `start_draining`.
    started: Notify,
    /// Children to drain when this one starts draining.
    children: Mutex<Vec<Weak<Drainer<C>>>>,
    /// A child's guard of its parent, released when the child drains (or is freed).
    parent: Mutex<Option<OwnedDrainGuard<C>>>,
    not_ready_delay: Duration,
    name: Cow<'static, str>,
    clock: C,
    timer: SharedTimer,
    /// The allocation's lifetime as loom sees it (empty outside loom models).
    lifetime: Lifetime,
}

impl Drainer<SystemClock> {
    /// A serving drainer named `"drainer"`, with the system clock and no not-ready delay.
    pub fn new() -> Self {
        Self::from_parts(
            Cow::Borrowed("drainer"),
            SystemClock::new(),
            Duration::ZERO,
            SharedTimer::default(),
            None,
        )
    }

    /// A builder for a drainer with options (name, clock, not-ready delay).
    pub fn builder() -> DrainBuilder<SystemClock> {
        DrainBuilder {
            name: Cow::Borrowed("drainer"),
            clock: SystemClock::new(),
            not_ready_delay: Duration::ZERO,
            timer: SharedTimer::default(),
        }
    }
}

impl Default for Drainer<SystemClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> fmt::Debug for Drainer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.metrics();
        f.debug_struct("Drainer")
            .field("name", &self.core().name)
            .field("phase", &m.phase)
            .field("in_flight", &m.in_flight)
            .field("admitted", &m.admitted)
            .field("refused", &m.refused)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Drainer<C> {
    fn from_parts(
        name: Cow<'static, str>,
        clock: C,
        not_ready_delay: Duration,
        timer: SharedTimer,
        parent: Option<OwnedDrainGuard<C>>,
    ) -> Self {
        let core = Box::new(Core {
            word: CachePadded::new(AtomicU64::new(0)),
            refusing: CachePadded::new(AtomicU64::new(0)),
            entry_wraps: AtomicU64::new(0),
            refused: StatCounters::new(),
            started_at: AtomicU64::new(UNSET),
            drained_at: AtomicU64::new(UNSET),
            drained: Notify::new(),
            started: Notify::new(),
            children: Mutex::new(Vec::new()),
            parent: Mutex::new(parent),
            not_ready_delay,
            name,
            clock,
            timer,
            lifetime: Lifetime::new(),
        });
        Self {
            core: NonNull::from(Box::leak(core)),
            _owns: PhantomData,
        }
    }

    /// The shared state.
    #[inline]
    fn core(&self) -> &Core<C> {
        // SAFETY: the core is freed only once the word is ORPHANED, which `drop(self)` sets.
        unsafe { self.core.as_ref() }
    }

    // ---- admission -------------------------------------------------------------------------

    /// Admits one unit of work, or refuses it if draining has started (or the count is full).
    ///
    /// One atomic `fetch_add` (after a read of a flag that nothing writes until draining
    /// starts); no lock, no allocation, no clock read. Keep the guard for as long as the work
    /// runs: its drop (also while unwinding, or when a future holding it is dropped) ends the
    /// work.
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// use resile::drain::DrainRefused;
    /// let d = Drainer::new();
    /// let g = d.enter().unwrap();
    /// assert_eq!(d.in_flight(), 1);
    /// drop(g);
    /// assert_eq!(d.in_flight(), 0);
    /// d.start_draining();
    /// assert_eq!(d.enter().unwrap_err(), DrainRefused::Draining);
    /// ```
    #[inline]
    pub fn enter(&self) -> Result<DrainGuard<'_, C>, DrainRefused> {
        self.admit()?;
        Ok(DrainGuard { drainer: self })
    }

    /// The count unit of `enter`, without a guard to hold it.
    #[inline]
    fn admit(&self) -> Result<(), DrainRefused> {
        let core = self.core();
        if core.refusing.load(Ordering::Acquire) != 0 {
            return Err(self.refuse_early());
        }
        let prev = core.word.fetch_add(ENTER, Ordering::Relaxed);
        if prev & REFUSE_MASK == 0 && !carried(prev) {
            return Ok(());
        }
        self.enter_slow(prev)
    }

    /// [`enter`](Self::enter) with a guard that borrows nothing, so it can move into a spawned
    /// task or thread, or into a response body (as the tower layer's guard does).
    ///
    /// It costs what `enter` costs: the guard is counted in the word and nowhere else, and the
    /// word also keeps the drainer's state alive while such a guard lives, so the drainer's last
    /// `Arc` may be dropped before the work it admitted ends. The guard holds no reference count
    /// of the `Arc`, which is why the method borrows it rather than taking it.
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// use std::sync::Arc;
    /// let d = Arc::new(Drainer::new());
    /// let g = d.enter_owned().unwrap();
    /// std::thread::spawn(move || drop(g)).join().unwrap();
    /// assert_eq!(d.in_flight(), 0);
    ///
    /// let late = d.enter_owned().unwrap();
    /// drop(d); // the guard outlives its drainer
    /// drop(late);
    /// ```
    #[inline]
    pub fn enter_owned(self: &Arc<Self>) -> Result<OwnedDrainGuard<C>, DrainRefused> {
        self.enter_unowned()
    }

    /// An owned guard from a drainer that may not be in an `Arc` (a child's guard of its parent).
    #[inline]
    fn enter_unowned(&self) -> Result<OwnedDrainGuard<C>, DrainRefused> {
        self.admit()?;
        Ok(OwnedDrainGuard {
            core: self.core,
            _owns: PhantomData,
        })
    }

    /// An `enter` after draining started, known from `refusing`: the word is not touched.
    #[cold]
    fn refuse_early(&self) -> DrainRefused {
        self.core().refused.add_to(EARLY, 1);
        DrainRefused::Draining
    }

    /// The rare cases of `enter`: a carry out of the entries field, or a refusal by the word (an
    /// `enter` racing the start of draining, or a full count).
    #[cold]
    fn enter_slow(&self, prev: u64) -> Result<(), DrainRefused> {
        if carried(prev) {
            self.core().entry_wraps.fetch_add(1, Ordering::Relaxed);
        }
        admission(prev).inspect_err(|_| {
            // Undo the count first, so that it holds the refused call as briefly as it can (the
            // entry stays counted; `admitted = entries - late refusals`).
            // SAFETY: the unit undone is the one this call's `fetch_add` added; `self` keeps
            // the core alive.
            unsafe { Core::undo_enter(self.core, prev) };
            self.core().refused.add_to(LATE, 1);
        })
    }

    // ---- phases -------------------------------------------------------------------------------

    /// Marks the drainer, and its children, not ready: [`is_ready`](Self::is_ready) turns false
    /// while work is still admitted. A child made afterwards starts not ready. Returns whether
    /// this call changed this drainer.
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// let d = Drainer::new();
    /// assert!(d.mark_not_ready());
    /// assert!(!d.mark_not_ready());
    /// assert!(d.enter().is_ok());
    /// ```
    pub fn mark_not_ready(&self) -> bool {
        let first = self.core().word.fetch_or(NOT_READY, Ordering::Release) & NOT_READY == 0;
        #[cfg(feature = "tracing")]
        if first {
            // NOT_READY was clear, so draining had not started either: serving -> not-ready.
            tracing::info!(target: "resile::drain", drainer = &*self.core().name, phase = "not_ready", "drainer marked not ready");
        }
        // Children go not-ready with their parent (idempotent, so every caller does it).
        for child in self.live_children() {
            child.mark_not_ready();
        }
        first
    }

    /// Starts draining: from now on every [`enter`](Self::enter) is refused, children start
    /// draining, and [`draining`](Self::draining) waiters wake. Idempotent; returns whether this
    /// call started it. When any call returns (the first or not), this drainer and its children
    /// refuse new work.
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// let d = Drainer::new();
    /// assert!(d.start_draining());
    /// assert!(!d.start_draining());
    /// ```
    pub fn start_draining(&self) -> bool {
        // Stored before the fetch_or that publishes it; racing starters all read "now".
        let now = self.core().clock.now();
        let _ = self.core().started_at.compare_exchange(
            UNSET,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let prev = self
            .core()
            .word
            .fetch_or(DRAINING | NOT_READY, Ordering::AcqRel);
        // From here on `enter` refuses without touching the word (every caller stores it, so
        // that it is set whichever call returns first).
        self.core().refusing.store(1, Ordering::Release);
        if prev & DRAINING != 0 {
            // The first caller may not have reached the children yet: start them here too
            // (idempotent), so that whichever call returns, the children refuse new work.
            self.drain_children();
            return false;
        }
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: "resile::drain",
            drainer = &*self.core().name,
            phase = "draining",
            in_flight = in_flight_of(prev),
            "drainer started draining"
        );
        self.core().started.fire();
        self.drain_children();
        let cur = prev | DRAINING | NOT_READY;
        if makes_completer(cur) {
            // SAFETY: this call found nothing in flight, so it is the completer; `self` keeps
            // the core alive.
            unsafe { Core::complete(self.core, cur) };
        }
        true
    }

    fn drain_children(&self) {
        for child in self.live_children() {
            child.start_draining();
        }
    }

    /// The children still alive (taken under the list's lock, used after it is released).
    fn live_children(&self) -> Vec<Arc<Drainer<C>>> {
        lock(&self.core().children)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// A child drainer: it holds one guard of `self` until it has drained (or is dropped), and
    /// starts draining when `self` does, so `self` drains only after its children have. Refused
    /// if `self` is already draining. The child can also be drained on its own.
    ///
    /// ```
    /// use resile::drain::{Drainer, Phase};
    /// use std::sync::Arc;
    ///
    /// let parent = Drainer::new();
    /// let child: Arc<Drainer> = parent.child().unwrap();
    /// let work = child.enter().unwrap();
    /// parent.start_draining();
    /// assert_eq!(child.phase(), Phase::Draining);
    /// assert_eq!(parent.phase(), Phase::Draining); // waits for the child
    /// drop(work);
    /// assert_eq!(child.phase(), Phase::Drained);
    /// assert_eq!(parent.phase(), Phase::Drained);
    /// ```
    pub fn child(&self) -> Result<Arc<Drainer<C>>, DrainRefused>
    where
        C: Clone,
    {
        let guard = self.enter_unowned()?;
        let child = Arc::new(Drainer::from_parts(
            self.core().name.clone(),
            self.core().clock.clone(),
            self.core().not_ready_delay,
            self.core().timer.clone(),
            Some(guard),
        ));
        {
            let mut list = lock(&self.core().children);
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(&child));
        }
        // If our start_draining (or mark_not_ready) snapshotted the list before the push above,
        // its fetch_or happened-before that snapshot's lock and so before this load: we see it.
        if self.is_draining() {
            child.start_draining();
        } else if !self.is_ready() {
            child.mark_not_ready();
        }
        Ok(child)
    }

    // ---- observation --------------------------------------------------------------------------

    /// Whether the service should receive traffic: false once marked not ready or draining.
    #[inline]
    pub fn is_ready(&self) -> bool {
        self.core().word.load(Ordering::Acquire) & NOT_READY == 0
    }

    /// Whether draining has started (a cheap check for long-lived work).
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.core().word.load(Ordering::Acquire) & DRAINING != 0
    }

    /// Whether draining has finished.
    #[inline]
    pub fn is_drained(&self) -> bool {
        self.core().word.load(Ordering::Acquire) & DRAINED != 0
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        phase_of(self.core().word.load(Ordering::Acquire))
    }

    /// Guards alive now.
    pub fn in_flight(&self) -> u64 {
        in_flight_of(self.core().word.load(Ordering::Acquire))
    }

    /// The name its metrics, events and `Debug` report.
    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// The configured not-ready delay.
    pub fn not_ready_delay(&self) -> Duration {
        self.core().not_ready_delay
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> DrainMetrics {
        let late = self.core().refused.sum_of(LATE);
        let word = self.core().word.load(Ordering::Acquire);
        let refused = self.core().refused.sum_of(EARLY) + late;
        let wraps = self.core().entry_wraps.load(Ordering::Relaxed);
        let entries = wraps
            .wrapping_mul(ENTRY_WRAP)
            .wrapping_add(entries_of(word));
        let started = self.core().started_at.load(Ordering::Relaxed);
        let since_draining = (word & DRAINING != 0 && started != UNSET)
            .then(|| Duration::from_nanos(self.core().clock.now().saturating_sub(started)));
        DrainMetrics {
            phase: phase_of(word),
            in_flight: in_flight_of(word),
            admitted: entries.saturating_sub(late),
            refused,
            since_draining,
        }
    }

    fn drained_report(&self) -> Drained {
        let started = self.core().started_at.load(Ordering::Acquire);
        let mut done = self.core().drained_at.load(Ordering::Acquire);
        if done == UNSET {
            // The winner of the final transition has not stored its reading yet.
            done = self.core().clock.now();
        }
        Drained {
            elapsed: Duration::from_nanos(done.saturating_sub(started)),
        }
    }

    // ---- waiting ------------------------------------------------------------------------------

    /// Blocks until `bit` is set in the word, or until `timeout` has passed on the clock.
    /// Returns `Err(now)` on timeout.
    fn block_until(&self, bit: u64, notify: &Notify, timeout: Duration) -> Result<(), (u64, u64)> {
        let start = self.core().clock.now();
        let deadline = start.saturating_add(duration_to_nanos(timeout));
        let mut key = None;
        let mut now = start;
        let result = loop {
            if self.core().word.load(Ordering::Acquire) & bit != 0 {
                break Ok(());
            }
            if now >= deadline {
                break Err((start, now));
            }
            if key.is_none() {
                match notify.register(None, Waiter::current_thread()) {
                    Registration::Fired => return Ok(()),
                    Registration::Waiting(k) => key = Some(k),
                }
                // Registered: either the fire comes later and unparks us, or it already
                // happened and the word shows it on the next check.
                continue;
            }
            park_timeout(Duration::from_nanos(deadline - now));
            now = self.core().clock.now();
        };
        if let Some(k) = key {
            notify.deregister(k);
        }
        result
    }

    /// Blocks the thread until the drain completes, however long that takes. Prefer
    /// [`blocking_wait_timeout`](Self::blocking_wait_timeout) at shutdown, where a stuck request
    /// must not hold the process forever.
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// let d = Drainer::new();
    /// let g = d.enter().unwrap();
    /// d.start_draining();
    /// std::thread::scope(|s| {
    ///     s.spawn(move || drop(g)); // the work ends on another thread
    ///     let drained = d.blocking_wait();
    ///     assert!(d.is_drained());
    ///     # let _ = drained;
    /// });
    /// ```
    pub fn blocking_wait(&self) -> Drained {
        loop {
            if let Ok(drained) = self.blocking_wait_timeout(Duration::MAX) {
                return drained;
            }
        }
    }

    /// Blocks the thread until drained, or until `timeout` passes on the drainer's clock.
    ///
    /// Returns [`Drained`] (with the time the drain took), or [`DrainTimeout`] with the number
    /// of guards still alive, which the caller is about to abandon. Waiting before draining has
    /// started is allowed (it waits for a drain someone else starts).
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// use std::time::Duration;
    /// let d = Drainer::new();
    /// d.start_draining();
    /// assert!(d.blocking_wait_timeout(Duration::from_secs(1)).is_ok());
    /// ```
    pub fn blocking_wait_timeout(&self, timeout: Duration) -> Result<Drained, DrainTimeout> {
        match self.block_until(DRAINED, &self.core().drained, timeout) {
            Ok(()) => Ok(self.drained_report()),
            Err((start, now)) => self.deadline_report(start, now),
        }
    }

    /// What a wait begun at `start` reports when its deadline passed at `now`: a timeout with the
    /// guards still in flight, unless the drain is over after all (the last guard may have
    /// dropped since the deadline check, its completion not yet made: then report it rather than
    /// a timeout with nothing in flight).
    fn deadline_report(&self, start: u64, now: u64) -> Result<Drained, DrainTimeout> {
        let word = self.core().word.load(Ordering::Acquire);
        if word & DRAINED != 0 || completes_drain(word) {
            return Ok(self.drained_report());
        }
        Err(DrainTimeout {
            in_flight: in_flight_of(word),
            waited: Duration::from_nanos(now.saturating_sub(start)),
        })
    }

    /// [`wait`](Self::wait) with a deadline: [`Drained`], or [`DrainTimeout`] with the guards
    /// still alive once `timeout` has passed on the drainer's [timer](DrainBuilder::timer)
    /// (asked for a sleep only if the drain is not over at once).
    ///
    /// ```
    /// use resile::clock::ManualClock;
    /// use resile::drain::Drainer;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let d = Drainer::builder().clock(clock.clone()).timer(clock.clone()).build()?;
    /// let stuck = d.enter()?;
    /// d.start_draining();
    /// // The manual clock's sleep moves it on by the timeout: the wait gives up.
    /// let e = futures::executor::block_on(d.wait_timeout(Duration::from_secs(30))).unwrap_err();
    /// assert_eq!((e.in_flight(), e.waited()), (1, Duration::from_secs(30)));
    /// drop(stuck);
    /// assert!(futures::executor::block_on(d.wait_timeout(Duration::from_secs(30))).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<Drained, DrainTimeout> {
        let start = self.core().clock.now();
        let mut wait = std::pin::pin!(self.wait());
        let mut deadline = LazyTimer::new(&self.core().timer, timeout);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(drained) = wait.as_mut().poll(cx) {
                return Poll::Ready(Ok(drained));
            }
            if timeout.is_zero() || Pin::new(&mut deadline).poll(cx).is_ready() {
                return Poll::Ready(self.deadline_report(start, self.core().clock.now()));
            }
            Poll::Pending
        })
        .await
    }

    /// The whole shutdown sequence, on any executor: mark not ready, keep admitting for the
    /// configured [`not_ready_delay`](DrainBuilder::not_ready_delay) (cut short if someone else
    /// starts draining), start draining, then wait up to `timeout` for the drain, on the
    /// drainer's [timer](DrainBuilder::timer).
    ///
    /// With axum, run it in the future given to `with_graceful_shutdown` once SIGTERM arrives:
    /// the listener stops accepting when that future completes, after the drain (or its
    /// deadline), and the server's own wait for connections then has nothing left to wait for.
    /// With hyper-util's `server::graceful::GracefulShutdown`: spawn this when the signal
    /// arrives, keep accepting until [`draining`](Self::draining) resolves (the load balancer
    /// has had the not-ready delay to stop sending), then stop accepting; once this returns,
    /// every admitted request has finished, so `graceful.shutdown()`, bounded by a timeout of its
    /// own, only closes idle keep-alive connections. `examples/http-stack` runs this sequence
    /// with a plain accept loop.
    ///
    /// ```
    /// use resile::clock::{Clock, ManualClock};
    /// use resile::drain::{Drainer, Phase};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let d = Drainer::builder()
    ///     .not_ready_delay(Duration::from_secs(5))
    ///     .clock(clock.clone())
    ///     .timer(clock.clone())
    ///     .build()?;
    /// let drained = futures::executor::block_on(d.shutdown(Duration::from_secs(30)))?;
    /// assert_eq!(d.phase(), Phase::Drained);
    /// assert_eq!(Duration::from_nanos(clock.now()), Duration::from_secs(5)); // the not-ready delay
    /// assert_eq!(drained.elapsed(), Duration::ZERO); // nothing was in flight
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn shutdown(&self, timeout: Duration) -> Result<Drained, DrainTimeout> {
        self.mark_not_ready();
        let delay = self.core().not_ready_delay;
        if !delay.is_zero() {
            let mut started = std::pin::pin!(self.draining());
            let mut sleep = LazyTimer::new(&self.core().timer, delay);
            std::future::poll_fn(|cx| {
                if started.as_mut().poll(cx).is_ready() || Pin::new(&mut sleep).poll(cx).is_ready()
                {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
        self.start_draining();
        self.wait_timeout(timeout).await
    }

    /// Blocks until draining has started, or `timeout` passes. Returns whether it started.
    pub fn blocking_wait_draining_timeout(&self, timeout: Duration) -> bool {
        self.block_until(DRAINING, &self.core().started, timeout)
            .is_ok()
    }

    /// The whole shutdown sequence, blocking: mark not ready, keep admitting for the configured
    /// [`not_ready_delay`](DrainBuilder::not_ready_delay) (cut short if someone else starts
    /// draining), start draining, then wait up to `timeout` for the drain.
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// use std::time::Duration;
    /// let d = Drainer::new();
    /// // No work in flight: drains at once.
    /// assert!(d.blocking_shutdown(Duration::from_secs(30)).is_ok());
    /// assert!(!d.is_ready() && d.is_drained());
    /// ```
    pub fn blocking_shutdown(&self, timeout: Duration) -> Result<Drained, DrainTimeout> {
        self.mark_not_ready();
        if !self.core().not_ready_delay.is_zero() {
            self.blocking_wait_draining_timeout(self.core().not_ready_delay);
        }
        self.start_draining();
        self.blocking_wait_timeout(timeout)
    }

    /// A future that resolves when the drain completes, on any executor. For a deadline, race it
    /// with your runtime's timer and read [`in_flight`](Self::in_flight) if the timer wins.
    /// Dropping the future deregisters its waker.
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// let d = Drainer::new();
    /// let g = d.enter().unwrap();
    /// d.start_draining();
    /// drop(g);
    /// let drained = futures::executor::block_on(d.wait());
    /// assert!(drained.elapsed() >= std::time::Duration::ZERO);
    /// ```
    pub fn wait(&self) -> Wait<'_, C> {
        Wait {
            drainer: self,
            key: None,
        }
    }

    /// A future that resolves when draining starts: long-lived work (streams, websockets,
    /// keep-alive loops) selects on it to end itself. [`is_draining`](Self::is_draining) is the
    /// cheap synchronous check.
    ///
    /// ```
    /// use resile::drain::Drainer;
    /// let d = Drainer::new();
    /// d.start_draining();
    /// futures::executor::block_on(d.draining()); // resolves at once
    /// ```
    pub fn draining(&self) -> DrainingNotice<'_, C> {
        DrainingNotice {
            drainer: self,
            key: None,
        }
    }

    fn poll_bit(
        &self,
        bit: u64,
        notify: &Notify,
        key: &mut Option<usize>,
        cx: &Context<'_>,
    ) -> bool {
        if self.core().word.load(Ordering::Acquire) & bit != 0 {
            return true;
        }
        match notify.register_waker(*key, cx.waker()) {
            Registration::Fired => {
                *key = None;
                true
            }
            Registration::Waiting(k) => {
                *key = Some(k);
                false
            }
        }
    }
}

impl<C: Clock> Drop for Drainer<C> {
    fn drop(&mut self) {
        let prev = self.core().word.fetch_or(ORPHANED, Ordering::AcqRel);
        if frees(prev | ORPHANED) {
            // SAFETY: no guard is left and no completion is pending, and no other handle
            // exists: nothing else can reach the core.
            unsafe { Core::free(self.core) };
        }
    }
}

impl<C: Clock> Core<C> {
    /// One more guard for work already admitted (a guard's clone); allowed while draining.
    ///
    /// # Safety
    /// The caller is a live guard of `core`, whose unit keeps it alive.
    unsafe fn clone_in(core: NonNull<Self>) -> Result<(), DrainRefused> {
        // SAFETY: see the contract.
        let this = unsafe { core.as_ref() };
        let prev = this.word.fetch_add(ONE, Ordering::Relaxed);
        if prev & FULL_MASK != 0 {
            // SAFETY: releases the unit just added; the cloned guard still holds its own.
            unsafe { Self::release(core) };
            return Err(DrainRefused::Full);
        }
        Ok(())
    }

    /// Releases one unit of the count: a guard's drop, or the undo of an `enter` refused while
    /// no completion was pending. The release that leaves the count at zero while draining
    /// completes the drain, unless the word says a completer is already on its way; the last one
    /// after the drainer is gone frees the core.
    ///
    /// # Safety
    /// The caller owns one unit of the count, and does not touch the core after this call
    /// unless something else keeps it alive (a `&Drainer`).
    #[inline]
    unsafe fn release(core: NonNull<Self>) {
        // SAFETY: the caller's unit keeps the core alive up to this `fetch_sub`.
        let this = unsafe { core.as_ref() };
        this.lifetime.touch();
        let prev = this.word.fetch_sub(ONE, Ordering::Release);
        if prev & (DRAINING | ORPHANED) != 0 {
            // SAFETY: forwarded from the caller.
            unsafe { Self::after_release(core, prev - ONE) };
        }
    }

    /// The rare ends of a release: `cur` is the word it left. Touches the core only if that
    /// release made this caller the completer (nobody else completes or frees until it has),
    /// or to free it.
    ///
    /// # Safety
    /// `cur` is the value the caller's release left, and the caller has given up its unit.
    #[cold]
    unsafe fn after_release(core: NonNull<Self>, cur: u64) {
        if makes_completer(cur) {
            // SAFETY: this caller is the completer; the word is not freed until it completes.
            unsafe { Self::complete(core, cur) };
        } else if frees(cur) {
            // SAFETY: this release left the word orphaned and empty, with nothing pending.
            unsafe { Self::free(core) };
        }
    }

    /// Undoes the count unit of an `enter` the word refused; `prev` is what its `fetch_add`
    /// returned. If a completer was already on its way then (the count was zero while
    /// draining), the undo marks `COMPLETER` so that no later undo completes in its place.
    ///
    /// # Safety
    /// The caller holds a `&Drainer` (so the core outlives the call) and owns the unit.
    unsafe fn undo_enter(core: NonNull<Self>, prev: u64) {
        if !makes_completer(prev) {
            // SAFETY: forwarded from the caller.
            unsafe { Self::release(core) };
            return;
        }
        // SAFETY: the caller's `&Drainer` keeps the core alive.
        let this = unsafe { core.as_ref() };
        let mut cur = this.word.load(Ordering::Relaxed);
        while let Err(seen) = this.word.compare_exchange_weak(
            cur,
            (cur - ONE) | COMPLETER,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            cur = seen;
        }
    }

    /// The drain's completion, by its one completer: sets `DRAINED` with a hold (`HELD`) that
    /// keeps the core alive while it stores the time, fires the broadcast and releases its
    /// parent's guard; then drops the hold, which frees the core if the drainer is gone.
    ///
    /// `DRAINED` is set whatever the count reads by then: once the count has been zero while
    /// draining, no admitted guard is left and none can be made, so what the count holds is
    /// refused `enter` calls on their way to undo.
    ///
    /// # Safety
    /// The caller is the completer (it left, or saw, the word in a state `makes_completer`
    /// accepts, as the release or `start_draining` that made it so).
    #[cold]
    unsafe fn complete(core: NonNull<Self>, mut cur: u64) {
        // SAFETY: nobody frees the core until the completer has set DRAINED and dropped HELD.
        let this = unsafe { core.as_ref() };
        this.lifetime.touch();
        while let Err(seen) = this.word.compare_exchange_weak(
            cur,
            cur | DRAINED | HELD,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            cur = seen;
        }
        let now = this.clock.now();
        this.drained_at.store(now, Ordering::Release);
        #[cfg(feature = "tracing")]
        {
            // started_at was stored before the fetch_or that set DRAINING, which our AcqRel CAS
            // read: it is visible here.
            let started = this.started_at.load(Ordering::Relaxed);
            let elapsed_ms = Duration::from_nanos(now.saturating_sub(started)).as_millis() as u64;
            let drainer: &str = &this.name;
            tracing::info!(target: "resile::drain", drainer, phase = "drained", elapsed_ms, "drainer drained");
        }
        this.drained.fire();
        let parent = lock(&this.parent).take();
        drop(parent);
        let prev = this.word.fetch_and(!HELD, Ordering::AcqRel);
        if frees(prev & !HELD) {
            // SAFETY: the drainer is gone and no guard is left: the hold was the last reference.
            unsafe { Self::free(core) };
        }
    }

    /// Frees the core.
    ///
    /// # Safety
    /// The caller's read-modify-write left the word in a state `frees` accepts; no guard,
    /// drainer or completer can reach the core any more.
    unsafe fn free(core: NonNull<Self>) {
        // Every release was a `Release` RMW on the word, read by the caller's RMW: this fence
        // orders all their accesses to the core before the free.
        fence(Ordering::Acquire);
        // SAFETY: allocated by `Box::leak` in `from_parts`, freed once (see the contract).
        let mut core = unsafe { Box::from_raw(core.as_ptr()) };
        core.lifetime.retire();
        drop(core);
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::sync::AtomicUsize;
    use crate::test_support::DropCountingClock;

    fn manual() -> (ManualClock, Drainer<ManualClock>) {
        let c = ManualClock::new();
        let d = Drainer::builder().clock(c.clone()).build().unwrap();
        (c, d)
    }

    /// A drainer whose state's free shows in the returned counter (one drop of its clock).
    fn counted() -> (Arc<AtomicUsize>, Arc<Drainer<DropCountingClock>>) {
        let (clock, drops) = DropCountingClock::new();
        let d = Drainer::builder().clock(clock).build().unwrap();
        (drops, Arc::new(d))
    }

    fn freed(drops: &AtomicUsize) -> usize {
        drops.load(Ordering::Relaxed)
    }

    #[test]
    fn owned_guards_keep_the_state_until_the_last_is_gone() {
        let (drops, d) = counted();
        let g = d.enter_owned().unwrap();
        let g2 = g.clone();
        drop(d);
        assert_eq!(freed(&drops), 0, "freed while guards live");
        assert!(!g.is_draining());
        drop(g);
        assert_eq!(freed(&drops), 0);
        drop(g2);
        assert_eq!(freed(&drops), 1, "the last guard frees the state once");
    }

    #[test]
    fn a_drainer_without_guards_frees_its_state_on_drop() {
        let (drops, d) = counted();
        drop(d.enter_owned().unwrap());
        drop(d.enter().unwrap());
        assert_eq!(freed(&drops), 0);
        drop(d);
        assert_eq!(freed(&drops), 1);
    }

    #[test]
    fn an_orphaned_drain_completes_and_frees_once() {
        let (drops, d) = counted();
        let g = d.enter_owned().unwrap();
        d.start_draining();
        assert_eq!(d.enter_owned().unwrap_err(), DrainRefused::Draining);
        drop(d);
        assert!(g.is_draining());
        assert_eq!(freed(&drops), 0);
        drop(g); // completes the drain (nobody waits), then frees
        assert_eq!(freed(&drops), 1);
    }

    #[test]
    fn drained_then_dropped_frees_once() {
        let (drops, d) = counted();
        let g = d.enter_owned().unwrap();
        d.start_draining();
        drop(g);
        assert!(d.is_drained());
        assert_eq!(d.in_flight(), 0);
        assert_eq!(freed(&drops), 0);
        drop(d);
        assert_eq!(freed(&drops), 1);
    }

    #[test]
    fn a_child_releases_its_parent_when_it_and_its_guards_are_gone() {
        let parent = Drainer::new();
        let child = parent.child().unwrap();
        let work = child.enter_owned().unwrap();
        assert_eq!(parent.in_flight(), 1);
        drop(child);
        assert_eq!(parent.in_flight(), 1, "the child's work still runs");
        drop(work);
        assert_eq!(parent.in_flight(), 0);
        parent.start_draining();
        assert!(parent.is_drained());
    }

    #[test]
    fn a_refused_enter_on_an_empty_draining_word_leaves_the_completion_to_its_completer() {
        // The undo of an `enter` whose add found the count at zero while draining sets
        // COMPLETER and does not complete; the completer then completes once.
        let d = Drainer::new();
        d.core()
            .word
            .fetch_or(DRAINING | NOT_READY, Ordering::AcqRel);
        let prev = d.core().word.fetch_add(ENTER, Ordering::Relaxed);
        assert!(makes_completer(prev));
        assert_eq!(d.enter_slow(prev), Err(DrainRefused::Draining));
        let word = d.core().word.load(Ordering::Acquire);
        assert_eq!(word & (COMPLETER | DRAINED | COUNT_MASK), COMPLETER);
        assert!(!makes_completer(word));
        // SAFETY: `d` keeps the core alive; the word shows a completion pending, whose
        // completer this call plays.
        unsafe { Core::complete(d.core, word) };
        assert!(d.is_drained());
        assert_eq!(d.core().word.load(Ordering::Acquire) & HELD, 0);
    }

    #[test]
    fn enter_counts_and_drop_releases() {
        let (_, d) = manual();
        let a = d.enter().unwrap();
        let b = d.enter().unwrap();
        assert_eq!(d.in_flight(), 2);
        drop(a);
        assert_eq!(d.in_flight(), 1);
        drop(b);
        let m = d.metrics();
        assert_eq!(
            (m.phase, m.in_flight, m.admitted, m.refused),
            (Phase::Serving, 0, 2, 0)
        );
        assert_eq!(m.since_draining, None);
    }

    #[test]
    fn not_ready_still_admits_and_draining_refuses() {
        let (_, d) = manual();
        assert!(d.is_ready());
        assert!(d.mark_not_ready());
        assert!(!d.is_ready());
        assert!(!d.is_draining());
        let g = d.enter().expect("not-ready still admits");
        assert!(d.start_draining());
        assert!(!d.start_draining());
        assert_eq!(d.enter().unwrap_err(), DrainRefused::Draining);
        assert_eq!(d.phase(), Phase::Draining);
        drop(g);
        assert_eq!(d.phase(), Phase::Drained);
        // Refusals after the drain do not disturb it.
        assert_eq!(d.enter().unwrap_err(), DrainRefused::Draining);
        assert_eq!(d.phase(), Phase::Drained);
        assert_eq!(d.in_flight(), 0);
        let m = d.metrics();
        assert_eq!((m.admitted, m.refused), (1, 2));
    }

    #[test]
    fn start_with_nothing_in_flight_drains_at_once() {
        let (_, d) = manual();
        assert!(d.start_draining());
        assert!(d.is_drained());
        assert_eq!(
            d.blocking_wait_timeout(Duration::ZERO).unwrap().elapsed(),
            Duration::ZERO
        );
    }

    #[test]
    fn wait_reports_elapsed_or_in_flight() {
        let (c, d) = manual();
        let g1 = d.enter().unwrap();
        let g2 = d.enter().unwrap();
        c.advance(Duration::from_secs(1));
        d.start_draining();
        c.advance(Duration::from_millis(300));
        let t = d.blocking_wait_timeout(Duration::ZERO).unwrap_err();
        assert_eq!(t.in_flight(), 2);
        assert_eq!(d.metrics().since_draining, Some(Duration::from_millis(300)));
        drop(g1);
        c.advance(Duration::from_millis(200));
        drop(g2);
        c.advance(Duration::from_secs(5));
        let ok = d.blocking_wait_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(ok.elapsed(), Duration::from_millis(500));
    }

    #[test]
    fn clones_extend_admitted_work_during_a_drain() {
        let (_, d) = manual();
        let g = d.enter().unwrap();
        d.start_draining();
        let c = g.clone();
        drop(g);
        assert_eq!(d.phase(), Phase::Draining);
        assert_eq!(d.in_flight(), 1);
        drop(c);
        assert!(d.is_drained());
        assert_eq!(d.metrics().admitted, 1, "clones are not admissions");
    }

    #[test]
    fn guard_released_while_unwinding() {
        let (_, d) = manual();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = d.enter().unwrap();
            panic!("handler failed");
        }));
        assert!(r.is_err());
        assert_eq!(d.in_flight(), 0);
        d.start_draining();
        assert!(d.is_drained());
    }

    #[test]
    fn guard_released_when_its_future_is_dropped() {
        let (_, d) = manual();
        let fut = async {
            let _g = d.enter().unwrap();
            std::future::pending::<()>().await;
        };
        let mut fut = Box::pin(fut);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(d.in_flight(), 1);
        drop(fut);
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn full_count_refuses_instead_of_overflowing() {
        let (_, d) = manual();
        d.core().word.store(MAX_IN_FLIGHT, Ordering::Relaxed);
        assert_eq!(d.enter().unwrap_err(), DrainRefused::Full);
        assert_eq!(d.in_flight(), MAX_IN_FLIGHT);
        assert_eq!(d.phase(), Phase::Serving);
        // A guard's clone at the limit is refused too.
        d.core().word.store(MAX_IN_FLIGHT - 1, Ordering::Relaxed);
        let g = d.enter().unwrap();
        assert_eq!(g.try_clone().unwrap_err(), DrainRefused::Full);
        assert_eq!(d.in_flight(), MAX_IN_FLIGHT);
        drop(g);
        d.core().word.store(0, Ordering::Relaxed);
    }

    #[test]
    fn admitted_survives_the_entries_field_wrapping() {
        let (_, d) = manual();
        d.core()
            .word
            .store((ENTRY_WRAP - 2) << ENTRY_SHIFT, Ordering::Relaxed);
        for _ in 0..4 {
            drop(d.enter().unwrap());
        }
        assert_eq!(d.metrics().admitted, ENTRY_WRAP + 2);
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn async_wait_and_draining_notice() {
        let (_, d) = manual();
        let g = d.enter().unwrap();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut w = Box::pin(d.wait());
        let mut n = Box::pin(d.draining());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        assert!(n.as_mut().poll(&mut cx).is_pending());
        assert!(
            n.as_mut().poll(&mut cx).is_pending(),
            "re-poll keeps one slot"
        );
        d.start_draining();
        assert!(n.as_mut().poll(&mut cx).is_ready());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        drop(g);
        assert!(w.as_mut().poll(&mut cx).is_ready());
    }

    /// A timer whose sleeps end only when the test fires them, in the order they were asked
    /// for; it logs the durations asked for.
    #[derive(Clone, Default)]
    struct GatedTimer {
        pending: Arc<crate::sync::Mutex<Vec<Gate>>>,
    }

    /// A sleep asked for: its duration, and the sender that ends it.
    type Gate = (Duration, futures::channel::oneshot::Sender<()>);

    impl GatedTimer {
        /// Ends the oldest sleep not yet ended; returns the duration it was asked for.
        fn fire(&self) -> Duration {
            let (d, tx) = crate::sync::lock(&self.pending).remove(0);
            let _ = tx.send(());
            d
        }
    }

    impl crate::timer::Timer for GatedTimer {
        fn sleep(&self, d: Duration) -> crate::timer::Sleep {
            let (tx, rx) = futures::channel::oneshot::channel();
            crate::sync::lock(&self.pending).push((d, tx));
            crate::timer::Sleep::new(async move {
                let _ = rx.await;
            })
        }
    }

    fn gated(delay: Duration) -> (GatedTimer, Drainer<ManualClock>) {
        let timer = GatedTimer::default();
        let d = Drainer::builder()
            .not_ready_delay(delay)
            .clock(ManualClock::new())
            .timer(timer.clone())
            .build()
            .unwrap();
        (timer, d)
    }

    #[test]
    fn async_shutdown_admits_through_the_not_ready_delay_then_drains() {
        let (timer, d) = gated(Duration::from_secs(5));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let g = d.enter().unwrap();
        let mut shutdown = Box::pin(d.shutdown(Duration::from_secs(30)));
        assert!(shutdown.as_mut().poll(&mut cx).is_pending());
        assert_eq!(d.phase(), Phase::NotReady, "readiness flips first");
        drop(
            d.enter()
                .expect("still admitting during the not-ready delay"),
        );
        assert_eq!(timer.fire(), Duration::from_secs(5), "the not-ready delay");
        assert!(
            shutdown.as_mut().poll(&mut cx).is_pending(),
            "waits for the guard"
        );
        assert_eq!(d.phase(), Phase::Draining);
        assert_eq!(d.enter().unwrap_err(), DrainRefused::Draining);
        drop(g);
        match shutdown.as_mut().poll(&mut cx) {
            Poll::Ready(r) => assert!(r.is_ok()),
            Poll::Pending => panic!("the last guard is gone"),
        }
        assert_eq!(d.phase(), Phase::Drained);
    }

    #[test]
    fn async_shutdown_cuts_the_delay_short_when_draining_starts_elsewhere() {
        let (timer, d) = gated(Duration::from_secs(5));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut shutdown = Box::pin(d.shutdown(Duration::from_secs(30)));
        assert!(shutdown.as_mut().poll(&mut cx).is_pending());
        d.start_draining(); // another part of the process starts the drain
        assert!(
            shutdown.as_mut().poll(&mut cx).is_ready(),
            "nothing in flight"
        );
        assert_eq!(
            timer.fire(),
            Duration::from_secs(5),
            "the delay was never waited out"
        );
    }

    #[test]
    fn async_shutdown_reports_what_the_deadline_abandons() {
        let (timer, d) = gated(Duration::ZERO);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _stuck = d.enter().unwrap();
        let mut shutdown = Box::pin(d.shutdown(Duration::from_secs(30)));
        assert!(shutdown.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            timer.fire(),
            Duration::from_secs(30),
            "the drain's deadline"
        );
        match shutdown.as_mut().poll(&mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.in_flight(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn async_wait_timeout_without_work_or_with_a_zero_timeout_asks_no_timer() {
        let (timer, d) = gated(Duration::ZERO);
        d.start_draining();
        assert!(futures::executor::block_on(d.wait_timeout(Duration::from_secs(1))).is_ok());
        let (timer2, d2) = gated(Duration::ZERO);
        let _g = d2.enter().unwrap();
        d2.start_draining();
        let e = futures::executor::block_on(d2.wait_timeout(Duration::ZERO)).unwrap_err();
        assert_eq!(e.in_flight(), 1);
        assert!(crate::sync::lock(&timer.pending).is_empty());
        assert!(crate::sync::lock(&timer2.pending).is_empty());
    }

    #[test]
    fn dropped_wait_future_deregisters() {
        let (_, d) = manual();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..3 {
            let mut w = Box::pin(d.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(d.core().drained.slots_for_tests(), 1, "one slot, reused");
    }

    #[test]
    fn children_drain_before_the_parent() {
        let c = ManualClock::new();
        let parent = Arc::new(Drainer::builder().clock(c).build().unwrap());
        let child = parent.child().unwrap();
        let grandchild = child.child().unwrap();
        let work = grandchild.enter().unwrap();
        assert_eq!(parent.in_flight(), 1);
        parent.start_draining();
        assert_eq!(child.phase(), Phase::Draining);
        assert_eq!(grandchild.phase(), Phase::Draining);
        assert_eq!(parent.phase(), Phase::Draining);
        assert_eq!(parent.child().unwrap_err(), DrainRefused::Draining);
        drop(work);
        assert!(grandchild.is_drained() && child.is_drained() && parent.is_drained());
    }

    #[test]
    fn children_turn_not_ready_with_the_parent_and_keep_admitting() {
        let parent = Arc::new(Drainer::new());
        let child = parent.child().unwrap();
        let grandchild = child.child().unwrap();
        assert!(parent.mark_not_ready());
        assert!(!child.is_ready() && !grandchild.is_ready());
        assert_eq!(grandchild.phase(), Phase::NotReady);
        // Not ready is not refusing: work is still admitted everywhere.
        assert!(grandchild.enter().is_ok());
        // A child made while the parent is not ready starts not ready.
        let late = parent.child().unwrap();
        assert!(!late.is_ready());
        assert!(late.enter().is_ok());
        // Marking a child leaves its parent alone.
        let other = Arc::new(Drainer::new());
        let kid = other.child().unwrap();
        assert!(kid.mark_not_ready());
        assert!(other.is_ready());
    }

    #[test]
    fn child_drains_alone_and_releases_its_parent() {
        let parent = Arc::new(Drainer::new());
        let child = parent.child().unwrap();
        assert!(child.start_draining());
        assert!(child.is_drained());
        assert_eq!(parent.in_flight(), 0);
        assert!(parent.is_ready());
        let other = parent.child().unwrap();
        drop(other);
        assert_eq!(
            parent.in_flight(),
            0,
            "a dropped child releases its parent guard"
        );
    }

    #[test]
    fn builder_validates_the_delay() {
        let e = Drainer::builder()
            .not_ready_delay(MAX_NOT_READY_DELAY + Duration::from_nanos(1))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "not_ready_delay");
        assert!(
            Drainer::builder()
                .not_ready_delay(MAX_NOT_READY_DELAY)
                .build()
                .is_ok()
        );
    }
}
