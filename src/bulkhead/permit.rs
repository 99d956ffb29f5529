//! The bulkhead's permits: RAII guards of one slot, borrowed or owned.

use super::{Bulkhead, Core};
use crate::clock::{Clock, SystemClock};
use std::fmt;
use std::marker::PhantomData;
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
}

impl<C: Clock> BulkheadPermit<'_, C> {
    /// The bulkhead this permit belongs to.
    pub fn bulkhead(&self) -> &Bulkhead<C> {
        self.bulkhead
    }
}

impl<C: Clock> Drop for BulkheadPermit<'_, C> {
    #[inline]
    fn drop(&mut self) {
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
}

impl<C: Clock> Drop for OwnedBulkheadPermit<C> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the permit owns one slot and does not touch the core afterwards.
        unsafe { Core::release_owned(self.core) };
    }
}

impl<C: Clock> fmt::Debug for OwnedBulkheadPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBulkheadPermit")
            .field("bulkhead", &self.bulkhead_name())
            .finish()
    }
}
