//! `tower::retry::Policy` paid from a [`RetryBudget`].

use crate::backoff::Backoff;
use crate::breaker::CircuitOpen;
use crate::budget::RetryBudget;
use crate::bulkhead::BulkheadError;
use crate::classify::{Classify, ErrIsFailure, RetryIf};
use crate::clock::{Clock, SystemClock};
use crate::drain::DrainRefused;
use crate::timer::{SharedTimer, Sleep, Timer};
use crate::tower::DeadlineExceeded;
use std::any::Any;
use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Whether a [`RetryPolicy`] retries `result`: never a refusal by one of this crate's
/// primitives, nor a request whose [deadline](super::DeadlineLayer) has passed, otherwise what
/// `classify` says (an [attempt timeout](super::AttemptTimedOut) is an error like any other).
///
/// A refusal ([`CircuitOpen`], [`BulkheadError`], [`DrainRefused`]; bare, or boxed as a
/// [`BoxError`](super::BoxError) the way the layers return them, or anywhere in a boxed error's
/// chain of [`source`](Error::source)s, as tower's `Buffer` wraps it) is this process declining
/// the call, not a failure of the dependency: an open breaker refuses at once so that callers
/// fail fast, and retrying it would spend the shared budget and wait out backoff on calls that
/// never reach the dependency.
fn should_retry<Res, E: 'static>(
    classify: &impl Classify<Res, E>,
    result: &Result<Res, E>,
) -> bool {
    match result {
        Err(e) if is_refusal(e) || is_past_deadline(e) => false,
        r => classify.is_retryable(r.as_ref()),
    }
}

/// Whether `is` picks `e`, bare, or boxed (itself or one of its sources).
fn error_is<E: 'static>(e: &E, is: fn(&(dyn Error + 'static)) -> bool) -> bool {
    let any = e as &dyn Any;
    if let Some(boxed) = any.downcast_ref::<super::BoxError>() {
        return is(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return is(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error>>() {
        return is(boxed.as_ref());
    }
    if let Some(bare) = any.downcast_ref::<CircuitOpen>() {
        return is(bare);
    }
    if let Some(bare) = any.downcast_ref::<BulkheadError>() {
        return is(bare);
    }
    if let Some(bare) = any.downcast_ref::<DrainRefused>() {
        return is(bare);
    }
    #[cfg(feature = "registry")]
    {
        if let Some(bare) = any.downcast_ref::<crate::registry::RegistryError>() {
            return is(bare);
        }
        if let Some(bare) = any.downcast_ref::<crate::registry::RegistryFull>() {
            return is(bare);
        }
    }
    any.downcast_ref::<DeadlineExceeded>()
        .is_some_and(|bare| is(bare))
}

/// Whether `e` is one of this crate's refusals, bare, or boxed (itself or one of its sources).
fn is_refusal<E: 'static>(e: &E) -> bool {
    error_is(e, |e| super::refusal_in(e).is_some())
}

/// Whether `e` is a [`DeadlineExceeded`], bare, or boxed (itself or one of its sources).
fn is_past_deadline<E: 'static>(e: &E) -> bool {
    error_is(e, super::deadline_in)
}

/// A `tower::retry::Policy` paid from a [`RetryBudget`]: each original request deposits into
/// the budget (when its first result comes back, unless that is a refusal by one of this crate's
/// layers: a request that never reached the dependency earns no retry), each retry withdraws
/// from it, and a retry the budget refuses is not made (the last result is returned). Between attempts it waits a
/// [`Backoff`] delay (or the delay the classifier's [`retry_after`](Classify::retry_after)
/// reads from the result) on its [timer](Self::timer); at most `max_attempts` attempts (default
/// 3). What it retries is its classifier's call (default [`ErrIsFailure`]: every `Err`), but
/// never a refusal by one of this crate's primitives, bare, boxed, or as the source of a boxed
/// error: that is this process declining the call, and retrying it would spend the shared
/// budget on calls that never reach the dependency. Nor is a request retried once its
/// [`DeadlineLayer`](super::DeadlineLayer) deadline has passed ([`DeadlineExceeded`]), or when
/// the backoff would end past it; an [`AttemptTimedOut`](super::AttemptTimedOut) is retried when
/// the classifier retries errors (both defaults do).
///
/// Requests must be `Clone` (tower retries a clone). Tower clones the policy for each request,
/// which is how the attempt count stays per request; share one budget across services by
/// cloning its `Arc`.
///
/// ```
/// use resile::backoff::Backoff;
/// use resile::budget::RetryBudget;
/// use resile::tower::RetryPolicy;
/// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder};
///
/// let budget = Arc::new(RetryBudget::builder().max_retries(10).build()?);
/// let policy = RetryPolicy::new(budget.clone())
///     .timer(|_d: Duration| std::future::ready(())) // resile::timer::TokioTimer, with feature `tokio`
///     .max_attempts(3)
///     .backoff(Backoff::builder().exponential(Duration::from_millis(10), 2).build()?);
///
/// let calls = Arc::new(AtomicU32::new(0));
/// let mut svc = ServiceBuilder::new().retry(policy).service_fn({
///     let calls = calls.clone();
///     move |_req: ()| {
///         let n = calls.fetch_add(1, Ordering::Relaxed);
///         async move { if n == 0 { Err("busy") } else { Ok(n) } }
///     }
/// });
/// assert_eq!(futures::executor::block_on(svc.call(())).unwrap(), 1);
/// assert_eq!(budget.metrics().retries_granted, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RetryPolicy<C: Clock = SystemClock, K = ErrIsFailure, B = Arc<RetryBudget<C>>> {
    /// Where each request's budget comes from: one shared budget, or a registry by key.
    budget: B,
    backoff: Backoff,
    max_attempts: u32,
    timer: SharedTimer,
    classify: K,
    /// The longest a request may take, all attempts and backoffs, in nanoseconds.
    deadline: Option<u64>,
    /// When this (per-request) clone's request began, by the budget's clock.
    started: Option<u64>,
    /// Attempts whose result this (per-request) clone has seen.
    attempts: u32,
    /// The delay before the previous retry (decorrelated jitter reads it).
    previous: Duration,
    clock: PhantomData<fn() -> C>,
}

