//! loom models of the bulkhead's races (admission, release, hand-off, cancel, close, resize, and
//! an owned permit outliving the bulkhead), on the public API with limits of 1 or 2.
#![cfg(resile_loom)]

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::thread;
use resile::bulkhead::Bulkhead;
use resile::clock::ManualClock;
use resile_loom_tests::{DropCountingClock, drop_count, model};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A bulkhead on a manual clock that never moves: timed waits never time out inside a model, so
/// a waiter finishes only if it is handed a slot or refused.
fn bulkhead(limit: u32) -> Arc<Bulkhead<ManualClock>> {
    Arc::new(
        Bulkhead::builder()
            .name("loom")
            .limit(limit)
            .clock(ManualClock::new())
            .build()
            .unwrap(),
    )
}

const FOREVER: Duration = Duration::from_secs(3600);

/// Wakes a loom thread parked in [`block_on`].
struct Unpark(thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future on the current loom thread, parking between polls.
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// try_acquire racing a release and a close: at most the limit is admitted, a refusal after the
/// close says closed, and in the end every permit is back.
#[test]
fn try_acquire_races_release_and_close() {
    model(|| {
        let b = bulkhead(1);
        let p = b.try_acquire_owned().unwrap();
        let releaser = thread::spawn(move || drop(p));
        let closer = {
            let b = b.clone();
            thread::spawn(move || b.close())
        };
        let got = b.try_acquire().ok();
        if got.is_none() {
            // Refused: full (the release had not happened) or closed.
            let e = b.try_acquire().err();
            assert!(e.is_none_or(|e| e.is_full() || e.is_closed()));
        }
        drop(got);
        releaser.join().unwrap();
        assert!(closer.join().unwrap());
        assert!(b.try_acquire().unwrap_err().is_closed());
        assert_eq!(b.metrics().in_flight, 0);
    });
}

/// The main target: the last release racing a blocking waiter's registration. Whatever the
/// interleaving, the waiter finishes with the slot (no lost wakeup) and the count is exact.
#[test]
fn release_races_a_blocking_waiters_registration() {
    model(|| {
        let b = bulkhead(1);
        let p = b.try_acquire_owned().unwrap();
        let waiter = {
            let b = b.clone();
            thread::spawn(move || {
                let permit = b.blocking_acquire_timeout(FOREVER).unwrap();
                assert_eq!(b.metrics().in_flight, 1);
                drop(permit);
            })
        };
        drop(p);
        waiter.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting), (0, 0));
        assert!(b.try_acquire().is_ok(), "the WAITERS bit is clear again");
    });
}

/// The same race for a task: the future is woken and completes.
#[test]
fn release_races_an_async_waiters_registration() {
    model(|| {
        let b = bulkhead(1);
        let p = b.try_acquire_owned().unwrap();
        let releaser = thread::spawn(move || drop(p));
        let permit = block_on(b.acquire()).unwrap();
        drop(permit);
        releaser.join().unwrap();
        assert_eq!(b.metrics().in_flight, 0);
        assert!(b.try_acquire().is_ok());
    });
}

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// A queued future dropped while the release hands it the slot: the slot goes to the next waiter
/// (a blocked thread, which must finish), never lost and never doubled.
#[test]
fn cancel_races_a_hand_off() {
    model(|| {
        let b = bulkhead(1);
        let p = b.try_acquire_owned().unwrap();
        let mut first = b.clone().acquire_owned();
        assert!(noop_poll(&mut first).is_pending());
        let second = {
            let b = b.clone();
            thread::spawn(move || {
                let permit = b.blocking_acquire_timeout(FOREVER).unwrap();
                assert_eq!(b.metrics().in_flight, 1);
                drop(permit);
            })
        };
        let releaser = thread::spawn(move || drop(p));
        drop(first);
        releaser.join().unwrap();
        second.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting), (0, 0));
    });
}

