//! A one-shot broadcast: wakes every waiter exactly once (the drainer's slow path).
//!
//! A [`Notify`] is a small mutex around a slab of [`Waiter`]s plus a `fired` flag. The flag is
//! read and written only under the lock, which is what makes it lossless:
//!
//! - [`Notify::register`] takes the lock, and either sees `fired` (the caller must not wait) or
//!   stores its waiter before [`Notify::fire`] can take the list;
//! - [`Notify::fire`] sets `fired` and takes the whole list under the lock, then wakes every
//!   waiter after releasing it (so a woken thread never contends with the waker for the lock).
//!
//! So whatever the interleaving of a registration and the fire, the waiter either learns at
//! registration that the event already happened or is woken by the fire: no lost wakeup. `fire`
//! acts once: later calls find `fired` set and wake nobody, so each waiter is woken at most once
//! by the broadcast.
//!
//! The primitive records its event in its own atomic word *before* calling `fire`, and its waiters
//! check that word before registering, so the lock is touched only by waiters and by the one
//! transition that fires.

use super::Waiter;
use crate::sync::{Mutex, lock};
use std::task::Waker;

/// A one-shot broadcast to parked threads and async tasks.
#[derive(Debug, Default)]
pub(crate) struct Notify {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    fired: bool,
    /// A slab: `slots[key]` is a registered waiter or a free slot listed in `free`.
    slots: Vec<Option<Waiter>>,
    free: Vec<usize>,
}

/// What [`Notify::register`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registration {
    /// The event already happened: do not wait.
    Fired,
    /// The waiter is registered under this key; the fire will wake it.
    Waiting(usize),
}

impl Notify {
    /// A broadcast that has not fired.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether the broadcast has fired (takes the lock; tests only: primitives read their word).
    #[cfg(test)]
    pub(crate) fn is_fired(&self) -> bool {
        lock(&self.inner).fired
    }

    /// Registers `waiter`, or replaces the waiter stored under `key` (a re-polled future, a thread
    /// re-parking after a spurious wakeup). Returns [`Registration::Fired`] if the broadcast already
    /// fired; the slot under `key`, if any, is then already gone.
    pub(crate) fn register(&self, key: Option<usize>, waiter: Waiter) -> Registration {
        let mut g = lock(&self.inner);
        if g.fired {
            return Registration::Fired;
        }
        if let Some(k) = key {
            g.slots[k] = Some(waiter);
            return Registration::Waiting(k);
        }
        let k = match g.free.pop() {
            Some(k) => {
                g.slots[k] = Some(waiter);
                k
            }
            None => {
                g.slots.push(Some(waiter));
                g.slots.len() - 1
            }
        };
        Registration::Waiting(k)
    }

    /// Registers a task's waker, skipping the replacement if the stored waker would wake the same
    /// task.
    pub(crate) fn register_waker(&self, key: Option<usize>, waker: &Waker) -> Registration {
        if let Some(k) = key {
            let g = lock(&self.inner);
            if g.fired {
                return Registration::Fired;
            }
            if matches!(&g.slots[k], Some(w) if w.will_wake(waker)) {
                return Registration::Waiting(k);
            }
        }
        self.register(key, Waiter::Task(waker.clone()))
    }

    /// Removes the waiter registered under `key` (a timed-out wait, a dropped future). Harmless
    /// after the broadcast fired.
    pub(crate) fn deregister(&self, key: usize) {
        let mut g = lock(&self.inner);
        if g.fired {
            return;
        }
        if g.slots[key].take().is_some() {
            g.free.push(key);
        }
    }

    /// Fires the broadcast: wakes every registered waiter exactly once. Returns `true` if this call
    /// fired it, `false` if it had already fired (and then wakes nobody).
    pub(crate) fn fire(&self) -> bool {
        let slots = {
            let mut g = lock(&self.inner);
            if g.fired {
                return false;
            }
            g.fired = true;
            g.free = Vec::new();
            std::mem::take(&mut g.slots)
        };
        for w in slots.into_iter().flatten() {
            w.wake();
        }
        true
    }

    /// The number of slots ever allocated (tests: deregistration reuses them).
    #[cfg(test)]
    pub(crate) fn slots_for_tests(&self) -> usize {
        lock(&self.inner).slots.len()
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::test_support::counting_waker;

    #[test]
    fn fire_wakes_every_registered_waiter_once() {
        let n = Notify::new();
        let (c1, w1) = counting_waker();
        let (c2, w2) = counting_waker();
        let k1 = n.register_waker(None, &w1);
        let k2 = n.register_waker(None, &w2);
        assert!(matches!(k1, Registration::Waiting(_)));
        assert_ne!(k1, k2);
        assert!(n.fire());
        assert!(!n.fire(), "a second fire is a no-op");
        assert_eq!(c1.get(), 1);
        assert_eq!(c2.get(), 1);
        assert!(n.is_fired());
    }

    #[test]
    fn registering_after_the_fire_reports_fired() {
        let n = Notify::new();
        n.fire();
        let (c, w) = counting_waker();
        assert_eq!(n.register_waker(None, &w), Registration::Fired);
        assert_eq!(c.get(), 0);
    }

    #[test]
    fn deregistered_waiters_are_not_woken_and_slots_are_reused() {
        let n = Notify::new();
        let (c1, w1) = counting_waker();
        let Registration::Waiting(k1) = n.register_waker(None, &w1) else {
            panic!("not fired")
        };
        n.deregister(k1);
        let (c2, w2) = counting_waker();
        assert_eq!(n.register_waker(None, &w2), Registration::Waiting(k1));
        n.fire();
        assert_eq!(c1.get(), 0);
        assert_eq!(c2.get(), 1);
    }

    #[test]
    fn re_registering_replaces_the_waker() {
        let n = Notify::new();
        let (c1, w1) = counting_waker();
        let (c2, w2) = counting_waker();
        let Registration::Waiting(k) = n.register_waker(None, &w1) else {
            panic!("not fired")
        };
        assert_eq!(n.register_waker(Some(k), &w1), Registration::Waiting(k));
        assert_eq!(n.register_waker(Some(k), &w2), Registration::Waiting(k));
        n.fire();
        assert_eq!(c1.get(), 0);
        assert_eq!(c2.get(), 1);
    }
}
