//! A seeded policy's backoff jitter: the same calls in the same order sleep the same delays on
//! every run, sync and async, and each call draws its own stream.

use futures::executor::block_on;
use resile::backoff::Backoff;
use resile::clock::ManualClock;
use resile::policy::Policy;
use resile::retry::Retry;
use std::time::Duration;

fn policy(
    seed: u64,
) -> Policy<
    resile::clock::SystemClock,
    resile::clock::SystemClock,
    resile::clock::SystemClock,
    ManualClock,
> {
    // Full jitter (the default) over a 1 s ceiling: two equal delays by chance are unlikely.
    let backoff = Backoff::builder()
        .constant(Duration::from_secs(1))
        .build()
        .unwrap();
    let retry = Retry::builder()
        .max_attempts(4)
        .backoff(backoff)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    Policy::builder()
        .retry(retry)
        .rng_seed(seed)
        .build()
        .unwrap()
}

/// The delays of 3 failing calls (3 retries each).
fn sync_delays(seed: u64) -> Vec<Vec<Duration>> {
    let p = policy(seed);
    (0..3)
        .map(|_| {
            let mut slept = Vec::new();
            let _ = p.call_with_sleep(|| Err::<(), _>("busy"), |d| slept.push(d));
            slept
        })
        .collect()
}

fn async_delays(seed: u64) -> Vec<Vec<Duration>> {
    let p = policy(seed);
    (0..3)
        .map(|_| {
            let mut slept = Vec::new();
            let _ = block_on(p.call_async(
                || async { Err::<(), _>("busy") },
                |d| {
                    slept.push(d);
                    std::future::ready(())
                },
            ));
            slept
        })
        .collect()
}

#[test]
fn a_seeded_policy_replays_its_delays() {
    let first = sync_delays(7);
    assert_eq!(first.iter().map(Vec::len).sum::<usize>(), 9);
    assert_eq!(first, sync_delays(7));
    assert_eq!(async_delays(7), async_delays(7));
    // The sync and async paths draw from the same per-call streams.
    assert_eq!(first, async_delays(7));
}

#[test]
fn each_call_and_each_seed_draws_its_own_stream() {
    let d = sync_delays(7);
    assert_ne!(d[0], d[1]);
    assert_ne!(d[1], d[2]);
    assert_ne!(d, sync_delays(8));
}

#[test]
fn a_clone_continues_from_the_calls_made_so_far() {
    let p = policy(7);
    let _ = p.call_with_sleep(|| Err::<(), _>("busy"), |_| {});
    let q = p.clone();
    let mut a = Vec::new();
    let mut b = Vec::new();
    let _ = p.call_with_sleep(|| Err::<(), _>("busy"), |d| a.push(d));
    let _ = q.call_with_sleep(|| Err::<(), _>("busy"), |d| b.push(d));
    assert_eq!(a, b);
    assert_eq!(a, sync_delays(7)[1]);
}
