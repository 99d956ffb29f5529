//! The floors: bare atomic operations on one shared word, the cost no primitive can beat.

use crate::{Case, Pool, Role};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn fetch_add_sub(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, AtomicU64::new(0), |w| {
        black_box(w.fetch_add(1, Ordering::AcqRel));
        black_box(w.fetch_sub(1, Ordering::AcqRel));
    })
}

fn cas_round_trip(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, AtomicU64::new(0), |w| {
        for delta in [1u64, u64::MAX] {
            let mut cur = w.load(Ordering::Acquire);
            while let Err(seen) = w.compare_exchange_weak(
                cur,
                cur.wrapping_add(delta),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                cur = seen;
            }
        }
    })
}

/// The floor cases: an acquire + release round trip as two `fetch_add`s, and as two CAS loops.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            group: "floor round trip",
            name: "fetch_add + fetch_sub",
            role: Role::Floor,
            run: fetch_add_sub,
        },
        Case {
            group: "floor round trip",
            name: "CAS loop x2",
            role: Role::Floor,
            run: cas_round_trip,
        },
    ]
}
