//! The retry budget's error.

use std::fmt;

/// A retry was refused because the [retry budget](crate::budget::RetryBudget) had no retry left
/// in its window.
///
/// Fail fast: the dependency is already being retried as much as the budget allows.
///
/// ```
/// use resile::budget::RetryBudget;
/// use resile::budget::BudgetExhausted;
/// use std::time::Duration;
///
/// let budget = RetryBudget::builder().max_retries(1).window(Duration::from_secs(60)).build()?;
/// assert_eq!(budget.try_withdraw(), Ok(()));
/// assert_eq!(budget.try_withdraw(), Err(BudgetExhausted));
/// assert_eq!(BudgetExhausted.to_string(), "retry budget exhausted: failing fast instead of retrying");
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BudgetExhausted;

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry budget exhausted: failing fast instead of retrying")
    }
}

impl std::error::Error for BudgetExhausted {}
