//! Keyed registries: one breaker, bulkhead or budget per key (a host, a tenant, a route), built
//! from one template configuration, bounded, and evicting only what holds no evidence.
//!
//! A service that calls many dependencies wants one breaker per dependency, configured once. A
//! [`Registry`] builds a key's primitive from a template builder (with an optional per-key
//! override) the first time the key is asked for, and hands out [`Handle`]s to it. Lookups of a
//! key already there take no lock and allocate nothing: the map is
//! [papaya](https://docs.rs/papaya)'s, whose reads are lock-free, and a handle is a pin on the
//! entry's own atomic word plus a reference count. Creation takes the registry's lock (it
//! inserts, and may evict), so two threads creating one key get one entry.
//!
//! ## The bound, and what eviction may take
//!
//! A registry holds at most [`max_keys`](RegistryBuilder::max_keys) keys. At the bound a new key
//! evicts the least recently used **idle** entry, and only an idle one ([`Keyed::is_idle`]):
//!
//! - no [`Handle`] to it is alive, and no owned permit or other copy of its primitive's `Arc`;
//! - a breaker is closed with no failure and no slow call in its window (an open, half-open,
//!   forced-open or disabled breaker, or one gathering evidence, is never evicted: flooding a
//!   registry with made-up keys cannot reset a failing dependency's breaker);
//! - a bulkhead has nothing in flight, nobody waiting, and is not closed;
//! - a budget has no spent retry left in its window (its balance is back at its floor).
//!
//! When no entry is idle the new key is refused with [`RegistryError::Full`], or, with
//! [`WhenFull::Overflow`], shares one overflow primitive built from the template, which itself is
//! never evicted. Eviction never takes live evidence.
//!
//! "Least recently used" is approximate, as in the CLOCK algorithm: entries sit in a ring in
//! creation order; the scan takes the oldest, keeps it once more (at the back) if it was looked up
//! since the scan last saw it, evicts it if it is idle, and keeps it otherwise. An entry's last use
//! is its word's epoch, which every lookup bumps with the add that pins the entry anyway, so a
//! lookup writes no extra stamp.
//!
//! ## Handles and eviction
//!
//! An entry with a live [`Handle`] is never evicted, so a handle held across a call keeps its
//! result in the map. [`Registry::remove`] takes an entry out whatever its handles: those keep
//! working on the removed primitive ([`Handle::is_evicted`] says so), and the next lookup of the
//! key builds a fresh one; a removed entry never comes back into the map. The race between an
//! eviction and a lookup about to take a permit is decided on the entry's word alone (the
//! `slot` module's docs give its layout and protocol), and is loom-checked.
//!
//! A bulkhead whose limit differs from its template's (set by
//! [`set_limit`](crate::bulkhead::Bulkhead::set_limit), or learned by an adaptive algorithm) is
//! not idle, so a flood of new keys cannot reset it. A breaker's
//! [`reconfigure`](crate::breaker::CircuitBreaker::reconfigure) is not evidence: it is lost
//! when the idle entry is evicted, and the key's next breaker is built from the template again.
//!
//! ```
//! use resile::breaker::{CircuitBreaker, State};
//! use resile::clock::ManualClock;
//! use resile::registry::Registry;
//!
//! let clock = ManualClock::new();
//! let template = CircuitBreaker::builder().count_window(4).minimum_calls(2).clock(clock);
//! let breakers = Registry::builder(template).max_keys(2).build()?;
//!
//! let db = breakers.get_or_create(&"db.internal".to_string())?;
//! for _ in 0..2 {
//!     let _ = db.call(|| Err::<(), _>("timeout"));
//! }
//! assert_eq!(db.state(), State::Open);
//! drop(db);
//!
//! // A flood of other keys evicts the idle ones and never the open breaker.
//! for i in 0..100 {
//!     let _ = breakers.get_or_create(&format!("fake-{i}"))?;
//! }
//! assert_eq!(breakers.get_or_create(&"db.internal".to_string())?.state(), State::Open);
//! assert!(breakers.len() <= 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod map;
mod slot;

