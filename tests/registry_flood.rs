//! A registry under a flood of made-up keys: a failing key's open breaker survives a million
//! distinct keys at a bound of ten thousand, the map stays bounded, and a lookup of an existing
//! key allocates nothing. Memory is measured with the counting allocator.
#![cfg(feature = "registry")]

mod common;

#[global_allocator]
static GLOBAL: common::CountingAlloc = common::CountingAlloc;

use common::{allocations, net_bytes};
use resile::breaker::{CircuitBreaker, State};
use resile::clock::ManualClock;
use resile::registry::{Handle, Registry, RegistryError};
use std::time::Duration;

/// Keys flooded and the bound (smaller under miri, which runs the same code slowly).
#[cfg(not(miri))]
const FLOOD: u64 = 1_000_000;
#[cfg(not(miri))]
const BOUND: usize = 10_000;
#[cfg(miri)]
const FLOOD: u64 = 1_000;
#[cfg(miri)]
const BOUND: usize = 100;

/// The failing route's key; the made-up ones are `1..`.
const VICTIM: u64 = 0;

fn registry(clock: &ManualClock) -> Registry<u64, CircuitBreaker<ManualClock>> {
    let template = CircuitBreaker::builder()
        .count_window(4)
        .minimum_calls(2)
        .open_for(Duration::from_secs(60))
        .clock(clock.clone());
    Registry::builder(template).max_keys(BOUND).build().unwrap()
}

#[test]
fn a_flood_of_keys_never_evicts_an_open_breaker() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    let victim = r.get_or_create(&VICTIM).unwrap();
    for _ in 0..2 {
        let _ = victim.call(|| Err::<(), _>("503"));
    }
    assert_eq!(victim.state(), State::Open);
    let first = victim.clone();
    drop(victim); // no handle held: only the open state keeps the entry

    // Fill to the bound, measuring what the idle entries keep.
    let ((), filled) = net_bytes(|| {
        for key in 1..BOUND as u64 {
            drop(r.get_or_create(&key).unwrap());
        }
    });
    assert_eq!(r.len(), BOUND);
    let per_entry = filled / (BOUND as i64 - 1);
    // The same breakers alone, to tell the registry's own share.
    let template = CircuitBreaker::builder()
        .count_window(4)
        .minimum_calls(2)
        .clock(clock.clone());
    let (alone, alone_bytes) = net_bytes(|| {
        let mut v = Vec::with_capacity(BOUND);
        v.extend((1..BOUND).map(|_| template.clone().build().unwrap()));
        v
    });
    let per_breaker = alone_bytes / (BOUND as i64 - 1);
    drop(alone);
    println!(
        "bytes per idle entry (breaker with a 4-call window, u64 key): {per_entry}, of which the \
         breaker {per_breaker} and the registry {}",
        per_entry - per_breaker
    );

    // The flood: every key is new and evicts the oldest idle one.
    let ((), flooded) = net_bytes(|| {
        for key in BOUND as u64..FLOOD {
            drop(r.get_or_create(&key).unwrap());
            assert!(r.len() <= BOUND);
        }
    });
    println!("bytes kept by the flood after the fill: {flooded}");
    // Evicted entries are freed (papaya frees removed values in batches): what the flood keeps
    // is a small part of what the fill did.
    assert!(
        flooded < filled / 4,
        "flood kept {flooded} bytes, fill {filled}"
    );

    let m = r.metrics();
    assert_eq!(m.keys, BOUND);
    assert_eq!(m.created, FLOOD);
    assert_eq!(m.evicted, FLOOD - BOUND as u64);
    assert_eq!(m.refused, 0);

    let victim = r.get_or_create(&VICTIM).unwrap();
    assert!(
        Handle::ptr_eq(&victim, &first),
        "the same breaker, never rebuilt"
    );
    assert_eq!(victim.state(), State::Open);
    assert!(victim.try_acquire().is_err(), "still refusing");
}

#[test]
fn a_full_registry_of_live_breakers_refuses_new_keys() {
    let clock = ManualClock::new();
    let template = CircuitBreaker::builder()
        .count_window(4)
        .minimum_calls(2)
        .clock(clock.clone());
    let r = Registry::builder(template).max_keys(8).build().unwrap();
    for key in 0..8u64 {
        let _ = r.get_or_create(&key).unwrap().call(|| Err::<(), _>("503"));
    }
    // Fewer refused keys under miri, which interprets every lookup.
    let keys = if cfg!(miri) { 100 } else { 1000u64 };
    for key in 8..keys {
        assert!(matches!(
            r.get_or_create(&key),
            Err(RegistryError::Full(f)) if f.max_keys() == 8
        ));
    }
    assert_eq!(r.len(), 8);
    assert!((0..8).all(|k| r.get(&k).unwrap().metrics().failures == 1));
}

#[test]
fn a_lookup_of_an_existing_key_and_a_call_do_not_allocate() {
    let clock = ManualClock::new();
    let r = registry(&clock);
    for key in 0..64 {
        drop(r.get_or_create(&key).unwrap());
    }
    // The map's first pin on a thread registers it with the map's collector (once per thread).
    drop(r.get(&0));
    // Fewer lookups under miri, which interprets every call.
    let lookups = if cfg!(miri) { 300 } else { 10_000u64 };
    let n = allocations(|| {
        for i in 0..lookups {
            let b = r.get_or_create(&(i % 64)).unwrap();
            assert_eq!(b.call(|| Ok::<_, ()>(i)).unwrap(), i);
            let called = r.with_or_create(&(i % 64), |b| b.call(|| Ok::<_, ()>(i)));
            assert_eq!(called.unwrap().unwrap(), i);
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn a_string_key_looked_up_by_str_does_not_allocate() {
    let r = Registry::<String, _>::builder(CircuitBreaker::builder().clock(ManualClock::new()))
        .build()
        .unwrap();
    let names: Vec<String> = (0..64).map(|i| format!("host-{i}.internal")).collect();
    for name in &names {
        drop(r.get_or_create(name.as_str()).unwrap());
    }
    drop(r.get("host-0.internal"));
    let n = allocations(|| {
        for i in 0..10_000usize {
            let b = r.get_or_create(names[i % 64].as_str()).unwrap();
            assert!(b.call(|| Ok::<_, ()>(())).is_ok());
        }
    });
    assert_eq!(n, 0);
    assert_eq!(r.len(), 64);
}
