//! [tower](https://docs.rs/tower) layers for the primitives (feature `tower`), and a
//! `tower::retry::Policy` paid from a retry budget (feature `tower-retry`).
//!
//! | layer | service | what it does |
//! | --- | --- | --- |
//! | [`DrainLayer`] | [`DrainService`] | admits each request through a [`Drainer`]; the guard lives until the response future completes or is dropped |
//! | [`BulkheadLayer`] | [`BulkheadService`] | holds a [`Bulkhead`] slot for each request until its response future ends; fails fast, or waits up to the bulkhead's max wait on your timer; reports each result to an adaptive limit ([`BulkheadLayer::classify`]) |
//! | [`BreakerLayer`] | [`BreakerService`] | runs each request through a [`CircuitBreaker`] and records its outcome, classified by your [`Classify`] |
//! | `KeyedBreakerLayer` (`registry`) | `KeyedBreakerService` | the same, with the breaker of the request's key in a [`Registry`](crate::registry::Registry) |
//! | `KeyedBulkheadLayer` (`registry`) | `KeyedBulkheadService` | the same, with a slot of the bulkhead of the request's key, failing fast |
//! | [`RetryPolicy`] (`tower-retry`) | `tower::retry::Retry` | retries paid from a [`RetryBudget`](crate::budget::RetryBudget) (a deposit per request, a withdrawal per retry), waiting a [`Backoff`](crate::backoff::Backoff) on your timer |
//! | [`DeadlineLayer`] | [`DeadlineService`] | ends a request, all its attempts and backoffs, at its deadline with [`DeadlineExceeded`], cutting the attempt in flight |
//! | [`TimeoutLayer`] | [`TimeoutService`] | gives up an attempt after its timeout with [`AttemptTimedOut`], or at the enclosing deadline if that is sooner |
//!
//! Every service's error is a [`BoxError`] (tower's convention): a refusal is the primitive's own
//! error ([`CircuitOpen`], [`BulkheadError`], [`DrainRefused`]), recovered with `downcast_ref`, and
//! the inner service's errors pass through boxed. A refusal comes from the response future,
//! never from `poll_ready`, so a refused request does not fail the service (as tower's
//! `LoadShed`).
//!
//! **`Send` futures.** Every service here is `Clone`, `Send` and `Sync`, and every response future
//! `Send`, when what it wraps is: what axum's `Router::layer` asks. One case rustc rejects
//! (rust-lang/rust#64552): awaiting a stack in a `Send`-checked async block (an axum handler,
//! `tokio::spawn`) when one of these layers wraps a service whose error type is [`BoxError`]
//! written as a closure's or a generic's type argument (`service_fn(|r| async {
//! Ok::<_, BoxError>(..) })`, `BoxCloneService<_, _, BoxError>`). That check forgets the
//! lifetimes inside such types, so the layer's `S::Error: Into<BoxError>` becomes
//! `Box<dyn Error + Send + Sync + '0>: From<..>` into the `'static` box for every `'0`, which
//! no impl gives: "implementation of `From` is not general enough". A layer that boxes its
//! inner error cannot do without that bound; give the innermost service a named type (as a real
//! client is) or an error type without a lifetime (`std::io::Error`, your own), or box the
//! whole stack.
//!
//! The bulkhead's wait, the retry's backoff and the time limits sleep on the
//! [timer](crate::timer) set on the bulkhead's builder, the retry policy and the timeout and
//! deadline layers (the default timer works on any executor and needs no runtime's time driver;
//! feature `tokio` has tokio's). The order that matches [`Policy`](crate::policy::Policy): drain
//! outermost, then the bulkhead, then the deadline, then retries, then the breaker around each
//! attempt, then the attempt timeout:
//!
//! | layer | why there |
//! | --- | --- |
//! | [`DrainLayer`] | refuses before anything is spent on the request |
//! | [`BulkheadLayer`] | one slot for the whole request, its retries included |
//! | [`DeadlineLayer`] | bounds the whole request: its attempts, backoffs, and the attempt in flight |
//! | `tower::retry::Retry` with [`RetryPolicy`] | retries what the breaker lets through, never a refusal or the deadline |
//! | [`BreakerLayer`] | counts each attempt, a timed-out or cut one as a failure |
//! | [`TimeoutLayer`] | bounds each attempt, inside the breaker so that it sees the timeout |
//!
//! A timed-out attempt is a failure the retry may retry (its classifier's call); the deadline's
//! expiry is its own error and ends the request. An HTTP service answers both with `504`
//! ([`RefusalLayer`](crate::http::RefusalLayer)).
//!
//! **Serving HTTP**, call `until_body_end()` on the drain and bulkhead layers (feature `http`):
//! a server sends the response body after the response future has completed, so a guard
//! released with the head would let the drain finish (and the process exit) in the middle of a
//! streamed body, and let a streaming response's slot go while it is still being sent. With it,
//! the guard moves into the body ([`GuardedBody`]) and is released when the body ends, fails or
//! is dropped, as tower-http's in-flight-requests layer does.
//!
//! # Keyed layers
//!
//! With feature `registry`, `KeyedBreakerLayer` and `KeyedBulkheadLayer` (also built by
//! `BreakerLayer::keyed` and `BulkheadLayer::keyed`) pick each request's primitive from a
//! [registry](crate::registry) by a key read from the request (the authority of an
//! `http::Request`'s URI, a tenant header), and `RetryPolicy::keyed` (with `tower-retry`) pays
//! each request's retries from its key's budget. A keyed service calls its key function on each
//! request, looks the key up (a hit takes no lock and allocates nothing; a new key builds its
//! primitive from the registry's template) and then does what the unkeyed layer does with that
//! primitive, with the same response future: the breaker's permit records the result when the
//! response future completes, the bulkhead's slot is held until the response (or, with
//! `until_body_end`, its body) ends. The permit holds the key's entry, so the registry never
//! evicts a key while one of its requests is in flight.
//!
//! A key the registry refuses (it is full and nothing in it is idle) fails the response future
//! with the [`RegistryError`](crate::registry::RegistryError) (boxed), as an open breaker fails
//! it with [`CircuitOpen`]; the inner service is not called. `RefusalLayer` (feature `http`)
//! answers it `503`, and the retry policy does not retry it. A
//! [`RegistryError::Config`](crate::registry::RegistryError::Config) (the key's per-key override
//! makes an invalid configuration) is not a refusal: it is answered `500`.
//!
//! # Example
//!
//! ```
//! use resile::breaker::CircuitBreaker;
//! use resile::bulkhead::Bulkhead;
//! use resile::drain::Drainer;
//! use resile::breaker::CircuitOpen;
//! use resile::tower::{BreakerLayer, BulkheadLayer, DrainLayer};
//! use std::sync::Arc;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let breaker = Arc::new(CircuitBreaker::builder().name("db").build()?);
//! let mut svc = ServiceBuilder::new()
//!     .layer(DrainLayer::new(Arc::new(Drainer::new())))
//!     .layer(BulkheadLayer::new(Arc::new(Bulkhead::builder().limit(8).build()?)))
//!     .layer(BreakerLayer::new(breaker.clone()))
//!     .service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req * 2) });
//!
//! futures::executor::block_on(async {
//!     assert_eq!(svc.ready().await?.call(21).await?, 42);
//!
//!     breaker.force_open(); // the database is down: refused at once
//!     let e = svc.ready().await?.call(21).await.unwrap_err();
//!     assert!(e.downcast_ref::<CircuitOpen>().is_some());
//!     Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

