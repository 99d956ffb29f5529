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
//! - loom atomics have no `const fn new`: no `static` atomics anywhere. The one exception is
//!   [`thread_stripe`]'s std counter, which only hashes threads onto stripes and guards no data.

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

/// The most stripes a [`StripedCounters`](crate::counter::StripedCounters) uses.
pub(crate) const MAX_STRIPES: usize = 32;

/// How many stripes a striped counter gets: twice the available parallelism rounded up to a
/// power of two, capped at [`MAX_STRIPES`]. Twice, because servers often run more threads than
/// cores (blocking pools, thread-per-request), and two threads on one stripe running on two
/// cores bounce its line on every add. Asked of the OS once per process (it may read cgroup
/// files), then cached; a counter calls this only when it is built.
#[cfg(not(resile_loom))]
pub(crate) fn stripe_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .saturating_mul(2)
            .next_power_of_two()
            .min(MAX_STRIPES)
    })
}

/// Under loom: two stripes, so the models cover adds landing on different stripes.
#[cfg(resile_loom)]
pub(crate) fn stripe_count() -> usize {
    2
}

/// A small number for the calling thread, for picking a counter stripe: threads get 0, 1, 2, ...
/// in the order they first ask, so up to `stripes` threads spread over distinct stripes. No two
/// threads ever get the same number (it would take 2^64 threads for the counter to wrap), which
/// [`StatCounters`](crate::counter::StatCounters) relies on: the thread numbered `i` alone writes
/// its cell `i`.
///
/// A `const`-initialised thread-local `Cell` (no destructor, so it never registers one and never
/// allocates), filled on first use from a process-wide **std** `AtomicUsize`. That static is std's
/// even under loom (loom atomics cannot be `static`): no value is published through it, and its
/// `fetch_add` alone makes the numbers distinct.
#[cfg(not(resile_loom))]
#[inline]
pub(crate) fn thread_stripe() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
    static NEXT: StdAtomicUsize = StdAtomicUsize::new(0);
    thread_local! {
        /// This thread's number plus one; 0 until first asked.
        static STRIPE: Cell<usize> = const { Cell::new(0) };
    }
    STRIPE.with(|s| {
        let v = s.get();
        if v != 0 {
            return v - 1;
        }
        let n = NEXT.fetch_add(1, StdOrdering::Relaxed);
        s.set(n.wrapping_add(1).max(1));
        n
    })
}

/// Under loom every model thread runs on the test's OS thread, so a std thread-local would put
/// them all on one stripe; instead the stripe is loom's per-execution thread index (0 for the
/// model's main thread, then 1, 2, ... in spawn order), which is the same in every execution, so
/// each explored interleaving touches the same atomics, and distinct between the threads of one
/// execution, as the std numbers are. Read from `ThreadId`'s `Debug` output
/// ("ThreadId(N)"), loom's only public view of the index.
#[cfg(resile_loom)]
pub(crate) fn thread_stripe() -> usize {
    use std::fmt::Write;
    struct Digits(usize);
    impl Write for Digits {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for b in s.bytes().filter(u8::is_ascii_digit) {
                self.0 = self.0 * 10 + usize::from(b - b'0');
            }
            Ok(())
        }
    }
    let mut d = Digits(0);
    let _ = write!(d, "{:?}", loom::thread::current().id());
    d.0
}

/// An allocation's lifetime as loom sees it: [`touch`](Lifetime::touch) is a read of the
/// allocation and [`retire`](Lifetime::retire) its deallocation, so a loom model reports a use
/// after free as a data race between the two. Outside loom models it is empty and free.
#[cfg(resile_loom)]
pub(crate) struct Lifetime(loom::cell::UnsafeCell<()>);

#[cfg(resile_loom)]
impl Lifetime {
    pub(crate) fn new() -> Self {
        Self(loom::cell::UnsafeCell::new(()))
    }

    pub(crate) fn touch(&self) {
        self.0.with(|_| ());
    }

    pub(crate) fn retire(&mut self) {
        self.0.with_mut(|_| ());
    }
}

/// An allocation's lifetime as loom sees it (empty outside loom models).
#[cfg(not(resile_loom))]
pub(crate) struct Lifetime;

#[cfg(not(resile_loom))]
impl Lifetime {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Self
    }

    #[inline(always)]
    pub(crate) fn touch(&self) {}

    #[inline(always)]
    pub(crate) fn retire(&mut self) {}
}
