//! The drainer across real threads: many blocking and async waiters all wake when the last
//! guard drops; refusals begin exactly when draining starts; the not-ready delay of
//! `blocking_shutdown` admits work until someone starts draining.

use futures::executor::block_on;
use resile::drain::DrainRefused;
use resile::drain::{Drainer, Phase};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn every_waiter_wakes_when_the_last_guard_drops() {
    let d = Arc::new(Drainer::new());
    let guards: Vec<_> = (0..4).map(|_| d.enter_owned().unwrap()).collect();
    d.start_draining();
    let waiters: Vec<_> = (0..6)
        .map(|i| {
            let d = d.clone();
            thread::spawn(move || {
                if i % 2 == 0 {
                    d.blocking_wait_timeout(LONG).is_ok()
                } else {
                    block_on(d.wait());
                    true
                }
            })
        })
        .collect();
    let droppers: Vec<_> = guards
        .into_iter()
        .map(|g| thread::spawn(move || drop(g)))
        .collect();
    for t in droppers {
        t.join().unwrap();
    }
    for w in waiters {
        assert!(w.join().unwrap(), "a waiter timed out");
    }
    assert_eq!(d.phase(), Phase::Drained);
}

#[test]
fn no_admission_after_draining_starts() {
    // Workers enter in a loop until refused. Whatever the race, each stops at its first refusal
    // and a later enter is refused too, the counts agree, and the drain completes.
    let d = Arc::new(Drainer::new());
    let admitted = Arc::new(AtomicU64::new(0));
    let running = Arc::new(Barrier::new(3));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (d, admitted, running) = (d.clone(), admitted.clone(), running.clone());
            thread::spawn(move || {
                let mut mine = 0u64;
                loop {
                    match d.enter() {
                        Ok(g) => {
                            mine += 1;
                            drop(g);
                        }
                        Err(e) => {
                            assert_eq!(e, DrainRefused::Draining);
                            break;
                        }
                    }
                    if mine == 1 {
                        running.wait();
                    }
                }
                assert!(d.enter().is_err(), "admitted after a refusal");
                admitted.fetch_add(mine, Ordering::Relaxed);
            })
        })
        .collect();
    running.wait();
    assert!(d.start_draining());
    assert!(d.blocking_wait_timeout(LONG).is_ok());
    for w in workers {
        w.join().unwrap();
    }
    let m = d.metrics();
    assert_eq!(admitted.load(Ordering::Relaxed), m.admitted);
    assert_eq!(m.refused, 4);
}

#[test]
fn shutdown_keeps_admitting_during_the_not_ready_delay() {
    let d = Arc::new(
        Drainer::builder()
            .not_ready_delay(Duration::from_secs(3000))
            .build()
            .unwrap(),
    );
    let work = d.enter_owned().unwrap();
    let shutdown = {
        let d = d.clone();
        thread::spawn(move || d.blocking_shutdown(LONG))
    };
    // The shutdown thread marks us not ready first; spin (bounded) on that state.
    let mut spins = 0u64;
    while d.is_ready() {
        thread::yield_now();
        spins += 1;
        assert!(spins < 100_000_000, "shutdown never marked not ready");
    }
    let late = d.enter().expect("still admitting while not ready");
    assert_eq!(d.phase(), Phase::NotReady);
    // Someone (here, the test) starts the drain: the delay ends at once.
    assert!(d.start_draining());
    assert_eq!(d.enter().unwrap_err(), DrainRefused::Draining);
    drop(late);
    drop(work);
    let drained = shutdown.join().unwrap().expect("drained");
    assert!(drained.elapsed() < LONG);
}
