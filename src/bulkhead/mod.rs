//! Bulkhead: a lock-free limit on how many calls run at once, with fail-fast admission and FIFO
//! waits for threads and tasks.
//!
//! ```
//! use resile::bulkhead::Bulkhead;
//! use std::time::Duration;
//!
//! let reads = Bulkhead::builder().name("reads").limit(2).build()?;
//! let a = reads.try_acquire()?;
//! let b = reads.try_acquire()?;
//! assert!(reads.try_acquire().unwrap_err().is_full());
//! drop(a); // released on drop
//! let c = reads.blocking_acquire_timeout(Duration::from_millis(10))?;
//! assert_eq!(reads.metrics().in_flight, 2);
//! # drop((b, c));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`Bulkhead::try_acquire`] fails fast with [`BulkheadError::Full`].
//! - [`Bulkhead::blocking_acquire_timeout`] blocks the thread up to a duration; [`Bulkhead::acquire`] is a
//!   future that works on any executor ([`Bulkhead::acquire_until`] races it with the caller's
//!   timer). Waiters are served in FIFO order by direct hand-off: a released slot goes to the
//!   oldest waiter, and a newcomer's `try_acquire` fails while anyone waits.
//! - A dropped future or a timed-out wait gives back any slot already handed to it, which goes
//!   to the next waiter.
//! - [`Bulkhead::set_limit`] resizes at run time; [`Bulkhead::close`] refuses new work and wakes
//!   every waiter with [`BulkheadError::Closed`].
//! - [`BulkheadPermit`] and [`OwnedBulkheadPermit`] are RAII guards; [`Bulkhead::call`] and
//!   [`Bulkhead::protect`] wrap a function.
//! - [`BulkheadBuilder::adaptive`] lets an [algorithm](adaptive) (AIMD, Vegas, Gradient2) move
//!   the limit from what the permits report; everything above works unchanged, the tower layer
//!   and the [`Policy`](crate::policy::Policy) included.
//!
//! # Implementation details
//!
//! Everything admission needs is one `AtomicU64`, the *word* (the `word` module in the source has
//! the layout, the state table and the orderings). Admission is one CAS on it; a release with
//! nobody waiting is one `fetch_sub`. Neither locks nor allocates. Waiting uses a mutex-guarded
//! `Queue` (`src/wait/queue.rs`), reached only when the word's `WAITERS` bit is set.
//!
//! An adaptive bulkhead keeps that admission: the controller (the `controller` module in the
//! source) only moves the word's limit field, by the same CAS as [`Bulkhead::set_limit`]. A
//! permit's report, taken before its slot is given back, is a few `Relaxed` RMWs on the calling
//! thread's stripe of the window's accumulators and one load of the window word (the calls in
//! flight it reports were counted when the granting CAS wrote the word); the report
//! that finds the window due CASes it closed, and that winner alone sums and zeroes the stripes,
//! runs the algorithm and stores the limit. A shrink below the calls in flight admits nothing
//! until releases bring them under the new limit, as the word's resize always has.

use crate::clock::{Clock, SystemClock, duration_to_nanos};
use crate::counter::StatCounter;
use crate::error::ConfigError;
use crate::sync::{AtomicU64, AtomicUsize, Lifetime, Mutex, Ordering, fence, lock, park_timeout};
use crate::timer::SharedTimer;
use crate::wait::Waiter;
use crate::wait::queue::{Queue, Slot, SlotState, WakeList};
use crate::wait::timer::LazyTimer;
use acquire::WaitState;
use builder::check_limit;
use controller::{Controller, Outcome};
use crossbeam_utils::CachePadded;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc as StdArc;
use std::task::Poll;
use std::time::Duration;

mod acquire;
pub mod adaptive;
mod builder;
mod controller;
mod error;
mod permit;

pub use acquire::{Acquire, AcquireOwned};
pub use adaptive::AdaptiveMetrics;
pub use builder::BulkheadBuilder;
pub use error::BulkheadError;
pub use permit::{BulkheadPermit, OwnedBulkheadPermit};
pub use word::MAX_LIMIT;

/// The longest wait a builder accepts for [`BulkheadBuilder::max_wait`]: one day.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

mod word;

/// The fields every admission touches, on one cache line.
struct Hot {
    word: AtomicU64,
    /// The highest `in_flight` seen (`fetch_max` only when exceeded).
    peak: AtomicU64,
}

/// A lock-free concurrency limit. See the [module docs](self).
///
/// ```
/// use resile::bulkhead::Bulkhead;
///
/// let b = Bulkhead::builder().name("db").limit(1).build().unwrap();
/// let answer = b.call(|| 6 * 7).unwrap();
/// assert_eq!(answer, 42);
/// let held = b.try_acquire().unwrap();
/// assert!(b.call(|| ()).unwrap_err().is_full());
/// drop(held);
/// ```
pub struct Bulkhead<C: Clock = SystemClock> {
    /// The state, shared with the owned permits; see [`Core`] for who frees it.
    core: NonNull<Core<C>>,
    _owns: PhantomData<Core<C>>,
}

// SAFETY: a `Bulkhead` is a unique handle to its `Core`, whose fields are all `Send + Sync` when
// `C` is (atomics, a mutex, the clock, the adaptive `Controller`, `Sync` by its own argument);
// the core is freed exactly once (see `Core`).
unsafe impl<C: Clock> Send for Bulkhead<C> {}
// SAFETY: as above; every method takes `&self` and goes through atomics or the queue's mutex.
unsafe impl<C: Clock> Sync for Bulkhead<C> {}

/// What a bulkhead and its owned permits share: a heap allocation that outlives the
/// [`Bulkhead`] while owned permits are alive, so an owned permit needs no reference count of
/// its own. It is freed by the one operation that leaves the word `ORPHANED` with nothing in
/// flight: the bulkhead's drop finding no permit, or the last owned permit's release after it.
/// Waiters always hold the bulkhead (borrowed, or through the `Arc` of [`AcquireOwned`]), so an
/// orphaned word has nobody queued; an owned permit that finds waiters queued keeps its slot
/// until it holds the queue lock, and the bulkhead's drop takes that lock before it marks the
/// word, so no release hands a slot on in a freed core.
struct Core<C: Clock> {
    hot: CachePadded<Hot>,
    /// Refusals, one cell per thread: a full bulkhead's fail-fast path is otherwise read-only.
    refused: StatCounter,
    /// The queue's length, readable without the lock (written under it).
    waiting: AtomicUsize,
    queue: Mutex<Queue>,
    name: Cow<'static, str>,
    max_wait: Duration,
    /// The limit the builder set (an adaptive one's initial limit).
    #[cfg(feature = "registry")]
    built_limit: u32,
    clock: C,
    timer: SharedTimer,
    /// The adaptive limit's controller, if the builder was given an algorithm.
    adaptive: Option<Controller>,
    /// The allocation's lifetime as loom sees it (empty outside loom models).
    lifetime: Lifetime,
}

/// What a permit keeps of its grant for an adaptive bulkhead's report: the clock reading its
/// RTT starts from. Zero on a static bulkhead, which reports nothing. One word, so that a
/// permit is two and moves through a tower service's states in registers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Stamp {
    start: u64,
}

/// A snapshot of a bulkhead's counters.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// let b = Bulkhead::builder().limit(2).build().unwrap();
/// let p = b.try_acquire().unwrap();
/// let m = b.metrics();
/// assert_eq!((m.in_flight, m.limit, m.waiting, m.refused, m.peak_in_flight), (1, 2, 0, 0, 1));
/// # drop(p);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadMetrics {
    /// Calls holding a slot now.
    pub in_flight: u32,
    /// The limit now.
    pub limit: u32,
    /// Callers queued for a slot now.
    pub waiting: usize,
    /// Calls refused since the bulkhead was built: full, timed out, or closed.
    pub refused: u64,
    /// The most calls ever in flight at once.
    pub peak_in_flight: u32,
    /// The adaptive limit's figures, if the bulkhead has one.
    pub adaptive: Option<AdaptiveMetrics>,
}