use map::Hashing;

pub use error::{RegistryError, RegistryFull};

use crate::breaker::{BreakerBuilder, CircuitBreaker, State};
use crate::budget::{BudgetBuilder, RetryBudget};
use crate::bulkhead::{Bulkhead, BulkheadBuilder};
use crate::clock::Clock;
use crate::error::ConfigError;
use crate::sync::{Mutex, StdArc, lock};
use map::Map;
use slot::Slot;
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::hash::Hash;
use std::ops::Deref;

/// A primitive a [`Registry`] can hold: one that can say whether it holds nothing worth keeping.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::registry::Keyed;
///
/// let b = Bulkhead::builder().limit(1).build()?;
/// assert!(b.is_idle());
/// let permit = b.try_acquire()?;
/// assert!(!b.is_idle()); // a call in flight
/// drop(permit);
/// assert!(b.is_idle());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Keyed: Send + Sync + Sized + 'static {
    /// Whether a fresh primitive built from the same builder would decide every call as this one
    /// does: evicting it loses nothing. Must be `false` while any evidence (a failure, a call in
    /// flight, a spent retry, a manual state) is held.
    fn is_idle(&self) -> bool;
}

/// A template a [`Registry`] builds its primitives from: a primitive's builder. It names the
/// primitive it builds, so `Registry::builder(template)` knows the registry's primitive type.
///
/// ```
/// use resile::bulkhead::{Bulkhead, BulkheadBuilder};
/// use resile::registry::Template;
///
/// fn kind<T: Template>(_: &T) -> &'static str {
///     std::any::type_name::<T::Primitive>()
/// }
/// assert!(kind(&Bulkhead::builder()).contains("Bulkhead"));
/// ```
pub trait Template: Clone + Send + Sync + 'static {
    /// The primitive built.
    type Primitive: Keyed;

    /// Builds the primitive, validating the configuration.
    ///
    /// # Errors
    /// The builder's [`ConfigError`].
    fn build_keyed(self) -> Result<Self::Primitive, ConfigError>;
}

impl<C: Clock + Clone> Template for BreakerBuilder<C> {
    type Primitive = CircuitBreaker<C>;

    fn build_keyed(self) -> Result<CircuitBreaker<C>, ConfigError> {
        self.build()
    }
}

impl<C: Clock + Clone> Template for BulkheadBuilder<C> {
    type Primitive = Bulkhead<C>;

    fn build_keyed(self) -> Result<Bulkhead<C>, ConfigError> {
        self.build()
    }
}

impl<C: Clock + Clone> Template for BudgetBuilder<C> {
    type Primitive = RetryBudget<C>;

    fn build_keyed(self) -> Result<RetryBudget<C>, ConfigError> {
        self.build()
    }
}

/// Idle: closed with no failure and no slow call in the window (closed also means no growing
/// open period is pending: the re-open count is zero in closed).
impl<C: Clock> Keyed for CircuitBreaker<C> {
    fn is_idle(&self) -> bool {
        let m = self.metrics();
        m.state == State::Closed && m.failures == 0 && m.slow_calls == 0
    }
}

/// Idle: nothing in flight, nobody waiting, not closed, the limit the builder set (one moved by
/// [`set_limit`](Bulkhead::set_limit) or learned by an adaptive algorithm keeps the entry), and
/// no report waiting in an adaptive limit's window.
impl<C: Clock> Keyed for Bulkhead<C> {
    fn is_idle(&self) -> bool {
        self.is_at_rest()
    }
}

/// Idle: no spent retry left in the window (the balance is back at its floor; deposits may
/// remain, and a fresh budget without them grants no more than this one).
impl<C: Clock> Keyed for RetryBudget<C> {
    fn is_idle(&self) -> bool {
        self.retries_in_window() == 0
    }
}

