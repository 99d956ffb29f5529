//! A lock-free circuit breaker with resilience4j's rules.
//!
//! A breaker guards calls to a dependency. While the dependency is healthy the breaker is
//! **closed**: calls pass and their outcomes go into a sliding window. When the window shows the
//! dependency failing, the breaker **opens**: calls are refused at once, with the time until it
//! will try again, instead of waiting on a dead dependency. After the open period it lets a few
//! **half-open** probes through; their results close it or open it again.
//!
//! ```text
//!              failure rate >= threshold, or slow-call rate >= threshold,
//!              or failures >= count (never below minimum_calls)
//!   +--------+ ----------------------------------------------------------> +------+
//!   | CLOSED |                                                            | OPEN | refuse, with
//!   +--------+ <---+                                            +-------> +------+ retry_after
//!       ^          | probes healthy        probes breach, or no |            |
//!       |          |                       decision in time     |            | open_for passed
//!       |          |                                            |            | (first caller)
//!       |          +-------------------- +-----------+ ---------+            |
//!       |                                | HALF-OPEN | <---------------------+
//!       |                                +-----------+  at most half_open_probes calls;
//!       |                                               decide after min(minimum_calls, probes)
//!       | reset()                                       results
//!   +-------------+   +----------+
//!   | FORCED-OPEN |   | DISABLED |   force_open() / disable(): every call refused / passed,
//!   +-------------+   +----------+   until reset()
//! ```
//!
//! The rules, precisely (resilience4j's, with the fixes its issue tracker asked for):
//! - The window is [count-based](BreakerBuilder::count_window) or [time-based](BreakerBuilder::time_window).
//!   Thresholds compare with `>=`; a call is slow when it takes strictly longer than the slow
//!   threshold. They are evaluated after every recorded outcome, successes included, and never
//!   before `minimum_calls` calls are in the window. A breach makes exactly one transition however
//!   many threads see it.
//! - Open refuses every call with [`CircuitOpen`], whose
//!   [`retry_after`](CircuitOpen::retry_after) says when a probe will be admitted. The open period
//!   may [grow](BreakerBuilder::open_for_growth) with each consecutive re-open, capped.
//! - Half-open admits at most `half_open_probes` calls. A probe permit dropped without a result
//!   gives its slot back. A half-open breaker that has not decided within its
//!   [timeout](BreakerBuilder::half_open_timeout) re-opens; a probe result that arrives after the
//!   timeout does not count. A result from a call admitted in an earlier state never counts as
//!   a probe.
//! - Transitions out of open and half-open happen lazily, in [`try_acquire`] (and, for the
//!   half-open timeout, in a late probe's report): [`state`] reports the state as last moved.
//!   Deadlines hold however long the breaker sits untouched.
//! - Other code can open the breaker on purpose: [`trip`](CircuitBreaker::trip) until a reset,
//!   [`trip_for`](CircuitBreaker::trip_for) a duration (then half-open, as after any open
//!   period), each with a [`TripReason`] that every refusal carries; a timed trip never shortens
//!   a refusal in force. [`force_half_open`](CircuitBreaker::force_half_open) starts a manual
//!   probe, [`reset`](CircuitBreaker::reset) closes it.
//! - In [metrics-only](BreakerBuilder::metrics_only) mode the breaker records everything and
//!   reports each breach once ([`on_breach`](BreakerBuilder::on_breach),
//!   [`BreakerMetrics::breaches`]) but never opens on its own evidence.
//!   [`reconfigure`](CircuitBreaker::reconfigure) changes thresholds, periods, probes and the
//!   mode of a running breaker, keeping its state and window; every decision sees one
//!   configuration whole.
//! - Every transition reaches the [state-change hook](BreakerBuilder::on_state_change) once, with
//!   its [`Cause`] (the [`Breach`] and its rates, a trip's reason, a reset).
//!
//! [`try_acquire`]: CircuitBreaker::try_acquire
//! [`state`]: CircuitBreaker::state
//!
//! # Three ways to call
//!
//! The split form: take a [`BreakerPermit`], run the call, report the outcome. A permit dropped without
//! a report is released unrecorded (or recorded as a failure if the thread is panicking).
//!
//! ```
//! use resile::breaker::CircuitBreaker;
//! use resile::clock::ManualClock;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let breaker = CircuitBreaker::builder()
//!     .clock(clock.clone())
//!     .count_window(4)
//!     .minimum_calls(4)
//!     .failure_rate_threshold(0.5)
//!     .open_for(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//!
//! for ok in [true, false, true, false] {
//!     let permit = breaker.try_acquire().expect("closed");
//!     if ok { permit.success() } else { permit.failure() }
//! }
//! // 2 failures of 4 calls = 50%: open.
//! let refused = breaker.try_acquire().unwrap_err();
//! assert!(refused.retry_after().unwrap() >= Duration::from_secs(5));
//! ```
//!
//! The wrapped form: [`call`](CircuitBreaker::call) runs a closure and classifies its `Err` as a
//! failure ([`call_with`](CircuitBreaker::call_with) lets you say, per error, failure, ignored or
//! success).
//!
//! ```
//! use resile::breaker::{BreakerError, CircuitBreaker};
//! use resile::classify::Verdict;
//!
//! let breaker = CircuitBreaker::builder().build().unwrap();
//! let v: Result<u32, BreakerError<&str>> = breaker.call(|| Ok(7));
//! assert_eq!(v.unwrap(), 7);
//! // A "not found" is the caller's problem, not the dependency's: don't count it.
//! let r = breaker.call_with(
//!     |r: Result<&u32, &&str>| match r {
//!         Err(&"not found") => Verdict::Ignore,
//!         Err(_) => Verdict::Failure,
//!         Ok(_) => Verdict::Success,
//!     },
//!     || Err::<u32, _>("not found"),
//! );
//! assert!(matches!(r, Err(BreakerError::Inner("not found"))));
//! assert_eq!(breaker.metrics().calls, 1);
//! ```
//!
//! The async form: [`call_async`](CircuitBreaker::call_async) wraps a future, on any executor.
//! Dropping the future before it finishes releases its permit unrecorded.
//!
//! ```
//! use resile::breaker::CircuitBreaker;
//!
//! let breaker = CircuitBreaker::builder().build().unwrap();
//! let fut = breaker.call_async(async { Ok::<_, std::io::Error>("pong") });
//! assert_eq!(futures::executor::block_on(fut).unwrap(), "pong");
//! ```
//!
//! # Cost
//!
//! A closed breaker with a count window reads no clock. Once its window is full of successes, a
//! successful call is two loads of one shared word and no write at all: nothing needs recording
//! when a success replaces a success. While failures sit in a full count window, a successful
//! call that cannot trip the breaker adds one to a counter the calling thread owns (a plain
//! store; threads beyond the first few share cells and `fetch_add`); the next failure puts
//! those successes in the window before itself, so every decision is taken on the same counts
//! as with a slot claimed per call (the window's docs say how). A failure that
//! trips nothing writes the window and, unless the window was marked clean, not the breaker's
//! shared word, so calls admitted on other cores keep reading it from their own caches. With a
//! time window, while the window holds no failure and no slow call, a successful call is one clock
//! reading and one compare-and-swap on its bucket's word for the calling thread's stripe, with
//! no decision to make. A refusal reads the clock once
//! ([`CoarseClock`](crate::clock::CoarseClock) and [`RecentClock`](crate::clock::RecentClock)
//! are the cheap ones; `BENCHMARKS.md` has the figures). No call path allocates, but for the
//! first success a count window defers (its thread cells, once in the breaker's life).
//! The packed word and its orderings are documented in the source of `breaker/state.rs`.

