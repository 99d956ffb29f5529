//! The registry's concurrent map: [papaya](https://docs.rs/papaya)'s, whose lookups take no lock
//! and allocate nothing, and under `--cfg resile_loom` a stand-in behind the crate's (loom's)
//! `Mutex`. papaya is not instrumented for loom; the stand-in keeps what the registry relies
//! on (an insert publishes the value to the lookups that find it, a removal hides it from later
//! ones), so the loom models check the entry protocol and the registry's lock, not papaya.

use std::borrow::Borrow;
use std::hash::Hash;

#[cfg(not(resile_loom))]
pub(crate) struct Map<K, V>(papaya::HashMap<K, V>);

#[cfg(not(resile_loom))]
impl<K: Hash + Eq, V> Map<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(papaya::HashMap::with_capacity(capacity))
    }

    /// `f` of the value under `key` (any borrowed form of the map's key), if any.
    #[inline]
    pub(crate) fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.pin().get(key).map(f)
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        self.0.pin().insert(key, value);
    }

    pub(crate) fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.pin().remove(key);
    }

    /// Calls `f` on entries until it returns `false`.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&K, &V) -> bool) {
        for (k, v) in self.0.pin().iter() {
            if !f(k, v) {
                break;
            }
        }
    }
}

#[cfg(resile_loom)]
pub(crate) struct Map<K, V>(crate::sync::Mutex<std::collections::HashMap<K, V>>);

#[cfg(resile_loom)]
impl<K: Hash + Eq, V> Map<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(crate::sync::Mutex::new(
            std::collections::HashMap::with_capacity(capacity),
        ))
    }

    pub(crate) fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        crate::sync::lock(&self.0).get(key).map(f)
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        crate::sync::lock(&self.0).insert(key, value);
    }

    pub(crate) fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        crate::sync::lock(&self.0).remove(key);
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&K, &V) -> bool) {
        for (k, v) in crate::sync::lock(&self.0).iter() {
            if !f(k, v) {
                break;
            }
        }
    }
}