/// How a registry hashes its keys, set by [`RegistryBuilder::key_hash`]. Each registry draws
/// its own random seed either way.
///
/// ```
/// use resile::registry::KeyHash;
/// assert_eq!(KeyHash::default(), KeyHash::SipHash);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyHash {
    /// std's SipHash-1-3 (as `HashMap`'s default): keys chosen to collide (routes, tenants or
    /// hosts named by callers) cannot make lookups walk long probe sequences without the seed.
    #[default]
    SipHash,
    /// [foldhash](https://docs.rs/foldhash)'s quality hash (hashbrown's default): 4 to 7 times
    /// faster for an integer key, with weaker resistance to crafted collisions; for keys the
    /// service chooses (shard numbers, configured hosts).
    FoldHash,
}

/// What a full registry does with a new key when nothing in it is idle.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::registry::{Registry, WhenFull};
///
/// let registry = Registry::builder(Bulkhead::builder().limit(4))
///     .max_keys(1)
///     .when_full(WhenFull::Overflow)
///     .build()?;
/// let a = registry.get_or_create(&"a")?;
/// let b = registry.get_or_create(&"b")?; // "a" is held: "b" shares the overflow bulkhead
/// assert!(b.is_overflow() && !a.is_overflow());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenFull {
    /// Refuse the key with [`RegistryError::Full`] (the default).
    #[default]
    Refuse,
    /// Hand out one shared overflow primitive, built from the template without per-key override.
    Overflow,
}

/// A registry event, passed to the [hook](RegistryBuilder::on_event) after the registry's lock is
/// released, on the thread that caused it.
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::registry::{Registry, RegistryEvent};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let registry = Registry::builder(Bulkhead::builder())
///     .max_keys(1)
///     .on_event(move |e: RegistryEvent<'_, u32>| log.lock().unwrap().push(format!("{e:?}")))
///     .build()?;
/// drop(registry.get_or_create(&1)?);
/// drop(registry.get_or_create(&2)?); // 1 is idle: evicted
/// assert_eq!(*seen.lock().unwrap(), ["Created(1)", "Evicted(1)", "Created(2)"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent<'a, K> {
    /// A key's primitive was built and inserted.
    Created(&'a K),
    /// An idle key was evicted to make room.
    Evicted(&'a K),
    /// A key was taken out by [`Registry::remove`].
    Removed(&'a K),
    /// A new key was refused: the registry was full and nothing was idle.
    Refused(&'a K),
    /// A new key was handed the overflow primitive: the registry was full and nothing was idle.
    Overflowed(&'a K),
}

/// Counts of a registry since it was built, and its size, read by [`Registry::metrics`].
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::registry::Registry;
///
/// let registry = Registry::builder(Bulkhead::builder()).max_keys(2).build()?;
/// for key in 0..5 {
///     registry.get_or_create(&key)?;
/// }
/// let m = registry.metrics();
/// assert_eq!((m.keys, m.max_keys, m.created, m.evicted, m.refused), (2, 2, 5, 3, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryMetrics {
    /// Keys held now.
    pub keys: usize,
    /// The bound.
    pub max_keys: usize,
    /// Entries built and inserted.
    pub created: u64,
    /// Idle entries evicted to make room.
    pub evicted: u64,
    /// Entries taken out by [`Registry::remove`].
    pub removed: u64,
    /// New keys refused at the bound.
    pub refused: u64,
    /// New keys handed the overflow primitive at the bound.
    pub overflowed: u64,
}

/// A shared handle to a key's primitive: dereferences to it, and keeps the entry from being
/// evicted while it lives (so hold one only across calls, not forever, or the entry is never
/// idle). A handle outliving a [removal](Registry::remove) keeps working on the removed
/// primitive.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use resile::registry::{Handle, Registry};
///
/// let registry = Registry::builder(CircuitBreaker::builder()).build()?;
/// let a = registry.get_or_create(&"db")?;
/// let b = registry.get_or_create(&"db")?;
/// assert!(Handle::ptr_eq(&a, &b));
/// let permit = a.as_arc().try_acquire_owned()?; // an owned permit also holds the entry
/// permit.success();
/// assert!(registry.remove(&"db"));
/// assert!(a.is_evicted() && a.call(|| Ok::<_, ()>(1)).is_ok());
/// assert!(!Handle::ptr_eq(&a, &registry.get_or_create(&"db")?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Handle<P> {
    slot: StdArc<Slot<P>>,
    overflow: bool,
}

impl<P> Handle<P> {
    /// The primitive's `Arc`, for the `*_owned` forms that take one (an owned permit keeps the
    /// entry from being evicted as a handle does).
    pub fn as_arc(&self) -> &StdArc<P> {
        self.slot.primitive()
    }

    /// Whether the entry has left the registry (removed); a later lookup of its key builds a
    /// new one.
    pub fn is_evicted(&self) -> bool {
        self.slot.is_evicted()
    }

    /// Whether this is the shared overflow primitive of a full registry ([`WhenFull::Overflow`]).
    pub fn is_overflow(&self) -> bool {
        self.overflow
    }

    /// Whether two handles are to the same entry.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        StdArc::ptr_eq(&a.slot, &b.slot)
    }
}

impl<P> Deref for Handle<P> {
    type Target = P;

    #[inline]
    fn deref(&self) -> &P {
        self.slot.primitive()
    }
}

impl<P> Clone for Handle<P> {
    fn clone(&self) -> Self {
        self.slot.pin_again();
        Self {
            slot: self.slot.clone(),
            overflow: self.overflow,
        }
    }
}

impl<P> Drop for Handle<P> {
    #[inline]
    fn drop(&mut self) {
        self.slot.unpin();
    }
}

impl<P: fmt::Debug> fmt::Debug for Handle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("primitive", &**self)
            .field("evicted", &self.is_evicted())
            .field("overflow", &self.overflow)
            .finish()
    }
}

