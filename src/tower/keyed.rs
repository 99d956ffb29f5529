//! The keyed layers: see the tower module's "Keyed layers" section.

use super::*;
use crate::registry::Registry;
#[cfg(doc)]
use crate::registry::RegistryError;
use std::borrow::Borrow;
use std::hash::Hash;
use std::marker::PhantomData;

impl<C: Clock> BreakerLayer<C> {
    /// A [`KeyedBreakerLayer`]: each request through the breaker of its key, `key(&request)`, in
    /// `registry`.
    ///
    /// ```
    /// use resile::breaker::CircuitBreaker;
    /// use resile::registry::Registry;
    /// use resile::tower::BreakerLayer;
    /// use std::sync::Arc;
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let breakers = Arc::new(Registry::builder(CircuitBreaker::builder()).build()?);
    /// let mut svc = BreakerLayer::keyed(breakers.clone(), |req: &(&'static str, u32)| req.0)
    ///     .layer(service_fn(|req: (&str, u32)| async move { Ok::<_, std::io::Error>(req.1) }));
    /// assert_eq!(futures::executor::block_on(svc.call(("db", 7)))?, 7);
    /// assert_eq!(breakers.get(&"db").unwrap().metrics().calls, 1);
    /// # Ok::<(), resile::tower::BoxError>(())
    /// ```
    pub fn keyed<Key, F>(
        registry: Arc<Registry<Key, CircuitBreaker<C>>>,
        key: F,
    ) -> KeyedBreakerLayer<Key, F, C> {
        KeyedBreakerLayer::new(registry, key)
    }
}

/// Runs each request through the [`CircuitBreaker`] of its key in a [`Registry`]: see
/// [`KeyedBreakerService`] and the [keyed layers](crate::tower#keyed-layers).
///
/// The key function gets the request and returns its key, or any form of it the registry's key
/// type borrows as (`Key: Borrow<Q>`), made owned only when the key is new. It returns a value,
/// not a reference into the request, so a key that is cheap to copy or clone (an integer, an
/// `&'static str`, an `Arc<str>`, an [`http::uri::Authority`], whose clone shares its bytes)
/// keeps a lookup of an existing key free of allocation. For an HTTP client, the authority of
/// the request's URI names the dependency (a server reads the `Host` header instead: a
/// server's request URI is usually a path only):
///
/// ```
/// use http::uri::Authority;
/// use resile::breaker::{CircuitBreaker, CircuitOpen};
/// use resile::registry::Registry;
/// use resile::tower::KeyedBreakerLayer;
/// use std::sync::Arc;
/// use tower::{Service, ServiceBuilder};
///
/// let breakers = Arc::new(
///     Registry::<Option<Authority>, _>::builder(CircuitBreaker::builder()).max_keys(1000).build()?,
/// );
/// let mut client = ServiceBuilder::new()
///     .layer(KeyedBreakerLayer::new(breakers.clone(), |req: &http::Request<()>| {
///         req.uri().authority().cloned()
///     }))
///     .service_fn(|req: http::Request<()>| async move {
///         Ok::<_, std::io::Error>(http::Response::new(req.uri().to_string()))
///     });
///
/// let get = |uri: &str| http::Request::get(uri).body(()).unwrap();
/// let call = |svc: &mut _, req| futures::executor::block_on(Service::call(svc, req));
/// breakers.get_or_create(&Some(Authority::from_static("down.internal")))?.force_open();
/// let e = call(&mut client, get("http://down.internal/a")).unwrap_err();
/// assert!(e.is::<CircuitOpen>()); // that host's breaker is open...
/// assert!(call(&mut client, get("http://up.internal/b")).is_ok()); // ...the other host's is not
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub struct KeyedBreakerLayer<Key, F, C: Clock = SystemClock, K = ErrIsFailure> {
    registry: Arc<Registry<Key, CircuitBreaker<C>>>,
    key: F,
    classify: K,
}

impl<Key, F, C: Clock> KeyedBreakerLayer<Key, F, C> {
    /// A layer that runs each request through the breaker of `key(&request)` in `registry`,
    /// every `Err` a failure.
    pub fn new(registry: Arc<Registry<Key, CircuitBreaker<C>>>, key: F) -> Self {
        Self {
            registry,
            key,
            classify: ErrIsFailure,
        }
    }
}

impl<Key, F, C: Clock, K> KeyedBreakerLayer<Key, F, C, K> {
    /// Classify each result with `classify` (see [`crate::classify`]).
    pub fn classify<K2>(self, classify: K2) -> KeyedBreakerLayer<Key, F, C, K2> {
        KeyedBreakerLayer {
            registry: self.registry,
            key: self.key,
            classify,
        }
    }
}

