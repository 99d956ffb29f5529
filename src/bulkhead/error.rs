//! The bulkhead's error.

use std::fmt;

/// Why a [bulkhead](crate::bulkhead::Bulkhead) refused a call: it was full, a wait for a slot
/// ran out of time, or the bulkhead is closed.
///
/// Building one never allocates (the name is `&'static str`).
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::bulkhead::BulkheadError;
///
/// let b = Bulkhead::builder().name("db").limit(1).build().unwrap();
/// let _held = b.try_acquire().unwrap();
/// let e = b.try_acquire().unwrap_err();
/// assert_eq!(e, BulkheadError::Full { name: "db", limit: 1 });
/// assert!(e.is_full());
/// assert_eq!(e.to_string(), "bulkhead `db` is full (limit 1 in flight); retry later or shed the call");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadError {
    /// Every slot was taken (or others were already queued for one) and the caller did not wait.
    Full {
        /// The bulkhead's name.
        name: &'static str,
        /// Its limit when the call was refused.
        limit: u32,
    },
    /// The caller waited for a slot and none came in time.
    TimedOut {
        /// The bulkhead's name.
        name: &'static str,
        /// How long the caller waited, by the bulkhead's clock.
        waited: std::time::Duration,
    },
    /// The bulkhead was closed: it admits nothing new, and its waiters were woken with this error.
    Closed {
        /// The bulkhead's name.
        name: &'static str,
    },
}

impl BulkheadError {
    /// The name of the bulkhead that refused.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Full { name, .. } | Self::TimedOut { name, .. } | Self::Closed { name } => name,
        }
    }

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
        matches!(self, Self::Closed { .. })
    }
}

impl fmt::Display for BulkheadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { name, limit } => write!(
                f,
                "bulkhead `{name}` is full (limit {limit} in flight); retry later or shed the call"
            ),
            Self::TimedOut { name, waited } => write!(
                f,
                "bulkhead `{name}`: no slot came free within {waited:?}; retry later or shed the call"
            ),
            Self::Closed { name } => {
                write!(f, "bulkhead `{name}` is closed and admits no new work")
            }
        }
    }
}

impl std::error::Error for BulkheadError {}