/// A pin taken for the length of a call, dropped (even by a panic) when it ends.
struct Pinned<'a, P>(&'a Slot<P>);

impl<P> Drop for Pinned<'_, P> {
    #[inline]
    fn drop(&mut self) {
        self.0.unpin();
    }
}

/// Pins `slot` and wraps it in a handle, unless it is evicted.
#[inline]
fn handle<P>(slot: &StdArc<Slot<P>>, overflow: bool) -> Option<Handle<P>> {
    slot.pin().then(|| Handle {
        slot: slot.clone(),
        overflow,
    })
}

/// A per-key override of the template.
type PerKey<K, B> = Box<dyn Fn(&K, B) -> B + Send + Sync + 'static>;
/// The template with its per-key override: builds a key's primitive.
type Factory<K, P> = Box<dyn Fn(&K) -> Result<P, ConfigError> + Send + Sync + 'static>;
/// The event hook.
type EventHook<K> = Box<dyn Fn(RegistryEvent<'_, K>) + Send + Sync + 'static>;

/// An entry in the eviction ring.
struct Resident<K, P> {
    key: K,
    slot: StdArc<Slot<P>>,
    /// The entry's epoch when the scan last saw it (or at creation).
    seen: u32,
}

/// What the registry's lock guards: the ring (the keys in the map, oldest first) and the counts.
struct Inner<K, P> {
    ring: VecDeque<Resident<K, P>>,
    created: u64,
    evicted: u64,
    removed: u64,
    refused: u64,
    overflowed: u64,
}

/// A bounded map from keys to primitives built from one template: see the
/// [module documentation](self).
///
/// ```
/// use resile::budget::RetryBudget;
/// use resile::registry::Registry;
///
/// let budgets = Registry::builder(RetryBudget::builder().max_retries(1)).build()?;
/// let tenant_a = budgets.get_or_create(&"tenant-a")?;
/// assert!(tenant_a.try_withdraw().is_ok());
/// assert!(tenant_a.try_withdraw().is_err());
/// assert!(budgets.get_or_create(&"tenant-b")?.try_withdraw().is_ok()); // its own budget
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Registry<K, P: Keyed> {
    map: Map<K, StdArc<Slot<P>>>,
    inner: Mutex<Inner<K, P>>,
    factory: Factory<K, P>,
    max_keys: usize,
    scan: usize,
    overflow: Option<StdArc<Slot<P>>>,
    on_event: Option<EventHook<K>>,
}

impl<K, P: Keyed> Registry<K, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A builder whose template is `template`: every key's primitive is built from a clone of
    /// it. Defaults: [`max_keys`](RegistryBuilder::max_keys) 10 000, refuse when full, a scan
    /// of the whole ring.
    pub fn builder<T: Template<Primitive = P>>(template: T) -> RegistryBuilder<K, T> {
        RegistryBuilder {
            template,
            per_key: None,
            key_hash: KeyHash::SipHash,
            max_keys: 10_000,
            scan: None,
            when_full: WhenFull::Refuse,
            on_event: None,
        }
    }

    /// The handle to `key`'s primitive, building it if the key is new. `key` is the key or any
    /// borrowed form of it (`&str` for a `String` key, as `HashMap::get` takes). A key already
    /// there costs a lock-free map read and two atomic adds (the entry's pin and its reference
    /// count), and allocates nothing. A new key is made owned (`ToOwned`), builds its primitive
    /// (outside the lock), then takes the registry's lock to insert it, evicting the least
    /// recently used idle entry at the bound.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::registry::Registry;
    ///
    /// let registry = Registry::<String, _>::builder(Bulkhead::builder().limit(2)).build()?;
    /// let _permit = registry.get_or_create("db")?.as_arc().try_acquire_owned()?; // a `&str`
    /// assert_eq!(registry.get_or_create("db")?.metrics().in_flight, 1); // no allocation
    /// assert_eq!(registry.get_or_create(&"db".to_string())?.metrics().in_flight, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RegistryError::Full`] when the registry is at its bound, nothing in it is idle, and
    /// overflow is off; [`RegistryError::Config`] when the key's per-key override makes a
    /// configuration the builder refuses.
    #[inline]
    pub fn get_or_create<Q>(&self, key: &Q) -> Result<Handle<P>, RegistryError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(h) = self.lookup(key) {
            return Ok(h);
        }
        self.create(key.to_owned())
    }

    /// The handle to `key`'s primitive (`key` is the key or a borrowed form of it) if the key is
    /// in the registry; builds nothing.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::registry::Registry;
    ///
    /// let registry = Registry::<u32, _>::builder(Bulkhead::builder()).build()?;
    /// assert!(registry.get(&1).is_none());
    /// registry.get_or_create(&1)?;
    /// assert!(registry.get(&1).is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<Handle<P>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup(key)
    }

    /// `f` of `key`'s primitive (`key` is the key or a borrowed form of it), building it if the
    /// key is new: a [`get_or_create`](Self::get_or_create) without the handle. The entry is
    /// pinned while `f` runs, as a handle pins it (so what `f` records is never lost to an
    /// eviction), and nothing is copied: a hit costs a lock-free map read and the pin's two
    /// atomic adds, half the atomic operations of a handle (which also counts a reference, so
    /// that it can outlive the lookup). `f` gets the primitive's `Arc`, for the `*_owned` forms:
    /// an owned permit taken in `f` holds the entry after `f` returns, as a handle does. Keep `f`
    /// short (a permit, a call): it runs inside the map's read section, which defers the
    /// reclamation of entries removed meanwhile until it ends.
    ///
    /// ```
    /// use resile::breaker::CircuitBreaker;
    /// use resile::registry::Registry;
    ///
    /// let breakers = Registry::<String, _>::builder(CircuitBreaker::builder()).build()?;
    /// let rows = breakers.with_or_create("db", |b| b.call(|| Ok::<_, std::io::Error>(42)))??;
    /// assert_eq!(rows, 42);
    /// let permit = breakers.with_or_create("db", |b| b.try_acquire_owned())??; // outlives `f`
    /// permit.success();
    /// assert_eq!(breakers.with("db", |b| b.metrics().calls), Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`get_or_create`](Self::get_or_create)'s, `f` not called.
    #[inline]
    pub fn with_or_create<Q, R>(
        &self,
        key: &Q,
        f: impl FnOnce(&StdArc<P>) -> R,
    ) -> Result<R, RegistryError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut f = Some(f);
        if let Some(r) = self.pinned(key, &mut f) {
            return Ok(r);
        }
        let h = self.create(key.to_owned())?;
        // `pinned` found no live entry, so it left `f` in place.
        Ok(f.map(|f| f(h.as_arc())).expect("`f` not called yet"))
    }

    /// `f` of `key`'s primitive if the key is in the registry, the entry pinned while `f` runs;
    /// builds nothing (see [`with_or_create`](Self::with_or_create)).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::registry::Registry;
    ///
    /// let registry = Registry::<u32, _>::builder(Bulkhead::builder().limit(3)).build()?;
    /// assert_eq!(registry.with(&1, |b| b.metrics().limit), None);
    /// registry.get_or_create(&1)?;
    /// assert_eq!(registry.with(&1, |b| b.metrics().limit), Some(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(&StdArc<P>) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.pinned(key, &mut Some(f))
    }

    /// Runs `f` (taken from its option) on `key`'s live entry, pinned for the call; `None`, `f`
    /// left in place, if the key is not there or its entry is evicted.
    #[inline]
    fn pinned<Q, R, F: FnOnce(&StdArc<P>) -> R>(&self, key: &Q, f: &mut Option<F>) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map
            .get_with(key, |slot| {
                if !slot.pin() {
                    return None;
                }
                let _pin = Pinned(slot);
                f.take().map(|f| f(slot.primitive()))
            })
            .flatten()
    }

    #[inline]
    fn lookup<Q>(&self, key: &Q) -> Option<Handle<P>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_with(key, |slot| handle(slot, false)).flatten()
    }

    #[cold]
    fn create(&self, key: K) -> Result<Handle<P>, RegistryError> {
        let built = (self.factory)(&key)?;
        let mut inner = lock(&self.inner);
        // Under the lock the map holds only live entries (evictions and removals take the entry
        // out under it too), so this finds the key if another thread created it meanwhile.
        if let Some(h) = self.lookup(&key) {
            return Ok(h);
        }
        let mut evicted = None;
        if inner.ring.len() >= self.max_keys {
            evicted = self.evict_one(&mut inner);
            if evicted.is_none() {
                return match self.overflow.as_ref().and_then(|s| handle(s, true)) {
                    Some(h) => {
                        inner.overflowed += 1;
                        drop(inner);
                        self.emit(RegistryEvent::Overflowed(&key));
                        Ok(h)
                    }
                    None => {
                        inner.refused += 1;
                        drop(inner);
                        self.emit(RegistryEvent::Refused(&key));
                        Err(RegistryError::Full(RegistryFull {
                            max_keys: self.max_keys,
                        }))
                    }
                };
            }
        }
        let slot = StdArc::new(Slot::pinned(built));
        // The key's copies are made before the map holds it, so a panicking `clone` leaves the
        // map and the ring agreeing. A copy for the event only when there is a hook (it runs
        // after the lock is released).
        let map_key = key.clone();
        let created = self.on_event.is_some().then(|| key.clone());
        self.map.insert(map_key, slot.clone());
        let seen = slot::epoch(slot.load());
        inner.ring.push_back(Resident {
            key,
            slot: slot.clone(),
            seen,
        });
        inner.created += 1;
        drop(inner);
        if let Some(k) = &evicted {
            self.emit(RegistryEvent::Evicted(k));
        }
        if let Some(k) = &created {
            self.emit(RegistryEvent::Created(k));
        }
        Ok(Handle {
            slot,
            overflow: false,
        })
    }

    /// Evicts the least recently used idle entry, examining at most `scan` entries from the
    /// ring's front; its key, or `None` if none it examined was idle.
    fn evict_one(&self, inner: &mut Inner<K, P>) -> Option<K> {
        let budget = self.scan.min(inner.ring.len().saturating_mul(2));
        for _ in 0..budget {
            // The entry stays in the ring while it is examined, so a panic in its idle check
            // (user code for a primitive of the user's) loses no entry.
            let r = inner.ring.front_mut()?;
            let w = r.slot.load();
            let epoch = slot::epoch(w);
            // Not looked up since the scan last saw it, no handle, idle, and still the word the
            // idle check followed.
            if epoch == r.seen
                && r.slot.unheld(w)
                && r.slot.primitive().is_idle()
                && r.slot.evict(w)
            {
                let r = inner.ring.pop_front()?;
                inner.evicted += 1;
                self.map.remove(&r.key);
                return Some(r.key);
            }
            r.seen = epoch;
            inner.ring.rotate_left(1);
        }
        None
    }

    /// Takes `key` (or a borrowed form of it) out of the registry whatever its state; `true` if
    /// it was there. Live handles
    /// keep working on the removed primitive; the next lookup of the key builds a new one.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::registry::Registry;
    ///
    /// let registry = Registry::builder(Bulkhead::builder()).build()?;
    /// registry.get_or_create(&"old-host")?;
    /// assert!(registry.remove(&"old-host"));
    /// assert!(!registry.remove(&"old-host"));
    /// assert!(registry.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = lock(&self.inner);
        let Some(slot) = self.map.get_with(key, StdArc::clone) else {
            return false;
        };
        slot.remove();
        self.map.remove(key);
        let at = inner
            .ring
            .iter()
            .position(|r| StdArc::ptr_eq(&r.slot, &slot));
        let resident = at.and_then(|i| inner.ring.remove(i));
        inner.removed += 1;
        drop(inner);
        if let Some(r) = &resident {
            self.emit(RegistryEvent::Removed(&r.key));
        }
        true
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        lock(&self.inner).ring.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The registry's size and counts (takes the registry's lock briefly).
    pub fn metrics(&self) -> RegistryMetrics {
        let inner = lock(&self.inner);
        RegistryMetrics {
            keys: inner.ring.len(),
            max_keys: self.max_keys,
            created: inner.created,
            evicted: inner.evicted,
            removed: inner.removed,
            refused: inner.refused,
            overflowed: inner.overflowed,
        }
    }

    /// Calls `f` on at most `limit` of the keys and their primitives (in the map's order), for
    /// exporters that cap the cardinality of per-key metrics; returns how many it visited. Takes
    /// no lock; keys created or evicted meanwhile may or may not be visited. It is a view for
    /// reading: it neither pins an entry nor counts as a use of it (an exporter's sweep leaves
    /// every entry's place in the eviction order as it was), so what `f` changes in a primitive
    /// may be lost to an eviction running at the same time; act on a key through
    /// [`with`](Self::with) or a [`Handle`].
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::registry::Registry;
    ///
    /// let registry = Registry::builder(Bulkhead::builder()).build()?;
    /// for key in 0..10 {
    ///     registry.get_or_create(&key)?;
    /// }
    /// let mut in_flight = 0;
    /// assert_eq!(registry.for_each(3, |_key, b| in_flight += b.metrics().in_flight), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_each(&self, limit: usize, mut f: impl FnMut(&K, &P)) -> usize {
        let mut n = 0;
        self.map.for_each(|k, slot| {
            if n >= limit {
                return false;
            }
            if !slot.is_evicted() {
                f(k, slot.primitive());
                n += 1;
            }
            n < limit
        });
        n
    }

    fn emit(&self, e: RegistryEvent<'_, K>) {
        if let Some(hook) = &self.on_event {
            hook(e);
        }
    }
}

