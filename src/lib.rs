//! # resile
//!
//! Lock-free resilience primitives for latency-critical services: a [circuit breaker](breaker),
//! a [retry budget](budget) with [backoff], a [bulkhead], and a graceful [drainer](drain). Each
//! keeps its state in one atomic word (plus, where it needs history, a lock-free ring-buffer
//! [window]), so the call that guards a request costs a few nanoseconds, never blocks a thread it
//! need not, and never loses a count or a wakeup.
//!
//! They compose in the order a request meets them: drain admission, then a bulkhead permit, then
//! attempts through the breaker, with retries paid from the budget. [`policy::Policy`] does that
//! composition for one operation, with an optional fallback, and its [`policy::PolicyError`] says
//! which layer refused and why.
//!
//! Time is injected through [`clock::Clock`]: the default is a precise monotonic clock, and tests
//! use [`clock::ManualClock`]. The crate depends on no async runtime: its futures run on any
//! executor.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub(crate) mod counter;
pub(crate) mod sync;

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod classify;
pub mod clock;
pub mod drain;
pub mod error;
pub mod observe;
pub mod policy;
pub mod retry;
pub mod timer;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
pub(crate) mod wait;
pub mod window;

/// The README's examples, compiled and run as doctests. Some use the optional features, so they
/// run with every feature on (`cargo test --workspace --all-features`, as CI does).
#[cfg(all(
    doctest,
    feature = "tower-retry",
    feature = "tokio",
    feature = "metrics",
    feature = "tracing"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
