//! What the integration tests share: an allocator that counts the allocations of the thread that
//! asks (and the bytes it keeps), for the tests that check a hot path allocates nothing and those
//! that measure memory.
//!
//! A test binary that uses it installs it as its global allocator:
//!
//! ```ignore
//! mod common;
//! #[global_allocator]
//! static GLOBAL: common::CountingAlloc = common::CountingAlloc;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator, counting allocations (and reallocations) made by a thread
/// inside [`allocations`].
pub(crate) struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread while counting.
    static NET_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

fn add_bytes(n: usize, sign: i64) {
    if COUNTING.with(Cell::get) {
        NET_BYTES.with(|b| b.set(b.get() + sign * n as i64));
    }
}

// SAFETY: forwards every call to `System` unchanged; the bookkeeping touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        add_bytes(layout.size(), 1);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_bytes(layout.size(), -1);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        add_bytes(new_size, 1);
        add_bytes(layout.size(), -1);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The allocations this thread made while running `f` (other threads' are not counted, so
/// tests running in parallel do not disturb each other).
pub(crate) fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

/// The bytes this thread allocated and did not free while running `f` (its result beside them),
/// for tests that measure what a structure keeps.
#[allow(dead_code)]
pub(crate) fn net_bytes<T>(f: impl FnOnce() -> T) -> (T, i64) {
    NET_BYTES.with(|b| b.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, NET_BYTES.with(Cell::get))
}
