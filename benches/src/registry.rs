//! A keyed registry's hit lookup plus a closed breaker's call: resile's `Registry` (a lock-free
//! papaya read and the entry's pin) beside a `RwLock<HashMap<K, Arc<CircuitBreaker>>>` registry
//! of the same breakers (std's and parking_lot's lock: a read lock per lookup), and, as the
//! floor, the same call on one breaker held directly (no lookup). 1024 keys, all created before
//! the timed run (and, in a second group, 16 keys, every breaker in cache); each thread walks them in order from its own offset, so threads touch
//! different keys at any moment (as requests to many hosts do) and every lookup is a hit. The
//! breakers are resile's in every row, so the rows differ only in the lookup. No Rust peer has a
//! keyed breaker registry to compare with (resilience4j's registries are Java).

use crate::{Case, Pool, Role};
use resile::breaker::CircuitBreaker;
use resile::clock::SystemClock;
use resile::registry::{KeyHash, Registry};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Keys in the registries of the main group: more breakers than the caches hold close.
pub const KEYS: u64 = 1024;
/// Keys in the registries of the small group: few enough that every breaker stays in cache.
pub const FEW: u64 = 16;

/// The breaker of every key (and of the floor): a count window, warm, far from tripping.
fn template() -> resile::breaker::BreakerBuilder<SystemClock> {
    CircuitBreaker::builder()
        .count_window(100)
        .minimum_calls(100)
        .failure_rate_threshold(0.5)
        .open_for(Duration::from_secs(3600))
}

fn warm(b: &CircuitBreaker) {
    for _ in 0..200 {
        b.try_acquire().expect("closed").success();
    }
}

/// A call through a closed breaker: it must be let through (a refusal would time the wrong path).
#[inline]
fn call(b: &CircuitBreaker) {
    b.try_acquire().expect("closed: let through").success();
}

/// Thread `i` of `threads` starts its walk here, so threads are spread over the keys.
fn offset<const N: u64>(i: usize, threads: usize) -> u64 {
    i as u64 * N / threads as u64
}

/// Runs `iters` lookups and calls per thread, each thread walking the keys from its offset, and
/// returns the wall time; after the run, `check` confirms every call went through and no lookup
/// created a key.
fn timed<const N: u64, S: Send + Sync + 'static>(
    pool: &Pool,
    threads: usize,
    iters: u64,
    state: Arc<S>,
    op: fn(&S, u64),
    check: fn(&S),
) -> Duration {
    let s = state.clone();
    let t = pool.run(threads, move |i| {
        let mut k = offset::<N>(i, threads);
        for _ in 0..iters {
            op(&s, k);
            k = (k + 1) & (N - 1);
        }
    });
    check(&state);
    t
}

// ---------------------------------------------------------------------------------------------
// resile

fn resile_registry<const N: u64>(key_hash: KeyHash) -> Registry<u64, CircuitBreaker> {
    let r = Registry::builder(template())
        .max_keys(N as usize)
        .key_hash(key_hash)
        .build()
        .expect("valid config");
    for k in 0..N {
        warm(&r.get_or_create(&k).expect("room for every key"));
    }
    r
}

/// A handle (the entry pinned and its `Arc` counted), dropped after the call.
#[inline]
fn resile_handle_op(r: &Registry<u64, CircuitBreaker>, k: u64) {
    call(&r.get_or_create(&k).expect("a hit"));
}

/// The call inside the lookup, the entry pinned for it (no handle).
#[inline]
fn resile_with_op(r: &Registry<u64, CircuitBreaker>, k: u64) {
    r.with_or_create(&k, |b| call(b)).expect("a hit");
}

fn resile_check<const N: u64>(r: &Registry<u64, CircuitBreaker>) {
    let m = r.metrics();
    assert_eq!(
        (m.created, m.keys),
        (N, N as usize),
        "a lookup created a key"
    );
    assert!((0..N).all(|k| r.get(&k).expect("held").metrics().refused == 0));
}

fn resile_handle<const N: u64>(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let r = Arc::new(resile_registry::<N>(KeyHash::SipHash));
    timed::<N, _>(pool, threads, iters, r, resile_handle_op, resile_check::<N>)
}

fn resile_with<const N: u64>(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let r = Arc::new(resile_registry::<N>(KeyHash::SipHash));
    timed::<N, _>(pool, threads, iters, r, resile_with_op, resile_check::<N>)
}

fn resile_with_foldhash<const N: u64>(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let r = Arc::new(resile_registry::<N>(KeyHash::FoldHash));
    timed::<N, _>(pool, threads, iters, r, resile_with_op, resile_check::<N>)
}

// ---------------------------------------------------------------------------------------------
// RwLock<HashMap> registries: a read lock, the map's lookup and a clone of the breaker's `Arc`
// (what a handle is), the lock released before the call.