impl Bulkhead<SystemClock> {
    /// A builder with the defaults: name `"bulkhead"`, limit 25, fail fast, [`SystemClock`].
    pub fn builder() -> BulkheadBuilder<SystemClock> {
        BulkheadBuilder::new()
    }
}

impl<C: Clock> Bulkhead<C> {
    /// A bulkhead from settings its builder validated.
    fn from_parts(
        name: Cow<'static, str>,
        limit: u32,
        max_wait: Duration,
        clock: C,
        timer: SharedTimer,
        adaptive: controller::Settings,
    ) -> Self {
        let adaptive = Some(adaptive).and_then(|s| {
            let algorithm = s.algorithm.as_ref()?.make();
            Some(Controller::new(&s, algorithm, clock.now()))
        });
        let core = Box::new(Core {
            hot: CachePadded::new(Hot {
                word: AtomicU64::new(word::new(limit)),
                peak: AtomicU64::new(0),
            }),
            refused: StatCounter::new(),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(Queue::new()),
            name,
            max_wait,
            #[cfg(feature = "registry")]
            built_limit: limit,
            clock,
            timer,
            adaptive,
            lifetime: Lifetime::new(),
        });
        Bulkhead {
            core: NonNull::from(Box::leak(core)),
            _owns: PhantomData,
        }
    }
}

impl<C: Clock> Bulkhead<C> {
    /// The shared state.
    #[inline]
    fn core(&self) -> &Core<C> {
        // SAFETY: the core is freed only once the word is ORPHANED, which `drop(self)` sets.
        unsafe { self.core.as_ref() }
    }