mod config;
mod error;
mod event;
mod params;
mod state;

pub use config::{BreakerBuilder, MAX_COUNT, MAX_DURATION};
pub use error::{BreakerError, CircuitOpen};
pub use event::{Breach, Cause, StateChange};
pub use state::{State, TripReason};

use crate::classify::{Classify, ErrIsFailure, Verdict};
use crate::clock::{Clock, SystemClock};
use crate::counter::StatCounter;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, fence};
use crate::window::{CountWindow, Outcome, Tally};
use config::{BreachHook, Hook, Settings, Window};
use crossbeam_utils::CachePadded;
use params::ParamsCell;
use state::{Decision, NOT_SLOW, Now, Params, Step, Why};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::time::Duration;

/// One tick of the breaker's half-open deadline (`2^20` ns, about 1.05 ms): half-open timeouts
/// are rounded up to whole ticks. Open periods are kept finer, to 1 024 ns, so an open period
/// ends within about a microsecond of its length.
pub const TICK: Duration = Duration::from_nanos(state::TICK_NANOS);

/// A snapshot of a breaker's counters.
///
/// `calls`, `failures` and `slow_calls` (and the rates) describe the closed window: kept while
/// open and half-open, emptied when the breaker closes again or is reset. The rates read `None`
/// while the window holds fewer calls than the minimum, so a dashboard can tell "healthy" from
/// "not enough calls yet".
///
/// ```
/// use resile::breaker::{CircuitBreaker, State};
/// use resile::clock::ManualClock;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::builder().clock(clock.clone()).minimum_calls(4).build()?;
/// for r in [Ok(()), Ok(()), Err("503"), Err("503")] { let _ = breaker.call(|| r); }
/// clock.advance(Duration::from_secs(2));
/// assert!(breaker.try_acquire().is_err()); // 2 failures of 4 calls = 50 %: open
/// let m = breaker.metrics();
/// assert_eq!((m.state, m.calls, m.failures, m.failure_rate), (State::Open, 4, 2, Some(0.5)));
/// assert_eq!((m.refused, m.refused_in_state, m.breaches), (1, 1, 1));
/// assert_eq!(m.since_last_transition, Duration::from_secs(2));
///
/// breaker.reset();
/// let _ = breaker.call(|| Err::<(), _>("503"));
/// let m = breaker.metrics();
/// assert_eq!((m.calls, m.failure_rate), (1, None)); // 1 call of the 4 a decision needs
/// assert_eq!((m.refused, m.refused_in_state), (1, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The state.
    pub state: State,
    /// `failures / calls`; `None` while the window holds fewer calls than `minimum_calls` (the
    /// rate decides nothing yet).
    pub failure_rate: Option<f64>,
    /// `slow_calls / calls`; `None` while the window holds fewer calls than `minimum_calls`.
    pub slow_call_rate: Option<f64>,
    /// Calls in the window.
    pub calls: u32,
    /// Failed calls in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Calls refused since the breaker was built.
    pub refused: u64,
    /// Calls refused since the current state began (a refusal decided as the state changed may
    /// count in either).
    pub refused_in_state: u64,
    /// Breaches of a threshold by the closed window since the breaker was built: its trips, or
    /// in [metrics-only](BreakerBuilder::metrics_only) mode the breaches it reported.
    pub breaches: u64,
    /// While half-open: the probes admitted and what they reported.
    pub probes: Option<ProbeMetrics>,
    /// While open or forced open by [a trip](CircuitBreaker::trip): its reason.
    pub tripped_by: Option<TripReason>,
    /// Time since the last transition (or since the breaker was built).
    pub since_last_transition: Duration,
}

/// The half-open probes of a [`BreakerMetrics`].
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// let breaker = CircuitBreaker::builder().half_open_probes(3).minimum_calls(3).build()?;
/// breaker.force_half_open();
/// let (a, b) = (breaker.try_acquire()?, breaker.try_acquire()?);
/// a.failure();
/// let probes = breaker.metrics().probes.unwrap();
/// assert_eq!((probes.admitted, probes.results, probes.failures), (2, 1, 1));
/// drop(b);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeMetrics {
    /// Probes admitted in this half-open state and not given back unreported.
    pub admitted: u32,
    /// Probe results counted.
    pub results: u32,
    /// Failed probe results.
    pub failures: u32,
    /// Slow probe results.
    pub slow: u32,
}

