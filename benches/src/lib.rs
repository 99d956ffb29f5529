//! Shared harness for resile's benches.
//!
//! A benchmark *case* is one operation on one implementation (resile, a mutex baseline of the same
//! logic, or a peer crate). Every case runs on a [`Pool`] of threads that stay alive across
//! samples and start together behind a barrier, so neither thread spawning nor start skew is
//! measured. The criterion suites in `benches/` and the scaling binary both run the same
//! [`Case`]s, so their numbers describe the same code.
//!
//! A primitive's module (`breaker`, `budget`, ...) exports `cases()`; a case builds its state
//! once per sample (untimed) and times `iters` operations on each of `threads` threads.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a case's implementation is, for the report's ratios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// resile's own primitive.
    Resile,
    /// The same logic around a `std::sync::Mutex`.
    StdMutex,
    /// The same logic around a `parking_lot::Mutex`.
    ParkingLot,
    /// The same logic around a `std::sync::RwLock`.
    StdRwLock,
    /// The same logic around a `parking_lot::RwLock`.
    ParkingLotRwLock,
    /// A peer crate.
    Peer,
    /// A floor: the bare atomic operations the primitive cannot beat.
    Floor,
}

/// Runs one sample: builds fresh state (untimed), then times `iters` operations on each of
/// `threads` threads of the pool, returning the wall time from the common start to the last
/// thread's end.
pub type CaseFn = fn(pool: &Pool, threads: usize, iters: u64) -> Duration;

/// One row of a benchmark table.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// The operation, e.g. `breaker closed success`.
    pub group: &'static str,
    /// The implementation, e.g. `resile` or `recloser 1.4`.
    pub name: &'static str,
    /// What the implementation is.
    pub role: Role,
    /// Runs a sample.
    pub run: CaseFn,
}

type Job = Arc<dyn Fn(usize) + Send + Sync>;
type Message = (Job, Arc<Barrier>, Arc<Barrier>);

struct Worker {
    tx: Sender<Message>,
    handle: Option<JoinHandle<()>>,
}

/// Threads kept alive across samples.
pub struct Pool {
    workers: Vec<Worker>,
}

impl Pool {
    /// A pool of `n` threads.
    pub fn new(n: usize) -> Self {
        let workers = (0..n)
            .map(|i| {
                let (tx, rx): (Sender<Message>, Receiver<Message>) = channel();
                let handle = std::thread::Builder::new()
                    .name(format!("bench-{i}"))
                    .spawn(move || {
                        while let Ok((job, start, end)) = rx.recv() {
                            start.wait();
                            job(i);
                            end.wait();
                        }
                    })
                    .expect("spawn bench thread");
                Worker {
                    tx,
                    handle: Some(handle),
                }
            })
            .collect();
        Self { workers }
    }

    /// The number of threads.
    pub fn size(&self) -> usize {
        self.workers.len()
    }

    /// Runs `job(thread_index)` on `threads` threads started together; returns the wall time from
    /// the start barrier to the end barrier.
    pub fn run(&self, threads: usize, job: impl Fn(usize) + Send + Sync + 'static) -> Duration {
        assert!(
            threads >= 1 && threads <= self.workers.len(),
            "pool too small"
        );
        let job: Job = Arc::new(job);
        let start = Arc::new(Barrier::new(threads + 1));
        let end = Arc::new(Barrier::new(threads + 1));
        for w in &self.workers[..threads] {
            w.tx.send((job.clone(), start.clone(), end.clone()))
                .expect("bench thread alive");
        }
        start.wait();
        let t0 = Instant::now();
        end.wait();
        t0.elapsed()
    }

    /// The common shape of a case: `state` is shared by all threads, and each thread calls
    /// `op(&state)` `iters` times.
    pub fn run_op<S, F>(&self, threads: usize, iters: u64, state: S, op: F) -> Duration
    where
        S: Send + Sync + 'static,
        F: Fn(&S) + Send + Sync + 'static,
    {
        let state = Arc::new(state);
        self.run(threads, move |_| {
            for _ in 0..iters {
                op(&state);
            }
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            // Closing the channel ends the worker's loop.
            let (tx, _) = channel();
            drop(std::mem::replace(&mut w.tx, tx));
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// A [`resile::clock::RecentClock`] updated every millisecond by its ticker thread (which ends
/// when the case's state, the clock's last holder, is dropped).
pub fn recent_clock() -> resile::clock::RecentClock {
    resile::clock::RecentClock::with_ticker(Duration::from_millis(1)).expect("ticker thread")
}

/// The thread counts the criterion suites measure.
pub const THREADS: [usize; 3] = [1, 2, 4];

/// Registers every case in `cases` with criterion, one group per operation and thread count.
/// Each sample runs `iters / threads` operations per thread, so criterion's time per iteration is
/// the aggregate cost of one operation (ns/op over all threads).
pub fn criterion_suite(c: &mut criterion::Criterion, cases: &[Case]) {
    let pool = Pool::new(*THREADS.iter().max().unwrap_or(&1));
    let mut groups: Vec<&'static str> = cases.iter().map(|c| c.group).collect();
    groups.dedup();
    for group in groups {
        for &threads in &THREADS {
            let mut g = c.benchmark_group(format!("{group}/{threads}t"));
            g.throughput(criterion::Throughput::Elements(1));
            for case in cases.iter().filter(|c| c.group == group) {
                g.bench_function(case.name, |b| {
                    b.iter_custom(|iters| {
                        let per = (iters / threads as u64).max(1);
                        (case.run)(&pool, threads, per)
                    })
                });
            }
            g.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn pool_runs_every_thread_and_reuses_them() {
        let pool = Pool::new(4);
        for threads in [1, 2, 4] {
            let n = Arc::new(AtomicU64::new(0));
            let n2 = n.clone();
            pool.run_op(threads, 1000, (), move |_| {
                n2.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(n.load(Ordering::Relaxed), threads as u64 * 1000);
        }
    }
}

pub mod adaptive;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod drain;
pub mod floor;
pub mod registry;
pub mod tower_layers;
pub mod window;

/// Every case of every suite, in report order (the scaling binary runs them all).
pub fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(floor::cases());
    v.extend(window::cases());
    v.extend(breaker::cases());
    v.extend(budget::cases());
    v.extend(bulkhead::cases());
    v.extend(adaptive::cases());
    v.extend(drain::cases());
    v.extend(registry::cases());
    v.extend(tower_layers::cases());
    v
}
