//! loom models of the graceful drainer: every interleaving of the races its research note lists.
#![cfg(resile_loom)]

use loom::sync::Arc as LoomArc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use resile::clock::ManualClock;
use resile::drain::{Drainer, Phase};
use resile_loom_tests::{DropCountingClock, drop_count, model};
use std::sync::Arc;
use std::time::Duration;

/// Waits long enough that only the drain ends the wait (loom never fires a timeout).
const FOREVER: Duration = Duration::from_secs(3600);

/// A minimal executor on loom's park/unpark (loom-tests builds loom without its `futures`
/// feature).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

fn drainer() -> Drainer<ManualClock> {
    Drainer::builder()
        .clock(ManualClock::new())
        .build()
        .unwrap()
}

/// enter racing start_draining: either the enter is refused, or the drain waiter returns only
/// after the admitted guard has dropped.
#[test]
fn enter_racing_start_draining() {
    model(|| {
        let d = LoomArc::new(drainer());
        let done = LoomArc::new(AtomicBool::new(false));
        let worker = {
            let (d, done) = (d.clone(), done.clone());
            thread::spawn(move || match d.enter() {
                Ok(g) => {
                    done.store(true, Ordering::Relaxed);
                    drop(g);
                    true
                }
                Err(_) => false,
            })
        };
        assert!(d.start_draining());
        let drained = d.blocking_wait_timeout(FOREVER);
        assert!(drained.is_ok());
        let work_was_done = done.load(Ordering::Relaxed);
        let admitted = worker.join().unwrap();
        if admitted {
            assert!(
                work_was_done,
                "the waiter returned while an admitted guard lived"
            );
        }
        assert_eq!(d.phase(), Phase::Drained);
        let m = d.metrics();
        assert_eq!(m.admitted + m.refused, 1);
    });
}

/// The last guard's drop racing a blocking waiter's registration: the waiter always finishes.
#[test]
fn last_drop_racing_blocking_waiter() {
    model(|| {
        let d = Arc::new(drainer());
        let g = d.enter_owned().unwrap();
        d.start_draining();
        let dropper = thread::spawn(move || drop(g));
        assert!(d.blocking_wait_timeout(FOREVER).is_ok());
        assert_eq!(d.in_flight(), 0);
        dropper.join().unwrap();
    });
}

/// The same race with an async waiter (its waker registration against the final transition).
#[test]
fn last_drop_racing_async_waiter() {
    model(|| {
        let d = Arc::new(drainer());
        let g = d.enter_owned().unwrap();
        d.start_draining();
        let dropper = thread::spawn(move || drop(g));
        block_on(d.wait());
        assert!(d.is_drained());
        dropper.join().unwrap();
    });
}

/// An enter refused once draining has started never touches the count: as soon as the last
/// guard has dropped the drain is complete, whatever the refused enter is doing meanwhile.
#[test]
fn refused_enter_racing_last_drop() {
    model(|| {
        let d = Arc::new(drainer());
        let g = d.enter_owned().unwrap();
        d.start_draining();
        let late = {
            let d = d.clone();
            thread::spawn(move || assert!(d.enter().is_err()))
        };
        drop(g);
        assert_eq!(d.phase(), Phase::Drained, "a refusal held up the drain");
        assert_eq!(d.in_flight(), 0);
        late.join().unwrap();
        let m = d.metrics();
        assert_eq!((m.admitted, m.refused), (1, 1));
    });
}

/// An enter racing start_draining (so the word itself may refuse it, counting it for an
/// instant) and the last guard's drop: exactly one of the drop and the refusal's undo completes
/// the drain, and the waiter finishes.
#[test]
fn enter_racing_start_draining_and_last_drop() {
    model(|| {
        let d = Arc::new(drainer());
        let g = d.enter_owned().unwrap();
        let racer = {
            let d = d.clone();
            thread::spawn(move || drop(d.enter()))
        };
        let dropper = thread::spawn(move || drop(g));
        d.start_draining();
        assert!(d.blocking_wait_timeout(FOREVER).is_ok());
        racer.join().unwrap();
        dropper.join().unwrap();
        assert_eq!(d.phase(), Phase::Drained);
        assert_eq!(d.in_flight(), 0);
        let m = d.metrics();
        assert_eq!(m.admitted + m.refused, 2);
    });
}

/// Concurrent start_draining: exactly one call returns true, and a draining() waiter wakes.
#[test]
fn concurrent_start_draining() {
    model(|| {
        let d = Arc::new(drainer());
        let g = d.enter_owned().unwrap();
        let starters: Vec<_> = (0..2)
            .map(|_| {
                let d = d.clone();
                thread::spawn(move || d.start_draining())
            })
            .collect();
        block_on(d.draining());
        assert!(d.is_draining());
        assert!(d.enter().is_err());
        let firsts = starters
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&first| first)
            .count();
        assert_eq!(firsts, 1);
        drop(g);
        assert!(d.is_drained());
    });
}

/// Parent and child: draining the parent drains the child first, and the parent's waiter
/// returns only after the child's work has finished.
#[test]
fn parent_drains_child_first() {
    model(|| {
        let parent = Arc::new(drainer());
        let child = parent.child().unwrap();
        let work = child.enter_owned().unwrap();
        let worker = thread::spawn(move || drop(work));
        let starter = {
            let parent = parent.clone();
            thread::spawn(move || parent.start_draining())
        };
        assert!(parent.blocking_wait_timeout(FOREVER).is_ok());
        assert!(child.is_drained(), "the parent drained before its child");
        worker.join().unwrap();
        assert!(starter.join().unwrap());
    });
}