/// Growing the limit racing a waiter and a fail-fast caller: the waiter is served, nobody sees
/// more than the limit inside, and everything is returned.
#[test]
fn resize_races_acquire() {
    model(|| {
        let b = bulkhead(1);
        let inside = Arc::new(AtomicU32::new(0));
        let p = b.try_acquire_owned().unwrap();
        inside.fetch_add(1, Ordering::SeqCst);
        let waiter = {
            let (b, inside) = (b.clone(), inside.clone());
            thread::spawn(move || {
                let permit = b.blocking_acquire_timeout(FOREVER).unwrap();
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(n <= 2, "{n} inside a bulkhead of at most 2");
                inside.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            })
        };
        let resizer = {
            let b = b.clone();
            thread::spawn(move || b.set_limit(2).unwrap())
        };
        if let Ok(q) = b.try_acquire() {
            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(n <= 2);
            inside.fetch_sub(1, Ordering::SeqCst);
            drop(q);
        }
        resizer.join().unwrap();
        inside.fetch_sub(1, Ordering::SeqCst);
        drop(p);
        waiter.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting, m.limit), (0, 0, 2));
        assert!(m.peak_in_flight <= 2);
    });
}

/// Three callers, two slots, two ways in: never more than the limit inside, and every permit
/// back at the end.
#[test]
fn never_more_than_the_limit_in_flight() {
    model(|| {
        let b = bulkhead(2);
        let inside = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let (b, inside) = (b.clone(), inside.clone());
                thread::spawn(move || {
                    let permit = if i == 0 {
                        b.blocking_acquire_timeout(FOREVER).ok()
                    } else {
                        b.try_acquire().ok()
                    };
                    if let Some(permit) = permit {
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(n <= 2, "{n} inside a bulkhead of 2");
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting), (0, 0));
        assert!(m.peak_in_flight <= 2);
    });
}

/// close racing a queued blocking waiter and the release: the waiter finishes either way (with
/// the slot, or refused as closed).
#[test]
fn close_races_a_waiter_and_a_release() {
    model(|| {
        let b = bulkhead(1);
        let p = b.try_acquire_owned().unwrap();
        let waiter = {
            let b = b.clone();
            thread::spawn(move || match b.blocking_acquire_timeout(FOREVER) {
                Ok(permit) => drop(permit),
                Err(e) => assert!(e.is_closed()),
            })
        };
        let closer = {
            let b = b.clone();
            thread::spawn(move || b.close())
        };
        drop(p);
        waiter.join().unwrap();
        closer.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting), (0, 0));
    });
}

/// A queued future re-polled with a new waker while the release hands it the slot: the hand-off
/// wakes the latest waker (or the re-poll sees the grant), so the future always completes.
#[test]
fn repoll_with_a_new_waker_races_a_hand_off() {
    model(|| {
        let b = bulkhead(1);
        let p = b.try_acquire_owned().unwrap();
        let mut f = b.clone().acquire_owned();
        assert!(noop_poll(&mut f).is_pending());
        let releaser = thread::spawn(move || drop(p));
        let permit = block_on(f).unwrap();
        drop(permit);
        releaser.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting), (0, 0));
    });
}

/// A queued future dropped while the bulkhead closes and the slot is released: nothing is
/// leaked, the queue ends empty, and the bulkhead stays closed.
#[test]
fn cancel_races_close_and_release() {
    model(|| {
        let b = bulkhead(1);
        let p = b.try_acquire_owned().unwrap();
        let mut f = b.clone().acquire_owned();
        assert!(noop_poll(&mut f).is_pending());
        let closer = {
            let b = b.clone();
            thread::spawn(move || b.close())
        };
        let releaser = thread::spawn(move || drop(p));
        drop(f);
        closer.join().unwrap();
        releaser.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting), (0, 0));
        assert!(b.try_acquire().unwrap_err().is_closed());
    });
}

