use crate::error::ConfigError;
use std::fmt;

/// A new key was refused: the registry holds [`max_keys`](super::RegistryBuilder::max_keys)
/// keys and none it examined was idle (see [`eviction_scan`](super::RegistryBuilder::eviction_scan)).
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::registry::{Registry, RegistryError};
///
/// let registry = Registry::builder(Bulkhead::builder().limit(1)).max_keys(1).build()?;
/// let busy = registry.get_or_create(&"a")?;
/// let _permit = busy.try_acquire()?;
/// match registry.get_or_create(&"b") {
///     Err(RegistryError::Full(full)) => assert_eq!(full.max_keys(), 1),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryFull {
    pub(crate) max_keys: usize,
}

impl RegistryFull {
    /// The registry's bound.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }
}

impl fmt::Display for RegistryFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "registry full: {} keys, none idle to evict",
            self.max_keys
        )
    }
}

impl std::error::Error for RegistryFull {}

/// Why [`get_or_create`](super::Registry::get_or_create) gave no handle.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use resile::registry::{Registry, RegistryError};
///
/// // A per-key override the breaker's builder refuses is reported for that key only.
/// let registry = Registry::builder(CircuitBreaker::builder())
///     .per_key(|key: &u32, b| if *key == 0 { b.half_open_probes(0) } else { b })
///     .build()?;
/// assert!(registry.get_or_create(&1).is_ok());
/// let Err(RegistryError::Config(e)) = registry.get_or_create(&0) else { panic!() };
/// assert_eq!(e.field(), "half_open_probes");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry is full and nothing in it is idle.
    Full(RegistryFull),
    /// The key's configuration (the template with its per-key override) is invalid.
    Config(ConfigError),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Full(e) => e.fmt(f),
            RegistryError::Config(e) => write!(f, "invalid configuration for the key: {e}"),
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegistryError::Full(e) => Some(e),
            RegistryError::Config(e) => Some(e),
        }
    }
}

impl From<RegistryFull> for RegistryError {
    fn from(e: RegistryFull) -> Self {
        RegistryError::Full(e)
    }
}

impl From<ConfigError> for RegistryError {
    fn from(e: ConfigError) -> Self {
        RegistryError::Config(e)
    }
}