/// A circuit breaker: see the [module documentation](self).
///
/// ```
/// use resile::breaker::{CircuitBreaker, State};
/// let breaker = CircuitBreaker::builder().name("payments").build().unwrap();
/// assert_eq!(breaker.state(), State::Closed);
/// ```
pub struct CircuitBreaker<C: Clock = SystemClock> {
    word: CachePadded<AtomicU64>,
    /// Refusals, one cell per thread: the open breaker's refusal path is otherwise read-only.
    refused: StatCounter,
    /// The transition stamp: the `now` of the latest transition (raised before its CAS, so a
    /// lower bound on the age of any state a thread has loaded since), for
    /// [`BreakerMetrics::since_last_transition`] and for reading deadlines older than their tick field.
    changed_at: AtomicU64,
    window: Window,
    /// The live configuration every decision reads whole.
    pub(crate) params: ParamsCell,
    /// Whether a slow-call rule is set: a permit then reads the clock when taken. A hint for the
    /// healthy path alone (a permit taken without a start is never slow); the rule itself is in
    /// `params`.
    timed: AtomicBool,
    /// The settings `params` was computed from; its lock serializes reconfigures.
    settings: Mutex<Settings>,
    /// Breaches of the closed window reported (trips, or metrics-only reports).
    breaches: AtomicU64,
    /// `refused` as the current state began, for the refusals since.
    refused_base: AtomicU64,
    clock: C,
    name: Cow<'static, str>,
    hook: Option<Hook>,
    breach_hook: Option<BreachHook>,
}

impl<C: Clock> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker<SystemClock> {
    /// A builder with resilience4j's defaults (see [`BreakerBuilder`]).
    pub fn builder() -> BreakerBuilder<SystemClock> {
        BreakerBuilder::new()
    }
}

impl<C: Clock> CircuitBreaker<C> {
    pub(crate) fn from_parts(
        clock: C,
        name: Cow<'static, str>,
        window: Window,
        settings: Settings,
        params: Params,
        hook: Option<Hook>,
        breach_hook: Option<BreachHook>,
    ) -> Self {
        let now = clock.now();
        Self {
            word: CachePadded::new(AtomicU64::new(state::CLOSED)),
            refused: StatCounter::new(),
            changed_at: AtomicU64::new(now),
            window,
            timed: AtomicBool::new(params.slow_nanos != NOT_SLOW),
            params: ParamsCell::new(params),
            settings: Mutex::new(settings),
            breaches: AtomicU64::new(0),
            refused_base: AtomicU64::new(0),
            clock,
            name,
            hook,
            breach_hook,
        }
    }

    /// The name given to the builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state as last moved (open and half-open move on in `try_acquire`).
    pub fn state(&self) -> State {
        State::of(self.word.load(Ordering::Acquire))
    }

    /// Asks to make a call: a [`BreakerPermit`] to report its outcome on, or the refusal.
    ///
    /// ```
    /// use resile::breaker::CircuitBreaker;
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// match breaker.try_acquire() {
    ///     Ok(permit) => permit.success(),
    ///     Err(refused) => panic!("closed breaker refused: {refused}"),
    /// }
    /// ```
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_, C>, CircuitOpen> {
        let w = self.word.load(Ordering::Acquire);
        let s = state::state_bits(w);
        if (s == state::CLOSED || s == state::DISABLED) && !self.timed.load(Ordering::Relaxed) {
            // The healthy path: two loads, no clock, no write.
            return Ok(BreakerPermit::new(self, state::generation(w), NOT_SLOW));
        }
        if s == state::OPEN {
            // The refusal path, inlined with the healthy one (a call and its frame cost about
            // what the rest of it does): one clock reading, no write to the word.
            let now = self.clock.now();
            if let Some(left) = state::remaining(w, self.at(now)) {
                self.refused.add(1);
                return Err(CircuitOpen::from_nanos(State::Open, left, state::cause(w)));
            }
            return self.acquire_timed(w, now);
        }
        self.acquire_other(w)
    }