    /// Takes a slot if one is free and nobody is queued; never waits, never locks, never
    /// allocates.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().name("db").limit(1).build().unwrap();
    /// let p = b.try_acquire().unwrap();
    /// assert_eq!(b.try_acquire().unwrap_err().to_string(),
    ///            "bulkhead is full (limit 1 in flight); retry later or shed the call");
    /// drop(p);
    /// assert!(b.try_acquire().is_ok());
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<BulkheadPermit<'_, C>, BulkheadError> {
        match self.try_admit() {
            Ok(()) => Ok(BulkheadPermit {
                bulkhead: self,
                stamp: self.core().stamp(),
            }),
            Err(refusal) => Err(self.refuse(refusal)),
        }
    }

    /// [`try_acquire`](Self::try_acquire) with a permit that borrows nothing, so it can move
    /// into a spawned task or a response body. It costs what `try_acquire` costs: the permit is
    /// counted in the word and nowhere else (it holds no reference count of the `Arc`, which is
    /// why the method borrows it rather than taking it), and may outlive the bulkhead.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use std::sync::Arc;
    /// let b = Arc::new(Bulkhead::builder().limit(1).build().unwrap());
    /// let p = b.try_acquire_owned().unwrap();
    /// std::thread::spawn(move || drop(p)).join().unwrap();
    /// assert_eq!(b.metrics().in_flight, 0);
    /// ```
    #[inline]
    pub fn try_acquire_owned(self: &StdArc<Self>) -> Result<OwnedBulkheadPermit<C>, BulkheadError> {
        match self.try_admit() {
            Ok(()) => Ok(OwnedBulkheadPermit {
                core: self.core,
                stamp: self.core().stamp(),
                _owns: PhantomData,
            }),
            Err(refusal) => Err(self.refuse(refusal)),
        }
    }

    /// Waits up to `timeout` for a slot, blocking the thread; FIFO with other waiters, threads
    /// and tasks alike. A zero timeout fails fast like [`try_acquire`](Self::try_acquire).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use std::time::Duration;
    /// let b = Bulkhead::builder().limit(1).build().unwrap();
    /// let p = b.try_acquire().unwrap();
    /// std::thread::scope(|s| {
    ///     let waiter = s.spawn(|| b.blocking_acquire_timeout(Duration::from_secs(60)).map(drop));
    ///     while b.metrics().waiting == 0 { std::thread::yield_now(); }
    ///     drop(p); // hands the slot to the waiter
    ///     waiter.join().unwrap().unwrap();
    /// });
    /// let _q = b.try_acquire().unwrap();
    /// let e = b.blocking_acquire_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert!(e.is_timed_out());
    /// ```
    pub fn blocking_acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<BulkheadPermit<'_, C>, BulkheadError> {
        self.wait_blocking(timeout)?;
        Ok(BulkheadPermit {
            bulkhead: self,
            stamp: self.core().stamp(),
        })
    }

    /// [`blocking_acquire_timeout`](Self::blocking_acquire_timeout) with the configured
    /// [`max_wait`](BulkheadBuilder::max_wait).
    pub fn blocking_acquire(&self) -> Result<BulkheadPermit<'_, C>, BulkheadError> {
        self.blocking_acquire_timeout(self.core().max_wait)
    }

    /// A future that resolves to a permit once a slot is handed to it (FIFO with every other
    /// waiter), or to [`BulkheadError::Closed`]. It waits without limit: race it with a timer
    /// ([`acquire_until`](Self::acquire_until), or your runtime's timeout). Dropping it leaves the
    /// queue; a slot already handed to it goes to the next waiter.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().limit(1).build().unwrap();
    /// let p = futures::executor::block_on(b.acquire()).unwrap();
    /// assert_eq!(b.metrics().in_flight, 1);
    /// # drop(p);
    /// ```
    pub fn acquire(&self) -> Acquire<'_, C> {
        Acquire {
            bulkhead: self,
            wait: WaitState::Start,
        }
    }

    /// [`acquire`](Self::acquire) for a shared bulkhead: the future owns a clone of the `Arc`
    /// while it waits, and yields an [`OwnedBulkheadPermit`] (for `tower` services and spawned
    /// tasks).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use std::sync::Arc;
    /// let b = Arc::new(Bulkhead::builder().limit(1).build().unwrap());
    /// let p = futures::executor::block_on(b.acquire_owned()).unwrap();
    /// drop(p);
    /// assert_eq!(b.metrics().in_flight, 0);
    /// ```
    pub fn acquire_owned(self: &StdArc<Self>) -> AcquireOwned<C> {
        AcquireOwned {
            bulkhead: StdArc::clone(self),
            wait: WaitState::Start,
        }
    }

    /// [`acquire`](Self::acquire), given up with [`BulkheadError::TimedOut`] after `timeout` on
    /// the bulkhead's [timer](BulkheadBuilder::timer), which is asked for a sleep only if the
    /// wait has to queue. A zero timeout fails fast like [`try_acquire`](Self::try_acquire).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::clock::ManualClock;
    /// use std::time::Duration;
    /// let clock = ManualClock::new();
    /// let b = Bulkhead::builder().limit(1).clock(clock.clone()).timer(clock.clone()).build()?;
    /// let _held = b.try_acquire()?;
    /// // The manual clock's sleep moves the clock on and completes: the wait times out.
    /// let e = futures::executor::block_on(b.acquire_timeout(Duration::from_secs(2))).unwrap_err();
    /// assert!(e.is_timed_out());
    /// assert_eq!(b.metrics().waiting, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<BulkheadPermit<'_, C>, BulkheadError> {
        if timeout.is_zero() {
            return self.try_acquire();
        }
        self.acquire_until(LazyTimer::new(&self.core().timer, timeout))
            .await
    }

    /// [`acquire`](Self::acquire), given up with [`BulkheadError::TimedOut`] when `timer`
    /// completes first (a deadline shared with other work, say). A slot handed over as the timer
    /// fires goes to the next waiter.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().limit(1).build().unwrap();
    /// let _held = b.try_acquire().unwrap();
    /// let expired = std::future::ready(()); // a timer that has already fired
    /// let e = futures::executor::block_on(b.acquire_until(expired)).unwrap_err();
    /// assert!(e.is_timed_out());
    /// assert_eq!(b.metrics().waiting, 0);
    /// ```
    pub async fn acquire_until<T: Future + Unpin>(
        &self,
        mut timer: T,
    ) -> Result<BulkheadPermit<'_, C>, BulkheadError> {
        let start = self.core().clock.now();
        let mut acquire = self.acquire();
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = Pin::new(&mut acquire).poll(cx) {
                return Poll::Ready(r);
            }
            match Pin::new(&mut timer).poll(cx) {
                Poll::Ready(_) => Poll::Ready(Err(self.refuse(Refusal::TimedOut(start)))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Runs `f` holding a slot, waiting up to the configured
    /// [`max_wait`](BulkheadBuilder::max_wait) for it (zero: fail fast). The slot is released when
    /// `f` returns or unwinds.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().limit(1).build().unwrap();
    /// assert_eq!(b.call(|| "done").unwrap(), "done");
    /// ```
    pub fn call<T>(&self, f: impl FnOnce() -> T) -> Result<T, BulkheadError> {
        let _permit = self.blocking_acquire()?;
        Ok(f())
    }

    /// Runs the future `fut` holding a slot, waiting up to the configured
    /// [`max_wait`](BulkheadBuilder::max_wait) for it (zero: fail fast), as [`call`](Self::call)
    /// does, on the bulkhead's [timer](BulkheadBuilder::timer). To wait without limit, use
    /// [`acquire`](Self::acquire).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().limit(1).build().unwrap(); // fail fast (no max wait)
    /// let v = futures::executor::block_on(b.call_async(async { 7 })).unwrap();
    /// assert_eq!(v, 7);
    /// let _held = b.try_acquire().unwrap();
    /// let e = futures::executor::block_on(b.call_async(async { 8 })).unwrap_err();
    /// assert!(e.is_full());
    /// ```
    pub async fn call_async<F: Future>(&self, fut: F) -> Result<F::Output, BulkheadError> {
        let _permit = if self.core().max_wait.is_zero() {
            self.try_acquire()?
        } else {
            self.acquire_timeout(self.core().max_wait).await?
        };
        Ok(fut.await)
    }

    /// Wraps `f` so that every call runs through [`call`](Self::call) (a decorator).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().name("reads").limit(4).build().unwrap();
    /// let read = b.protect(|id: u32| id * 10);
    /// assert_eq!(read(4).unwrap(), 40);
    /// ```
    pub fn protect<A, T, F>(&self, f: F) -> impl Fn(A) -> Result<T, BulkheadError> + '_
    where
        F: Fn(A) -> T + 'static,
    {
        move |a| self.call(|| f(a))
    }

    /// Changes the limit (1 to [`MAX_LIMIT`]) at run time. Growing hands the new slots to
    /// waiters; shrinking below the number in flight lets that work finish and admits nothing
    /// new until it is under the new limit.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().limit(2).build().unwrap();
    /// let (p, q) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    /// b.set_limit(1).unwrap();
    /// drop(p);
    /// assert!(b.try_acquire().is_err()); // still 1 in flight, limit 1
    /// drop(q);
    /// assert!(b.try_acquire().is_ok());
    /// assert_eq!(b.set_limit(0).unwrap_err().field(), "limit");
    /// ```
    ///
    /// On an adaptive bulkhead the algorithm sets the limit again when the next window closes.
    pub fn set_limit(&self, limit: u32) -> Result<(), ConfigError> {
        let limit = check_limit(limit)?;
        self.core().store_limit(limit);
        Ok(())
    }

    /// Closes the bulkhead: nothing new is admitted, every waiter is woken with
    /// [`BulkheadError::Closed`], and work in flight finishes normally. Returns whether this call
    /// closed it (`false` if it was already closed).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().limit(1).build().unwrap();
    /// let p = b.try_acquire().unwrap();
    /// assert!(b.close());
    /// assert!(!b.close());
    /// assert!(b.try_acquire().unwrap_err().is_closed());
    /// drop(p);
    /// assert_eq!(b.metrics().in_flight, 0);
    /// ```
    pub fn close(&self) -> bool {
        let prev = self
            .core()
            .hot
            .word
            .fetch_or(word::CLOSED, Ordering::AcqRel);
        let mut wakes = WakeList::new();
        {
            let mut q = lock(&self.core().queue);
            q.close_all(&mut wakes);
            self.core()
                .hot
                .word
                .fetch_and(!word::WAITERS, Ordering::AcqRel);
            self.core().waiting.store(0, Ordering::Relaxed);
        }
        wakes.wake_all();
        !word::is_closed(prev)
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        word::is_closed(self.core().hot.word.load(Ordering::Relaxed))
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        word::limit(self.core().hot.word.load(Ordering::Relaxed))
    }

    /// The name given to the builder.
    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// The configured wait of [`call`](Self::call) and [`blocking_acquire`](Self::blocking_acquire).
    pub fn max_wait(&self) -> Duration {
        self.core().max_wait
    }

    /// A snapshot of the counters (each read on its own; together they are not one instant).
    pub fn metrics(&self) -> BulkheadMetrics {
        let w = self.core().hot.word.load(Ordering::Relaxed);
        BulkheadMetrics {
            in_flight: word::in_flight(w),
            limit: word::limit(w),
            waiting: self.core().waiting.load(Ordering::Relaxed),
            refused: self.core().refused.sum(),
            peak_in_flight: self.core().hot.peak.load(Ordering::Relaxed) as u32,
            adaptive: self.core().adaptive.as_ref().map(|c| AdaptiveMetrics {
                no_load_rtt: c.no_load_rtt(),
                drops: c.drops(),
                windows: c.windows(),
            }),
        }
    }

    /// Whether a bulkhead fresh from the builder would decide every call as this one does:
    /// open, nothing in flight or queued, the limit the builder set, and no report waiting in an
    /// adaptive limit's window (an adaptive algorithm's estimates, such as a no-load RTT, are
    /// not compared).
    #[cfg(feature = "registry")]
    pub(crate) fn is_at_rest(&self) -> bool {
        let core = self.core();
        let w = core.hot.word.load(Ordering::Relaxed);
        word::in_flight(w) == 0
            && !word::is_closed(w)
            && word::limit(w) == core.built_limit
            && core.waiting.load(Ordering::Relaxed) == 0
            && core.adaptive.as_ref().is_none_or(|c| c.reports() == 0)
    }

    // ----- internals -----------------------------------------------------------------------

    /// The fail-fast admission CAS loop around [`word::admit`]: takes a slot with one CAS.
    #[inline]
    fn try_admit(&self) -> Result<(), Refusal> {
        let w = &self.core().hot.word;
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            match word::admit(cur) {
                word::Admit::Take(next) => {
                    match w.compare_exchange_weak(cur, next, Ordering::Acquire, Ordering::Relaxed) {
                        Ok(_) => {
                            self.core().note_peak(next);
                            return Ok(());
                        }
                        Err(seen) => cur = seen,
                    }
                }
                word::Admit::Full => return Err(Refusal::Full(word::limit(cur))),
                word::Admit::Closed => return Err(Refusal::Closed),
            }
        }
    }

    /// Counts a refusal and builds its error.
    #[cold]
    fn refuse(&self, refusal: Refusal) -> BulkheadError {
        self.core().refused.add(1);
        match refusal {
            Refusal::Full(limit) => BulkheadError::Full { limit },
            Refusal::Closed => BulkheadError::Closed,
            Refusal::TimedOut(start) => BulkheadError::TimedOut {
                waited: Duration::from_nanos(self.core().clock.now().saturating_sub(start)),
            },
        }
    }

    /// Gives back one slot: one `fetch_sub`; with waiters queued, hands the slot on.
    #[inline]
    fn release(&self) {
        let prev = self.core().hot.word.fetch_sub(word::ONE, Ordering::Release);
        debug_assert!(word::in_flight(prev) > 0, "release without a permit");
        if word::has_waiters(prev) {
            self.hand_off_slow();
        }
    }

    /// Takes the queue lock, hands free slots to the head waiters, and wakes them.
    #[cold]
    fn hand_off_slow(&self) {
        self.core().hand_off_slow();
    }

    /// Queues `waiter`, sets `WAITERS`, then re-checks capacity by running the hand-off (which may
    /// grant the new waiter at once). Errors if closed.
    fn register(&self, waiter: Waiter) -> Result<(u64, StdArcSlot), Refusal> {
        let (reg, wakes) = {
            let mut q = lock(&self.core().queue);
            if word::is_closed(self.core().hot.word.load(Ordering::Acquire)) {
                return Err(Refusal::Closed);
            }
            let (ticket, slot) = q.push(waiter);
            self.core()
                .hot
                .word
                .fetch_or(word::WAITERS, Ordering::AcqRel);
            let wakes = self.core().hand_off(&mut q, Some(ticket));
            ((ticket, slot), wakes)
        };
        wakes.wake_all();
        Ok(reg)
    }

    /// Leaves the queue. If the waiter was still queued it is removed (and a slot that might now
    /// be free is handed on); otherwise reports what it got: a granted slot is now the caller's.
    fn cancel(&self, ticket: u64, slot: &Slot) -> SlotState {
        let wakes = {
            let mut q = lock(&self.core().queue);
            let state = slot.state();
            if state != SlotState::Waiting {
                return state;
            }
            q.remove(ticket);
            self.core().hand_off(&mut q, None)
        };
        wakes.wake_all();
        SlotState::Waiting
    }

    /// The blocking wait behind [`blocking_acquire_timeout`](Self::blocking_acquire_timeout): on
    /// `Ok` the caller owns a slot, taken free or handed over by a release.
    fn wait_blocking(&self, timeout: Duration) -> Result<(), BulkheadError> {
        match self.try_admit() {
            Ok(()) => return Ok(()),
            Err(Refusal::Full(limit)) if timeout.is_zero() => {
                return Err(self.refuse(Refusal::Full(limit)));
            }
            Err(Refusal::Full(_)) => {}
            Err(refusal) => return Err(self.refuse(refusal)),
        }
        let start = self.core().clock.now();
        let deadline = start.saturating_add(duration_to_nanos(timeout));
        let (ticket, slot) = self
            .register(Waiter::current_thread())
            .map_err(|r| self.refuse(r))?;
        loop {
            match slot.state() {
                SlotState::Granted => return Ok(()),
                SlotState::Closed => return Err(self.refuse(Refusal::Closed)),
                SlotState::Waiting => {}
            }
            let now = self.core().clock.now();
            if now >= deadline {
                return match self.cancel(ticket, &slot) {
                    // Handed over as the deadline passed: it came in time.
                    SlotState::Granted => Ok(()),
                    SlotState::Closed => Err(self.refuse(Refusal::Closed)),
                    SlotState::Waiting => Err(self.refuse(Refusal::TimedOut(start))),
                };
            }
            park_timeout(Duration::from_nanos(deadline - now));
        }
    }
}

