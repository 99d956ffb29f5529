//! loom models of the keyed registry's races, on the public API: an eviction racing a lookup
//! that is about to take a permit, and two threads creating one key.
//!
//! Under `--cfg resile_loom` the registry's map is a stand-in behind loom's `Mutex` (papaya is
//! not instrumented for loom), so these models check the entry word's protocol and the
//! registry's lock, not papaya's internals.
#![cfg(resile_loom)]

use loom::thread;
use resile::breaker::CircuitBreaker;
use resile::clock::ManualClock;
use resile::registry::{Handle, Registry};
use resile_loom_tests::model;
use std::sync::Arc;

/// A registry of one key: any new key must evict the other or be refused. A breaker needs two
/// calls to decide, so one failure is evidence that keeps it closed and not idle.
fn registry() -> Arc<Registry<u32, CircuitBreaker<ManualClock>>> {
    let template = CircuitBreaker::builder()
        .count_window(2)
        .minimum_calls(2)
        .clock(ManualClock::new());
    Arc::new(Registry::builder(template).max_keys(1).build().unwrap())
}

/// The address of a handle's breaker, to tell entries apart after the handle is gone.
fn addr(h: &Handle<CircuitBreaker<ManualClock>>) -> usize {
    Arc::as_ptr(h.as_arc()) as usize
}

/// A lookup of key 0 that takes a permit and records a failure races a new key 1, which may
/// evict key 0 only while it is idle. Whichever entry the failure landed in is the one the map
/// holds for key 0 at the end (the permit's result is never lost to an eviction), carrying that
/// failure; the map never holds more than one key.
#[test]
fn eviction_racing_a_lookup_that_takes_a_permit() {
    model(|| {
        let r = registry();
        drop(r.get_or_create(&0).unwrap());
        let r1 = r.clone();
        let caller = thread::spawn(move || {
            let h = r1.get_or_create(&0).ok()?;
            assert!(!h.is_evicted());
            h.try_acquire().unwrap().failure();
            Some(addr(&h))
        });
        let other = r.get_or_create(&1).is_ok();
        let recorded = caller.join().unwrap();
        assert!(r.len() <= 1);
        match recorded {
            Some(a) => {
                let h = r
                    .get(&0)
                    .expect("the entry holding the failure is in the map");
                assert_eq!(addr(&h), a);
                assert_eq!(h.metrics().failures, 1);
                assert!(r.get(&1).is_none());
            }
            // The caller was refused: key 1 held the only place, its handle still alive.
            None => assert!(other && r.get(&1).is_some()),
        }
    });
}

/// An entry whose last handle is dropped while a new key asks for room: the drop's unpin and the
/// eviction's swap decide it on the entry word, so either the eviction sees the handle and the
/// new key is refused, or it sees none and the old key is gone, and never both keys held.
#[test]
fn eviction_racing_a_handle_drop() {
    model(|| {
        let r = registry();
        let h = r.get_or_create(&0).unwrap();
        let dropper = thread::spawn(move || drop(h));
        let created = r.get_or_create(&1).is_ok();
        dropper.join().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(&0).is_none(), created);
        assert_eq!(r.get(&1).is_some(), created);
    });
}

/// Two threads creating the same key get one entry.
#[test]
fn two_threads_creating_one_key_get_one_entry() {
    model(|| {
        let r = Arc::new(
            Registry::builder(
                CircuitBreaker::builder()
                    .count_window(2)
                    .clock(ManualClock::new()),
            )
            .max_keys(2)
            .build()
            .unwrap(),
        );
        let r1 = r.clone();
        let t = thread::spawn(move || Arc::as_ptr(r1.get_or_create(&7).unwrap().as_arc()) as usize);
        let here = Arc::as_ptr(r.get_or_create(&7).unwrap().as_arc()) as usize;
        let there = t.join().unwrap();
        assert_eq!(here, there);
        assert_eq!(r.len(), 1);
        assert_eq!(r.metrics().created, 1);
    });
}
