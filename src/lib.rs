//! # resile
//!
//! Lock-free resilience primitives for latency-critical services. Each keeps its state in one
//! atomic word (plus, where it needs history, a lock-free ring-buffer [window]), so the call that
//! guards a request costs a few nanoseconds, never blocks a thread it need not, and never loses a
//! count or a wakeup. Nothing depends on an async runtime: the futures run on any executor.
//!
//! ## The patterns and their types
//!
//! | pattern | the primitive | configured by | guards and futures | errors | snapshot |
//! | --- | --- | --- | --- | --- | --- |
//! | [circuit breaker](breaker) | [`CircuitBreaker`](breaker::CircuitBreaker) | [`BreakerBuilder`](breaker::BreakerBuilder) | [`BreakerPermit`](breaker::BreakerPermit), [`OwnedBreakerPermit`](breaker::OwnedBreakerPermit) | [`CircuitOpen`](breaker::CircuitOpen), [`BreakerError`](breaker::BreakerError) | [`BreakerMetrics`](breaker::BreakerMetrics), [`State`](breaker::State), [`ProbeMetrics`](breaker::ProbeMetrics), [`StateChange`](breaker::StateChange), [`Cause`](breaker::Cause), [`Breach`](breaker::Breach), [`TripReason`](breaker::TripReason) |
//! | [retry budget](budget) | [`RetryBudget`](budget::RetryBudget) | [`BudgetBuilder`](budget::BudgetBuilder) | - | [`BudgetExhausted`](budget::BudgetExhausted) | [`BudgetMetrics`](budget::BudgetMetrics) |
//! | [retry helper](retry) and [backoff] | [`Retry`](retry::Retry), [`Backoff`](backoff::Backoff) | [`RetryBuilder`](retry::RetryBuilder), [`BackoffBuilder`](backoff::BackoffBuilder) | - | [`RetryError`](retry::RetryError) | - |
//! | [bulkhead] | [`Bulkhead`](bulkhead::Bulkhead) | [`BulkheadBuilder`](bulkhead::BulkheadBuilder) | [`BulkheadPermit`](bulkhead::BulkheadPermit), [`OwnedBulkheadPermit`](bulkhead::OwnedBulkheadPermit), [`Acquire`](bulkhead::Acquire), [`AcquireOwned`](bulkhead::AcquireOwned) | [`BulkheadError`](bulkhead::BulkheadError) | [`BulkheadMetrics`](bulkhead::BulkheadMetrics), [`AdaptiveMetrics`](bulkhead::AdaptiveMetrics) |
//! | [adaptive concurrency limit](bulkhead::adaptive) | a [`Bulkhead`](bulkhead::Bulkhead) with a [`LimitAlgorithm`](bulkhead::adaptive::LimitAlgorithm): [`Aimd`](bulkhead::adaptive::Aimd), [`Vegas`](bulkhead::adaptive::Vegas), [`Gradient2`](bulkhead::adaptive::Gradient2) | [`BulkheadBuilder::adaptive`](bulkhead::BulkheadBuilder::adaptive), [`Unreported`](bulkhead::adaptive::Unreported) | the bulkhead's permits, reporting [`success`](bulkhead::BulkheadPermit::success), [`dropped`](bulkhead::BulkheadPermit::dropped), [`ignore`](bulkhead::BulkheadPermit::ignore) or a classified [`record`](bulkhead::BulkheadPermit::record); the tower layer's `BulkheadSlot` and the policy report for you | [`BulkheadError`](bulkhead::BulkheadError) | [`WindowSummary`](bulkhead::adaptive::WindowSummary), [`LimitChange`](bulkhead::adaptive::LimitChange), [`AdaptiveMetrics`](bulkhead::AdaptiveMetrics) |
//! | [graceful drainer](drain) | [`Drainer`](drain::Drainer) | [`DrainBuilder`](drain::DrainBuilder) | [`DrainGuard`](drain::DrainGuard), [`OwnedDrainGuard`](drain::OwnedDrainGuard), [`Wait`](drain::Wait), [`DrainingNotice`](drain::DrainingNotice) | [`DrainRefused`](drain::DrainRefused), [`DrainTimeout`](drain::DrainTimeout) | [`DrainMetrics`](drain::DrainMetrics), [`Phase`](drain::Phase), [`Drained`](drain::Drained) |
//! | keyed registries (feature `registry`) | `Registry` of any `Keyed` primitive, built from a `Template` | `RegistryBuilder`, `WhenFull`, `KeyHash` | `Handle` (or `Registry::with_or_create`) | `RegistryError`, `RegistryFull` | `RegistryMetrics`, `RegistryEvent`, `RegistryReport` (with `metrics`) |
//! | [all four composed](policy) | [`Policy`](policy::Policy) | [`PolicyBuilder`](policy::PolicyBuilder) | - | [`PolicyError`](policy::PolicyError) | - |
//!
//! Shared by all of them:
//!
//! | concern | types |
//! | --- | --- |
//! | what a result means | [`Classify`](classify::Classify), [`Verdict`](classify::Verdict), [`ErrIsFailure`](classify::ErrIsFailure), [`RetryIf`](classify::RetryIf) |
//! | reading time | [`Clock`](clock::Clock): [`SystemClock`](clock::SystemClock), [`CoarseClock`](clock::CoarseClock), [`RecentClock`](clock::RecentClock), [`ManualClock`](clock::ManualClock) |
//! | waiting for time | [`Timer`](timer::Timer): [`ThreadTimer`](timer::ThreadTimer), `TokioTimer` (feature `tokio`), [`Sleep`](timer::Sleep) |
//! | history | [`CountWindow`](window::CountWindow), [`TimeWindow`](window::TimeWindow), [`Outcome`](window::Outcome), [`Tally`](window::Tally) |
//! | bad configuration | [`ConfigError`](error::ConfigError): every builder's error, naming the field and the allowed range |
//! | observability | [`Report`](observe) (feature `metrics`), `RegistryReport` (features `metrics`, `registry`: per-key series, capped), [`state_change_hook`](observe::state_change_hook), [`limit_change_hook`](observe::limit_change_hook) (features `tracing`, `metrics`) |
//! | time limits | [`attempt_timeout`](policy::PolicyBuilder::attempt_timeout) and the retry's [`deadline`](retry::RetryBuilder::deadline), which cuts an attempt in flight on the policy's async path ([`PolicyError::TimedOut`](policy::PolicyError::TimedOut), [`PolicyError::DeadlineExceeded`](policy::PolicyError::DeadlineExceeded)); `TimeoutLayer` (`AttemptTimedOut`) and `DeadlineLayer` (`DeadlineExceeded`) in tower (feature `tower`) |
//! | tower (feature `tower`) | `DrainLayer`, `BulkheadLayer`, `BreakerLayer`, `DeadlineLayer`, `TimeoutLayer` and their services and futures; the guards' `Hold` (`UntilResponse`, `UntilBodyEnd`) and `Settle`, the bulkhead's `BulkheadSlot`; errors `AttemptTimedOut`, `DeadlineExceeded`; `RetryPolicy`, `BudgetSource` (feature `tower-retry`); keyed, with feature `registry`: `KeyedBreakerLayer`, `KeyedBulkheadLayer` and their services, `KeyedBudget` (`RetryPolicy::keyed`) |
//! | HTTP (feature `http`) | `GuardedBody` (guards held until the body ends), `RefusalLayer` (refusals as responses: `503`, and `504` for a deadline or an attempt timeout), `StatusClassify`, `retry_after`, `retry_after_at` (an injected wall clock) |
//!
//! Every primitive is built the same way: `X::builder()`, setters, then `build()`, which
//! validates and returns `Result<X, ConfigError>`. Names are `impl Into<Cow<'static, str>>`.
//! Waits follow tokio: `acquire()` is a future, `try_acquire()` fails fast, `blocking_*` block the
//! thread, and the `*_owned` forms borrow an `Arc` and return a guard that borrows nothing.
//!
//! ```
//! use resile::breaker::{BreakerError, CircuitBreaker};
//! use resile::bulkhead::Bulkhead;
//! use resile::drain::Drainer;
//!
//! let drainer = Drainer::new();
//! let bulkhead = Bulkhead::builder().name("db").limit(8).build()?;
//! let breaker = CircuitBreaker::builder().name("db").build()?;
//!
//! let _guard = drainer.enter()?; // refused once shutdown starts
//! let _permit = bulkhead.try_acquire()?; // refused when 8 calls are in flight
//! match breaker.call(|| Ok::<_, std::io::Error>(42)) {
//!     Ok(rows) => assert_eq!(rows, 42),
//!     Err(BreakerError::Refused(open)) => println!("db is down; retry in {:?}", open.retry_after()),
//!     Err(BreakerError::Inner(e)) => println!("db failed: {e}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Where the checks live
//!
//! - `loom-tests/`: loom models of every packed word's races (build with
//!   `RUSTFLAGS="--cfg resile_loom"`; the README says at which preemption bound).
//! - `fuzz/`: one differential target per primitive against a plain sequential model
//!   (`cargo +nightly fuzz run <target>`).
//! - `benches/`: criterion benches beside `Mutex` baselines and peer crates, and the `scaling`
//!   binary that reports thread scaling as ratios; the figures are in `BENCHMARKS.md`.
//! - `tests/`: integration tests (stress runs that check exact conservation, allocation-free hot
//!   paths, the tower stack, observability).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub(crate) mod counter;
pub(crate) mod sync;
#[cfg(all(test, not(resile_loom)))]
mod test_support;

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod classify;
pub mod clock;
pub mod drain;
pub mod error;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod observe;
pub mod policy;
#[cfg(feature = "registry")]
#[cfg_attr(docsrs, doc(cfg(feature = "registry")))]
pub mod registry;
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
    feature = "http",
    feature = "tokio",
    feature = "metrics",
    feature = "tracing"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