/// A blocking waiter whose deadline passes (the clock moves, then it is unparked) while the
/// release hands it the slot, with a second waiter queued behind it: the first either keeps the
/// slot (it came in time) or gives it on to the second; the second is always served.
#[test]
fn timeout_races_a_hand_off() {
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(
            Bulkhead::builder()
                .name("loom")
                .limit(1)
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        let p = b.try_acquire_owned().unwrap();
        let first = {
            let b = b.clone();
            thread::spawn(
                move || match b.blocking_acquire_timeout(Duration::from_secs(1)) {
                    Ok(permit) => drop(permit),
                    Err(e) => assert!(e.is_timed_out(), "{e}"),
                },
            )
        };
        while b.metrics().waiting < 1 {
            thread::yield_now();
        }
        let second = {
            let b = b.clone();
            thread::spawn(move || drop(b.blocking_acquire_timeout(FOREVER).unwrap()))
        };
        while b.metrics().waiting < 2 {
            thread::yield_now();
        }
        let releaser = thread::spawn(move || drop(p));
        clock.advance(Duration::from_secs(2));
        first.thread().unpark();
        first.join().unwrap();
        releaser.join().unwrap();
        second.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.in_flight, m.waiting), (0, 0));
        assert!(b.try_acquire().is_ok());
    });
}

/// A bulkhead of `limit` and the count of frees of its state.
fn counted(
    limit: u32,
) -> (
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<Bulkhead<DropCountingClock>>,
) {
    let (clock, drops) = DropCountingClock::new();
    (
        drops,
        Arc::new(
            Bulkhead::builder()
                .limit(limit)
                .clock(clock)
                .build()
                .unwrap(),
        ),
    )
}

/// Owned permits released on two threads racing the bulkhead's drop: the state is freed exactly
/// once, after all three, and never touched after its free (loom reports a use after free as a
/// data race).
#[test]
fn owned_permit_releases_racing_the_bulkheads_drop() {
    model(|| {
        let (drops, b) = counted(2);
        let p = b.try_acquire_owned().unwrap();
        let q = b.try_acquire_owned().unwrap();
        let t = thread::spawn(move || drop(p));
        drop(b);
        drop(q);
        t.join().unwrap();
        assert_eq!(drop_count(&drops), 1);
    });
}

/// An owned permit released while an owned waiter is queued, racing the waiter's cancel and the
/// drop of the last handle of the bulkhead (held by the waiter): the release hands its slot on
/// (or gives it back) before the state can be freed, and the state is freed once.
#[test]
fn owned_release_handing_off_races_the_last_waiters_drop() {
    model(|| {
        let (drops, b) = counted(1);
        let b = Arc::new(b);
        let p = b.try_acquire_owned().unwrap();
        let mut fut = Box::pin(b.clone().acquire_owned());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            fut.as_mut().poll(&mut cx).is_pending(),
            "queued behind the permit"
        );
        drop(b); // the waiter's Arc is the last handle now
        let t = thread::spawn(move || drop(p));
        drop(fut); // cancels (or gives back a slot handed to it), then drops the last handle
        t.join().unwrap();
        assert_eq!(drop_count(&drops), 1);
    });
}

/// Refusals from three threads while a fourth reads the metrics: under loom the counter has two
/// owned cells (threads 0 and 1 add with a plain load and store) and one shared cell (thread 2
/// adds with `fetch_add`). No refusal is lost, and the concurrent read is between 0 and 3.
#[test]
fn refusals_by_cell_owners_and_a_sharer_all_count() {
    model(|| {
        let b = bulkhead(1);
        let _held = b.try_acquire().unwrap();
        let refuse = |b: Arc<Bulkhead<ManualClock>>| move || assert!(b.try_acquire().is_err());
        let one = thread::spawn(refuse(b.clone()));
        let two = thread::spawn(refuse(b.clone()));
        assert!(b.try_acquire().is_err());
        let seen = b.metrics().refused;
        assert!(seen <= 3, "{seen}");
        one.join().unwrap();
        two.join().unwrap();
        assert_eq!(b.metrics().refused, 3);
    });
}