type StdArcSlot = crate::sync::Arc<Slot>;

/// Why an admission failed, before it becomes a [`BulkheadError`].
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Full(u32),
    Closed,
    /// Timed out; the clock reading when the wait began.
    TimedOut(u64),
}

/// The seam the tower layer waits through: it queues with [`Bulkhead::acquire_owned`] and
/// races the queued wait with a sleep of the bulkhead's timer, keeping the wait's start across
/// the inner service's readiness flips, so it needs the clock reading a wait starts from, the
/// timer, and the refusal of a wait that ran out.
#[cfg(feature = "tower")]
impl<C: Clock> Bulkhead<C> {
    /// The clock reading a timed wait starts from (for [`Self::timed_out`]).
    pub(crate) fn wait_started(&self) -> u64 {
        self.core().clock.now()
    }

    /// The timer of waits with a deadline.
    pub(crate) fn timer(&self) -> &SharedTimer {
        &self.core().timer
    }

    /// Counts a wait begun at `start` (a [`Self::wait_started`] reading) that timed out, and
    /// builds its error.
    pub(crate) fn timed_out(&self, start: u64) -> BulkheadError {
        self.refuse(Refusal::TimedOut(start))
    }
}

impl<C: Clock> fmt::Debug for Bulkhead<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.core().name)
            .field("metrics", &self.metrics())
            .field("closed", &self.is_closed())
            .field("max_wait", &self.core().max_wait)
            .finish()
    }
}

impl<C: Clock> Drop for Bulkhead<C> {
    fn drop(&mut self) {
        let core = self.core();
        // Under the queue lock, so that a release handing its slot on (which holds the lock)
        // is done with the state before the word says the bulkhead is gone.
        let prev = {
            let _queue = lock(&core.queue);
            core.hot.word.fetch_or(word::ORPHANED, Ordering::AcqRel)
        };
        if word::in_flight(prev) == 0 {
            // SAFETY: no permit is left, and no other handle or waiter exists (waiters borrow
            // or own the bulkhead): nothing else can reach the core.
            unsafe { Core::free(self.core) };
        }
    }
}

impl<C: Clock> Core<C> {
    /// A granted permit's stamp: the clock reading its RTT starts from. Only adaptive bulkheads
    /// read the clock.
    #[inline]
    fn stamp(&self) -> Stamp {
        if self.adaptive.is_some() {
            Stamp {
                start: self.clock.now(),
            }
        } else {
            Stamp::default()
        }
    }

    /// A permit's report, before its slot is given back (so the core is alive): records the
    /// outcome (`None`: the configured [`Unreported`](adaptive::Unreported) rule) and, if the
    /// window is due, tries to close it. Nothing on a static bulkhead: the check is inlined into
    /// every release, the adaptive work is not.
    #[inline(always)]
    fn report(&self, stamp: Stamp, outcome: Option<Outcome>) {
        if let Some(ctl) = &self.adaptive {
            self.report_adaptive(ctl, stamp, outcome);
        }
    }

    /// [`report`](Self::report) on an adaptive bulkhead.
    #[inline(never)]
    fn report_adaptive(&self, ctl: &Controller, stamp: Stamp, outcome: Option<Outcome>) {
        let outcome = outcome.unwrap_or(ctl.unreported);
        if outcome == Outcome::Ignored {
            return;
        }
        let now = self.clock.now();
        // The calls in flight as this one ends, itself counted: the line the release is about
        // to write anyway. Every peak of concurrency is ended by a release that sees it, so the
        // window's peak is the same as at grants.
        let in_flight = word::in_flight(self.hot.word.load(Ordering::Relaxed));
        ctl.record(
            now.saturating_sub(stamp.start),
            in_flight,
            outcome == Outcome::Dropped,
        );
        if ctl.due(now) {
            self.close_window(ctl, now);
        }
    }

    /// Closes a due window if this caller wins it, and applies the algorithm's limit.
    #[cold]
    fn close_window(&self, ctl: &Controller, now: u64) {
        let from = word::limit(self.hot.word.load(Ordering::Relaxed));
        let Some(closed) = ctl.close(now, from) else {
            return;
        };
        if closed.to != from {
            self.store_limit(closed.to);
        }
        if let Some(hook) = &ctl.hook {
            hook(adaptive::LimitChange {
                from,
                to: closed.to,
                window: closed.summary,
                no_load_rtt: closed.no_load_rtt.map(Duration::from_nanos),
            });
        }
    }

