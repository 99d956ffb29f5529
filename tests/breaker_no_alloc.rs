//! No call path of the circuit breaker allocates: a counting global allocator proves it.

use resile::breaker::{BreakerError, CircuitBreaker, State};
use resile::classify::Verdict;
use resile::clock::ManualClock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;

#[global_allocator]
static GLOBAL: common::CountingAlloc = common::CountingAlloc;

use common::allocations;

fn exercise(b: &CircuitBreaker<ManualClock>, clock: &ManualClock) {
    // Closed: successes, failures, ignored, dropped, wrapped and async calls, until it trips.
    for _ in 0..20 {
        b.try_acquire().unwrap().success();
    }
    b.try_acquire().unwrap().ignore();
    drop(b.try_acquire().unwrap());
    let _ = b.call(|| Ok::<_, ()>(1));
    let _ = b.call_with(|_: Result<&(), &u8>| Verdict::Success, || Err::<(), _>(7u8));
    let _ = futures::executor::block_on(b.call_async(async { Ok::<_, ()>(()) }));
    while b.state() == State::Closed {
        let _ = b.call(|| Err::<(), _>(()));
    }
    // Open: refusals, from every form.
    for _ in 0..10 {
        assert!(b.try_acquire().is_err());
    }
    assert!(matches!(
        b.call(|| Ok::<_, ()>(())),
        Err(BreakerError::Refused(_))
    ));
    // Half-open: probes, a dropped probe, then the close.
    clock.advance(Duration::from_secs(61));
    drop(b.try_acquire().unwrap());
    while b.state() != State::Closed {
        b.try_acquire().unwrap().success();
    }
    let _ = b.metrics();
    b.force_open();
    b.disable();
    b.reset();
}

#[test]
fn no_call_path_allocates() {
    let clock = ManualClock::new();
    let hook_calls = std::sync::Arc::new(AtomicUsize::new(0));
    let h = hook_calls.clone();
    let count = CircuitBreaker::builder()
        .clock(clock.clone())
        .count_window(10)
        .minimum_calls(5)
        .slow_calls(Duration::from_millis(1), 1.0)
        .on_state_change(move |_| {
            h.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let time = CircuitBreaker::builder()
        .clock(clock.clone())
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(5)
        .build()
        .unwrap();
    assert_eq!(
        allocations(|| drop(std::hint::black_box(vec![1u8]))),
        1,
        "the counter counts"
    );
    // Warm up anything lazily initialised outside the breaker (the executor's thread-local).
    futures::executor::block_on(async {});
    assert_eq!(allocations(|| exercise(&count, &clock)), 0);
    assert_eq!(allocations(|| exercise(&time, &clock)), 0);
    assert!(hook_calls.load(Ordering::Relaxed) >= 6, "the paths ran");
}