    /// Every state but the plain closed path and open: closed with slow-call detection (the
    /// start time is read), half-open, forced open.
    #[inline(never)]
    fn acquire_other(&self, w: u64) -> Result<BreakerPermit<'_, C>, CircuitOpen> {
        let s = state::state_bits(w);
        if s == state::CLOSED || s == state::DISABLED {
            return Ok(BreakerPermit::new(
                self,
                state::generation(w),
                self.clock.now(),
            ));
        }
        self.acquire_slow(w)
    }

    /// [`try_acquire`](Self::try_acquire) for a shared breaker: the permit keeps it alive, so it
    /// can move into a future or another thread (the `tower` service's response future holds one).
    ///
    /// ```
    /// use resile::breaker::CircuitBreaker;
    /// use std::sync::Arc;
    /// let breaker = Arc::new(CircuitBreaker::builder().build().unwrap());
    /// let permit = breaker.try_acquire_owned().unwrap();
    /// std::thread::spawn(move || permit.failure()).join().unwrap();
    /// assert_eq!(breaker.metrics().failures, 1);
    /// ```
    #[inline]
    pub fn try_acquire_owned(
        self: &std::sync::Arc<Self>,
    ) -> Result<OwnedBreakerPermit<C>, CircuitOpen> {
        let (_, generation, start) = self.try_acquire()?.take();
        Ok(OwnedBreakerPermit {
            breaker: self.clone(),
            generation,
            start,
            done: false,
        })
    }

    #[cold]
    fn acquire_slow(&self, w: u64) -> Result<BreakerPermit<'_, C>, CircuitOpen> {
        let now = if state::state_bits(w) == state::FORCED_OPEN {
            0
        } else {
            self.clock.now()
        };
        self.acquire_timed(w, now)
    }

    #[cold]
    fn acquire_timed(&self, mut w: u64, now: u64) -> Result<BreakerPermit<'_, C>, CircuitOpen> {
        let mut t = self.at(now);
        let p = self.params.load();
        loop {
            let step = state::acquire(w, t, &p);
            if step.next != w {
                if let Err(seen) = self.install(w, &step, now) {
                    t = self.at_next(t, w, seen);
                    w = seen;
                    continue;
                }
                self.transitioned(&step, None);
            }
            return match step.verdict {
                Decision::Admit => Ok(BreakerPermit::new(self, state::generation(step.next), now)),
                Decision::Refuse {
                    retry_after,
                    state,
                    cause,
                } => {
                    self.refused.add(1);
                    let refusal = match state {
                        State::HalfOpen => State::HalfOpen,
                        State::ForcedOpen => State::ForcedOpen,
                        _ => State::Open,
                    };
                    Err(CircuitOpen::from_nanos(
                        refusal,
                        retry_after.unwrap_or(u64::MAX),
                        cause,
                    ))
                }
            };
        }
    }

    /// Runs `f` through the breaker; every `Err` counts as a failure. A panic in `f` is recorded
    /// as a failure and then continues unwinding.
    ///
    /// ```
    /// use resile::breaker::{BreakerError, CircuitBreaker};
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// let r: Result<(), BreakerError<&str>> = breaker.call(|| Err("timeout"));
    /// assert_eq!(r, Err(BreakerError::Inner("timeout")));
    /// assert_eq!(breaker.metrics().failures, 1);
    /// ```
    pub fn call<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, BreakerError<E>> {
        self.call_with(ErrIsFailure, f)
    }

    /// Runs `f` through the breaker; `classify` gives each result its [`Verdict`] (see
    /// [`crate::classify`]).
    ///
    /// ```
    /// use resile::breaker::CircuitBreaker;
    /// use resile::classify::Verdict;
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// let not_found_is_an_answer = |r: Result<&(), &&str>| match r {
    ///     Err(&"404") | Ok(_) => Verdict::Success,
    ///     Err(_) => Verdict::Failure,
    /// };
    /// let _ = breaker.call_with(not_found_is_an_answer, || Err::<(), _>("404"));
    /// assert_eq!((breaker.metrics().calls, breaker.metrics().failures), (1, 0));
    /// ```
    pub fn call_with<T, E>(
        &self,
        classify: impl Classify<T, E>,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, BreakerError<E>> {
        let permit = self.try_acquire().map_err(BreakerError::Refused)?;
        let r = f();
        permit.record(classify.verdict(r.as_ref()));
        r.map_err(BreakerError::Inner)
    }

    /// Wraps a future: it is admitted when first polled, and its output is recorded (every `Err`
    /// a failure). Dropping it unfinished releases the permit unrecorded.
    ///
    /// ```
    /// use resile::breaker::{BreakerError, CircuitBreaker};
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// breaker.force_open();
    /// let r = futures::executor::block_on(breaker.call_async(async { Ok::<_, ()>(1) }));
    /// assert!(matches!(r, Err(BreakerError::Refused(_))));
    /// ```
    pub async fn call_async<T, E, F>(&self, fut: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_async_with(ErrIsFailure, fut).await
    }

    /// [`call_async`](Self::call_async), with `classify` giving each result its [`Verdict`].
    ///
    /// ```
    /// use resile::breaker::CircuitBreaker;
    /// use resile::classify::Verdict;
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// let ignore_all = |_: Result<&u8, &()>| Verdict::Ignore;
    /// let fut = breaker.call_async_with(ignore_all, async { Err::<u8, ()>(()) });
    /// assert!(futures::executor::block_on(fut).is_err());
    /// assert_eq!(breaker.metrics().calls, 0);
    /// ```
    pub async fn call_async_with<T, E, F, K>(
        &self,
        classify: K,
        fut: F,
    ) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let permit = self.try_acquire().map_err(BreakerError::Refused)?;
        let r = fut.await;
        permit.record(classify.verdict(r.as_ref()));
        r.map_err(BreakerError::Inner)
    }

    /// Forces the breaker open: every call is refused until [`reset`](Self::reset) (or
    /// [`disable`](Self::disable)). The same as [`trip`](Self::trip) with
    /// [`TripReason::Manual`].
    pub fn force_open(&self) {
        self.trip(TripReason::Manual);
    }

    /// Opens the breaker on purpose, for `reason`, until [`reset`](Self::reset): forced open,
    /// every call refused with a [`CircuitOpen`] that carries the reason. Other code (a health
    /// check, an adaptive limiter, an outlier detector) takes a dependency out this way. Over a
    /// breaker already forced open it only changes the reason.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, State, TripReason};
    /// let breaker = CircuitBreaker::builder().build()?;
    /// breaker.trip(TripReason::OutlierDetection);
    /// assert_eq!(breaker.state(), State::ForcedOpen);
    /// let refused = breaker.try_acquire().unwrap_err();
    /// assert_eq!((refused.tripped_by(), refused.retry_after()), (Some(TripReason::OutlierDetection), None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trip(&self, reason: TripReason) {
        self.trip_step(reason, None);
    }

    /// Opens the breaker on purpose, for `reason`, for `duration`: open, every call refused with
    /// a [`CircuitOpen`] that carries the reason and the time left; after it the breaker goes
    /// half-open as after any open period, and its probes decide. A timed trip never shortens a
    /// refusal in force: over a breaker forced open, or open until later than the trip would
    /// end, it changes nothing. [`reset`](Self::reset) ends it early.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, State, TripReason};
    /// use resile::clock::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let breaker = CircuitBreaker::builder().clock(clock.clone()).half_open_probes(1).build()?;
    /// breaker.trip_for(TripReason::HealthCheck, Duration::from_secs(10))?;
    /// let refused = breaker.try_acquire().unwrap_err();
    /// assert_eq!(refused.tripped_by(), Some(TripReason::HealthCheck));
    /// assert_eq!(refused.retry_after(), Some(Duration::from_secs(10)));
    /// clock.advance(Duration::from_secs(10));
    /// breaker.try_acquire()?.success(); // the one probe, as after any open period
    /// assert_eq!(breaker.state(), State::Closed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`](crate::error::ConfigError) naming `duration` when it is longer than
    /// [`MAX_DURATION`]; the breaker is left as it was.
    pub fn trip_for(
        &self,
        reason: TripReason,
        duration: Duration,
    ) -> Result<(), crate::error::ConfigError> {
        let nanos = config::fits("duration", duration, Duration::ZERO)?;
        self.trip_step(reason, Some(nanos));
        Ok(())
    }

    /// [`trip_for`](Self::trip_for) until `deadline`, measured against [`Instant::now`] when
    /// called and then held on the breaker's clock. A deadline already past opens nothing.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, TripReason};
    /// use std::time::{Duration, Instant};
    /// let breaker = CircuitBreaker::builder().build()?;
    /// breaker.trip_until(TripReason::Manual, Instant::now() + Duration::from_secs(30))?;
    /// assert!(breaker.try_acquire().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`trip_for`](Self::trip_for): `deadline` further ahead than [`MAX_DURATION`].
    ///
    /// [`Instant::now`]: std::time::Instant::now
    pub fn trip_until(
        &self,
        reason: TripReason,
        deadline: std::time::Instant,
    ) -> Result<(), crate::error::ConfigError> {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        self.trip_for(reason, left)
    }

    /// Moves the breaker to half-open now, from any other state: a fresh set of
    /// [probes](BreakerBuilder::half_open_probes) decides, as after an open period. An operator
    /// checks a dependency this way without waiting out the open period (or a trip). Nothing
    /// changes when already half-open.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, State};
    /// let breaker = CircuitBreaker::builder().half_open_probes(1).minimum_calls(1).build()?;
    /// breaker.force_open();
    /// breaker.force_half_open();
    /// let probe = breaker.try_acquire()?;
    /// assert!(breaker.try_acquire().is_err()); // the one probe is out
    /// probe.success();
    /// assert_eq!(breaker.state(), State::Closed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn force_half_open(&self) {
        let now = self.clock.now();
        let mut w = self.word.load(Ordering::Acquire);
        let p = self.params.load();
        while let Some(step) = state::force_half_open(w, now, &p) {
            match self.install(w, &step, now) {
                Ok(_) => {
                    self.transitioned(&step, None);
                    return;
                }
                Err(seen) => w = seen,
            }
        }
    }

    fn trip_step(&self, reason: TripReason, open_for: Option<u64>) {
        let now = self.clock.now();
        let mut w = self.word.load(Ordering::Acquire);
        let mut t = self.at(now);
        while let Some(step) = state::trip(w, reason.code(), open_for, t) {
            match self.install(w, &step, now) {
                Ok(_) => {
                    self.transitioned(&step, None);
                    return;
                }
                Err(seen) => {
                    t = self.at_next(t, w, seen);
                    w = seen;
                }
            }
        }
    }

    /// Disables the breaker: every call passes and nothing is recorded, until
    /// [`reset`](Self::reset) (or [`force_open`](Self::force_open)).
    pub fn disable(&self) {
        self.manual(State::Disabled);
    }

    /// Back to closed with an empty window, from any state.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, State};
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// breaker.force_open();
    /// breaker.reset();
    /// assert_eq!(breaker.state(), State::Closed);
    /// ```
    pub fn reset(&self) {
        self.manual(State::Closed);
    }

    /// The counters now.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, State};
    /// let breaker = CircuitBreaker::builder().minimum_calls(1).failure_rate_threshold(1.0).build().unwrap();
    /// breaker.try_acquire().unwrap().success();
    /// let m = breaker.metrics();
    /// assert_eq!((m.state, m.calls, m.failures, m.failure_rate), (State::Closed, 1, 0, Some(0.0)));
    /// ```
    pub fn metrics(&self) -> BreakerMetrics {
        let w = self.word.load(Ordering::Acquire);
        let now = self.clock.now();
        let t = match &self.window {
            Window::Count(c) => c.snapshot(),
            Window::Time(tw) => tw.tally(now),
        };
        let state = State::of(w);
        let decides = t.calls > 0 && t.calls >= self.params.load().thresholds.min_calls;
        let refused = self.refused.sum();
        BreakerMetrics {
            state,
            failure_rate: decides.then(|| t.failure_rate()),
            slow_call_rate: decides.then(|| t.slow_rate()),
            calls: t.calls,
            failures: t.failures,
            slow_calls: t.slow,
            refused,
            refused_in_state: refused.saturating_sub(self.refused_base.load(Ordering::Relaxed)),
            breaches: self.breaches.load(Ordering::Relaxed),
            probes: (state == State::HalfOpen).then(|| {
                let (admitted, results, failures, slow) = state::probes(w);
                ProbeMetrics {
                    admitted,
                    results,
                    failures,
                    slow,
                }
            }),
            tripped_by: match state {
                State::Open | State::ForcedOpen => TripReason::from_code(state::cause(w)),
                _ => None,
            },
            since_last_transition: Duration::from_nanos(
                now.saturating_sub(self.changed_at.load(Ordering::Relaxed)),
            ),
        }
    }

    /// Changes the settings of a running breaker, keeping its state, its window's contents, its
    /// counters and its hooks. `change` gets a builder holding the current settings and returns
    /// it changed: thresholds, `minimum_calls`, the open period and its growth, the half-open
    /// probes and timeout, the slow-call rule and [metrics-only](BreakerBuilder::metrics_only)
    /// mode may change. Each decision sees one configuration whole, the old or the new.
    ///
    /// The new thresholds decide from the next result recorded (a reconfigure alone trips
    /// nothing). A deadline already set (an open period, a half-open timeout) runs out as set;
    /// the next one follows the new settings. A breaker switched to metrics-only while open stays
    /// open until its probes close it.
    ///
    /// ```
    /// use resile::breaker::{CircuitBreaker, State};
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::builder().count_window(4).minimum_calls(4).build()?;
    /// for ok in [true, true, true, false] {
    ///     let p = breaker.try_acquire()?;
    ///     if ok { p.success() } else { p.failure() }
    /// }
    /// assert_eq!(breaker.state(), State::Closed); // 25 % < 50 %
    /// breaker.reconfigure(|b| b.failure_rate_threshold(0.2).open_for(Duration::from_secs(5)))?;
    /// breaker.try_acquire()?.success(); // the next result decides: 1 of 4 = 25 % >= 20 %
    /// assert_eq!(breaker.state(), State::Open);
    /// assert!(breaker.try_acquire().unwrap_err().retry_after() <= Some(Duration::from_secs(5)));
    ///
    /// // What the live state cannot take is an error that names it, and changes nothing.
    /// let e = breaker.reconfigure(|b| b.count_window(10)).unwrap_err();
    /// assert_eq!(e.field(), "count_window");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`](crate::error::ConfigError) naming the field, as
    /// [`build`](BreakerBuilder::build) gives, or naming a setting a running breaker keeps (its
    /// window, name and hooks); the breaker is left as it was.
    pub fn reconfigure(
        &self,
        change: impl FnOnce(BreakerBuilder) -> BreakerBuilder,
    ) -> Result<(), crate::error::ConfigError> {
        let mut settings = crate::sync::lock(&self.settings);
        let builder = change(BreakerBuilder::with_settings(
            self.name.clone(),
            settings.clone(),
        ));
        let next = builder.into_settings(&self.name, &settings)?;
        let params = next.params(&self.window)?;
        self.params.store(params);
        self.timed
            .store(params.slow_nanos != NOT_SLOW, Ordering::Relaxed);
        *settings = next;
        Ok(())
    }

    #[inline]
    fn cas(&self, current: u64, new: u64) -> Result<u64, u64> {
        self.word
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }

    /// `now` as the pure functions take it; call it after loading the word the decision is about,
    /// so that the stamp read here is no earlier than that word's state (see `state.rs`, "Time
    /// and wrap-around").
    #[inline]
    fn at(&self, now: u64) -> Now {
        Now::new(now, self.changed_at.load(Ordering::Relaxed))
    }

    /// The time to decide at after a CAS over `w` failed, finding `seen`. The same generation is
    /// the same state, and `t`'s stamp was read after it was loaded, so `t` still holds; a stamp
    /// read now may carry the raise of a CAS that lost within this state (this thread's own
    /// included), too late for it. A new generation needs a new reading.
    #[inline]
    fn at_next(&self, t: Now, w: u64, seen: u64) -> Now {
        if state::generation(seen) == state::generation(w) {
            t
        } else {
            self.at(t.nanos)
        }
    }

    /// Installs `step` over `w` with one CAS. A transition first raises the stamp to `now`, so
    /// that whoever sees the new state (through the CAS's release) also sees a stamp no earlier
    /// than its entry. A CAS that then loses leaves the stamp late for the state it lost to
    /// (see "Time and wrap-around" in `state.rs`).
    #[inline]
    fn install(&self, w: u64, step: &Step, now: u64) -> Result<u64, u64> {
        if let Some((from, to)) = step.change {
            // A timed trip over open (`(Open, Open)`) enters a new open state too.
            if from != to || to == State::Open {
                self.changed_at.fetch_max(now, Ordering::Relaxed);
            }
        }
        self.cas(w, step.next)
    }

    /// Runs after a winning [`install`](Self::install): reports a breach of the closed window
    /// (`breach` carries its counts: the closed window's, or the probes'), then, for a transition,
    /// empties the window on a move to closed, clears `HOLD`, notes the refusals so far, and
    /// runs the hook (not for the reset of a closed breaker, nor a timed trip over open, which
    /// are no transitions).
    fn transitioned(&self, step: &Step, breach: Option<Breach>) {
        if step.why == Why::Breach {
            if let Some(b) = &breach {
                self.breaches.fetch_add(1, Ordering::Relaxed);
                if let Some(hook) = &self.breach_hook {
                    hook(b);
                }
            }
        }
        let Some((from, to)) = step.change else {
            return;
        };
        if to == State::Closed {
            match &self.window {
                Window::Count(c) => c.reset(),
                Window::Time(t) => t.reset(),
            }
            let g = state::generation(step.next);
            let mut w = step.next;
            while let Some(next) = state::clear_hold(w, g) {
                match self.cas(w, next) {
                    Ok(_) => break,
                    Err(seen) => w = seen,
                }
            }
        }
        if from == to {
            return;
        }
        self.refused_base
            .store(self.refused.sum(), Ordering::Relaxed);
        if let (Some(hook), Some(cause)) = (&self.hook, Cause::of(step.why, breach)) {
            hook(&StateChange { from, to, cause });
        }
    }

    fn manual(&self, to: State) {
        let now = self.clock.now();
        let mut w = self.word.load(Ordering::Acquire);
        while let Some(step) = state::manual(w, to) {
            match self.install(w, &step, now) {
                Ok(_) => {
                    self.transitioned(&step, None);
                    return;
                }
                Err(seen) => w = seen,
            }
        }
    }

    /// Records an outcome of a permit of `generation` taken at `start`.
    #[inline(always)]
    fn record(&self, generation: u32, start: u64, failed: bool) {
        if !failed
            && !self.timed.load(Ordering::Relaxed)
            && state::is_clean(self.word.load(Ordering::Acquire), generation)
        {
            // The healthy path: a fast success while the window holds no failure and no slow
            // call cannot trip anything. A count window (full of fast successes) is unchanged
            // by it, so nothing is written; a time window counts it with one CAS on its
            // bucket's own word.
            if let Window::Time(t) = &self.window {
                t.add_fast(self.clock.now());
            }
            return;
        }
        self.record_other(generation, start, failed);
    }

    #[inline(never)]
    fn record_other(&self, generation: u32, start: u64, failed: bool) {
        let w = self.word.load(Ordering::Acquire);
        if state::generation(w) != generation {
            return;
        }
        match state::state_bits(w) {
            state::CLOSED => {
                // (A fast success into a CLEAN window of this generation returned in `record`.)
                if w & state::HOLD != 0 {
                    return;
                }
                self.record_closed(w, generation, start, failed);
            }
            state::HALF_OPEN => self.record_probe(w, generation, start, failed),
            _ => {}
        }
    }

    /// A plain success into a closed count window, over `w0` (the word loaded before recording):
    /// the decision reads only the thresholds, and unless they breach nothing else of the
    /// configuration.
    #[inline]
    fn record_plain_success(&self, c: &CountWindow, w0: u64, generation: u32) {
        let th = self.params.load_thresholds();
        let (tally, deferred) = c.record_success_deferring(|t| th.closed_breach(*t));
        // A deferred success was asked `closed_breach` of these totals already.
        if deferred || !th.closed_breach(tally) {
            self.settle(w0, tally, Some(c.size()));
            return;
        }
        // It breached on these thresholds: decide on one whole configuration (a reconfigure
        // since may have moved them).
        self.decide_breaching_success(w0, generation, tally, c.size());
    }

    #[cold]
    fn decide_breaching_success(&self, w0: u64, generation: u32, tally: Tally, size: u32) {
        let p = self.params.load();
        self.decide_closed(
            w0,
            generation,
            tally,
            Some(size),
            Outcome::Success,
            None,
            &p,
        );
    }

    #[inline(never)]
    fn record_closed(&self, w0: u64, generation: u32, start: u64, failed: bool) {
        if let (false, NOT_SLOW, Window::Count(c)) = (failed, start, &self.window) {
            // A plain success: its permit read no clock, so it is never slow.
            return self.record_plain_success(c, w0, generation);
        }
        // One configuration, whole, for this result's class and its decision.
        let p = self.params.load();
        let timed = p.slow_nanos != NOT_SLOW || matches!(self.window, Window::Time(_));
        let now = if timed { Some(self.clock.now()) } else { None };
        let outcome = Outcome::new(failed, now.is_some_and(|n| p.is_slow(start, n)));
        if outcome == Outcome::Success && w0 & state::CLEAN != 0 {
            // `record`'s healthy path, reached here when slow calls are detected.
            if let (Window::Time(t), Some(now)) = (&self.window, now) {
                t.add_fast(now);
            }
            return;
        }
        let (tally, full_size) = match &self.window {
            // A plain success cannot raise a count window's failures or slow calls: unless the
            // totals as they stand breach, it is deferred (its thread's cell, no shared line)
            // and the decision below is the same as on the exact totals.
            Window::Count(c) if outcome == Outcome::Success => (
                c.record_success_lazily(|t| state::closed_breach(*t, &p)),
                Some(c.size()),
            ),
            Window::Count(c) => (c.record(outcome), Some(c.size())),
            Window::Time(t) => {
                let now = now.unwrap_or(0);
                let counted = t.record_counted(now, outcome);
                // The fast calls (kept out of the counted totals) only add to `calls`, and more
                // calls only lower a rate: unless the counted totals breach a threshold, the
                // whole tally cannot, and the fast words (one per stripe and bucket) need not be
                // summed. Failures and slow calls are exact either way.
                let could_breach = state::breached(
                    counted.calls,
                    counted.failures,
                    counted.slow,
                    p.thresholds.failure_count,
                    &p,
                );
                (if could_breach { t.tally(now) } else { counted }, None)
            }
        };
        self.decide_closed(w0, generation, tally, full_size, outcome, now, &p);
    }

    /// The decision after a closed result went into the window, over `w0` (the word loaded
    /// before recording): `tally` is the window's totals just after (`full_size`: a count
    /// window's size), `now` the time if the record read it.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn decide_closed(
        &self,
        w0: u64,
        generation: u32,
        tally: Tally,
        full_size: Option<u32>,
        outcome: Outcome,
        now: Option<u64>,
        p: &Params,
    ) {
        let breach = state::closed_breach(tally, p);
        let dirty = outcome != Outcome::Success;
        if breach || dirty {
            // Only a trip reads the time (its open deadline, the transition's stamp): a failure
            // or slow call that breaches nothing at most clears `CLEAN`, without a clock read.
            let now = match (breach, now) {
                (_, Some(n)) => n,
                (true, None) => self.clock.now(),
                (false, None) => 0,
            };
            if dirty {
                // The recorder's half of the `CLEAN` fence pair ("Orderings" in `state.rs`):
                // the window write above, this fence, then the word's load below.
                fence(Ordering::SeqCst);
            }
            let mut w = self.word.load(Ordering::Acquire);
            while let Some(step) = state::closed_after(w, generation, breach, dirty, now, p) {
                match self.install(w, &step, now) {
                    Ok(_) => {
                        let counts =
                            breach.then(|| Breach::of(tally, p.thresholds.failure_count, p));
                        self.transitioned(&step, counts);
                        return;
                    }
                    Err(seen) => w = seen,
                }
            }
            if dirty {
                // The period this result was admitted in ended (a reset, or a trip by another
                // thread) while it was being recorded: it may have landed in a newer closed
                // period's window. Keep that period's `CLEAN` (and `SEQ`) truthful (no
                // decision: see "Orderings" in `state.rs`).
                while let Some(step) =
                    state::closed_after(w, state::generation(w), false, true, now, p)
                {
                    match self.cas(w, step.next) {
                        Ok(_) => return,
                        Err(seen) => w = seen,
                    }
                }
            }
        } else {
            self.settle(w0, tally, full_size);
        }
    }

    /// After a fast success whose `tally` breaches nothing, over `w0` (the word loaded before
    /// recording; `full_size`: a count window's size): ends a reported breach, and when the
    /// window holds no failure and no slow call (and a count window is full) marks it clean;
    /// only over `w0` itself, so a breach reported since (or in metrics-only mode a failure
    /// recorded since, which bumps `SEQ`) wins.
    #[inline]
    fn settle(&self, w0: u64, tally: Tally, full_size: Option<u32>) {
        let clean = tally.failures == 0
            && tally.slow == 0
            && full_size.is_none_or(|size| size == tally.calls);
        if let Some(next) = state::settled(w0, clean) {
            if self.cas(w0, next).is_ok() && next & !w0 & state::CLEAN != 0 {
                self.confirm_clean(next);
            }
        }
    }

    /// The setter's half of the `CLEAN` fence pair ("Orderings" in `state.rs`): after this
    /// thread's CAS set `CLEAN` (installing `w`), a fence, then the window's totals read again;
    /// if a failure or slow call has landed since the tally that looked clean, `CLEAN` is
    /// cleared, as that record may have loaded the word before the flag was set.
    #[cold]
    fn confirm_clean(&self, mut w: u64) {
        fence(Ordering::SeqCst);
        let clean = match &self.window {
            Window::Count(c) => c.is_full_of_successes(),
            Window::Time(t) => !t.counts_failures_or_slow(),
        };
        if clean {
            return;
        }
        let p = self.params.load();
        while let Some(step) = state::closed_after(w, state::generation(w), false, true, 0, &p) {
            match self.cas(w, step.next) {
                Ok(_) => return,
                Err(seen) => w = seen,
            }
        }
    }

    #[cold]
    fn record_probe(&self, mut w: u64, generation: u32, start: u64, failed: bool) {
        let now = self.clock.now();
        let p = self.params.load();
        let outcome = Outcome::new(failed, p.is_slow(start, now));
        let mut t = self.at(now);
        while let Some(step) = state::probe_result(w, generation, outcome, t, &p) {
            match self.install(w, &step, now) {
                Ok(_) => {
                    let counts = (step.why == Why::ProbesBreached).then(|| {
                        let (_, results, failures, slow) = state::probes(w);
                        let t = crate::window::Tally {
                            calls: results + 1,
                            failures: failures + u32::from(outcome.is_failure()),
                            slow: slow + u32::from(outcome.is_slow()),
                        };
                        let limit = if p.thresholds.failure_count == 0 {
                            0
                        } else {
                            p.thresholds.failure_count.min(p.needed)
                        };
                        Breach::of(t, limit, &p)
                    });
                    self.transitioned(&step, counts);
                    return;
                }
                Err(seen) => {
                    t = self.at_next(t, w, seen);
                    w = seen;
                }
            }
        }
    }

    #[cold]
    fn release(&self, generation: u32) {
        let mut w = self.word.load(Ordering::Acquire);
        while let Some(next) = state::release(w, generation) {
            match self.cas(w, next) {
                Ok(_) => return,
                Err(seen) => w = seen,
            }
        }
    }
}