    /// CASes `limit` into the word, every other field kept; with waiters queued, hands any new
    /// slots on. Shrinking below `in_flight` admits nothing until releases bring it under.
    fn store_limit(&self, limit: u32) {
        let w = &self.hot.word;
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            match w.compare_exchange_weak(
                cur,
                word::with_limit(cur, limit),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(prev) => {
                    if word::has_waiters(prev) {
                        self.hand_off_slow();
                    }
                    return;
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Takes the queue lock, hands free slots to the head waiters, and wakes them.
    #[cold]
    fn hand_off_slow(&self) {
        let wakes = {
            let mut q = lock(&self.queue);
            self.hand_off(&mut q, None)
        };
        wakes.wake_all();
    }

    #[inline]
    fn note_peak(&self, next: u64) {
        let n = u64::from(word::in_flight(next));
        if n > self.hot.peak.load(Ordering::Relaxed) {
            self.hot.peak.fetch_max(n, Ordering::Relaxed);
        }
    }

    /// Under the queue lock: while someone is queued and a slot is free, admit the head waiter
    /// (`in_flight + 1`) and hand it the slot; clear `WAITERS` once the queue is empty. The
    /// waiter holding `skip` (the caller itself) is not woken.
    fn hand_off(&self, q: &mut Queue, skip: Option<u64>) -> WakeList {
        let mut wakes = WakeList::new();
        let w = &self.hot.word;
        let mut cur = w.load(Ordering::Acquire);
        loop {
            if q.is_empty() {
                if word::has_waiters(cur) {
                    w.fetch_and(!word::WAITERS, Ordering::AcqRel);
                }
                break;
            }
            let Some(next) = word::hand_off(cur) else {
                break;
            };
            match w.compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.note_peak(next);
                    if let Some((ticket, waiter)) = q.grant_front() {
                        if Some(ticket) != skip {
                            wakes.push(waiter);
                        }
                    }
                    cur = next;
                }
                Err(seen) => cur = seen,
            }
        }
        self.waiting.store(q.len(), Ordering::Relaxed);
        wakes
    }

    /// Releases an owned permit's slot. Nobody queued and the bulkhead alive: one CAS. Waiters
    /// queued: the slot is given back under the queue lock and handed on, so the state is not
    /// freed under the hand-off. The bulkhead gone: the release that leaves nothing in flight
    /// frees the state.
    ///
    /// # Safety
    /// The caller owns one slot and does not touch the core after this call.
    #[inline]
    unsafe fn release_owned(core: NonNull<Self>) {
        // SAFETY: the caller's slot keeps the core alive until it is given back.
        let this = unsafe { core.as_ref() };
        this.lifetime.touch();
        let w = &this.hot.word;
        let mut cur = w.load(Ordering::Relaxed);
        while cur & (word::WAITERS | word::ORPHANED) == 0 {
            debug_assert!(word::in_flight(cur) > 0, "release without a permit");
            match w.compare_exchange_weak(
                cur,
                cur - word::ONE,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
        // SAFETY: forwarded; the slot is still held.
        unsafe { Self::release_owned_slow(core, cur) }
    }

    /// The rare ends of an owned release: waiters queued, or the bulkhead gone.
    ///
    /// # Safety
    /// As [`release_owned`](Self::release_owned), the slot still held.
    #[cold]
    unsafe fn release_owned_slow(core: NonNull<Self>, cur: u64) {
        // SAFETY: the caller's slot keeps the core alive until the `fetch_sub` below.
        let this = unsafe { core.as_ref() };
        if cur & word::ORPHANED != 0 {
            // Nobody can queue without the bulkhead, so nobody is queued: give the slot back.
            let prev = this.hot.word.fetch_sub(word::ONE, Ordering::Release);
            if word::in_flight(prev) == 1 && prev & word::ORPHANED != 0 {
                // SAFETY: the bulkhead is gone and this was the last slot.
                unsafe { Self::free(core) };
            }
            return;
        }
        // Waiters were queued: give the slot back and hand free slots on under the lock, which
        // the bulkhead's drop takes before it marks the word, so the state outlives the lock.
        let (wakes, prev) = {
            let mut q = lock(&this.queue);
            this.lifetime.touch();
            let prev = this.hot.word.fetch_sub(word::ONE, Ordering::Release);
            let wakes = if word::has_waiters(prev) {
                this.hand_off(&mut q, None)
            } else {
                WakeList::new()
            };
            (wakes, prev)
        };
        if word::in_flight(prev) == 1 && prev & word::ORPHANED != 0 {
            // SAFETY: the bulkhead is gone and this was the last slot; the lock is released.
            unsafe { Self::free(core) };
        }
        wakes.wake_all();
    }

    /// Frees the core.
    ///
    /// # Safety
    /// The caller's read-modify-write left the word `ORPHANED` with nothing in flight: no
    /// permit, bulkhead or waiter can reach the core any more.
    unsafe fn free(core: NonNull<Self>) {
        // Every release was a `Release` RMW on the word, read by the caller's RMW.
        fence(Ordering::Acquire);
        // SAFETY: allocated by `Box::leak` in `build`, freed once (see the contract).
        let mut core = unsafe { Box::from_raw(core.as_ptr()) };
        core.lifetime.retire();
        drop(core);
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::sync::AtomicUsize as StdAtomicUsize;
    use crate::test_support::{DropCountingClock, WakeCount, counting_waker as counter};
    use std::task::{Context, Waker};

    fn wakes(c: &WakeCount) -> usize {
        c.get()
    }

    fn poll<F: Future + Unpin>(f: &mut F, w: &Waker) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(w))
    }

    fn bulkhead(limit: u32) -> Bulkhead<ManualClock> {
        Bulkhead::builder()
            .name("test")
            .limit(limit)
            .clock(ManualClock::new())
            .build()
            .unwrap()
    }

    #[test]
    fn call_async_waits_up_to_max_wait_on_the_bulkheads_timer() {
        use futures::channel::oneshot;
        // The first sleep ends when the test fires it; any later one never ends.
        let (fire, fired) = oneshot::channel::<()>();
        let fired = StdArc::new(std::sync::Mutex::new(Some(fired)));
        let timer = move |d: Duration| {
            assert_eq!(d, Duration::from_secs(1), "the configured max wait");
            let rx = fired.lock().unwrap().take();
            async move {
                match rx {
                    Some(rx) => drop(rx.await),
                    None => std::future::pending::<()>().await,
                }
            }
        };
        let b = Bulkhead::builder()
            .limit(1)
            .max_wait(Duration::from_secs(1))
            .timer(timer)
            .build()
            .unwrap();
        let held = b.try_acquire().unwrap();
        let (_, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        // The timer fires first: the queued call gives up, timed out, without running.
        let mut call = std::pin::pin!(b.call_async(async { 1 }));
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(b.metrics().waiting, 1);
        fire.send(()).unwrap();
        match call.as_mut().poll(&mut cx) {
            Poll::Ready(r) => assert!(r.unwrap_err().is_timed_out()),
            Poll::Pending => panic!("the timer fired"),
        }
        assert_eq!(b.metrics().waiting, 0);
        // A slot freed before the timer fires: the call runs.
        let mut call = std::pin::pin!(b.call_async(async { 2 }));
        assert!(call.as_mut().poll(&mut cx).is_pending());
        drop(held);
        assert_eq!(call.as_mut().poll(&mut cx), Poll::Ready(Ok(2)));
        assert_eq!(b.metrics().in_flight, 0);
    }

    /// A bulkhead whose state's free shows in the returned counter (one drop of its clock).
    fn counted(limit: u32) -> (StdArc<StdAtomicUsize>, StdArc<Bulkhead<DropCountingClock>>) {
        let (clock, drops) = DropCountingClock::new();
        let b = Bulkhead::builder()
            .limit(limit)
            .clock(clock)
            .build()
            .unwrap();
        (drops, StdArc::new(b))
    }

    fn freed(drops: &StdAtomicUsize) -> usize {
        drops.load(Ordering::Relaxed)
    }

    #[test]
    fn owned_permits_keep_the_state_until_the_last_is_gone() {
        let (drops, b) = counted(2);
        let p = b.try_acquire_owned().unwrap();
        let q = b.try_acquire_owned().unwrap();
        drop(b);
        assert_eq!(freed(&drops), 0, "freed while permits live");
        drop(p);
        assert_eq!(freed(&drops), 0);
        drop(q);
        assert_eq!(freed(&drops), 1, "the last permit frees the state once");
    }

    #[test]
    fn a_bulkhead_without_permits_frees_its_state_on_drop() {
        let (drops, b) = counted(1);
        drop(b.try_acquire_owned().unwrap());
        drop(b.try_acquire().unwrap());
        assert_eq!(freed(&drops), 0);
        drop(b);
        assert_eq!(freed(&drops), 1);
    }

    #[test]
    fn an_owned_release_hands_its_slot_to_a_waiter() {
        let (drops, b) = counted(1);
        let p = b.try_acquire_owned().unwrap();
        let (_c, w) = counter();
        let mut fut = b.clone().acquire_owned();
        assert!(poll(&mut fut, &w).is_pending());
        drop(p); // finds the waiter queued: hands the slot over under the lock
        let got = match poll(&mut fut, &w) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("the slot was not handed over"),
        };
        assert_eq!(b.metrics().in_flight, 1);
        drop((fut, b));
        assert_eq!(freed(&drops), 0, "the handed-over permit keeps the state");
        drop(got);
        assert_eq!(freed(&drops), 1);
    }

    fn adaptive(
        algorithm: impl adaptive::LimitAlgorithm + Clone + Sync,
        min_samples: u32,
    ) -> (ManualClock, Bulkhead<ManualClock>) {
        let clock = ManualClock::new();
        let b = Bulkhead::builder()
            .adaptive(algorithm)
            .adaptive_window(Duration::from_secs(1))
            .adaptive_min_samples(min_samples)
            .clock(clock.clone())
            .build()
            .unwrap();
        (clock, b)
    }

    #[test]
    fn an_adaptive_shrink_below_in_flight_takes_effect_as_permits_return() {
        let aimd = adaptive::Aimd::default()
            .initial_limit(4)
            .min_limit(1)
            .backoff_ratio(0.5);
        let (clock, b) = adaptive(aimd, 1);
        let held: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
        clock.advance(Duration::from_secs(1));
        b.try_acquire().unwrap().dropped(); // closes the window: 4 × 0.5 = 2
        assert_eq!(b.limit(), 2);
        assert_eq!(b.metrics().in_flight, 3);
        let mut held = held.into_iter();
        held.next().unwrap().ignore();
        assert!(
            b.try_acquire().unwrap_err().is_full(),
            "2 in flight, limit 2"
        );
        held.next().unwrap().ignore();
        let p = b.try_acquire().unwrap();
        assert!(b.try_acquire().unwrap_err().is_full());
        drop((p, held));
        let m = b.metrics().adaptive.unwrap();
        assert_eq!((m.drops, m.windows), (1, 1));
    }

    #[test]
    fn an_adaptive_growth_hands_slots_to_waiters() {
        let aimd = adaptive::Aimd::default().initial_limit(1).min_limit(1);
        let (clock, b) = adaptive(aimd, 1);
        let p = b.try_acquire().unwrap();
        let (c, w) = counter();
        let mut f = b.acquire();
        assert!(poll(&mut f, &w).is_pending());
        clock.advance(Duration::from_secs(1));
        // The holder's success closes the window: 1 in flight of limit 1, not app-limited: +1.
        p.success();
        // The released slot and the new one: the waiter got one, the limit is 2.
        assert_eq!(b.limit(), 2);
        assert_eq!(wakes(&c), 1);
        let Poll::Ready(Ok(got)) = poll(&mut f, &w) else {
            panic!("the waiter was handed a slot")
        };
        let q = b.try_acquire().unwrap();
        assert_eq!(b.metrics().in_flight, 2);
        drop((got, q));
    }

    #[test]
    fn a_permit_reports_its_latency_from_grant_to_release() {
        let seen = StdArc::new(std::sync::Mutex::new(Vec::new()));
        let clock = ManualClock::new();
        let b = StdArc::new(
            Bulkhead::builder()
                .adaptive(adaptive::Vegas::default())
                .adaptive_min_samples(3)
                .on_limit_change({
                    let seen = seen.clone();
                    move |c| seen.lock().unwrap().push(c)
                })
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        let a = b.try_acquire().unwrap();
        clock.advance(Duration::from_millis(5));
        let o = b.try_acquire_owned().unwrap();
        clock.advance(Duration::from_millis(3));
        a.success(); // 8 ms, 2 in flight
        clock.advance(Duration::from_secs(1));
        drop(b.try_acquire().unwrap()); // unreported: a success of 0 ms
        assert!(seen.lock().unwrap().is_empty(), "two reports of three");
        o.success(); // 1003 ms, closes the window
        let c = seen.lock().unwrap()[0];
        assert_eq!(
            c.window,
            adaptive::WindowSummary {
                count: 3,
                rtt_sum: 8_000_000 + 1_003_000_000,
                rtt_min: 0,
                drops: 0,
                max_in_flight: 2
            }
        );
        // Vegas takes the first window's RTT (its floor of 1 ns) as the no-load RTT.
        assert_eq!(c.no_load_rtt, Some(Duration::from_nanos(1)));
        assert_eq!((c.from, c.to), (20, 20));
        let m = b.metrics().adaptive.unwrap();
        assert_eq!(
            (m.windows, m.no_load_rtt),
            (1, Some(Duration::from_nanos(1)))
        );
    }

    #[test]
    fn a_report_carries_the_calls_in_flight_as_it_ends() {
        let seen = StdArc::new(std::sync::Mutex::new(Vec::new()));
        let clock = ManualClock::new();
        let b = Bulkhead::builder()
            .adaptive(adaptive::Aimd::default())
            .adaptive_window(Duration::from_secs(1))
            .adaptive_min_samples(1)
            .on_limit_change({
                let seen = seen.clone();
                move |c| seen.lock().unwrap().push(c)
            })
            .clock(clock.clone())
            .build()
            .unwrap();
        let first = b.try_acquire().unwrap(); // granted with 1 in flight
        let later = (b.try_acquire().unwrap(), b.try_acquire().unwrap()); // 2, then 3
        clock.advance(Duration::from_secs(1));
        first.success(); // the window's only report, ending with 3 in flight
        assert_eq!(seen.lock().unwrap()[0].window.max_in_flight, 3);
        clock.advance(Duration::from_secs(1));
        later.1.success(); // ends with 2 in flight: the next window's first report
        later.0.success(); // ends with 1, in the window after
        let windows = seen.lock().unwrap();
        assert_eq!(
            windows.len(),
            2,
            "the second window closed on its first report"
        );
        assert_eq!(windows[1].window.max_in_flight, 2);
    }

    #[test]
    fn unreported_permits_count_as_configured() {
        for (rule, drops) in [
            (adaptive::Unreported::Success, 0),
            (adaptive::Unreported::Dropped, 1),
        ] {
            let clock = ManualClock::new();
            let b = Bulkhead::builder()
                .adaptive(adaptive::Aimd::default().min_limit(1))
                .adaptive_min_samples(1)
                .unreported(rule)
                .clock(clock.clone())
                .build()
                .unwrap();
            clock.advance(Duration::from_secs(1));
            drop(b.try_acquire().unwrap());
            let m = b.metrics().adaptive.unwrap();
            assert_eq!((m.windows, m.drops), (1, drops), "{rule:?}");
        }
        let clock = ManualClock::new();
        let b = Bulkhead::builder()
            .adaptive(adaptive::Aimd::default())
            .adaptive_min_samples(1)
            .unreported(adaptive::Unreported::Ignored)
            .clock(clock.clone())
            .build()
            .unwrap();
        clock.advance(Duration::from_secs(1));
        drop(b.try_acquire().unwrap());
        b.try_acquire().unwrap().ignore();
        assert_eq!(b.metrics().adaptive.unwrap().windows, 0);
    }

    #[test]
    fn adaptive_builder_validates_each_field() {
        let f = |b: BulkheadBuilder| b.build().unwrap_err().field();
        let a = || Bulkhead::builder().adaptive(adaptive::Aimd::default());
        assert_eq!(f(a().adaptive_window(Duration::ZERO)), "adaptive_window");
        assert_eq!(
            f(a().adaptive_window(Duration::from_secs(3601))),
            "adaptive_window"
        );
        assert_eq!(f(a().adaptive_min_samples(0)), "adaptive_min_samples");
        assert_eq!(
            f(Bulkhead::builder().adaptive(adaptive::Vegas::default().initial_limit(0))),
            "initial_limit"
        );
        // The static limit is not used by an adaptive bulkhead.
        let b = a().limit(0).build().unwrap();
        assert_eq!(b.limit(), 20);
    }

    #[test]
    fn builder_validates_each_field() {
        let e = Bulkhead::builder().limit(0).build().unwrap_err();
        assert_eq!((e.field(), e.value()), ("limit", "0"));
        let e = Bulkhead::builder()
            .limit(MAX_LIMIT + 1)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "limit");
        assert!(Bulkhead::builder().limit(MAX_LIMIT).build().is_ok());
        let e = Bulkhead::builder()
            .max_wait(MAX_WAIT + Duration::from_nanos(1))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "max_wait");
        let b = Bulkhead::builder().max_wait(MAX_WAIT).build().unwrap();
        assert_eq!(
            (b.name(), b.limit(), b.max_wait()),
            ("bulkhead", 25, MAX_WAIT)
        );
    }

    #[test]
    fn try_acquire_fails_fast_naming_the_bulkhead_and_counts_refusals() {
        let b = bulkhead(2);
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        let e = b.try_acquire().unwrap_err();
        assert_eq!(e, BulkheadError::Full { limit: 2 });
        drop(p1);
        let p3 = b.try_acquire().unwrap();
        let m = b.metrics();
        assert_eq!(
            (m.in_flight, m.limit, m.refused, m.peak_in_flight),
            (2, 2, 1, 2)
        );
        drop((p2, p3));
        assert_eq!(b.metrics().in_flight, 0);
        assert_eq!(b.metrics().peak_in_flight, 2);
    }

    #[test]
    fn permits_are_released_while_unwinding() {
        let b = bulkhead(1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            b.call(|| panic!("boom")).ok();
        }));
        assert!(r.is_err());
        assert_eq!(b.metrics().in_flight, 0);
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn protect_and_call_fail_fast_by_default() {
        let b = bulkhead(1);
        let double = b.protect(|x: u32| x * 2);
        assert_eq!(double(21), Ok(42));
        let held = b.try_acquire().unwrap();
        assert!(double(1).unwrap_err().is_full());
        assert!(b.call(|| ()).unwrap_err().is_full());
        drop(held);
        assert_eq!(b.metrics().refused, 2);
    }