impl<C: Clock> RetryPolicy<C> {
    /// A policy paid from `budget`: the default [`Backoff`] on the default
    /// [timer](crate::timer::ThreadTimer), 3 attempts, every `Err` retried but this crate's
    /// refusals.
    pub fn new(budget: Arc<RetryBudget<C>>) -> Self {
        Self::paid_from(budget)
    }
}

impl<C: Clock, B> RetryPolicy<C, ErrIsFailure, B> {
    /// The defaults (three attempts, the default backoff and timer, no deadline), retries paid
    /// from `budget`.
    fn paid_from(budget: B) -> Self {
        Self {
            budget,
            backoff: Backoff::default(),
            max_attempts: 3,
            timer: SharedTimer::default(),
            classify: ErrIsFailure,
            deadline: None,
            started: None,
            attempts: 0,
            previous: Duration::ZERO,
            clock: PhantomData,
        }
    }
}

impl<C: Clock, K> RetryPolicy<C, K> {
    /// The budget retries are paid from.
    pub fn budget(&self) -> &Arc<RetryBudget<C>> {
        &self.budget
    }
}

impl<C: Clock, K, B> RetryPolicy<C, K, B> {
    /// At most `n` attempts, the original one included (0 counts as 1: never retry).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The delays between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A deadline across all attempts of one request, measured from its first attempt on the
    /// budget's clock: no retry is made whose backoff would end at or past it (the last result is
    /// returned). An attempt already running is not interrupted: to cut it at the deadline, put
    /// a [`DeadlineLayer`](super::DeadlineLayer) around the retry instead (this policy then
    /// stops at that deadline too), and bound each attempt with a
    /// [`TimeoutLayer`](super::TimeoutLayer) inside the breaker, so the breaker counts a
    /// timed-out attempt as a failure.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(crate::clock::duration_to_nanos(deadline));
        self
    }

    /// The timer the backoff sleeps on (see [`crate::timer`]).
    pub fn timer(mut self, timer: impl Timer) -> Self {
        self.timer = SharedTimer::new(timer);
        self
    }

    /// Retry only the errors for which `retryable` returns true ([`RetryIf`]).
    pub fn retry_if<E, F: Fn(&E) -> bool>(self, retryable: F) -> RetryPolicy<C, RetryIf<F>, B> {
        self.classify(RetryIf(retryable))
    }

    /// Classify results with `classify`: which are retried, and after what delay the server
    /// asked for (see [`crate::classify`]).
    pub fn classify<K2>(self, classify: K2) -> RetryPolicy<C, K2, B> {
        RetryPolicy {
            budget: self.budget,
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            timer: self.timer,
            classify,
            deadline: self.deadline,
            started: self.started,
            attempts: self.attempts,
            previous: self.previous,
            clock: PhantomData,
        }
    }
}