// The refusal checks' (and the docs').
#[cfg(any(feature = "tower-retry", feature = "http", doc))]
use crate::breaker::CircuitOpen;
use crate::breaker::{CircuitBreaker, OwnedBreakerPermit};
use crate::bulkhead::BulkheadError;
use crate::bulkhead::{AcquireOwned, Bulkhead, OwnedBulkheadPermit};
use crate::classify::{Classify, ErrIsFailure};
use crate::clock::{Clock, SystemClock, duration_to_nanos};
use crate::drain::DrainRefused;
use crate::drain::{Drainer, OwnedDrainGuard};
use crate::timer::Sleep;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// The error of every service here (tower's convention): downcast it to the primitive's refusal
/// or to the inner service's error.
///
/// ```
/// use resile::drain::Drainer;
/// use resile::drain::DrainRefused;
/// use resile::tower::{BoxError, DrainLayer};
/// use std::sync::Arc;
/// use tower::{Layer, Service, service_fn};
///
/// let drainer = Arc::new(Drainer::new());
/// let mut svc = DrainLayer::new(drainer.clone())
///     .layer(service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("db down")) }));
/// let status = |e: BoxError| if e.is::<DrainRefused>() { 503 } else { 500 };
/// let e = futures::executor::block_on(svc.call(1)).unwrap_err();
/// assert_eq!(e.downcast_ref::<std::io::Error>().unwrap().to_string(), "db down"); // boxed
/// assert_eq!(status(e), 500);
/// drainer.start_draining();
/// let e = futures::executor::block_on(svc.call(2)).unwrap_err();
/// assert_eq!(e.downcast_ref::<DrainRefused>(), Some(&DrainRefused::Draining)); // the refusal
/// assert_eq!(status(e), 503);
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error of a response future polled again after it completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PolledAfterCompletion;