impl<Key, F: Clone, C: Clock, K: Clone> Clone for KeyedBreakerLayer<Key, F, C, K> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<Key, F, C: Clock, K> fmt::Debug for KeyedBreakerLayer<Key, F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerLayer")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<S, Key, F: Clone, C: Clock, K: Clone> Layer<S> for KeyedBreakerLayer<Key, F, C, K> {
    type Service = KeyedBreakerService<S, Key, F, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBreakerService {
            inner,
            registry: self.registry.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// Runs each request through the [`CircuitBreaker`] of its key: `call` reads the key, looks it
/// up in the registry (creating it if new) and asks its breaker for a permit; from there it is
/// [`BreakerService`], with the same [`BreakerFuture`]. A key the registry refuses fails the
/// response future with the [`RegistryError`] (boxed), the inner service not called.
/// `poll_ready` is the inner service's.
///
/// ```
/// use futures::executor::block_on;
/// use resile::breaker::CircuitBreaker;
/// use resile::registry::{Registry, RegistryError};
/// use resile::tower::KeyedBreakerLayer;
/// use std::sync::Arc;
/// use tower::{Layer, Service, service_fn};
///
/// let breakers = Arc::new(Registry::builder(CircuitBreaker::builder()).max_keys(1).build()?);
/// let mut svc = KeyedBreakerLayer::new(breakers.clone(), |host: &&'static str| *host)
///     .layer(service_fn(|host: &'static str| async move { Ok::<_, std::io::Error>(host.len()) }));
/// let held = breakers.get_or_create(&"a")?; // the only key, held: not idle
/// let e = block_on(svc.call("b")).unwrap_err();
/// assert!(matches!(e.downcast_ref::<RegistryError>(), Some(RegistryError::Full(_))));
/// drop(held);
/// assert_eq!(block_on(svc.call("b"))?, 1); // "a" is idle now: evicted for "b"
/// # Ok::<(), resile::tower::BoxError>(())
/// ```
pub struct KeyedBreakerService<S, Key, F, C: Clock = SystemClock, K = ErrIsFailure> {
    inner: S,
    registry: Arc<Registry<Key, CircuitBreaker<C>>>,
    key: F,
    classify: K,
}

impl<S: Clone, Key, F: Clone, C: Clock, K: Clone> Clone for KeyedBreakerService<S, Key, F, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            registry: self.registry.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, Key, F, C: Clock, K> fmt::Debug for KeyedBreakerService<S, Key, F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerService")
            .field("inner", &self.inner)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<S, Key, F, Q, C, K, Req> Service<Req> for KeyedBreakerService<S, Key, F, C, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Key: Borrow<Q> + Hash + Eq + Clone + Send + Sync + 'static,
    F: Fn(&Req) -> Q,
    Q: Hash + Eq + ToOwned<Owned = Key>,
    C: Clock + Clone,
    K: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future, C, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key)(&req);
        // The permit holds the key's entry (a copy of its breaker's `Arc`) until it records.
        let admitted = match self
            .registry
            .with_or_create(&key, |b| b.try_acquire_owned())
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(open)) => Err(Box::new(open) as BoxError),
            Err(e) => Err(Box::new(e) as BoxError),
        };
        match admitted {
            Ok(permit) => {
                BreakerFuture::running(self.inner.call(req), permit, self.classify.clone())
            }
            Err(e) => BreakerFuture::refused(e, self.classify.clone()),
        }
    }
}

impl<C: Clock> BulkheadLayer<C> {
    /// A [`KeyedBulkheadLayer`]: a slot of the bulkhead of each request's key,
    /// `key(&request)`, in `registry`.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::registry::Registry;
    /// use resile::tower::BulkheadLayer;
    /// use std::sync::Arc;
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let bulkheads = Arc::new(Registry::builder(Bulkhead::builder().limit(4)).build()?);
    /// let mut svc = BulkheadLayer::keyed(bulkheads.clone(), |tenant: &u32| *tenant)
    ///     .layer(service_fn(|tenant: u32| async move { Ok::<_, std::io::Error>(tenant) }));
    /// assert_eq!(futures::executor::block_on(svc.call(7))?, 7);
    /// assert_eq!(bulkheads.len(), 1);
    /// # Ok::<(), resile::tower::BoxError>(())
    /// ```
    pub fn keyed<Key, F>(
        registry: Arc<Registry<Key, Bulkhead<C>>>,
        key: F,
    ) -> KeyedBulkheadLayer<Key, F, C> {
        KeyedBulkheadLayer::new(registry, key)
    }
}