/// A child created while the parent starts draining is either refused or drained with it: the
/// parent never waits forever on a child nobody drains.
#[test]
fn child_creation_racing_parent_drain() {
    model(|| {
        let parent = Arc::new(drainer());
        let maker = {
            let parent = parent.clone();
            thread::spawn(move || parent.child().ok())
        };
        parent.start_draining();
        assert!(parent.blocking_wait_timeout(FOREVER).is_ok());
        if let Some(child) = maker.join().unwrap() {
            assert!(child.is_drained());
        }
    });
}

/// `mark_not_ready` racing the creation of a child: once both have returned, the child is not
/// ready (it was either marked through the parent's list, or saw the parent not ready when made),
/// and it still admits work.
#[test]
fn child_creation_racing_mark_not_ready() {
    model(|| {
        let parent = Arc::new(drainer());
        let maker = {
            let parent = parent.clone();
            thread::spawn(move || parent.child().unwrap())
        };
        parent.mark_not_ready();
        let child = maker.join().unwrap();
        assert!(!child.is_ready());
        assert!(child.enter().is_ok());
    });
}

/// A blocking wait whose deadline passes (the clock moves, then it is unparked) racing the last
/// guard's drop: it reports drained, or a timeout that names the guard still in flight, never a
/// timeout with nothing in flight.
#[test]
fn wait_timeout_racing_last_drop() {
    model(|| {
        let clock = ManualClock::new();
        let d = Arc::new(Drainer::builder().clock(clock.clone()).build().unwrap());
        let g = d.enter_owned().unwrap();
        d.start_draining();
        let waiter = {
            let d = d.clone();
            thread::spawn(move || d.blocking_wait_timeout(Duration::from_secs(1)))
        };
        let dropper = thread::spawn(move || drop(g));
        clock.advance(Duration::from_secs(2));
        waiter.thread().unpark();
        match waiter.join().unwrap() {
            Ok(_) => {}
            Err(t) => assert_eq!(t.in_flight(), 1, "timed out with {t}"),
        }
        dropper.join().unwrap();
        assert!(d.is_drained());
    });
}

/// Two racing start_draining calls on a parent with a child: once either call has returned (the
/// first or not), the child refuses new work too.
#[test]
fn racing_start_draining_calls_both_return_with_children_draining() {
    model(|| {
        let parent = Arc::new(drainer());
        let child = parent.child().unwrap();
        let starters: Vec<_> = (0..2)
            .map(|_| {
                let (parent, child) = (parent.clone(), child.clone());
                thread::spawn(move || {
                    parent.start_draining();
                    assert!(
                        child.enter().is_err(),
                        "the child admitted work after start_draining returned"
                    );
                })
            })
            .collect();
        for s in starters {
            s.join().unwrap();
        }
        assert!(parent.blocking_wait_timeout(FOREVER).is_ok());
        assert!(child.is_drained());
    });
}

/// An async waiter first polled with one waker, then re-polled with another while the last guard
/// drops: the re-registration replaces the waker (or sees the fire), so the wait completes.
#[test]
fn repolled_async_waiter_racing_last_drop() {
    model(|| {
        let d = Arc::new(drainer());
        let g = d.enter_owned().unwrap();
        d.start_draining();
        let mut w = Box::pin(d.wait());
        let noop = std::task::Waker::noop();
        let pending =
            std::future::Future::poll(w.as_mut(), &mut std::task::Context::from_waker(noop))
                .is_pending();
        assert!(pending);
        let dropper = thread::spawn(move || drop(g));
        block_on(w);
        assert!(d.is_drained());
        dropper.join().unwrap();
    });
}

/// A drainer and the count of frees of its state.
fn counted() -> (
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<Drainer<DropCountingClock>>,
) {
    let (clock, drops) = DropCountingClock::new();
    (
        drops,
        Arc::new(Drainer::builder().clock(clock).build().unwrap()),
    )
}

/// An owned guard's drop racing the drainer's: the state is freed exactly once, after both,
/// and never touched after its free (loom reports a use after free as a data race).
#[test]
fn owned_guard_drop_racing_drainer_drop() {
    model(|| {
        let (drops, d) = counted();
        let g = d.enter_owned().unwrap();
        let g2 = g.clone();
        let t = thread::spawn(move || drop(g));
        drop(d);
        drop(g2);
        t.join().unwrap();
        assert_eq!(drop_count(&drops), 1);
    });
}

/// The last owned guard completing a drain racing the drainer's drop and a waiter: the waiter
/// returns, the completion runs once, and the state is freed once, after the completion.
#[test]
fn orphaned_completion_racing_drainer_drop() {
    model(|| {
        let (drops, d) = counted();
        let g = d.enter_owned().unwrap();
        d.start_draining();
        let t = thread::spawn(move || drop(g));
        assert!(d.blocking_wait_timeout(FOREVER).is_ok());
        drop(d);
        t.join().unwrap();
        assert_eq!(drop_count(&drops), 1);
    });
}

/// A refused `enter` racing the last owned guard's completion, with the drainer dropped as
/// soon as draining has started and the enter has returned: the undo of the refused enter never
/// completes in the completer's place, so the completer never touches a freed state.
#[test]
fn refused_enter_cannot_take_the_completion_from_an_orphaned_guard() {
    model(|| {
        let (drops, d) = counted();
        let g = d.enter_owned().unwrap();
        let enterer = {
            let d = d.clone();
            thread::spawn(move || d.enter().map(drop).is_ok())
        };
        let dropper = thread::spawn(move || drop(g));
        d.start_draining();
        let admitted = enterer.join().unwrap();
        drop(d); // the last handle: the state may now be freed
        dropper.join().unwrap();
        assert_eq!(drop_count(&drops), 1);
        let _ = admitted;
    });
}