impl fmt::Display for PolledAfterCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("response future polled after it completed")
    }
}

impl std::error::Error for PolledAfterCompletion {}

/// The first error in `e` or its chain of sources that `is` picks.
#[cfg(any(feature = "tower-retry", feature = "http"))]
fn find_in<'e>(
    e: &'e (dyn std::error::Error + 'static),
    is: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> Option<&'e (dyn std::error::Error + 'static)> {
    let mut next = Some(e);
    while let Some(e) = next {
        if is(e) {
            return Some(e);
        }
        next = e.source();
    }
    None
}

/// The first of this crate's refusals ([`CircuitOpen`], [`BulkheadError`], [`DrainRefused`], and
/// with feature `registry` a full registry's [`RegistryFull`](crate::registry::RegistryFull)) in
/// `e` or its chain of sources: how the tower retry and the HTTP refusal responses recognise a
/// request the process declined, however it was boxed or wrapped.
#[cfg(any(feature = "tower-retry", feature = "http"))]
pub(crate) fn refusal_in<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e (dyn std::error::Error + 'static)> {
    find_in(e, |e| {
        e.is::<CircuitOpen>()
            || e.is::<BulkheadError>()
            || e.is::<DrainRefused>()
            || is_registry_full(e)
    })
}

/// Whether `e` is a full registry's refusal of a new key: a [`RegistryFull`](crate::registry::RegistryFull),
/// or the [`RegistryError`](crate::registry::RegistryError) that holds one (a configuration
/// error is not a refusal).
#[cfg(any(feature = "tower-retry", feature = "http"))]
pub(crate) fn is_registry_full(e: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "registry")]
    {
        use crate::registry::{RegistryError, RegistryFull};
        e.is::<RegistryFull>() || matches!(e.downcast_ref(), Some(RegistryError::Full(_)))
    }
    #[cfg(not(feature = "registry"))]
    {
        let _ = e;
        false
    }
}

/// The first of the time limits' errors ([`AttemptTimedOut`], [`DeadlineExceeded`]) in `e` or
/// its chain of sources.
#[cfg(feature = "http")]
pub(crate) fn time_limit_in<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e (dyn std::error::Error + 'static)> {
    find_in(e, |e| {
        e.is::<AttemptTimedOut>() || e.is::<DeadlineExceeded>()
    })
}

/// The [`DeadlineExceeded`] in `e` or its chain of sources.
#[cfg(feature = "tower-retry")]
pub(crate) fn deadline_in(e: &(dyn std::error::Error + 'static)) -> bool {
    find_in(e, |e| e.is::<DeadlineExceeded>()).is_some()
}

#[cfg(feature = "http")]
mod body;
mod breaker;
mod bulkhead;
mod drain;
mod future;
#[cfg(feature = "registry")]
mod keyed;
mod timeout;

#[cfg(feature = "http")]
pub use body::{GuardedBody, UntilBodyEnd};
pub use breaker::{BreakerFuture, BreakerLayer, BreakerService};
pub use bulkhead::{BulkheadLayer, BulkheadService, BulkheadSlot};
pub use drain::{DrainLayer, DrainService};
pub use future::{Hold, ResponseFuture, Settle, UntilResponse};
#[cfg(feature = "registry")]
#[cfg_attr(docsrs, doc(cfg(feature = "registry")))]
pub use keyed::{KeyedBreakerLayer, KeyedBreakerService, KeyedBulkheadLayer, KeyedBulkheadService};
pub use timeout::{
    AttemptTimedOut, DeadlineExceeded, DeadlineFuture, DeadlineLayer, DeadlineService,
    TimeoutFuture, TimeoutLayer, TimeoutService,
};

#[cfg(feature = "tower-retry")]
mod retry;
#[cfg(all(feature = "tower-retry", feature = "registry"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "tower-retry", feature = "registry"))))]
pub use retry::KeyedBudget;
#[cfg(feature = "tower-retry")]
pub use retry::{BudgetSource, RetryPolicy};
