//! One request through a tower middleware (`poll_ready`, `call`, and the response future polled
//! to its end, as a server does), around an inner service that answers at once: resile's
//! `DrainLayer`, `BulkheadLayer` and `BreakerLayer`, tower's own concurrency limit (one semaphore
//! shared by every thread's service, as the bulkhead is), and the bare inner service as the
//! floor. Each thread has its own service (as each connection does); the drainer, bulkhead,
//! breaker and semaphore are shared.

use crate::{Case, Pool, Role};
use resile::breaker::CircuitBreaker;
use resile::bulkhead::Bulkhead;
use resile::clock::{Clock, CoarseClock};
use resile::drain::Drainer;
use resile::tower::{BreakerLayer, BulkheadLayer, DrainLayer};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service};

/// The inner service: answers at once.
#[derive(Clone, Copy)]
pub(crate) struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// One request, end to end; it must succeed (a refusal would time the wrong path).
#[inline]
pub(crate) fn request<S: Service<u64, Response = u64>>(svc: &mut S, cx: &mut Context<'_>) {
    assert!(
        matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))),
        "service not ready"
    );
    let fut = pin!(svc.call(black_box(7)));
    match fut.poll(cx) {
        Poll::Ready(Ok(v)) => {
            black_box(v);
        }
        _ => panic!("request failed or pending"),
    }
}

/// Runs `iters` requests per thread, each thread through its own `layer.layer(Echo)`.
fn run_layer<L>(pool: &Pool, threads: usize, iters: u64, layer: L) -> Duration
where
    L: Layer<Echo> + Send + Sync + 'static,
    L::Service: Service<u64, Response = u64>,
{
    let layer = Arc::new(layer);
    pool.run(threads, move |_| {
        let mut svc = layer.layer(Echo);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..iters {
            request(&mut svc, &mut cx);
        }
    })
}

fn breaker<C: Clock>(clock: C) -> Arc<CircuitBreaker<C>> {
    Arc::new(
        CircuitBreaker::builder()
            .clock(clock)
            .count_window(100)
            .minimum_calls(100)
            .failure_rate_threshold(0.5)
            .open_for(Duration::from_secs(3600))
            .build()
            .expect("valid config"),
    )
}

fn bulkhead() -> Arc<Bulkhead<CoarseClock>> {
    Arc::new(
        Bulkhead::builder()
            .limit(1 << 20)
            .clock(CoarseClock::new())
            .build()
            .expect("valid config"),
    )
}

fn drain(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_layer(
        pool,
        threads,
        iters,
        DrainLayer::new(Arc::new(Drainer::new())),
    )
}

fn bulkhead_layer(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_layer(pool, threads, iters, BulkheadLayer::new(bulkhead()))
}

fn breaker_layer(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_layer(
        pool,
        threads,
        iters,
        BreakerLayer::new(breaker(CoarseClock::new())),
    )
}

fn concurrency_limit(pool: &Pool, threads: usize, iters: u64) -> Duration {
    run_layer(
        pool,
        threads,
        iters,
        // Shared by every thread's service, as resile's bulkhead is (`ConcurrencyLimitLayer`
        // would give each service a semaphore of its own).
        tower::limit::GlobalConcurrencyLimitLayer::new(1 << 20),
    )
}

fn bare(pool: &Pool, threads: usize, iters: u64) -> Duration {
    pool.run(threads, move |_| {
        let mut svc = Echo;
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..iters {
            request(&mut svc, &mut cx);
        }
    })
}

/// The tower cases: one request through one layer each.
pub fn cases() -> Vec<Case> {
    let c = |name, role, run| Case {
        group: "tower layer request",
        name,
        role,
        run,
    };
    vec![
        c("resile DrainLayer", Role::Resile, drain as _),
        c(
            "resile BulkheadLayer (fail fast)",
            Role::Resile,
            bulkhead_layer as _,
        ),
        c(
            "resile BreakerLayer + CoarseClock",
            Role::Resile,
            breaker_layer as _,
        ),
        c(
            "tower 0.5 GlobalConcurrencyLimitLayer",
            Role::Peer,
            concurrency_limit as _,
        ),
        c("inner service alone", Role::Floor, bare as _),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_serves_its_requests() {
        let pool = Pool::new(2);
        for case in cases() {
            (case.run)(&pool, 2, 100);
        }
    }
}
