//! The drainer's hot path allocates nothing: enter and guard drop (borrowed and owned), guard
//! clones, readiness checks, and refusals while draining.

use resile::drain::Drainer;
use std::sync::Arc;

mod common;

#[global_allocator]
static GLOBAL: common::CountingAlloc = common::CountingAlloc;

use common::allocations;

/// Rounds of each path (fewer under miri, which interprets every call).
const ROUNDS: usize = if cfg!(miri) { 200 } else { 10_000 };

#[test]
fn hot_path_allocates_nothing() {
    let d = Arc::new(Drainer::new());
    let n = allocations(|| {
        for _ in 0..ROUNDS {
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
        for _ in 0..ROUNDS {
            assert!(d.enter().is_err());
            drop(live.clone());
        }
    });
    assert_eq!(n, 0, "refusals while draining allocated");
    drop(live);
    assert!(d.is_drained());
}
