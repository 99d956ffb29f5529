//! The drainer's hot path allocates nothing: enter and guard drop (borrowed and owned), guard
//! clones, readiness checks, and refusals while draining.

use resile::drain::Drainer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

/// Counts allocations made by the thread that turned counting on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; the bookkeeping touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

#[test]
fn hot_path_allocates_nothing() {
    let d = Arc::new(Drainer::new());
    let n = allocations(|| {
        for _ in 0..10_000 {
            let g = d.enter().unwrap();
            let c = g.clone();
            assert!(d.is_ready());
            drop(c);
            drop(g);
            drop(d.enter_owned().unwrap());
        }
    });
    assert_eq!(n, 0, "enter/exit while serving allocated");

    let live = d.enter().unwrap();
    d.start_draining();
    let n = allocations(|| {
        for _ in 0..10_000 {
            assert!(d.enter().is_err());
            drop(live.clone());
        }
    });
    assert_eq!(n, 0, "refusals while draining allocated");
    drop(live);
    assert!(d.is_drained());
}
