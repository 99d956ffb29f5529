//! The drainer's errors: [`DrainRefused`] when it admits no new work, [`DrainTimeout`] when a
//! wait for the drain ends with work in flight.

use std::fmt;

/// [`Drainer::enter`](crate::drain::Drainer::enter) refused to admit new work.
///
/// Refusals happen before any work starts, so the caller can answer at once (HTTP 503 with
/// `Connection: close`, gRPC `UNAVAILABLE`) and the client can retry on another instance.
///
/// ```
/// use resile::drain::Drainer;
/// use resile::drain::DrainRefused;
///
/// let drainer = Drainer::new();
/// drainer.start_draining();
/// let err = drainer.enter().unwrap_err();
/// assert_eq!(err, DrainRefused::Draining);
/// assert_eq!(err.to_string(), "drainer refused new work: draining for shutdown");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DrainRefused {
    /// Draining has started: no new work is admitted. Send the caller elsewhere.
    Draining,
    /// The in-flight count is at its maximum
    /// ([`MAX_IN_FLIGHT`](crate::drain::MAX_IN_FLIGHT)); admitting more would overflow it.
    Full,
}

impl fmt::Display for DrainRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainRefused::Draining => {
                f.write_str("drainer refused new work: draining for shutdown")
            }
            DrainRefused::Full => f.write_str("drainer refused new work: in-flight count is full"),
        }
    }
}

impl std::error::Error for DrainRefused {}

/// A drain wait reached its deadline with work still in flight.
///
/// The drainer only reports: forcing the remaining work closed is the caller's decision.
///
/// ```
/// use resile::drain::Drainer;
/// use std::time::Duration;
///
/// let drainer = Drainer::new();
/// let _guard = drainer.enter().unwrap();
/// drainer.start_draining();
/// let timeout = drainer.blocking_wait_timeout(Duration::ZERO).unwrap_err();
/// assert_eq!(timeout.in_flight(), 1);
/// assert_eq!(timeout.to_string(), "drain timed out after 0ns with 1 still in flight");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DrainTimeout {
    pub(crate) in_flight: u64,
    pub(crate) waited: std::time::Duration,
}

impl DrainTimeout {
    /// How many guards were still alive at the deadline (the work that will be abandoned).
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// How long the call waited.
    pub fn waited(&self) -> std::time::Duration {
        self.waited
    }
}

impl fmt::Display for DrainTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drain timed out after {:?} with {} still in flight",
            self.waited, self.in_flight
        )
    }
}

impl std::error::Error for DrainTimeout {}
