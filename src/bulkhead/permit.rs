//! The bulkhead's permits: RAII guards of one slot, borrowed or owned.

use super::controller::Outcome;
use super::{Bulkhead, Core, Stamp};
use crate::classify::Verdict;
use crate::clock::{Clock, SystemClock};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// A slot in a [`Bulkhead`], released when dropped (also while unwinding).
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// let b = Bulkhead::builder().limit(1).build().unwrap();
/// {
///     let _permit = b.try_acquire().unwrap();
///     assert_eq!(b.metrics().in_flight, 1);
/// }
/// assert_eq!(b.metrics().in_flight, 0);
/// ```
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct BulkheadPermit<'a, C: Clock = SystemClock> {
    pub(super) bulkhead: &'a Bulkhead<C>,
    /// When the slot was granted and with how many calls in flight (adaptive bulkheads only).
    pub(super) stamp: Stamp,
}

impl<C: Clock> BulkheadPermit<'_, C> {
    /// The bulkhead this permit belongs to.
    pub fn bulkhead(&self) -> &Bulkhead<C> {
        self.bulkhead
    }

    /// Releases the slot, reporting a success whose latency runs from the grant to now (for an
    /// [adaptive](super::adaptive) bulkhead; on a static one this is a plain release).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// let b = Bulkhead::builder().limit(1).build().unwrap();
    /// b.try_acquire().unwrap().success();
    /// assert_eq!(b.metrics().in_flight, 0);
    /// ```
    pub fn success(self) {
        self.finish(Outcome::Success);
    }

    /// Releases the slot, reporting the call dropped: it timed out, or the dependency refused or
    /// was overloaded. Adaptive algorithms back off on drops.
    pub fn dropped(self) {
        self.finish(Outcome::Dropped);
    }

    /// Releases the slot reporting nothing: the call says nothing of the dependency's capacity
    /// (a client error, a cache hit).
    pub fn ignore(self) {
        self.finish(Outcome::Ignored);
    }

    /// Releases the slot reporting a classified result: a [`Verdict::Success`] as
    /// [`success`](Self::success), a [`Verdict::Failure`] as [`dropped`](Self::dropped) (for a
    /// concurrency limit a failed call is a sign of overload: classify a failure that says
    /// nothing of the dependency's capacity, such as a client error, as [`Verdict::Ignore`]),
    /// and a [`Verdict::Ignore`] as [`ignore`](Self::ignore).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::bulkhead::adaptive::Aimd;
    /// use resile::classify::Verdict;
    /// use resile::clock::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let b = Bulkhead::builder()
    ///     .adaptive(Aimd::default().initial_limit(20).min_limit(5))
    ///     .adaptive_min_samples(1)
    ///     .clock(clock.clone())
    ///     .build()?;
    /// clock.advance(Duration::from_secs(1));
    /// b.try_acquire()?.record(Verdict::Failure); // a drop closes the window: the limit backs off
    /// assert_eq!(b.limit(), 18);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record(self, verdict: Verdict) {
        self.finish(Outcome::from(verdict));
    }

    fn finish(self, outcome: Outcome) {
        let this = ManuallyDrop::new(self);
        this.bulkhead.core().report(this.stamp, Some(outcome));
        this.bulkhead.release();
    }
}

impl<C: Clock> Drop for BulkheadPermit<'_, C> {
    #[inline]
    fn drop(&mut self) {
        self.bulkhead.core().report(self.stamp, None);
        self.bulkhead.release();
    }
}

impl<C: Clock> fmt::Debug for BulkheadPermit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit")
            .field("bulkhead", &self.bulkhead.core().name)
            .finish()
    }
}

/// A slot that borrows nothing (`'static`, `Send`): for spawned tasks and `tower` services.
/// Released when dropped.
///
/// It is counted in the bulkhead's word and nowhere else: no reference count of its own. The
/// bulkhead's state lives until the bulkhead and every owned permit are gone.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use std::sync::Arc;
/// let b = Arc::new(Bulkhead::builder().name("db").limit(2).build().unwrap());
/// let p = b.try_acquire_owned().unwrap();
/// let kept = b.try_acquire_owned().unwrap();
/// std::thread::spawn(move || drop(p)).join().unwrap();
/// assert_eq!(b.metrics().in_flight, 1);
/// drop(b); // the permit outlives the bulkhead's last `Arc`
/// assert_eq!(kept.bulkhead_name(), "db");
/// drop(kept);
/// ```
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct OwnedBulkheadPermit<C: Clock = SystemClock> {
    /// Kept alive by this permit's slot in the word (see `Core`).
    pub(super) core: NonNull<Core<C>>,
    /// When the slot was granted and with how many calls in flight (adaptive bulkheads only).
    pub(super) stamp: Stamp,
    pub(super) _owns: PhantomData<Core<C>>,
}

// SAFETY: the permit only releases its slot (atomics, and the queue's mutex) and reads the
// name; the core is `Send + Sync` (see `Bulkhead`) and freed only by the last of its users.
unsafe impl<C: Clock> Send for OwnedBulkheadPermit<C> {}
// SAFETY: as above; `&OwnedBulkheadPermit` only reads the name.
unsafe impl<C: Clock> Sync for OwnedBulkheadPermit<C> {}

impl<C: Clock> OwnedBulkheadPermit<C> {
    /// The name of the bulkhead this permit belongs to.
    pub fn bulkhead_name(&self) -> &str {
        // SAFETY: this permit's slot keeps the core alive while `self` is borrowed.
        &unsafe { self.core.as_ref() }.name
    }

    /// Releases the slot reporting a success, as [`BulkheadPermit::success`].
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use std::sync::Arc;
    /// let b = Arc::new(Bulkhead::builder().limit(1).build().unwrap());
    /// b.try_acquire_owned().unwrap().success();
    /// assert_eq!(b.metrics().in_flight, 0);
    /// ```
    pub fn success(self) {
        self.finish(Outcome::Success);
    }

    /// Releases the slot reporting a drop, as [`BulkheadPermit::dropped`].
    pub fn dropped(self) {
        self.finish(Outcome::Dropped);
    }

    /// Releases the slot reporting nothing, as [`BulkheadPermit::ignore`].
    pub fn ignore(self) {
        self.finish(Outcome::Ignored);
    }

    /// Releases the slot reporting a classified result, as [`BulkheadPermit::record`].
    pub fn record(self, verdict: Verdict) {
        self.finish(Outcome::from(verdict));
    }

    fn finish(self, outcome: Outcome) {
        let this = ManuallyDrop::new(self);
        // SAFETY: the permit owns one slot (kept alive until released) and does not touch the
        // core after `release_owned`; `ManuallyDrop` keeps `Drop` from releasing it again.
        unsafe {
            this.core.as_ref().report(this.stamp, Some(outcome));
            Core::release_owned(this.core);
        }
    }
}

impl<C: Clock> Drop for OwnedBulkheadPermit<C> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the permit owns one slot, so the core is alive while it reports, and it does
        // not touch the core after `release_owned`.
        unsafe {
            self.core.as_ref().report(self.stamp, None);
            Core::release_owned(self.core);
        }
    }
}

impl<C: Clock> fmt::Debug for OwnedBulkheadPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBulkheadPermit")
            .field("bulkhead", &self.bulkhead_name())
            .finish()
    }
}
