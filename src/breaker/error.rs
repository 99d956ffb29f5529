//! The breaker's errors: [`CircuitOpen`] when it refuses a call, [`BreakerError`] for a call
//! it wrapped.

use super::{State, TripReason};
use std::fmt;

/// A circuit breaker refused the call without running it.
///
/// Carries how long until the breaker will admit a probe (`None` when it was forced open, which
/// lasts until someone resets it) and which state refused.
///
/// ```
/// use resile::breaker::{CircuitBreaker, State};
///
/// let breaker = CircuitBreaker::builder().build().unwrap();
/// breaker.force_open();
/// let err = breaker.try_acquire().unwrap_err();
/// assert_eq!(err.state(), State::ForcedOpen);
/// assert_eq!(err.retry_after(), None);
/// assert_eq!(err.to_string(), "circuit breaker forced open: call refused");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CircuitOpen {
    /// One word, so the refusal path returns it in one store (and does no `Duration`
    /// arithmetic): bits 0-55 the nanoseconds until a probe may be admitted ([`NO_RETRY_AFTER`]
    /// for none), bits 56-58 the refusing state's code, bits 59-62 the [`TripReason`] code (0
    /// when the breaker refused on its own evidence).
    packed: u64,
}

const NANOS_BITS: u32 = 56;
/// The nanoseconds field when there is no hint (and one above the longest hint, about 2.3
/// years).
const NO_RETRY_AFTER: u64 = (1 << NANOS_BITS) - 1;
const STATE_SHIFT: u32 = NANOS_BITS;
const CAUSE_SHIFT: u32 = NANOS_BITS + 3;

impl CircuitOpen {
    /// A refusal by a breaker in `state` (open, half-open with every probe taken, or forced
    /// open), with `retry_after` until a probe may be admitted (saturating at `2^56 - 2`
    /// nanoseconds, about 2.3 years; a breaker's own hints are at most hours).
    pub fn new(state: State, retry_after: Option<std::time::Duration>) -> Self {
        let nanos = retry_after.map_or(u64::MAX, crate::clock::duration_to_nanos);
        Self::from_nanos(state, nanos, 0)
    }

    /// This refusal, caused by a [trip](super::CircuitBreaker::trip) for `reason`.
    ///
    /// ```
    /// use resile::breaker::{CircuitOpen, State, TripReason};
    /// let refused = CircuitOpen::new(State::ForcedOpen, None).tripped(TripReason::Manual);
    /// assert_eq!(refused.tripped_by(), Some(TripReason::Manual));
    /// ```
    #[must_use]
    pub fn tripped(self, reason: TripReason) -> Self {
        Self {
            packed: (self.packed & !(0xF << CAUSE_SHIFT))
                | (u64::from(reason.code()) << CAUSE_SHIFT),
        }
    }

    /// A refusal with `retry_after_nanos` until a probe may be admitted (`u64::MAX`: no hint;
    /// saturating below it) and the `cause` code of a trip.
    #[inline]
    pub(crate) fn from_nanos(state: State, retry_after_nanos: u64, cause: u8) -> Self {
        let nanos = if retry_after_nanos == u64::MAX {
            NO_RETRY_AFTER
        } else {
            retry_after_nanos.min(NO_RETRY_AFTER - 1)
        };
        Self {
            packed: nanos | (state.code() << STATE_SHIFT) | (u64::from(cause & 0xF) << CAUSE_SHIFT),
        }
    }

    #[inline]
    fn retry_after_nanos(&self) -> u64 {
        self.packed & NO_RETRY_AFTER
    }

    /// How long until the breaker admits a probe; `None` when forced open. When half-open with
    /// every probe taken it is an estimate: the time until the half-open timeout plus one more
    /// open period, which is the wait if the probes never decide and a call arrives at the
    /// timeout (the re-open is made by the first call after it, and runs from then). The probes
    /// may decide sooner.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let nanos = self.retry_after_nanos();
        (nanos != NO_RETRY_AFTER).then(|| std::time::Duration::from_nanos(nanos))
    }

    /// The state that refused: [`State::Open`], [`State::HalfOpen`] (every probe slot taken) or
    /// [`State::ForcedOpen`].
    pub fn state(&self) -> State {
        State::of(self.packed >> STATE_SHIFT)
    }

    /// Why other code tripped the breaker, when it did ([`CircuitBreaker::trip`] and
    /// [`trip_for`](super::CircuitBreaker::trip_for)); `None` when the breaker opened on its own
    /// evidence (a breached threshold, failed probes).
    ///
    /// [`CircuitBreaker::trip`]: super::CircuitBreaker::trip
    pub fn tripped_by(&self) -> Option<TripReason> {
        TripReason::from_code(((self.packed >> CAUSE_SHIFT) & 0xF) as u8)
    }
}

impl fmt::Debug for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitOpen")
            .field("state", &self.state())
            .field("retry_after", &self.retry_after())
            .field("tripped_by", &self.tripped_by())
            .finish()
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state(), self.retry_after(), self.tripped_by()) {
            (State::ForcedOpen, _, Some(r)) if r != TripReason::Manual => {
                write!(f, "circuit breaker forced open ({r}): call refused")
            }
            (State::ForcedOpen, _, _) => f.write_str("circuit breaker forced open: call refused"),
            (State::Open, Some(d), Some(r)) => {
                write!(
                    f,
                    "circuit breaker tripped ({r}): call refused, retry after {d:?}"
                )
            }
            (State::Open, Some(d), None) => {
                write!(f, "circuit breaker open: call refused, retry after {d:?}")
            }
            (State::HalfOpen, Some(d), _) => write!(
                f,
                "circuit breaker half-open with every probe taken: call refused, retry after {d:?}"
            ),
            (_, Some(d), _) => write!(f, "circuit breaker refused the call, retry after {d:?}"),
            (_, None, _) => f.write_str("circuit breaker open: call refused"),
        }
    }
}

impl std::error::Error for CircuitOpen {}

/// The error of a wrapped call: refused by the breaker, or the call's own error.
///
/// ```
/// use resile::breaker::{BreakerError, CircuitBreaker, State};
///
/// let breaker = CircuitBreaker::builder().minimum_calls(1).build()?;
/// // The call ran and failed: its own error comes back (and trips the breaker).
/// let r: Result<(), _> = breaker.call(|| Err("timeout"));
/// assert_eq!(r, Err(BreakerError::Inner("timeout")));
/// // Now the breaker refuses, and the closure never runs.
/// let mut ran = false;
/// let r = breaker.call(|| { ran = true; Ok::<(), &str>(()) });
/// assert!(matches!(r, Err(BreakerError::Refused(e)) if e.state() == State::Open));
/// assert!(!ran);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerError<E> {
    /// The breaker refused; the call did not run.
    Refused(CircuitOpen),
    /// The call ran and returned this error.
    Inner(E),
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Refused(e) => e.fmt(f),
            BreakerError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BreakerError::Refused(e) => Some(e),
            BreakerError::Inner(e) => Some(e),
        }
    }
}
