//! What the unit tests share: a waker that counts its wakes, an error that wraps another, and a
//! clock that counts its drops.

use crate::clock::Clock;
use crate::sync::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

/// The count of a [`counting_waker`]'s wakes.
#[derive(Debug, Default)]
pub(crate) struct WakeCount(AtomicUsize);

impl WakeCount {
    /// How many times the waker (or a clone) was woken.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker and the count of its wakes.
pub(crate) fn counting_waker() -> (Arc<WakeCount>, Waker) {
    let count = Arc::new(WakeCount::default());
    (count.clone(), Waker::from(count))
}

/// An error with another as its source, as tower's `Buffer` wraps its inner error.
#[cfg(any(feature = "http", feature = "tower-retry"))]
#[derive(Debug)]
pub(crate) struct Wrapped(pub(crate) Box<dyn std::error::Error + Send + Sync>);

#[cfg(any(feature = "http", feature = "tower-retry"))]
impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wrapped: {}", self.0)
    }
}

#[cfg(any(feature = "http", feature = "tower-retry"))]
impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// A clock that reads 0 and counts its drops: a primitive drops its clock when it frees its
/// shared state, so tests read the count to check when (and how often) that happens.
#[derive(Clone)]
pub(crate) struct DropCountingClock(Arc<AtomicUsize>);

impl DropCountingClock {
    /// A clock and the count of its drops (and of its clones' drops).
    pub(crate) fn new() -> (Self, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        (Self(drops.clone()), drops)
    }
}

impl Clock for DropCountingClock {
    fn now(&self) -> u64 {
        0
    }
}

impl Drop for DropCountingClock {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}