impl<C: Clock, K: Clone, B: Clone> Clone for RetryPolicy<C, K, B> {
    fn clone(&self) -> Self {
        Self {
            budget: self.budget.clone(),
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            timer: self.timer.clone(),
            classify: self.classify.clone(),
            deadline: self.deadline,
            started: self.started,
            attempts: self.attempts,
            previous: self.previous,
            clock: PhantomData,
        }
    }
}

impl<C: Clock, K, B: fmt::Debug> fmt::Debug for RetryPolicy<C, K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("budget", &self.budget)
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<Req, Res, E, C, K, B> ::tower::retry::Policy<Req, Res, E> for RetryPolicy<C, K, B>
where
    Req: Clone,
    E: 'static,
    C: Clock,
    K: Classify<Res, E>,
    B: BudgetSource<C, Req>,
{
    type Future = Sleep;

    fn retry(&mut self, req: &mut Req, result: &mut Result<Res, E>) -> Option<Sleep> {
        let first = self.attempts == 0;
        self.attempts = self.attempts.saturating_add(1);
        let Self {
            budget,
            backoff,
            max_attempts,
            timer,
            classify,
            deadline,
            started,
            attempts,
            previous,
            clock: _,
        } = self;
        // A request whose budget there is none of (its key refused by a full registry) deposits
        // nothing and is not retried.
        budget
            .with_budget(req, |budget| {
                // The original request deposits when its first result comes back, unless it
                // never reached the dependency (refused by a layer below).
                if first && !matches!(result, Err(e) if is_refusal(e)) {
                    budget.deposit();
                }
                if *attempts >= *max_attempts || !should_retry(classify, result) {
                    return None;
                }
                let hint = classify.retry_after(result.as_ref());
                let delay = backoff.hinted_delay(*attempts, *previous, hint, &mut rand::rng());
                // The deadlines before the budget: a retry that will not happen is never
                // debited. An enclosing deadline layer's first (this is called inside its poll).
                if let Some((left, _)) = super::timeout::enclosing() {
                    if delay >= left {
                        return None;
                    }
                }
                if let (Some(deadline), Some(started)) = (*deadline, *started) {
                    let ends = budget
                        .clock()
                        .now()
                        .saturating_add(crate::clock::duration_to_nanos(delay));
                    if ends >= started.saturating_add(deadline) {
                        return None;
                    }
                }
                budget.try_withdraw().ok()?;
                *previous = delay;
                Some(timer.sleep(delay))
            })
            .flatten()
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        // tower asks the service's policy before each request's first attempt (then clones it
        // for the request), and the request's own clone before each retry: only the first
        // marks when the request began (on the budget's clock; only a deadline reads it).
        if self.attempts == 0 {
            self.started = match self.deadline {
                Some(_) => self.budget.with_budget(req, |b| b.clock().now()),
                None => None,
            };
        }
        Some(req.clone())
    }
}

