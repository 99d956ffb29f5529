//! A seeded retry's backoff jitter through a policy: the same calls in the same order sleep the
//! same delays on every run, sync and async, and each call draws its own stream.

use futures::executor::block_on;
use resile::backoff::Backoff;
use resile::clock::ManualClock;
use resile::policy::Policy;
use resile::retry::Retry;
use resile::timer::{Sleep, Timer};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A timer that logs the delay of every sleep, blocking or awaited, and completes at once.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Duration>>>);

impl Recorder {
    /// The delays slept since the last call.
    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Timer for Recorder {
    fn sleep(&self, duration: Duration) -> Sleep {
        self.blocking_sleep(duration);
        Sleep::new(std::future::ready(()))
    }

    fn blocking_sleep(&self, duration: Duration) {
        self.0.lock().unwrap().push(duration);
    }
}

type Seeded = Policy<
    resile::clock::SystemClock,
    resile::clock::SystemClock,
    resile::clock::SystemClock,
    ManualClock,
>;

/// A policy whose retry is seeded with `seed`, and the timer its backoff sleeps on.
fn policy(seed: u64) -> (Seeded, Recorder) {
    // Full jitter (the default) over a 1 s ceiling: two equal delays by chance are unlikely.
    let backoff = Backoff::builder()
        .constant(Duration::from_secs(1))
        .build()
        .unwrap();
    let timer = Recorder::default();
    let retry = Retry::builder()
        .max_attempts(4)
        .backoff(backoff)
        .clock(ManualClock::new())
        .timer(timer.clone())
        .rng_seed(seed)
        .build()
        .unwrap();
    (Policy::builder().retry(retry).build().unwrap(), timer)
}

/// The delays of 3 failing calls (3 retries each).
fn sync_delays(seed: u64) -> Vec<Vec<Duration>> {
    let (p, timer) = policy(seed);
    (0..3)
        .map(|_| {
            let _ = p.call(|| Err::<(), _>("busy"));
            timer.take()
        })
        .collect()
}

fn async_delays(seed: u64) -> Vec<Vec<Duration>> {
    let (p, timer) = policy(seed);
    (0..3)
        .map(|_| {
            let _ = block_on(p.call_async(|| async { Err::<(), _>("busy") }));
            timer.take()
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
fn a_clone_shares_the_sequence_and_continues_from_the_calls_made_so_far() {
    // The seeded retry's call counter is shared by its clones (and so by the policy's): a clone
    // made after call 0 continues the one sequence, whichever copy makes the next call.
    let expected = sync_delays(7);
    let (p, timer) = policy(7);
    let _ = p.call(|| Err::<(), _>("busy"));
    assert_eq!(timer.take(), expected[0]);
    let q = p.clone();
    let _ = q.call(|| Err::<(), _>("busy"));
    let b = timer.take();
    let _ = p.call(|| Err::<(), _>("busy"));
    let a = timer.take();
    assert_eq!(b, expected[1]);
    assert_eq!(a, expected[2]);
}