/// Holds a slot of the [`Bulkhead`] of each request's key in a [`Registry`] until its response
/// (or, with [`until_body_end`](Self::until_body_end), its body) ends: see
/// [`KeyedBulkheadService`] and the [keyed layers](crate::tower#keyed-layers). Each key's bulkhead limits its own
/// requests: one tenant at its limit does not refuse another's.
///
/// ```
/// use resile::bulkhead::{Bulkhead, BulkheadError};
/// use resile::registry::Registry;
/// use resile::tower::KeyedBulkheadLayer;
/// use std::sync::Arc;
/// use tower::{Layer, Service, service_fn};
///
/// let bulkheads = Arc::new(Registry::builder(Bulkhead::builder().limit(1)).build()?);
/// let mut svc = KeyedBulkheadLayer::new(bulkheads.clone(), |tenant: &&'static str| *tenant)
///     .layer(service_fn(|tenant: &'static str| async move { Ok::<_, std::io::Error>(tenant) }));
/// let busy = svc.call("a"); // holds a's only slot until it completes
/// let e = futures::executor::block_on(svc.call("a")).unwrap_err();
/// assert!(e.downcast_ref::<BulkheadError>().unwrap().is_full());
/// assert_eq!(futures::executor::block_on(svc.call("b"))?, "b"); // b has its own
/// drop(busy);
/// # Ok::<(), resile::tower::BoxError>(())
/// ```
pub struct KeyedBulkheadLayer<Key, F, C: Clock = SystemClock, H = UntilResponse, K = ErrIsFailure> {
    registry: Arc<Registry<Key, Bulkhead<C>>>,
    key: F,
    classify: K,
    hold: PhantomData<fn() -> H>,
}

impl<Key, F, C: Clock> KeyedBulkheadLayer<Key, F, C> {
    /// A layer that takes a slot of the bulkhead of `key(&request)` in `registry` for each
    /// request, failing fast, and holds it until the response is ready.
    pub fn new(registry: Arc<Registry<Key, Bulkhead<C>>>, key: F) -> Self {
        Self {
            registry,
            key,
            classify: ErrIsFailure,
            hold: PhantomData,
        }
    }
}

impl<Key, F, C: Clock, H, K> KeyedBulkheadLayer<Key, F, C, H, K> {
    /// Classifies each response for the key's bulkhead when it is
    /// [adaptive](crate::bulkhead::adaptive), as [`BulkheadLayer::classify`] does.
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::classify::Verdict;
    /// use resile::registry::Registry;
    /// use resile::tower::KeyedBulkheadLayer;
    /// use std::sync::Arc;
    ///
    /// let bulkheads: Arc<Registry<&'static str, Bulkhead>> =
    ///     Arc::new(Registry::builder(Bulkhead::builder()).build()?);
    /// let _layer = KeyedBulkheadLayer::new(bulkheads, |host: &&'static str| *host)
    ///     .classify(|r: Result<&u16, &std::io::Error>| match r {
    ///         Ok(503) | Err(_) => Verdict::Failure,
    ///         Ok(_) => Verdict::Success,
    ///     });
    /// # Ok::<(), resile::error::ConfigError>(())
    /// ```
    pub fn classify<K2>(self, classify: K2) -> KeyedBulkheadLayer<Key, F, C, H, K2> {
        KeyedBulkheadLayer {
            registry: self.registry,
            key: self.key,
            classify,
            hold: PhantomData,
        }
    }

    /// Holds each HTTP request's slot until its response body ends (or is dropped), as
    /// [`BulkheadLayer::until_body_end`] does (feature `http`).
    ///
    /// ```
    /// use resile::bulkhead::Bulkhead;
    /// use resile::registry::Registry;
    /// use resile::tower::KeyedBulkheadLayer;
    /// use std::sync::Arc;
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let bulkheads = Arc::new(Registry::builder(Bulkhead::builder()).build()?);
    /// let mut svc = KeyedBulkheadLayer::new(bulkheads.clone(), |_: &()| "api").until_body_end().layer(
    ///     service_fn(|_: ()| async { Ok::<_, std::io::Error>(http::Response::new(String::from("body"))) }),
    /// );
    /// let response = futures::executor::block_on(svc.call(()))?;
    /// assert_eq!(bulkheads.get(&"api").unwrap().metrics().in_flight, 1); // until the body ends
    /// drop(response);
    /// assert_eq!(bulkheads.get(&"api").unwrap().metrics().in_flight, 0);
    /// # Ok::<(), resile::tower::BoxError>(())
    /// ```
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn until_body_end(self) -> KeyedBulkheadLayer<Key, F, C, UntilBodyEnd, K> {
        KeyedBulkheadLayer {
            registry: self.registry,
            key: self.key,
            classify: self.classify,
            hold: PhantomData,
        }
    }
}

