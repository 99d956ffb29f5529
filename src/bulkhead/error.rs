//! The bulkhead's error.

use std::fmt;
use std::time::Duration;

/// Why a [bulkhead](crate::bulkhead::Bulkhead) refused a call: it was full, a wait for a slot
/// ran out of time, or the bulkhead is closed.
///
/// Building one never allocates. Like every refusal in the crate it does not carry the
/// primitive's name: the caller knows which bulkhead it asked, and the name is in the
/// bulkhead's metrics, events and `Debug`.
///
/// ```
/// use resile::bulkhead::{Bulkhead, BulkheadError};
///
/// let b = Bulkhead::builder().name("db").limit(1).build().unwrap();
/// let _held = b.try_acquire().unwrap();
/// let e = b.try_acquire().unwrap_err();
/// assert_eq!(e, BulkheadError::Full { limit: 1 });
/// assert!(e.is_full());
/// assert_eq!(e.to_string(), "bulkhead is full (limit 1 in flight); retry later or shed the call");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BulkheadError {
    /// Every slot was taken (or others were already queued for one) and the caller did not wait.
    Full {
        /// The bulkhead's limit when the call was refused.
        limit: u32,
    },
    /// The caller waited for a slot and none came in time.
    TimedOut {
        /// How long the caller waited, by the bulkhead's clock.
        waited: Duration,
    },
    /// The bulkhead was closed: it admits nothing new, and its waiters were woken with this error.
    Closed,
}

impl BulkheadError {
    /// Whether the bulkhead was full and the caller did not wait.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }

    /// Whether a wait for a slot timed out.
    pub fn is_timed_out(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }

    /// Whether the bulkhead was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl fmt::Display for BulkheadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { limit } => write!(
                f,
                "bulkhead is full (limit {limit} in flight); retry later or shed the call"
            ),
            Self::TimedOut { waited } => write!(
                f,
                "bulkhead: no slot came free within {waited:?}; retry later or shed the call"
            ),
            Self::Closed => f.write_str("bulkhead is closed and admits no new work"),
        }
    }
}

impl std::error::Error for BulkheadError {}
