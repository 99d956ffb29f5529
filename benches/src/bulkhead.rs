//! Bulkhead cases: try_acquire + release (the fast path) beside mutex baselines and the peers'
//! semaphores, and the waiting path (1 permit, every thread queues for it: hand-offs).

use crate::{Case, Pool, Role};
use resile::bulkhead::Bulkhead;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

/// Always free for the fast-path group: 64 slots, at most 4 threads (peer-bench's setup).
const WIDE: u32 = 64;

fn resile_try(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = Bulkhead::builder().limit(WIDE).build().unwrap();
    pool.run_op(threads, iters, b, |b| {
        drop(b.try_acquire().expect("a free slot"));
    })
}

fn resile_try_owned(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let b = std::sync::Arc::new(Bulkhead::builder().limit(WIDE).build().unwrap());
    pool.run_op(threads, iters, b, |b| {
        drop(b.try_acquire_owned().expect("a free slot"));
    })
}

fn tokio_try_owned(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let s = std::sync::Arc::new(tokio::sync::Semaphore::new(WIDE as usize));
    pool.run_op(threads, iters, s, |s| {
        drop(black_box(
            s.clone().try_acquire_owned().expect("a free permit"),
        ));
    })
}

fn std_mutex_try(pool: &Pool, threads: usize, iters: u64) -> Duration {
    // The same logic: a count under a lock, refused at the limit, decremented on release.
    pool.run_op(threads, iters, Mutex::new(0usize), |m| {
        let ok = {
            let mut n = m.lock().unwrap();
            if *n < WIDE as usize {
                *n += 1;
                true
            } else {
                false
            }
        };
        if black_box(ok) {
            *m.lock().unwrap() -= 1;
        }
    })
}

fn parking_lot_try(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, parking_lot::Mutex::new(0usize), |m| {
        let ok = {
            let mut n = m.lock();
            if *n < WIDE as usize {
                *n += 1;
                true
            } else {
                false
            }
        };
        if black_box(ok) {
            *m.lock() -= 1;
        }
    })
}

fn tokio_try(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let s = tokio::sync::Semaphore::new(WIDE as usize);
    pool.run_op(threads, iters, s, |s| {
        drop(s.try_acquire().expect("a free permit"));
    })
}

fn async_lock_try(pool: &Pool, threads: usize, iters: u64) -> Duration {
    let s = async_lock::Semaphore::new(WIDE as usize);
    pool.run_op(threads, iters, s, |s| {
        black_box(s.try_acquire().is_some());
    })
}

const FOREVER: Duration = Duration::from_secs(3600);

fn one_permit() -> Bulkhead {
    Bulkhead::builder().limit(1).build().unwrap()
}

fn resile_wait_blocking(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, one_permit(), |b| {
        drop(black_box(b.blocking_acquire_timeout(FOREVER).unwrap()));
    })
}

fn resile_wait_async(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, one_permit(), |b| {
        drop(black_box(futures::executor::block_on(b.acquire()).unwrap()));
    })
}

fn tokio_wait_blocking(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, tokio::sync::Semaphore::new(1), |s| {
        drop(black_box(s.blocking_acquire().unwrap()));
    })
}

fn tokio_wait_async(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, tokio::sync::Semaphore::new(1), |s| {
        drop(black_box(futures::executor::block_on(s.acquire()).unwrap()));
    })
}

fn async_lock_wait_blocking(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, async_lock::Semaphore::new(1), |s| {
        drop(black_box(s.acquire_blocking()));
    })
}

/// The bulkhead cases.
pub fn cases() -> Vec<Case> {
    let try_group = "bulkhead try_acquire + release";
    let wait_group = "bulkhead wait for 1 permit (hand-off)";
    vec![
        Case {
            group: try_group,
            name: "resile, owned permit",
            role: Role::Resile,
            run: resile_try_owned,
        },
        Case {
            group: try_group,
            name: "resile, borrowed permit",
            role: Role::Resile,
            run: resile_try,
        },
        Case {
            group: try_group,
            name: "std::sync::Mutex<usize>",
            role: Role::StdMutex,
            run: std_mutex_try,
        },
        Case {
            group: try_group,
            name: "parking_lot::Mutex<usize>",
            role: Role::ParkingLot,
            run: parking_lot_try,
        },
        Case {
            group: try_group,
            name: "tokio Semaphore",
            role: Role::Peer,
            run: tokio_try,
        },
        Case {
            group: try_group,
            name: "tokio Semaphore, owned permit (Arc)",
            role: Role::Peer,
            run: tokio_try_owned,
        },
        Case {
            group: try_group,
            name: "async-lock Semaphore",
            role: Role::Peer,
            run: async_lock_try,
        },
        Case {
            group: wait_group,
            name: "resile blocking",
            role: Role::Resile,
            run: resile_wait_blocking,
        },
        Case {
            group: wait_group,
            name: "resile async",
            role: Role::Resile,
            run: resile_wait_async,
        },
        Case {
            group: wait_group,
            name: "tokio Semaphore blocking",
            role: Role::Peer,
            run: tokio_wait_blocking,
        },
        Case {
            group: wait_group,
            name: "tokio Semaphore async",
            role: Role::Peer,
            run: tokio_wait_async,
        },
        Case {
            group: wait_group,
            name: "async-lock Semaphore blocking",
            role: Role::Peer,
            run: async_lock_wait_blocking,
        },
    ]
}