impl<Key, F: Clone, C: Clock, H, K: Clone> Clone for KeyedBulkheadLayer<Key, F, C, H, K> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
            hold: PhantomData,
        }
    }
}

impl<Key, F, C: Clock, H, K> fmt::Debug for KeyedBulkheadLayer<Key, F, C, H, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadLayer")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<S, Key, F: Clone, C: Clock, H, K: Clone> Layer<S> for KeyedBulkheadLayer<Key, F, C, H, K> {
    type Service = KeyedBulkheadService<S, Key, F, C, H, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBulkheadService {
            inner,
            registry: self.registry.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
            hold: PhantomData,
        }
    }
}

/// Holds a slot of the [`Bulkhead`] of each request's key until its response future completes
/// (or is dropped), or with `until_body_end` until its body ends, with the same
/// [`ResponseFuture`] as [`BulkheadService`].
///
/// A request's key is known only when it is called, after `poll_ready`, so the slot is taken in
/// `call`, failing fast: a full bulkhead fails the response future with
/// [`BulkheadError::Full`] (boxed) and the inner service is not called. A bulkhead's
/// [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait) is not waited here (waiting would
/// mean calling the inner service before its request is admitted, or holding a ready inner
/// service while waiting). A key the registry refuses fails it with the [`RegistryError`]
/// (boxed). `poll_ready` is the inner service's.
///
/// ```
/// use futures::executor::block_on;
/// use resile::bulkhead::Bulkhead;
/// use resile::registry::Registry;
/// use resile::tower::KeyedBulkheadLayer;
/// use std::sync::Arc;
/// use tower::{Layer, Service, service_fn};
///
/// let bulkheads = Arc::new(Registry::builder(Bulkhead::builder().limit(2)).build()?);
/// let mut svc = KeyedBulkheadLayer::new(bulkheads.clone(), |req: &(u8, u32)| req.0)
///     .layer(service_fn(|req: (u8, u32)| async move { Ok::<_, std::io::Error>(req.1) }));
/// let fut = svc.call((1, 10));
/// assert_eq!(bulkheads.get(&1).unwrap().metrics().in_flight, 1); // the future holds the slot
/// assert_eq!(block_on(fut)?, 10);
/// assert_eq!(bulkheads.get(&1).unwrap().metrics().in_flight, 0);
/// # Ok::<(), resile::tower::BoxError>(())
/// ```
pub struct KeyedBulkheadService<
    S,
    Key,
    F,
    C: Clock = SystemClock,
    H = UntilResponse,
    K = ErrIsFailure,
> {
    inner: S,
    registry: Arc<Registry<Key, Bulkhead<C>>>,
    key: F,
    classify: K,
    hold: PhantomData<fn() -> H>,
}

impl<S: Clone, Key, F: Clone, C: Clock, H, K: Clone> Clone
    for KeyedBulkheadService<S, Key, F, C, H, K>
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            registry: self.registry.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
            hold: PhantomData,
        }
    }
}

impl<S: fmt::Debug, Key, F, C: Clock, H, K> fmt::Debug
    for KeyedBulkheadService<S, Key, F, C, H, K>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadService")
            .field("inner", &self.inner)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<S, Key, F, Q, C, H, K, Req> Service<Req> for KeyedBulkheadService<S, Key, F, C, H, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Key: Borrow<Q> + Hash + Eq + Clone + Send + Sync + 'static,
    F: Fn(&Req) -> Q,
    Q: Hash + Eq + ToOwned<Owned = Key>,
    C: Clock + Clone,
    K: Classify<S::Response, S::Error> + Clone,
    H: Hold<S::Response, BulkheadSlot<C, K>>,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, BulkheadSlot<C, K>, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key)(&req);
        let admitted = match self
            .registry
            .with_or_create(&key, |b| b.try_acquire_owned())
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(full)) => Err(Box::new(full) as BoxError),
            Err(e) => Err(Box::new(e) as BoxError),
        };
        match admitted {
            Ok(permit) => ResponseFuture::running(
                self.inner.call(req),
                BulkheadSlot::new(permit, self.classify.clone()),
            ),
            Err(e) => ResponseFuture::refused(e),
        }
    }
}
