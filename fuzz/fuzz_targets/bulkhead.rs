//! Differential fuzzing of the bulkhead against a plain sequential model: fail-fast acquires,
//! queued futures (polled, dropped waiting or dropped after a hand-off), permit drops, resizes
//! and close. After every step the bulkhead's answers, counters and wakes must match the model.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use resile::bulkhead::BulkheadError;
use resile::bulkhead::{Bulkhead, MAX_LIMIT};
use resile::clock::ManualClock;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    TryAcquire,
    /// `blocking_acquire_timeout`: zero fails fast; non-zero only where the model says it will not block.
    AcquireTimeout(bool),
    /// Start a future and poll it once.
    Acquire,
    Poll(u8),
    DropFuture(u8),
    DropPermit(u8),
    SetLimit(u8),
    Close,
}

/// How many ops one input runs.
const MAX_OPS: usize = 256;

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Waiting,
    Granted,
    Refused,
}

/// The model: a counter, a limit, a closed flag and a FIFO of future ids.
struct Model {
    limit: u32,
    in_flight: u32,
    closed: bool,
    queue: VecDeque<usize>,
    fates: Vec<Fate>,
    refused: u64,
    peak: u32,
}

impl Model {
    fn admit(&mut self) -> Result<(), BulkheadError> {
        if self.closed {
            self.refused += 1;
            Err(BulkheadError::Closed)
        } else if !self.queue.is_empty() || self.in_flight >= self.limit {
            self.refused += 1;
            Err(BulkheadError::Full { limit: self.limit })
        } else {
            self.take();
            Ok(())
        }
    }
    fn take(&mut self) {
        self.in_flight += 1;
        self.peak = self.peak.max(self.in_flight);
    }
    /// Hands free slots to the oldest waiters.
    fn dispatch(&mut self) {
        while !self.closed && self.in_flight < self.limit {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            self.take();
            self.fates[id] = Fate::Granted;
        }
    }
    fn release(&mut self) {
        self.in_flight -= 1;
        self.dispatch();
    }
}

fn poll<F: Future + Unpin>(f: &mut F, w: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(w))
}

fuzz_target!(|input: (u8, Vec<Op>)| {
    let (limit0, ops) = input;
    let limit0 = u32::from(limit0 % 4) + 1;
    let b = Bulkhead::builder()
        .name("fuzz")
        .limit(limit0)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let mut m = Model {
        limit: limit0,
        in_flight: 0,
        closed: false,
        queue: VecDeque::new(),
        fates: Vec::new(),
        refused: 0,
        peak: 0,
    };
    let mut permits = Vec::new();
    // Live futures: (model id, future, its wake counter, wakes seen when last checked).
    let mut futures = Vec::new();

    for op in ops.into_iter().take(MAX_OPS) {
        match op {
            Op::TryAcquire => {
                let got = b.try_acquire();
                let want = m.admit();
                assert_eq!(got.as_ref().err(), want.as_ref().err());
                permits.extend(got.ok());
            }
            Op::AcquireTimeout(zero) => {
                let free = m.closed || (m.queue.is_empty() && m.in_flight < m.limit);
                if !zero && !free {
                    continue; // it would block this single thread
                }
                let d = if zero {
                    Duration::ZERO
                } else {
                    Duration::from_secs(1)
                };
                let got = b.blocking_acquire_timeout(d);
                let want = m.admit();
                assert_eq!(got.as_ref().err(), want.as_ref().err());
                permits.extend(got.ok());
            }
            Op::Acquire => {
                let id = m.fates.len();
                let counter = Arc::new(Count(AtomicUsize::new(0)));
                let waker = Waker::from(counter.clone());
                let mut f = b.acquire();
                let got = poll(&mut f, &waker);
                // First poll: fail-fast admission, else queue (closed refuses).
                let fate = if m.closed {
                    m.refused += 1;
                    Fate::Refused
                } else if m.queue.is_empty() && m.in_flight < m.limit {
                    m.take();
                    Fate::Granted
                } else {
                    m.queue.push_back(id);
                    m.dispatch();
                    Fate::Waiting
                };
                m.fates.push(fate);
                match (got, fate) {
                    (Poll::Ready(Ok(p)), Fate::Granted) => permits.push(p),
                    (Poll::Ready(Err(e)), Fate::Refused) => assert!(e.is_closed()),
                    (Poll::Pending, Fate::Waiting) => futures.push((id, f, counter, waker)),
                    (got, fate) => panic!("first poll: {:?} vs model {fate:?}", got.is_ready()),
                }
            }
            Op::Poll(i) => {
                if futures.is_empty() {
                    continue;
                }
                let i = usize::from(i) % futures.len();
                let (id, f, _, waker) = &mut futures[i];
                let got = poll(f, waker);
                match (got, m.fates[*id]) {
                    (Poll::Ready(Ok(p)), Fate::Granted) => {
                        permits.push(p);
                        // A finished future: dropping it does nothing more.
                        drop(futures.swap_remove(i));
                    }
                    (Poll::Ready(Err(e)), Fate::Refused) => {
                        assert!(e.is_closed());
                        m.refused += 1;
                        drop(futures.swap_remove(i));
                    }
                    (Poll::Pending, Fate::Waiting) => {}
                    (got, fate) => panic!("poll: {:?} vs model {fate:?}", got.is_ready()),
                }
            }
            Op::DropFuture(i) => {
                if futures.is_empty() {
                    continue;
                }
                let (id, f, _, _) = futures.swap_remove(usize::from(i) % futures.len());
                drop(f);
                match m.fates[id] {
                    Fate::Waiting => {
                        m.queue.retain(|&q| q != id);
                        m.dispatch();
                    }
                    Fate::Granted => m.release(), // the slot goes on
                    Fate::Refused => {}
                }
                m.fates[id] = Fate::Refused;
            }
            Op::DropPermit(i) => {
                if permits.is_empty() {
                    continue;
                }
                drop(permits.swap_remove(usize::from(i) % permits.len()));
                m.release();
            }
            Op::SetLimit(n) => {
                let n = u32::from(n % 6); // 0 is refused
                let got = b.set_limit(n);
                if n == 0 {
                    assert_eq!(got.unwrap_err().field(), "limit");
                } else {
                    got.unwrap();
                    m.limit = n;
                    m.dispatch();
                }
            }
            Op::Close => {
                assert_eq!(b.close(), !m.closed);
                m.closed = true;
                for id in m.queue.drain(..) {
                    m.fates[id] = Fate::Refused;
                }
            }
        }

        // Every counter matches, and every future the model served or refused was woken.
        let got = b.metrics();
        assert_eq!(got.in_flight, m.in_flight);
        assert_eq!(got.limit, m.limit);
        assert_eq!(got.waiting, m.queue.len());
        assert_eq!(got.refused, m.refused);
        assert_eq!(got.peak_in_flight, m.peak);
        assert!(got.limit <= MAX_LIMIT);
        assert_eq!(b.is_closed(), m.closed);
        for (id, _, counter, _) in &futures {
            let woken = counter.0.load(Ordering::Relaxed) > 0;
            if m.fates[*id] != Fate::Waiting {
                assert!(woken, "future {id} was served or refused but never woken");
            }
        }
    }
    drop(futures);
    drop(permits);
    assert_eq!(b.metrics().in_flight, 0);
    assert_eq!(b.metrics().waiting, 0);
});