    #[test]
    fn shrinking_lets_work_finish_and_growing_admits_more() {
        let b = bulkhead(3);
        let ps: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
        b.set_limit(1).unwrap();
        let mut ps = ps.into_iter();
        drop(ps.next());
        assert!(
            b.try_acquire().unwrap_err().is_full(),
            "2 in flight > limit 1"
        );
        drop(ps.next());
        assert!(
            b.try_acquire().unwrap_err().is_full(),
            "1 in flight = limit 1"
        );
        drop(ps.next());
        let p = b.try_acquire().unwrap();
        b.set_limit(2).unwrap();
        let q = b.try_acquire().unwrap();
        assert_eq!(b.metrics().in_flight, 2);
        drop((p, q));
    }

    #[test]
    fn close_refuses_new_work_and_lets_held_work_finish() {
        let b = bulkhead(2);
        let p = b.try_acquire().unwrap();
        assert!(b.close());
        assert!(b.is_closed());
        assert!(b.try_acquire().unwrap_err().is_closed());
        assert!(
            b.blocking_acquire_timeout(Duration::from_secs(1))
                .unwrap_err()
                .is_closed()
        );
        let (_c, w) = counter();
        assert!(matches!(poll(&mut b.acquire(), &w), Poll::Ready(Err(e)) if e.is_closed()));
        drop(p);
        assert_eq!(b.metrics().in_flight, 0);
        assert!(!b.close());
    }