/// Leave to make one call through a [`CircuitBreaker`]; report its outcome by consuming it.
///
/// Dropped without a report it is released unrecorded (a half-open probe slot is given back),
/// or, when the thread is panicking, recorded as a failure.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// let breaker = CircuitBreaker::builder().build().unwrap();
/// breaker.try_acquire().unwrap().failure();
/// breaker.try_acquire().unwrap().ignore();
/// drop(breaker.try_acquire().unwrap());
/// assert_eq!((breaker.metrics().calls, breaker.metrics().failures), (1, 1));
/// ```
#[must_use = "a permit reports the call's outcome: call success(), failure() or ignore()"]
pub struct BreakerPermit<'a, C: Clock = SystemClock> {
    breaker: &'a CircuitBreaker<C>,
    generation: u32,
    start: u64,
}

impl<C: Clock> fmt::Debug for BreakerPermit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("breaker", &self.breaker.name)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl<'a, C: Clock> BreakerPermit<'a, C> {
    #[inline]
    fn new(breaker: &'a CircuitBreaker<C>, generation: u32, start: u64) -> Self {
        Self {
            breaker,
            generation,
            start,
        }
    }

    #[inline]
    fn take(self) -> (&'a CircuitBreaker<C>, u32, u64) {
        let this = ManuallyDrop::new(self);
        (this.breaker, this.generation, this.start)
    }

    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        let (b, g, s) = self.take();
        b.record(g, s, false);
    }

    /// The call failed.
    #[inline]
    pub fn failure(self) {
        let (b, g, s) = self.take();
        b.record(g, s, true);
    }

    /// The outcome says nothing about the dependency: release the permit, record nothing.
    #[inline]
    pub fn ignore(self) {
        let (b, g, _) = self.take();
        b.release(g);
    }

    /// Reports the outcome `verdict` says: a success, a failure, or nothing.
    #[inline]
    pub fn record(self, verdict: Verdict) {
        match verdict {
            Verdict::Success => self.success(),
            Verdict::Failure => self.failure(),
            Verdict::Ignore => self.ignore(),
        }
    }
}

