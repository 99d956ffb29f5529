//! A FIFO of waiters served by direct hand-off (the bulkhead's slow path).
//!
//! # Implementation details
//!
//! The queue is a plain value guarded by its owner's mutex: every method takes `&mut self`, so
//! every change to the queue and to the waiters' [`Slot`]s happens inside one critical section.
//! Only waiting touches it; a primitive's fast path never locks it.
//!
//! Each waiter gets a *ticket* (a sequence number) and a shared [`Slot`]. Tickets index a
//! `VecDeque<Option<Entry>>` whose front holds ticket `head`, so lookup and removal by ticket are
//! O(1): a waiter that leaves (timed out, future dropped) becomes a hole (`None`) that is trimmed
//! once it reaches either end. Order of service is ticket order: strict FIFO.
//!
//! A [`Slot`] tells the waiter what became of it without taking the lock:
//!
//! | state     | set by                                           | meaning for the waiter                       |
//! |-----------|--------------------------------------------------|----------------------------------------------|
//! | `WAITING` | [`Queue::push`]                                  | still queued                                 |
//! | `GRANTED` | [`Queue::grant_front`] (under the lock)          | it owns a slot; it must use or give it back  |
//! | `CLOSED`  | [`Queue::close_all`] (under the lock)            | refused; it owns nothing                     |
//!
//! A slot leaves `WAITING` at most once, and only while its entry is in the queue, so a waiter
//! that holds the lock and sees `WAITING` may remove its entry and know that nothing was handed
//! to it. The owner stores `GRANTED`/`CLOSED` with `Release` and the waiter loads with
//! `Acquire`, so everything the granting thread did (including the previous holder's work,
//! which reached it through the owner's word) happens before the waiter uses its slot.
//!
//! Allocation: one `Arc<Slot>` per wait, and the deque's growth; both on the waiting path only.

use super::Waiter;
use crate::sync::{Arc, AtomicU8, Ordering};
use std::collections::VecDeque;
use std::task::Waker;

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const CLOSED: u8 = 2;

/// What became of a waiter: read by the waiter, written only by the [`Queue`] under its lock.
#[derive(Debug)]
pub(crate) struct Slot {
    state: AtomicU8,
}

/// The state of a waiter's [`Slot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Still queued.
    Waiting,
    /// A slot was handed to the waiter: it owns it.
    Granted,
    /// The queue was closed: the waiter was refused.
    Closed,
}

impl Slot {
    /// The current state (`Acquire`: pairs with the `Release` store of a grant or close).
    #[inline]
    pub(crate) fn state(&self) -> SlotState {
        match self.state.load(Ordering::Acquire) {
            WAITING => SlotState::Waiting,
            GRANTED => SlotState::Granted,
            _ => SlotState::Closed,
        }
    }
}

/// A waiter's place in the queue.
#[derive(Debug)]
struct Entry {
    slot: Arc<Slot>,
    waiter: Waiter,
}

/// A FIFO of waiters, keyed by ticket. Guard it with a mutex; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// The ticket of `entries[0]`.
    head: u64,
    /// Live entries and holes (`None`); never starts or ends with a hole.
    entries: VecDeque<Option<Entry>>,
    /// The number of live entries.
    len: usize,
}

impl Queue {
    /// An empty queue (allocates nothing).
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The number of waiters queued.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody is queued.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `waiter` at the back; returns its ticket and its slot (in state `Waiting`).
    pub(crate) fn push(&mut self, waiter: Waiter) -> (u64, Arc<Slot>) {
        let ticket = self.head + self.entries.len() as u64;
        let slot = Arc::new(Slot {
            state: AtomicU8::new(WAITING),
        });
        self.entries.push_back(Some(Entry {
            slot: slot.clone(),
            waiter,
        }));
        self.len += 1;
        (ticket, slot)
    }

    fn index(&self, ticket: u64) -> Option<usize> {
        let i = usize::try_from(ticket.checked_sub(self.head)?).ok()?;
        (i < self.entries.len()).then_some(i)
    }

    fn trim(&mut self) {
        while let Some(None) = self.entries.front() {
            self.entries.pop_front();
            self.head += 1;
        }
        while let Some(None) = self.entries.back() {
            self.entries.pop_back();
        }
    }

    /// Removes the waiter holding `ticket` if it is still queued (its slot is then still
    /// `Waiting`: it was handed nothing). Returns whether it was there.
    pub(crate) fn remove(&mut self, ticket: u64) -> bool {
        let Some(i) = self.index(ticket) else {
            return false;
        };
        let removed = self.entries[i].take().is_some();
        if removed {
            self.len -= 1;
            self.trim();
        }
        removed
    }

    /// Replaces the waker of the waiter holding `ticket` unless it would wake the same task.
    /// Returns whether the waiter is still queued.
    pub(crate) fn set_waker(&mut self, ticket: u64, waker: &Waker) -> bool {
        let Some(Some(entry)) = self.index(ticket).map(|i| &mut self.entries[i]) else {
            return false;
        };
        if !entry.waiter.will_wake(waker) {
            entry.waiter = Waiter::Task(waker.clone());
        }
        true
    }