type Breakers = HashMap<u64, Arc<CircuitBreaker>>;

fn breakers<const N: u64>() -> Breakers {
    (0..N)
        .map(|k| {
            let b = template().build().expect("valid config");
            warm(&b);
            (k, Arc::new(b))
        })
        .collect()
}

fn rw_check<const N: u64>(map: &Breakers) {
    assert_eq!(map.len() as u64, N);
    assert!(map.values().all(|b| b.metrics().refused == 0));
}

#[inline]
fn std_op(m: &std::sync::RwLock<Breakers>, k: u64) {
    let b = m
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&k)
        .cloned()
        .expect("a hit");
    call(&b);
}

fn std_check<const N: u64>(m: &std::sync::RwLock<Breakers>) {
    rw_check::<N>(&m.read().unwrap_or_else(|e| e.into_inner()));
}

fn std_rwlock<const N: u64>(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = Arc::new(std::sync::RwLock::new(breakers::<N>()));
    timed::<N, _>(pool, threads, iters, m, std_op, std_check::<N>)
}

#[inline]
fn pl_op(m: &parking_lot::RwLock<Breakers>, k: u64) {
    let b = m.read().get(&k).cloned().expect("a hit");
    call(&b);
}

fn pl_check<const N: u64>(m: &parking_lot::RwLock<Breakers>) {
    rw_check::<N>(&m.read());
}

fn pl_rwlock<const N: u64>(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let m = Arc::new(parking_lot::RwLock::new(breakers::<N>()));
    timed::<N, _>(pool, threads, iters, m, pl_op, pl_check::<N>)
}

/// The `RwLock` registry hashing with foldhash, as the registry's `KeyHash::FoldHash` does.
type FoldBreakers = HashMap<u64, Arc<CircuitBreaker>, foldhash::quality::RandomState>;

#[inline]
fn pl_fold_op(m: &parking_lot::RwLock<FoldBreakers>, k: u64) {
    let b = m.read().get(&k).cloned().expect("a hit");
    call(&b);
}

fn pl_fold_check<const N: u64>(m: &parking_lot::RwLock<FoldBreakers>) {
    let map = m.read();
    assert_eq!(map.len() as u64, N);
    assert!(map.values().all(|b| b.metrics().refused == 0));
}

fn pl_rwlock_foldhash<const N: u64>(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let map: FoldBreakers = breakers::<N>().into_iter().collect();
    let m = Arc::new(parking_lot::RwLock::new(map));
    timed::<N, _>(pool, threads, iters, m, pl_fold_op, pl_fold_check::<N>)
}

// ---------------------------------------------------------------------------------------------
// The floor: the same call, with no lookup, each thread on its own key's breaker.

fn floor(pool: &Pool, threads: usize, iters: u64) -> Duration {
    // One breaker per thread, reached without a lookup.
    let per_thread: Arc<Vec<CircuitBreaker>> = Arc::new(
        (0..threads)
            .map(|_| {
                let b = template().build().expect("valid config");
                warm(&b);
                b
            })
            .collect(),
    );
    let s = per_thread.clone();
    let t = pool.run(threads, move |i| {
        let b = &s[i];
        for _ in 0..iters {
            call(b);
        }
    });
    assert!(per_thread.iter().all(|b| b.metrics().refused == 0));
    t
}

/// The rows of one group: registries of `N` keys.
fn group<const N: u64>(group: &'static str) -> Vec<Case> {
    vec![
        Case {
            group,
            name: "resile Registry::with_or_create",
            role: Role::Resile,
            run: resile_with::<N>,
        },
        Case {
            group,
            name: "resile Registry::with_or_create, KeyHash::FoldHash",
            role: Role::Resile,
            run: resile_with_foldhash::<N>,
        },
        Case {
            group,
            name: "resile Registry::get_or_create (a Handle)",
            role: Role::Resile,
            run: resile_handle::<N>,
        },
        Case {
            group,
            name: "std RwLock<HashMap>",
            role: Role::StdRwLock,
            run: std_rwlock::<N>,
        },
        Case {
            group,
            name: "parking_lot RwLock<HashMap>",
            role: Role::ParkingLotRwLock,
            run: pl_rwlock::<N>,
        },
        Case {
            group,
            name: "parking_lot RwLock<HashMap>, foldhash",
            role: Role::ParkingLotRwLock,
            run: pl_rwlock_foldhash::<N>,
        },
        Case {
            group,
            name: "one breaker per thread, no lookup",
            role: Role::Floor,
            run: floor,
        },
    ]
}

/// The registry cases: 1024 keys (the case), and 16 keys (every breaker in cache).
pub fn cases() -> Vec<Case> {
    let mut v = group::<KEYS>("registry hit + closed breaker call (1024 keys)");
    v.extend(group::<FEW>("registry hit + closed breaker call (16 keys)"));
    v
}
