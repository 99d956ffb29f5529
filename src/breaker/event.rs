//! What the breaker's hooks see: a [`StateChange`] with its [`Cause`], and a [`Breach`] with the
//! counts and rates that crossed a threshold.

use super::state::{Params, Why};
use super::{State, TripReason};
use crate::window::Tally;

/// A transition, as the [state-change hook](super::BreakerBuilder::on_state_change) sees it.
///
/// The hook sees each transition once, `from` the state left `to` the state entered, and why; a
/// manual move to the state the breaker is already in is no transition.
///
/// ```
/// use resile::breaker::{Cause, CircuitBreaker, State::*, StateChange, TripReason};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let breaker = CircuitBreaker::builder().minimum_calls(1)
///     .on_state_change(move |c: &StateChange| log.lock().unwrap().push((c.from, c.to, c.cause)))
///     .build()?;
/// breaker.try_acquire()?.failure(); // 1 failure of 1 call: trips
/// breaker.force_open();
/// breaker.force_open(); // already forced open: nothing to report
/// breaker.reset();
/// let seen = seen.lock().unwrap();
/// assert!(matches!(seen[0], (Closed, Open, Cause::Breach(b)) if b.failure_rate == 1.0));
/// assert_eq!(seen[1..], [
///     (Open, ForcedOpen, Cause::Tripped(TripReason::Manual)),
///     (ForcedOpen, Closed, Cause::Reset),
/// ]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct StateChange {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Why.
    pub cause: Cause,
}

impl StateChange {
    /// A transition `from` one state `to` another, for `cause` (to feed a hook in tests, say).
    pub fn new(from: State, to: State, cause: Cause) -> Self {
        StateChange { from, to, cause }
    }
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Cause {
    /// The closed window breached a threshold: closed to open.
    Breach(Breach),
    /// The half-open probes' results breached a threshold: half-open to open.
    ProbesBreached(Breach),
    /// The half-open probes' results were healthy: half-open to closed.
    ProbesHealthy,
    /// The half-open probes did not decide within the half-open timeout: half-open to open.
    HalfOpenTimeout,
    /// The open period (or a timed trip) ended and a call asked: open to half-open.
    OpenPeriodEnded,
    /// Other code tripped the breaker ([`trip`](super::CircuitBreaker::trip),
    /// [`trip_for`](super::CircuitBreaker::trip_for), [`force_open`](super::CircuitBreaker::force_open)).
    Tripped(TripReason),
    /// [`force_half_open`](super::CircuitBreaker::force_half_open).
    ForcedHalfOpen,
    /// [`reset`](super::CircuitBreaker::reset).
    Reset,
    /// [`disable`](super::CircuitBreaker::disable).
    Disabled,
}

/// A breach of a threshold, with the counts it was decided on: the closed window's (the
/// [breach hook](super::BreakerBuilder::on_breach), [`Cause::Breach`]), or the half-open
/// probes' ([`Cause::ProbesBreached`]).
///
/// ```
/// use resile::breaker::{Breach, CircuitBreaker};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(None));
/// let log = seen.clone();
/// let breaker = CircuitBreaker::builder()
///     .count_window(4).minimum_calls(4).failure_rate_threshold(0.5)
///     .on_breach(move |b: &Breach| *log.lock().unwrap() = Some(*b))
///     .build()?;
/// for ok in [true, true, false, false] {
///     let p = breaker.try_acquire()?;
///     if ok { p.success() } else { p.failure() }
/// }
/// let b = seen.lock().unwrap().unwrap();
/// assert_eq!((b.calls, b.failures, b.failure_rate), (4, 2, 0.5));
/// assert!(b.failure_rate_exceeded && !b.slow_call_rate_exceeded && b.enforced);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Breach {
    /// Calls the decision counted.
    pub calls: u32,
    /// Failed calls among them.
    pub failures: u32,
    /// Slow calls among them.
    pub slow_calls: u32,
    /// `failures / calls`.
    pub failure_rate: f64,
    /// `slow_calls / calls`.
    pub slow_call_rate: f64,
    /// The failure rate reached its threshold.
    pub failure_rate_exceeded: bool,
    /// The slow-call rate reached its threshold.
    pub slow_call_rate_exceeded: bool,
    /// The failures reached the failure-count threshold.
    pub failure_count_exceeded: bool,
    /// The breach opened the breaker; `false` in [metrics-only](super::BreakerBuilder::metrics_only)
    /// mode, which only reports it.
    pub enforced: bool,
}

impl Breach {
    /// The breach `t` makes under `p`, with `count_limit` as the failure count (0: off).
    pub(crate) fn of(t: Tally, count_limit: u32, p: &Params) -> Self {
        let over = |n: u32, ppm: u32| {
            ppm != 0 && u64::from(n) * 1_000_000 >= u64::from(ppm) * u64::from(t.calls)
        };
        Breach {
            calls: t.calls,
            failures: t.failures,
            slow_calls: t.slow,
            failure_rate: t.failure_rate(),
            slow_call_rate: t.slow_rate(),
            failure_rate_exceeded: over(t.failures, p.thresholds.failure_rate_ppm),
            slow_call_rate_exceeded: over(t.slow, p.thresholds.slow_rate_ppm),
            failure_count_exceeded: count_limit != 0 && t.failures >= count_limit,
            enforced: p.enforce,
        }
    }
}

impl Cause {
    /// The public cause of a step's `why`; `breach` carries the counts of a breach.
    pub(crate) fn of(why: Why, breach: Option<Breach>) -> Option<Self> {
        Some(match why {
            Why::Nothing => return None,
            Why::Breach => Cause::Breach(breach?),
            Why::ProbesBreached => Cause::ProbesBreached(breach?),
            Why::ProbesHealthy => Cause::ProbesHealthy,
            Why::HalfOpenTimeout => Cause::HalfOpenTimeout,
            Why::OpenPeriodEnded => Cause::OpenPeriodEnded,
            Why::Tripped(code) => Cause::Tripped(TripReason::from_code(code)?),
            Why::ForcedHalfOpen => Cause::ForcedHalfOpen,
            Why::Reset => Cause::Reset,
            Why::Disabled => Cause::Disabled,
        })
    }
}
