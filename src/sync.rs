//! The synchronisation facade: the only module that names atomics, locks, thread parking and
//! spin hints.
//!
//! Under `--cfg resile_loom` every item comes from [loom](https://docs.rs/loom), so the loom models
//! in `loom-tests/` explore every interleaving of the code that uses them. Otherwise the items come
//! from `core`/`std`, with [portable-atomic](https://docs.rs/portable-atomic) supplying `AtomicU64`
//! on targets that have no native 64-bit atomics.
//!
//! Rules for the rest of the crate:
//! - import atomics, `Arc`, `Mutex`, `Condvar` and thread functions from here, never from `std`;
//! - every spin-*wait* loop (one that waits for another thread rather than retrying a failed CAS)
//!   calls [`spin_loop`], which loom turns into a yield so its models terminate;
//! - loom atomics have no `const fn new`: no `static` atomics anywhere.

#![allow(unused_imports, dead_code, unreachable_pub)]

#[cfg(not(resile_loom))]
mod imp {
    #[cfg(not(target_has_atomic = "64"))]
    pub use portable_atomic::AtomicU64;
    #[cfg(target_has_atomic = "64")]
    pub use std::sync::atomic::AtomicU64;
    pub use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering, fence};
    pub use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
    pub use std::thread::{Thread, current, park, park_timeout, yield_now};

    /// A hint that this thread is busy-waiting for another one.
    #[inline]
    pub fn spin_loop() {
        std::hint::spin_loop();
    }
}

#[cfg(resile_loom)]
mod imp {
    pub use loom::sync::atomic::{
        AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };
    pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub use loom::thread::{Thread, current, park, yield_now};

    /// loom has no timed park: a timed park is a plain park, and the model must provide the
    /// unpark (a model that relies on the timeout firing is not a valid loom model).
    pub fn park_timeout(_dur: std::time::Duration) {
        loom::thread::park();
    }

    /// Under loom a busy-wait must yield, or the model never terminates (loom#162).
    #[inline]
    pub fn spin_loop() {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;

/// Handles to whole primitives (`Arc<Drainer>` and its `Weak` child links): std's in every build,
/// because loom's `Arc` has no `Weak`. Only the refcount is unmodelled; every word is loom's.
pub(crate) use std::sync::{Arc as StdArc, Weak as StdWeak};

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before anything that can panic, so a poisoned lock still guards valid data.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
