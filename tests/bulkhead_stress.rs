//! Stress: 4 threads, limit 3, many round trips each through every way in (try, blocking wait,
//! future), with an independent gauge of how many are inside. The gauge never exceeds the limit,
//! and every permit is back at the end.

use resile::bulkhead::Bulkhead;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const THREADS: usize = 4;
const LIMIT: u32 = 3;
/// A million round trips per thread (about 1 s in a debug build on 2 cores); under miri, which
/// interprets every call, enough for each way in to run many times.
const ROUND_TRIPS: u32 = if cfg!(miri) { 400 } else { 1_000_000 };

#[test]
fn never_more_than_the_limit_inside_and_every_permit_returned() {
    let b = Bulkhead::builder()
        .name("stress")
        .limit(LIMIT)
        .build()
        .unwrap();
    let inside = AtomicU32::new(0);
    let max_seen = AtomicU32::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (b, inside, max_seen) = (&b, &inside, &max_seen);
            s.spawn(move || {
                let mut done = 0;
                let mut i = 0u32;
                while done < ROUND_TRIPS {
                    i = i.wrapping_add(1);
                    // Mostly the fail-fast path; every 16th call waits (thread or task).
                    let permit = match (i + t as u32) % 32 {
                        0 => b.blocking_acquire_timeout(Duration::from_secs(60)).ok(),
                        16 => futures::executor::block_on(b.acquire()).ok(),
                        _ => b.try_acquire().ok(),
                    };
                    let Some(permit) = permit else {
                        std::hint::spin_loop();
                        continue;
                    };
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= LIMIT, "{now} inside a bulkhead of {LIMIT}");
                    max_seen.fetch_max(now, Ordering::Relaxed);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                    done += 1;
                }
            });
        }
    });
    let m = b.metrics();
    assert_eq!(m.in_flight, 0, "every permit returned");
    assert_eq!(m.waiting, 0);
    assert!(m.peak_in_flight <= LIMIT);
    assert!(max_seen.load(Ordering::Relaxed) <= LIMIT);
    let held: Vec<_> = (0..LIMIT).map(|_| b.try_acquire().unwrap()).collect();
    assert!(b.try_acquire().unwrap_err().is_full());
    drop(held);
}