    #[test]
    fn futures_are_served_fifo_by_hand_off() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let mut f1 = b.acquire();
        let mut f2 = b.acquire();
        assert!(poll(&mut f1, &w1).is_pending());
        assert!(poll(&mut f2, &w2).is_pending());
        assert_eq!(b.metrics().waiting, 2);

        drop(p); // hands the slot to f1: the count stays 1, f1 owns it
        assert_eq!((wakes(&c1), wakes(&c2)), (1, 0));
        assert_eq!(b.metrics().in_flight, 1);
        assert_eq!(b.metrics().waiting, 1);
        assert!(
            b.try_acquire().unwrap_err().is_full(),
            "no jumping the queue"
        );
        let Poll::Ready(Ok(p1)) = poll(&mut f1, &w1) else {
            panic!("f1 was handed the slot")
        };
        assert!(poll(&mut f2, &w2).is_pending());

        drop(p1);
        assert_eq!(wakes(&c2), 1);
        let Poll::Ready(Ok(p2)) = poll(&mut f2, &w2) else {
            panic!("f2 was handed the slot")
        };
        drop(p2);
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting, m.peak_in_flight), (0, 0, 1));
        assert!(
            b.try_acquire().is_ok(),
            "the queue is empty: the fast path is open again"
        );
    }

    #[test]
    fn a_newcomer_queues_behind_waiters_even_if_a_slot_frees_first() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        let (c1, w1) = counter();
        let mut f1 = b.acquire();
        assert!(poll(&mut f1, &w1).is_pending());
        drop(p);
        // f1 owns the slot though it has not run yet; a new future must queue, not take it.
        let (_c2, w2) = counter();
        let mut f2 = b.acquire();
        assert!(poll(&mut f2, &w2).is_pending());
        assert_eq!(wakes(&c1), 1);
        assert!(matches!(poll(&mut f1, &w1), Poll::Ready(Ok(_))));
    }

    #[test]
    fn dropping_a_granted_future_passes_the_slot_on() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let mut f1 = b.acquire();
        let mut f2 = b.acquire();
        assert!(poll(&mut f1, &w1).is_pending());
        assert!(poll(&mut f2, &w2).is_pending());
        drop(p);
        assert_eq!(wakes(&c1), 1);
        drop(f1); // granted but never polled again: the slot goes to f2
        assert_eq!(wakes(&c2), 1);
        assert_eq!(b.metrics().in_flight, 1);
        let Poll::Ready(Ok(p2)) = poll(&mut f2, &w2) else {
            panic!("f2 got the slot f1 gave back")
        };
        drop(p2);
        assert_eq!(b.metrics().in_flight, 0);
    }

    #[test]
    fn dropping_a_waiting_future_leaves_the_queue() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let mut f1 = b.acquire();
        let mut f2 = b.acquire();
        assert!(poll(&mut f1, &w1).is_pending());
        assert!(poll(&mut f2, &w2).is_pending());
        drop(f1);
        assert_eq!(b.metrics().waiting, 1);
        drop(p);
        assert_eq!((wakes(&c1), wakes(&c2)), (0, 1));
        assert!(matches!(poll(&mut f2, &w2), Poll::Ready(Ok(_))));
        // The last waiter gone, the fast path is open.
        assert_eq!(b.metrics().waiting, 0);
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn close_wakes_every_waiter_with_an_error() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let mut f1 = b.acquire();
        let mut f2 = b.acquire();
        assert!(poll(&mut f1, &w1).is_pending());
        assert!(poll(&mut f2, &w2).is_pending());
        b.close();
        assert_eq!((wakes(&c1), wakes(&c2)), (1, 1));
        assert!(matches!(poll(&mut f1, &w1), Poll::Ready(Err(e)) if e.is_closed()));
        assert!(matches!(poll(&mut f2, &w2), Poll::Ready(Err(e)) if e.is_closed()));
        assert_eq!(b.metrics().waiting, 0);
        drop(p);
        assert_eq!(b.metrics().in_flight, 0);
    }

    #[test]
    fn growing_hands_new_slots_to_waiters_in_order() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        let counters: Vec<_> = (0..3).map(|_| counter()).collect();
        let mut fs: Vec<_> = (0..3).map(|_| b.acquire()).collect();
        for (f, (_, w)) in fs.iter_mut().zip(&counters) {
            assert!(poll(f, w).is_pending());
        }
        b.set_limit(3).unwrap();
        let woken: Vec<usize> = counters.iter().map(|(c, _)| wakes(c)).collect();
        assert_eq!(woken, [1, 1, 0], "two new slots, to the two oldest waiters");
        assert_eq!(b.metrics().in_flight, 3);
        drop(p);
        assert_eq!(wakes(&counters[2].0), 1);
    }

    #[test]
    fn shrinking_holds_waiters_until_under_the_new_limit() {
        let b = bulkhead(2);
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        let (c, w) = counter();
        let mut f = b.acquire();
        assert!(poll(&mut f, &w).is_pending());
        b.set_limit(1).unwrap();
        drop(p1);
        assert_eq!(wakes(&c), 0, "1 in flight = limit 1");
        drop(p2);
        assert_eq!(wakes(&c), 1);
        assert!(matches!(poll(&mut f, &w), Poll::Ready(Ok(_))));
    }

    #[test]
    fn a_repolled_future_is_woken_through_its_latest_waker() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        let (old, w_old) = counter();
        let (new, w_new) = counter();
        let mut f = b.acquire();
        assert!(poll(&mut f, &w_old).is_pending());
        assert!(poll(&mut f, &w_new).is_pending());
        drop(p);
        assert_eq!((wakes(&old), wakes(&new)), (0, 1));
        assert!(matches!(poll(&mut f, &w_new), Poll::Ready(Ok(_))));
    }

    #[test]
    fn acquire_until_gives_up_when_the_timer_fires() {
        let clock = ManualClock::new();
        let b = Bulkhead::builder()
            .limit(1)
            .clock(clock.clone())
            .build()
            .unwrap();
        let p = b.try_acquire().unwrap();
        let fired = StdArc::new(crate::sync::AtomicBool::new(false));
        let timer = {
            let fired = fired.clone();
            std::future::poll_fn(move |_| {
                if fired.load(Ordering::SeqCst) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
        };
        let (_c, w) = counter();
        let mut f = Box::pin(b.acquire_until(timer));
        assert!(f.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
        assert_eq!(b.metrics().waiting, 1);
        clock.advance(Duration::from_millis(5));
        fired.store(true, Ordering::SeqCst);
        let Poll::Ready(Err(e)) = f.as_mut().poll(&mut Context::from_waker(&w)) else {
            panic!("the timer fired")
        };
        assert_eq!(
            e,
            BulkheadError::TimedOut {
                waited: Duration::from_millis(5)
            }
        );
        assert_eq!(b.metrics().waiting, 0);
        drop(f);
        drop(p);
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn owned_future_and_permit_cross_threads() {
        let b = StdArc::new(bulkhead(1));
        let p = b.try_acquire_owned().unwrap();
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || futures::executor::block_on(b.acquire_owned()).map(drop))
        };
        while b.metrics().waiting == 0 {
            std::thread::yield_now();
        }
        std::thread::spawn(move || drop(p)).join().unwrap();
        waiter.join().unwrap().unwrap();
        assert_eq!(b.metrics().in_flight, 0);
    }

    fn wait_until(b: &Bulkhead<impl Clock>, waiting: usize) {
        while b.metrics().waiting != waiting {
            std::thread::yield_now();
        }
    }

    #[test]
    fn blocking_waiters_are_served_fifo() {
        let b = bulkhead(1);
        let order = std::sync::Mutex::new(Vec::new());
        let p = b.try_acquire().unwrap();
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for id in 0..3 {
                let (b, order) = (&b, &order);
                handles.push(s.spawn(move || {
                    let p = b
                        .blocking_acquire_timeout(Duration::from_secs(3600))
                        .unwrap();
                    order.lock().unwrap().push(id);
                    drop(p);
                }));
                wait_until(b, id + 1);
            }
            drop(p);
            for h in handles {
                h.join().unwrap();
            }
        });
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        assert_eq!(b.metrics().in_flight, 0);
    }

    #[test]
    fn a_blocking_wait_times_out_by_the_bulkheads_clock() {
        let clock = ManualClock::new();
        let b = Bulkhead::builder()
            .name("slow")
            .limit(1)
            .clock(clock.clone())
            .build()
            .unwrap();
        let p = b.try_acquire().unwrap();
        std::thread::scope(|s| {
            let h = s.spawn(|| b.blocking_acquire_timeout(Duration::from_secs(1)).map(drop));
            wait_until(&b, 1);
            clock.advance(Duration::from_secs(2));
            h.thread().unpark();
            let e = h.join().unwrap().unwrap_err();
            assert_eq!(
                e,
                BulkheadError::TimedOut {
                    waited: Duration::from_secs(2)
                }
            );
        });
        assert_eq!(b.metrics().waiting, 0);
        drop(p);
        assert!(
            b.try_acquire().is_ok(),
            "the timed-out waiter left the queue"
        );
    }

    #[test]
    fn close_wakes_blocked_threads() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        b.blocking_acquire_timeout(Duration::from_secs(3600))
                            .map(drop)
                    })
                })
                .collect();
            wait_until(&b, 2);
            b.close();
            for h in hs {
                assert!(h.join().unwrap().unwrap_err().is_closed());
            }
        });
        drop(p);
    }

    #[test]
    fn threads_and_tasks_share_one_fifo() {
        let b = bulkhead(1);
        let p = b.try_acquire().unwrap();
        let (c, w) = counter();
        let mut f = b.acquire();
        assert!(poll(&mut f, &w).is_pending());
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                b.blocking_acquire_timeout(Duration::from_secs(3600))
                    .map(drop)
            });
            wait_until(&b, 2);
            drop(p); // to the task, queued first
            assert_eq!(wakes(&c), 1);
            let Poll::Ready(Ok(pf)) = poll(&mut f, &w) else {
                panic!("the task was first")
            };
            drop(pf); // then to the thread
            h.join().unwrap().unwrap();
        });
        assert_eq!(b.metrics().in_flight, 0);
    }
}
