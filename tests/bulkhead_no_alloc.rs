//! The fast path allocates nothing: try_acquire + release, a refusal, and `call`, counted by a
//! global allocator.

use resile::bulkhead::Bulkhead;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System`, only counting allocations on this thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn try_acquire_release_refusal_and_call_do_not_allocate() {
    let b = Bulkhead::builder().name("db").limit(2).build().unwrap();
    let before = allocations();
    for _ in 0..1000 {
        let p = b.try_acquire().unwrap();
        let q = b.try_acquire().unwrap();
        let e = b.try_acquire().unwrap_err();
        assert!(e.is_full());
        drop((p, q));
        assert_eq!(b.call(|| 1).unwrap(), 1);
        let m = b.metrics();
        assert_eq!(m.in_flight, 0);
    }
    assert_eq!(allocations() - before, 0);
}
