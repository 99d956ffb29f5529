//! An adaptive bulkhead's request path allocates nothing: admission, every kind of report, and
//! the window closes those reports trigger (each algorithm's update), counted by a global
//! allocator.

use resile::bulkhead::Bulkhead;
use resile::bulkhead::adaptive::{Aimd, Gradient2, LimitAlgorithm, Vegas};
use resile::clock::ManualClock;
use std::time::Duration;

mod common;

#[global_allocator]
static GLOBAL: common::CountingAlloc = common::CountingAlloc;

use common::allocations;

fn reports_and_closes_allocate_nothing(algorithm: impl LimitAlgorithm + Clone + Sync) {
    let clock = ManualClock::new();
    let b = Bulkhead::builder()
        .adaptive(algorithm)
        .adaptive_window(Duration::from_millis(10))
        .adaptive_min_samples(3)
        .clock(clock.clone())
        .build()
        .unwrap();
    let n = allocations(|| {
        for i in 0..1000u64 {
            let p = b.try_acquire().unwrap();
            clock.advance(Duration::from_millis(1 + i % 7));
            match i % 4 {
                0 => p.success(),
                1 => p.dropped(),
                2 => p.ignore(),
                _ => drop(p),
            }
        }
    });
    assert_eq!(n, 0);
    let m = b.metrics().adaptive.unwrap();
    assert!(m.windows > 100, "the windows closed: {m:?}");
}

#[test]
fn aimd() {
    reports_and_closes_allocate_nothing(Aimd::default().min_limit(1));
}

#[test]
fn vegas() {
    reports_and_closes_allocate_nothing(Vegas::default().min_limit(1));
}

#[test]
fn gradient2() {
    reports_and_closes_allocate_nothing(Gradient2::default().min_limit(1));
}
