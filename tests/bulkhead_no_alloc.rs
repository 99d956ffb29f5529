//! The fast path allocates nothing: try_acquire + release, a refusal, and `call`, counted by a
//! global allocator.

use resile::bulkhead::Bulkhead;

mod common;

#[global_allocator]
static GLOBAL: common::CountingAlloc = common::CountingAlloc;

use common::allocations;

#[test]
fn try_acquire_release_refusal_and_call_do_not_allocate() {
    let b = Bulkhead::builder().name("db").limit(2).build().unwrap();
    let n = allocations(|| {
        // Fewer rounds under miri, which interprets every call.
        for _ in 0..if cfg!(miri) { 100 } else { 1000 } {
            let p = b.try_acquire().unwrap();
            let q = b.try_acquire().unwrap();
            let e = b.try_acquire().unwrap_err();
            assert!(e.is_full());
            drop((p, q));
            assert_eq!(b.call(|| 1).unwrap(), 1);
            let m = b.metrics();
            assert_eq!(m.in_flight, 0);
        }
    });
    assert_eq!(n, 0);
}
