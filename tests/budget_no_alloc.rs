//! deposit, withdraw, backoff and the retry loop allocate nothing: counted by a global allocator
//! that tallies the allocations of the current thread.

use rand::{SeedableRng, rngs::SmallRng};
use resile::backoff::{Backoff, Jitter};
use resile::budget::RetryBudget;
use resile::clock::ManualClock;
use resile::retry::Retry;
use std::sync::Arc;
use std::time::Duration;

mod common;

#[global_allocator]
static GLOBAL: common::CountingAlloc = common::CountingAlloc;

use common::allocations;

#[test]
fn hot_paths_allocate_nothing() {
    let clock = ManualClock::new();
    let fixed = RetryBudget::builder()
        .max_retries(50)
        .window(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let ratio = Arc::new(
        RetryBudget::builder()
            .ratio(0.5)
            .min_per_sec(1)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let backoffs: Vec<Backoff> = [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ]
    .into_iter()
    .map(|j| Backoff::builder().jitter(j).build().unwrap())
    .collect();
    let retry = Retry::builder()
        .max_attempts(4)
        .budget(ratio.clone())
        .deadline(Duration::from_secs(60))
        .clock(clock.clone())
        .timer(clock.clone())
        .rng_seed(1)
        .build()
        .unwrap();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut granted = 0u32;
    // Rounds of 7 ms: either count outlasts the fixed budget's 50 retries in 10 s (fewer under
    // miri, which interprets every call).
    let rounds = if cfg!(miri) { 150 } else { 2_000u32 };
    let n = allocations(|| {
        for i in 0..rounds {
            for b in [&fixed, &*ratio] {
                b.deposit();
                granted += u32::from(b.try_withdraw().is_ok()); // both granted and refused
                std::hint::black_box((b.can_retry(), b.balance(), b.metrics()));
            }
            let mut prev = Duration::ZERO;
            for b in &backoffs {
                prev = b.delay(i % 40 + 1, prev, &mut rng);
                std::hint::black_box(b.hinted_delay(1, prev, Some(prev), &mut rng));
            }
            let mut calls = 0;
            let out = retry.run(|| {
                calls += 1;
                if calls < 3 { Err(calls) } else { Ok(calls) }
            });
            std::hint::black_box(out.ok());
            clock.advance(Duration::from_millis(7));
        }
    });
    assert_eq!(n, 0, "allocations on the hot paths");
    // Both outcomes were exercised.
    assert!(granted > 0 && fixed.metrics().retries_refused > 0);
}
