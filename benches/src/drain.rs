//! The drainer's round trip (enter + exit while serving): resile's owned guard (what a tower
//! layer or a spawned task holds: like for like with tokio-util's TaskTracker token) and its
//! borrowed one, mutex baselines of the same logic (`(draining, in_flight)` under a lock), and
//! the bare `fetch_add`/`fetch_sub` floor.

use crate::{Case, Pool, Role};
use resile::drain::Drainer;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn resile_enter_exit(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, Drainer::new(), |d| {
        let g = d.enter().expect("serving");
        black_box(&g);
        drop(g);
    })
}

fn resile_enter_exit_owned(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, std::sync::Arc::new(Drainer::new()), |d| {
        let g = d.enter_owned().expect("serving");
        black_box(&g);
        drop(g);
    })
}

fn std_mutex(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(
        threads,
        iters,
        std::sync::Mutex::new((false, 0usize)),
        |m| {
            {
                let mut s = m.lock().unwrap();
                if s.0 {
                    return;
                }
                s.1 += 1;
            }
            black_box(m);
            let mut s = m.lock().unwrap();
            s.1 -= 1;
        },
    )
}

fn parking_lot_mutex(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(
        threads,
        iters,
        parking_lot::Mutex::new((false, 0usize)),
        |m| {
            {
                let mut s = m.lock();
                if s.0 {
                    return;
                }
                s.1 += 1;
            }
            black_box(m);
            let mut s = m.lock();
            s.1 -= 1;
        },
    )
}

fn task_tracker(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, tokio_util::task::TaskTracker::new(), |t| {
        let token = t.token();
        black_box(&token);
        drop(token);
    })
}

fn floor(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run_op(threads, iters, AtomicU64::new(0), |w| {
        black_box(w.fetch_add(1, Ordering::Relaxed));
        black_box(w.fetch_sub(1, Ordering::Release));
    })
}

/// The drain cases: one enter + exit round trip each.
pub fn cases() -> Vec<Case> {
    let c = |name, role, run| Case {
        group: "drain enter+exit",
        name,
        role,
        run,
    };
    vec![
        c(
            "resile Drainer, owned guard (as TaskTracker's token)",
            Role::Resile,
            resile_enter_exit_owned as _,
        ),
        c(
            "resile Drainer, borrowed guard",
            Role::Resile,
            resile_enter_exit as _,
        ),
        c(
            "std::sync::Mutex<(bool, usize)>",
            Role::StdMutex,
            std_mutex as _,
        ),
        c(
            "parking_lot::Mutex<(bool, usize)>",
            Role::ParkingLot,
            parking_lot_mutex as _,
        ),
        c(
            "tokio-util 0.7 TaskTracker token",
            Role::Peer,
            task_tracker as _,
        ),
        c("fetch_add + fetch_sub", Role::Floor, floor as _),
    ]
}