impl<K, P: Keyed> fmt::Debug for Registry<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("keys", &lock(&self.inner).ring.len())
            .field("max_keys", &self.max_keys)
            .field("overflow", &self.overflow.is_some())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Registry`]; [`build`](RegistryBuilder::build) validates.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use resile::registry::{Registry, WhenFull};
/// use std::time::Duration;
///
/// let registry = Registry::builder(CircuitBreaker::builder().open_for(Duration::from_secs(10)))
///     .max_keys(1000)
///     .per_key(|host: &String, b| b.name(host.clone()))
///     .when_full(WhenFull::Overflow)
///     .build()?;
/// assert_eq!(registry.get_or_create(&"api".to_string())?.name(), "api");
///
/// let e = Registry::<u32, CircuitBreaker>::builder(CircuitBreaker::builder()).max_keys(0).build().unwrap_err();
/// assert_eq!(e.field(), "max_keys");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build()`"]
pub struct RegistryBuilder<K, T: Template> {
    template: T,
    per_key: Option<PerKey<K, T>>,
    key_hash: KeyHash,
    max_keys: usize,
    scan: Option<usize>,
    when_full: WhenFull,
    on_event: Option<EventHook<K>>,
}

impl<K, T: Template> fmt::Debug for RegistryBuilder<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("max_keys", &self.max_keys)
            .field("key_hash", &self.key_hash)
            .field("eviction_scan", &self.scan)
            .field("when_full", &self.when_full)
            .field("per_key", &self.per_key.is_some())
            .field("on_event", &self.on_event.is_some())
            .finish_non_exhaustive()
    }
}