    /// Hands a slot to the waiter at the front: marks it `Granted` and removes it. Returns its
    /// ticket and what to wake (wake it after unlocking), or `None` if nobody is queued.
    pub(crate) fn grant_front(&mut self) -> Option<(u64, Waiter)> {
        let entry = self.entries.pop_front()??;
        let ticket = self.head;
        self.head += 1;
        self.len -= 1;
        self.trim();
        entry.slot.state.store(GRANTED, Ordering::Release);
        Some((ticket, entry.waiter))
    }

    /// Refuses every queued waiter: marks each `Closed`, empties the queue, and collects what to
    /// wake into `wakes`.
    pub(crate) fn close_all(&mut self, wakes: &mut WakeList) {
        // Tickets stay unique: a refused waiter's ticket is never handed out again.
        self.head += self.entries.len() as u64;
        for entry in self.entries.drain(..).flatten() {
            entry.slot.state.store(CLOSED, Ordering::Release);
            wakes.push(entry.waiter);
        }
        self.len = 0;
    }
}

/// Waiters to wake once the lock is released (waking under the lock would make the woken run
/// straight into it). Holds one waiter without allocating: a release hands off one slot.
#[derive(Debug, Default)]
pub(crate) struct WakeList {
    first: Option<Waiter>,
    rest: Vec<Waiter>,
}

impl WakeList {
    /// An empty list (allocates nothing).
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a waiter to wake.
    pub(crate) fn push(&mut self, w: Waiter) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    /// Wakes every waiter collected, in order.
    pub(crate) fn wake_all(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        for w in self.rest {
            w.wake();
        }
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::test_support::{WakeCount, counting_waker};

    fn task() -> (std::sync::Arc<WakeCount>, Waiter) {
        let (c, w) = counting_waker();
        (c, Waiter::Task(w))
    }

    #[test]
    fn serves_in_ticket_order_skipping_removed_waiters() {
        let mut q = Queue::new();
        let (c0, w0) = task();
        let (_c1, w1) = task();
        let (c2, w2) = task();
        let (t0, s0) = q.push(w0);
        let (t1, s1) = q.push(w1);
        let (t2, s2) = q.push(w2);
        assert_eq!((t0, t1, t2), (0, 1, 2));
        assert!(q.remove(t1));
        assert!(!q.remove(t1));
        assert_eq!(q.len(), 2);

        let (t, w) = q.grant_front().unwrap();
        assert_eq!(t, t0);
        assert_eq!(s0.state(), SlotState::Granted);
        assert_eq!(s1.state(), SlotState::Waiting);
        w.wake();
        assert_eq!(c0.get(), 1);

        let (t, _) = q.grant_front().unwrap();
        assert_eq!(t, t2);
        assert_eq!(s2.state(), SlotState::Granted);
        assert!(q.grant_front().is_none());
        assert!(q.is_empty());
        assert_eq!(c2.get(), 0);
        // A granted waiter is no longer in the queue.
        assert!(!q.remove(t2));
    }

    #[test]
    fn holes_are_trimmed_from_both_ends() {
        let mut q = Queue::new();
        let tickets: Vec<u64> = (0..4).map(|_| q.push(task().1).0).collect();
        assert!(q.remove(tickets[0]));
        assert!(q.remove(tickets[3]));
        assert_eq!(q.entries.len(), 2);
        assert_eq!(q.head, 1);
        let (t, _) = q.push(task().1);
        assert_eq!(
            t, 3,
            "a ticket is never reused while an older one is queued"
        );
        assert!(q.remove(tickets[2]));
        assert_eq!(q.grant_front().unwrap().0, 1);
        assert_eq!(q.grant_front().unwrap().0, 3);
        assert!(q.entries.is_empty());
    }

    #[test]
    fn set_waker_replaces_only_a_different_task() {
        let mut q = Queue::new();
        let (c0, w0) = task();
        let (t0, _s0) = q.push(w0);
        let (c1, w1) = task();
        let Waiter::Task(waker1) = w1 else {
            unreachable!()
        };
        assert!(q.set_waker(t0, &waker1));
        q.grant_front().unwrap().1.wake();
        assert_eq!(c0.get(), 0);
        assert_eq!(c1.get(), 1);
        assert!(!q.set_waker(t0, &waker1));
    }

    #[test]
    fn close_all_refuses_everyone_and_wakes_them() {
        let mut q = Queue::new();
        let (c0, w0) = task();
        let (c1, w1) = task();
        let (_, s0) = q.push(w0);
        let (_, s1) = q.push(w1);
        let mut wakes = WakeList::new();
        q.close_all(&mut wakes);
        wakes.wake_all();
        assert!(q.is_empty());
        assert_eq!(s0.state(), SlotState::Closed);
        assert_eq!(s1.state(), SlotState::Closed);
        assert_eq!(c0.get(), 1);
        assert_eq!(c1.get(), 1);
    }
}
