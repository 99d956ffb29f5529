//! The slow path: waiting for a slot (bulkhead) or for the last in-flight request (drainer).
//!
//! Only waiting touches this module; the fast paths of the primitives never do. A primitive keeps
//! a "waiters present" bit in its packed word, so a release with nobody waiting skips the queue's
//! lock altogether.
//!
//! - [`queue`]: a FIFO of waiters served by direct hand-off (the bulkhead).
//! - [`notify`]: a one-shot broadcast that wakes every waiter exactly once (the drainer).
//! - [`timer`]: a deadline for an async wait, made only once the wait has to queue.
//!
//! A waiter is a parked thread or an async task; [`Waiter`] wakes either.

pub(crate) mod notify;
pub(crate) mod queue;
pub(crate) mod timer;

use crate::sync::Thread;
use std::task::Waker;

/// Something to wake: a thread blocked in a timed wait, or a task polling a future.
#[derive(Debug, Clone)]
pub(crate) enum Waiter {
    /// A thread parked in `park_timeout`; woken by `unpark`.
    Thread(Thread),
    /// An async task; woken through its waker.
    Task(Waker),
}

impl Waiter {
    /// The current thread, as a waiter.
    pub(crate) fn current_thread() -> Self {
        Waiter::Thread(crate::sync::current())
    }

    /// Wakes the waiter. Waking one that is no longer waiting is harmless.
    pub(crate) fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
    }

    /// Whether waking `self` would wake the same task as waking `waker` (so a re-polled future
    /// can skip replacing its waker).
    pub(crate) fn will_wake(&self, waker: &Waker) -> bool {
        matches!(self, Waiter::Task(w) if w.will_wake(waker))
    }
}
