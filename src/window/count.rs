//! The count-based window: the outcomes of the last N calls.
//!
//! PLACEHOLDER IMPLEMENTATION (a mutex around a ring). The lock-free ring described in
//! DESIGN.md replaces it; the public API below is the contract the breaker codes against.

use super::{Outcome, Tally};
use crate::error::ConfigError;
use crate::sync::{Mutex, lock};

/// The outcomes of the last `size` calls, with running totals.
///
/// ```
/// use resile::window::{CountWindow, Outcome};
/// let w = CountWindow::new(2).unwrap();
/// w.record(Outcome::Failure);
/// w.record(Outcome::Success);
/// let t = w.record(Outcome::Success); // the failure falls out
/// assert_eq!((t.calls, t.failures), (2, 0));
/// ```
#[derive(Debug)]
pub struct CountWindow {
    size: u32,
    inner: Mutex<(Vec<Option<Outcome>>, usize, Tally)>,
}

impl CountWindow {
    /// The largest window this type can hold.
    pub const MAX_SIZE: u32 = 1 << 16;

    /// A window of the last `size` calls, `1..=MAX_SIZE`.
    pub fn new(size: u32) -> Result<Self, ConfigError> {
        if size == 0 || size > Self::MAX_SIZE {
            return Err(ConfigError::new(
                "window_size",
                size,
                format!("1..={}", Self::MAX_SIZE),
            ));
        }
        Ok(Self {
            size,
            inner: Mutex::new((vec![None; size as usize], 0, Tally::default())),
        })
    }

    /// The number of slots.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Records one outcome, evicting the oldest once full; returns the totals just after.
    pub fn record(&self, outcome: Outcome) -> Tally {
        let mut g = lock(&self.inner);
        let (ring, pos, tally) = &mut *g;
        if let Some(old) = ring[*pos].replace(outcome) {
            let o = old.tally();
            tally.calls -= o.calls;
            tally.failures -= o.failures;
            tally.slow -= o.slow;
        }
        let n = outcome.tally();
        tally.calls += n.calls;
        tally.failures += n.failures;
        tally.slow += n.slow;
        *pos = (*pos + 1) % ring.len();
        *tally
    }

    /// The current totals.
    pub fn snapshot(&self) -> Tally {
        lock(&self.inner).2
    }

    /// Empties the window.
    pub fn reset(&self) {
        let mut g = lock(&self.inner);
        g.0.iter_mut().for_each(|s| *s = None);
        g.1 = 0;
        g.2 = Tally::default();
    }
}