impl<K, T: Template> RegistryBuilder<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The most keys the registry holds (at least 1; default 10 000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Overrides the template for some keys: `f` gets the key and a clone of the template, and
    /// returns the builder that key's primitive is built from.
    pub fn per_key(mut self, f: impl Fn(&K, T) -> T + Send + Sync + 'static) -> Self {
        self.per_key = Some(Box::new(f));
        self
    }

    /// How keys are hashed (default [`KeyHash::SipHash`], which resists keys chosen to collide).
    ///
    /// ```
    /// use resile::breaker::CircuitBreaker;
    /// use resile::registry::{KeyHash, Registry};
    ///
    /// // Shard numbers the service assigns itself: nobody outside chooses them.
    /// let shards = Registry::<u32, _>::builder(CircuitBreaker::builder())
    ///     .key_hash(KeyHash::FoldHash)
    ///     .build()?;
    /// assert!(shards.get_or_create(&7)?.try_acquire().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key_hash(mut self, key_hash: KeyHash) -> Self {
        self.key_hash = key_hash;
        self
    }

    /// What a new key gets when the registry is full and nothing is idle (default
    /// [`WhenFull::Refuse`]).
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// The most entries one creation at the bound examines for an idle one (at least 1). By
    /// default the whole ring, twice (a second chance for the recently used), so a refusal means
    /// nothing was idle; a smaller scan bounds the time a new key holds the registry's lock when
    /// most entries are busy, and a refusal then means none of the examined entries was idle
    /// (the busy ones go to the ring's back, so the next creation examines others).
    pub fn eviction_scan(mut self, entries: usize) -> Self {
        self.scan = Some(entries);
        self
    }

    /// Runs `hook` for every creation, eviction, removal, refusal and overflow, on the thread
    /// that caused it, after the registry's lock is released.
    pub fn on_event(mut self, hook: impl Fn(RegistryEvent<'_, K>) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Box::new(hook));
        self
    }

    /// Validates the settings (and the template, by building one primitive from it) and builds
    /// the registry.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: `max_keys` or `eviction_scan` of 0, or the template's
    /// own error.
    pub fn build(self) -> Result<Registry<K, T::Primitive>, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", self.max_keys, "1 or more"));
        }
        if self.scan == Some(0) {
            return Err(ConfigError::new("eviction_scan", 0, "1 or more"));
        }
        let probe = self.template.clone().build_keyed()?;
        let overflow = match self.when_full {
            WhenFull::Overflow => {
                let slot = StdArc::new(Slot::pinned(probe));
                slot.unpin();
                Some(slot)
            }
            WhenFull::Refuse => None,
        };
        Ok(Registry {
            map: Map::with_capacity(self.max_keys.min(1 << 12), Hashing::new(self.key_hash)),
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                created: 0,
                evicted: 0,
                removed: 0,
                refused: 0,
                overflowed: 0,
            }),
            factory: {
                let (template, per_key) = (self.template, self.per_key);
                Box::new(move |key: &K| match &per_key {
                    Some(f) => f(key, template.clone()).build_keyed(),
                    None => template.clone().build_keyed(),
                })
            },
            max_keys: self.max_keys,
            scan: self.scan.unwrap_or(usize::MAX),
            overflow,
            on_event: self.on_event,
        })
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests;
