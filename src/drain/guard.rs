//! The drainer's guards: admitted work, borrowed or owned.

use super::word::DRAINING;
use super::{Core, DrainRefused, Drainer};
use crate::clock::{Clock, SystemClock};
use crate::sync::Ordering;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// Admitted work: alive while the work runs. Dropping it (also while unwinding, or when a future
/// holding it is dropped) ends the work; the last drop while draining completes the drain.
///
/// Cloning extends admitted work and is allowed during a drain (only new admissions are
/// refused).
///
/// ```
/// use resile::drain::Drainer;
/// let d = Drainer::new();
/// let g = d.enter().unwrap();
/// d.start_draining();
/// let sub_task = g.clone(); // still allowed: the work was admitted before the drain
/// drop(g);
/// assert!(!d.is_drained());
/// drop(sub_task);
/// assert!(d.is_drained());
/// ```
#[must_use = "the work ends when the guard is dropped"]
pub struct DrainGuard<'a, C: Clock = SystemClock> {
    pub(super) drainer: &'a Drainer<C>,
}

impl<'a, C: Clock> DrainGuard<'a, C> {
    /// The drainer this guard counts in.
    pub fn drainer(&self) -> &'a Drainer<C> {
        self.drainer
    }

    /// A clone, or [`DrainRefused::Full`] if the count is at [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT).
    pub fn try_clone(&self) -> Result<Self, DrainRefused> {
        // SAFETY: `self` is a live guard of this core.
        unsafe { Core::clone_in(self.drainer.core) }.map(|()| DrainGuard {
            drainer: self.drainer,
        })
    }
}

impl<C: Clock> Clone for DrainGuard<'_, C> {
    /// # Panics
    /// If [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) guards are alive (like `Arc` on refcount overflow).
    fn clone(&self) -> Self {
        self.try_clone().expect("drain guard count overflow")
    }
}

impl<C: Clock> Drop for DrainGuard<'_, C> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard owns one unit; the borrowed drainer keeps the core alive.
        unsafe { Core::release(self.drainer.core) };
    }
}

impl<C: Clock> fmt::Debug for DrainGuard<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainGuard").finish_non_exhaustive()
    }
}

/// A [`DrainGuard`] that borrows nothing, for work that moves into a spawned task or thread, or
/// into a response body. See [`Drainer::enter_owned`].
///
/// It is counted in the drainer's word and nowhere else: no reference count of its own. The
/// drainer's state lives until the drainer and every owned guard are gone.
///
/// ```
/// use resile::drain::Drainer;
/// use std::sync::Arc;
/// let d = Arc::new(Drainer::new());
/// let g = d.enter_owned().unwrap();
/// let g2 = g.clone();
/// assert_eq!(d.in_flight(), 2);
/// d.start_draining();
/// assert!(g.is_draining()); // long-lived work can watch for the drain through its guard
/// drop((g, g2));
/// assert!(d.is_drained());
/// ```
#[must_use = "the work ends when the guard is dropped"]
pub struct OwnedDrainGuard<C: Clock = SystemClock> {
    /// Kept alive by this guard's unit in the word (see [`Core`]).
    pub(super) core: NonNull<Core<C>>,
    pub(super) _owns: PhantomData<Core<C>>,
}

// SAFETY: the guard only releases its unit and reads the word, through atomics; the core it
// points to is `Send + Sync` (see `Drainer`), and freed only by the last of its users.
unsafe impl<C: Clock> Send for OwnedDrainGuard<C> {}
// SAFETY: as above; `&OwnedDrainGuard` only reads the word.
unsafe impl<C: Clock> Sync for OwnedDrainGuard<C> {}

impl<C: Clock> OwnedDrainGuard<C> {
    /// Whether the drainer this guard counts in has started draining.
    pub fn is_draining(&self) -> bool {
        // SAFETY: this guard's unit keeps the core alive.
        let core = unsafe { self.core.as_ref() };
        core.word.load(Ordering::Acquire) & DRAINING != 0
    }

    /// A clone, or [`DrainRefused::Full`] if the count is at [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT).
    pub fn try_clone(&self) -> Result<Self, DrainRefused> {
        // SAFETY: `self` is a live guard of this core.
        unsafe { Core::clone_in(self.core) }.map(|()| OwnedDrainGuard {
            core: self.core,
            _owns: PhantomData,
        })
    }
}

impl<C: Clock> Clone for OwnedDrainGuard<C> {
    /// # Panics
    /// If [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) guards are alive (like `Arc` on refcount overflow).
    fn clone(&self) -> Self {
        self.try_clone().expect("drain guard count overflow")
    }
}

impl<C: Clock> Drop for OwnedDrainGuard<C> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard owns one unit and does not touch the core afterwards.
        unsafe { Core::release(self.core) };
    }
}

impl<C: Clock> fmt::Debug for OwnedDrainGuard<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedDrainGuard").finish_non_exhaustive()
    }
}