impl<C: Clock> Drop for BreakerPermit<'_, C> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.breaker.record(self.generation, self.start, true);
        } else {
            self.breaker.release(self.generation);
        }
    }
}

/// A [`BreakerPermit`] that owns an `Arc` of its breaker: see
/// [`try_acquire_owned`](CircuitBreaker::try_acquire_owned). Dropped without a report it is
/// released as a [`BreakerPermit`] is.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use std::sync::Arc;
/// let breaker = Arc::new(CircuitBreaker::builder().build().unwrap());
/// breaker.try_acquire_owned().unwrap().success();
/// breaker.try_acquire_owned().unwrap().ignore();
/// drop(breaker.try_acquire_owned().unwrap());
/// assert_eq!(breaker.metrics().calls, 1);
/// ```
#[must_use = "a permit reports the call's outcome: call success(), failure() or ignore()"]
pub struct OwnedBreakerPermit<C: Clock = SystemClock> {
    breaker: std::sync::Arc<CircuitBreaker<C>>,
    generation: u32,
    start: u64,
    /// Reported: the drop has nothing left to do.
    done: bool,
}

impl<C: Clock> fmt::Debug for OwnedBreakerPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBreakerPermit")
            .field("breaker", &self.breaker.name)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> OwnedBreakerPermit<C> {
    /// The breaker this permit belongs to.
    pub fn breaker(&self) -> &std::sync::Arc<CircuitBreaker<C>> {
        &self.breaker
    }

    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        self.record(Verdict::Success);
    }

    /// The call failed.
    #[inline]
    pub fn failure(self) {
        self.record(Verdict::Failure);
    }

    /// The outcome says nothing about the dependency: release the permit, record nothing.
    #[inline]
    pub fn ignore(self) {
        self.record(Verdict::Ignore);
    }

    /// Reports the outcome `verdict` says: a success, a failure, or nothing.
    #[inline]
    pub fn record(mut self, verdict: Verdict) {
        self.done = true;
        let (b, g, s) = (&self.breaker, self.generation, self.start);
        match verdict {
            Verdict::Success => b.record(g, s, false),
            Verdict::Failure => b.record(g, s, true),
            Verdict::Ignore => b.release(g),
        }
    }
}

impl<C: Clock> Drop for OwnedBreakerPermit<C> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            self.breaker.record(self.generation, self.start, true);
        } else {
            self.breaker.release(self.generation);
        }
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests;
