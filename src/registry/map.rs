//! The registry's concurrent map: [papaya](https://docs.rs/papaya)'s, whose lookups take no lock
//! and allocate nothing, and under `--cfg resile_loom` a stand-in behind the crate's (loom's)
//! `Mutex`. papaya is not instrumented for loom; the stand-in keeps what the registry relies
//! on (an insert publishes the value to the lookups that find it, a removal hides it from later
//! ones), so the loom models check the entry protocol and the registry's lock, not papaya.

use super::KeyHash;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};

/// The registry's [`BuildHasher`]: the [`KeyHash`] it was built with, seeded per registry.
#[derive(Clone)]
pub(crate) enum Hashing {
    Sip(std::collections::hash_map::RandomState),
    Fold(foldhash::quality::RandomState),
}

impl Hashing {
    pub(crate) fn new(kind: KeyHash) -> Self {
        match kind {
            KeyHash::SipHash => Self::Sip(Default::default()),
            KeyHash::FoldHash => Self::Fold(Default::default()),
        }
    }
}

/// A [`Hashing`]'s hasher: the one the registry was built with (a branch the predictor learns
/// on each call, every call taking the same arm).
pub(crate) enum KeyHasher {
    Sip(std::collections::hash_map::DefaultHasher),
    Fold(foldhash::quality::FoldHasher<'static>),
}

impl BuildHasher for Hashing {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        match self {
            Self::Sip(s) => KeyHasher::Sip(s.build_hasher()),
            Self::Fold(s) => KeyHasher::Fold(s.build_hasher()),
        }
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        match self {
            Self::Sip(h) => h.finish(),
            Self::Fold(h) => h.finish(),
        }
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        match self {
            Self::Sip(h) => h.write(bytes),
            Self::Fold(h) => h.write(bytes),
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        match self {
            Self::Sip(h) => h.write_u64(n),
            Self::Fold(h) => h.write_u64(n),
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        match self {
            Self::Sip(h) => h.write_u32(n),
            Self::Fold(h) => h.write_u32(n),
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        match self {
            Self::Sip(h) => h.write_usize(n),
            Self::Fold(h) => h.write_usize(n),
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        match self {
            Self::Sip(h) => h.write_u8(n),
            Self::Fold(h) => h.write_u8(n),
        }
    }
}

#[cfg(not(resile_loom))]
pub(crate) struct Map<K, V>(papaya::HashMap<K, V, Hashing>);

#[cfg(not(resile_loom))]
impl<K: Hash + Eq, V> Map<K, V> {
    pub(crate) fn with_capacity(capacity: usize, hashing: Hashing) -> Self {
        Self(papaya::HashMap::with_capacity_and_hasher(capacity, hashing))
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
pub(crate) struct Map<K, V>(crate::sync::Mutex<std::collections::HashMap<K, V, Hashing>>);

#[cfg(resile_loom)]
impl<K: Hash + Eq, V> Map<K, V> {
    pub(crate) fn with_capacity(capacity: usize, hashing: Hashing) -> Self {
        Self(crate::sync::Mutex::new(
            std::collections::HashMap::with_capacity_and_hasher(capacity, hashing),
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