/// Where a [`RetryPolicy`] gets the budget a request's retries are paid from: one shared
/// [`RetryBudget`] (`Arc<RetryBudget<C>>`, [`RetryPolicy::new`]), or, with feature `registry`,
/// the budget of the request's key in a registry ([`KeyedBudget`], [`RetryPolicy::keyed`]).
/// Sealed: implemented by those two only.
///
/// ```
/// use resile::budget::RetryBudget;
/// use resile::tower::BudgetSource;
/// use std::sync::Arc;
///
/// let budget = Arc::new(RetryBudget::builder().max_retries(1).build()?);
/// let granted = budget.with_budget(&"any request", |b| b.try_withdraw().is_ok());
/// assert_eq!(granted, Some(true));
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
pub trait BudgetSource<C: Clock, Req>: sealed::Sealed {
    /// `f` of the budget of `req`; `None` (and `f` not called) when there is none for it.
    fn with_budget<R>(&self, req: &Req, f: impl FnOnce(&RetryBudget<C>) -> R) -> Option<R>;
}

mod sealed {
    pub trait Sealed {}
}

impl<C: Clock> sealed::Sealed for Arc<RetryBudget<C>> {}

impl<C: Clock, Req> BudgetSource<C, Req> for Arc<RetryBudget<C>> {
    #[inline]
    fn with_budget<R>(&self, _: &Req, f: impl FnOnce(&RetryBudget<C>) -> R) -> Option<R> {
        Some(f(self))
    }
}

#[cfg(feature = "registry")]
pub use keyed::KeyedBudget;

#[cfg(feature = "registry")]
mod keyed {
    use super::*;
    use crate::registry::Registry;
    use std::borrow::Borrow;
    use std::hash::Hash;

    impl<C: Clock> RetryPolicy<C> {
        /// A policy paid from the budget of each request's key, `key(&request)`, in `registry`
        /// (feature `registry`): one tenant's or one host's retries cannot spend another's. The
        /// defaults are [`new`](Self::new)'s. The key is looked up when a request's result
        /// comes back (and, with a [`deadline`](Self::deadline), before its first attempt, for
        /// the budget's clock); no handle is held between attempts, so an idle budget stays
        /// evictable. A request whose key the registry refuses (it is full and nothing in it is
        /// idle) deposits nothing and is not retried.
        ///
        /// ```
        /// use resile::budget::RetryBudget;
        /// use resile::registry::Registry;
        /// use resile::tower::RetryPolicy;
        /// use std::sync::Arc;
        /// use std::time::Duration;
        /// use tower::{Service, ServiceBuilder};
        ///
        /// let budgets = Arc::new(Registry::builder(RetryBudget::builder().max_retries(1)).build()?);
        /// let policy = RetryPolicy::keyed(budgets.clone(), |req: &(&'static str, u32)| req.0)
        ///     .timer(|_d: Duration| std::future::ready(()));
        /// let mut svc = ServiceBuilder::new()
        ///     .retry(policy)
        ///     .service_fn(|_req: (&'static str, u32)| async { Err::<u32, _>("busy") });
        /// let call = |svc: &mut _, req| futures::executor::block_on(Service::call(svc, req));
        /// assert!(call(&mut svc, ("a", 1)).is_err()); // a's one retry spent...
        /// assert!(call(&mut svc, ("b", 2)).is_err()); // ...and b's, from its own budget
        /// assert_eq!(budgets.get(&"a").unwrap().metrics().retries_granted, 1);
        /// assert_eq!(budgets.get(&"b").unwrap().metrics().retries_granted, 1);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn keyed<Key, F>(
            registry: Arc<Registry<Key, RetryBudget<C>>>,
            key: F,
        ) -> RetryPolicy<C, ErrIsFailure, KeyedBudget<Key, F, C>> {
            RetryPolicy::paid_from(KeyedBudget { registry, key })
        }
    }

    impl<C: Clock, K, Key, F> RetryPolicy<C, K, KeyedBudget<Key, F, C>> {
        /// The registry of budgets retries are paid from.
        pub fn registry(&self) -> &Arc<Registry<Key, RetryBudget<C>>> {
            &self.budget.registry
        }
    }

    /// A [`RetryPolicy`]'s budgets by key: the budget of `key(&request)` in a registry. Built by
    /// [`RetryPolicy::keyed`].
    ///
    /// ```
    /// use resile::budget::RetryBudget;
    /// use resile::registry::Registry;
    /// use resile::tower::{BudgetSource, KeyedBudget, RetryPolicy};
    /// use std::sync::Arc;
    ///
    /// let budgets = Arc::new(Registry::builder(RetryBudget::builder()).build()?);
    /// let policy = RetryPolicy::keyed(budgets.clone(), |tenant: &u32| *tenant);
    /// let _: &Arc<Registry<u32, RetryBudget>> = policy.registry();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub struct KeyedBudget<Key, F, C: Clock = SystemClock> {
        registry: Arc<Registry<Key, RetryBudget<C>>>,
        key: F,
    }

    impl<Key, F: Clone, C: Clock> Clone for KeyedBudget<Key, F, C> {
        fn clone(&self) -> Self {
            Self {
                registry: self.registry.clone(),
                key: self.key.clone(),
            }
        }
    }

    impl<Key, F, C: Clock> fmt::Debug for KeyedBudget<Key, F, C> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("KeyedBudget")
                .field("registry", &self.registry)
                .finish_non_exhaustive()
        }
    }

    impl<Key, F, C: Clock> sealed::Sealed for KeyedBudget<Key, F, C> {}

    impl<Key, F, Q, C, Req> BudgetSource<C, Req> for KeyedBudget<Key, F, C>
    where
        Key: Borrow<Q> + Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> Q,
        Q: Hash + Eq + ToOwned<Owned = Key>,
        C: Clock + Clone,
    {
        #[inline]
        fn with_budget<R>(&self, req: &Req, f: impl FnOnce(&RetryBudget<C>) -> R) -> Option<R> {
            let key = (self.key)(req);
            self.registry.with_or_create(&key, |b| f(b)).ok()
        }
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use crate::breaker::State;

    use crate::test_support::Wrapped;

    fn retried<E: 'static>(e: E) -> bool {
        should_retry(&ErrIsFailure, &Err::<(), E>(e))
    }

    #[test]
    fn refusals_are_not_retried_bare_boxed_or_as_a_source() {
        let open = || CircuitOpen::new(State::Open, None);
        assert!(!retried(open()));
        assert!(!retried(DrainRefused::Draining));
        let boxed: super::super::BoxError = Box::new(open());
        assert!(!retried(boxed));
        let deep: super::super::BoxError = Box::new(Wrapped(Box::new(DrainRefused::Draining)));
        assert!(!retried(deep));
        let deeper: Box<dyn Error + Send> = Box::new(Wrapped(Box::new(Wrapped(Box::new(open())))));
        assert!(!retried(deeper));
        // Anything else is retried, wrapped or not.
        let other: super::super::BoxError = Box::new(Wrapped("connection reset".into()));
        assert!(retried(other));
        assert!(retried(std::io::Error::other("timeout")));
    }

    #[cfg(feature = "registry")]
    #[test]
    fn a_full_registry_is_a_refusal_and_a_config_error_is_not() {
        use crate::registry::{Registry, RegistryError};
        let r = Registry::builder(RetryBudget::builder())
            .max_keys(1)
            .per_key(|k: &u32, b| if *k == 9 { b.max_retries(0) } else { b })
            .build()
            .unwrap();
        let held = r.get_or_create(&1).unwrap();
        let full = r.get_or_create(&2).unwrap_err();
        assert!(matches!(full, RegistryError::Full(_)));
        assert!(!retried(full.clone()));
        let boxed: super::super::BoxError = Box::new(Wrapped(Box::new(full)));
        assert!(!retried(boxed));
        drop(held);
        let config = r.get_or_create(&9).unwrap_err();
        assert!(matches!(config, RegistryError::Config(_)), "{config:?}");
        assert!(retried(config));
    }
}
