//! The keyed tower layers: each request's breaker, bulkhead or retry budget is its key's in a
//! registry. One key's open breaker or full bulkhead does not refuse another key; a request in
//! flight keeps its key from eviction; a full registry refuses with a typed error that the HTTP
//! refusal layer answers `503`; the key can be the authority of an `http::Request`.
#![cfg(all(feature = "registry", feature = "http", feature = "tower-retry"))]

use futures::executor::block_on;
use http::uri::Authority;
use http_body::Body;
use resile::breaker::{CircuitBreaker, CircuitOpen, State};
use resile::budget::RetryBudget;
use resile::bulkhead::{Bulkhead, BulkheadError};
use resile::clock::ManualClock;
use resile::http::RefusalLayer;
use resile::registry::{Registry, RegistryError};
use resile::tower::{BoxError, BreakerLayer, KeyedBulkheadLayer, RetryPolicy};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

type Req = http::Request<()>;

fn get(uri: &str) -> Req {
    http::Request::get(uri).body(()).unwrap()
}

/// The authority of an absolute request URI: the dependency an HTTP client calls.
fn authority(req: &Req) -> Option<Authority> {
    req.uri().authority().cloned()
}

fn breakers(max_keys: usize) -> Arc<Registry<Option<Authority>, CircuitBreaker<ManualClock>>> {
    let template = CircuitBreaker::builder()
        .count_window(4)
        .minimum_calls(2)
        .open_for(Duration::from_secs(30))
        .clock(ManualClock::new());
    Arc::new(
        Registry::builder(template)
            .max_keys(max_keys)
            .build()
            .unwrap(),
    )
}

/// A client whose `down.internal` fails every call and every other host answers `200`.
async fn backend(req: Req) -> Result<http::Response<String>, std::io::Error> {
    if req.uri().host() == Some("down.internal") {
        return Err(std::io::Error::other("connection refused"));
    }
    Ok(http::Response::new(req.uri().to_string()))
}

fn key(host: &'static str) -> Option<Authority> {
    Some(Authority::from_static(host))
}

#[test]
fn one_hosts_open_breaker_does_not_refuse_another_host() {
    let registry = breakers(16);
    let mut client = ServiceBuilder::new()
        .layer(BreakerLayer::keyed(registry.clone(), authority))
        .service_fn(backend);
    let mut call = |uri: &str| block_on(async { client.ready().await?.call(get(uri)).await });

    for _ in 0..2 {
        let e = call("http://down.internal/x").unwrap_err();
        assert!(e.is::<std::io::Error>(), "the backend's own error: {e}");
    }
    let e = call("http://down.internal/x").unwrap_err();
    assert_eq!(
        e.downcast_ref::<CircuitOpen>().unwrap().state(),
        State::Open
    );
    assert_eq!(
        call("http://up.internal/y").unwrap().body(),
        "http://up.internal/y"
    );

    let down = registry.get(&key("down.internal")).unwrap();
    let up = registry.get(&key("up.internal")).unwrap();
    assert_eq!((down.state(), down.metrics().refused), (State::Open, 1));
    assert_eq!((up.state(), up.metrics().calls), (State::Closed, 1));
    assert_eq!(registry.len(), 2);
}

#[test]
fn a_request_without_an_authority_has_its_own_key() {
    let registry = breakers(16);
    let mut client =
        BreakerLayer::keyed(registry.clone(), authority).layer(tower::service_fn(backend));
    block_on(client.call(get("/relative"))).unwrap();
    assert_eq!(registry.get(&None).unwrap().metrics().calls, 1);
    block_on(client.call(get("http://a.internal:8080/"))).unwrap();
    assert_eq!(
        registry
            .get(&key("a.internal:8080"))
            .unwrap()
            .metrics()
            .calls,
        1
    );
}

#[test]
fn a_request_in_flight_keeps_its_key_from_eviction() {
    let registry = breakers(1);
    let mut client =
        BreakerLayer::keyed(registry.clone(), authority).layer(tower::service_fn(backend));
    let in_flight = client.call(get("http://a.internal/"));
    // The only key is held by the request's permit: a new key is refused, typed.
    let e = block_on(client.call(get("http://b.internal/"))).unwrap_err();
    let Some(RegistryError::Full(full)) = e.downcast_ref::<RegistryError>() else {
        panic!("not a registry refusal: {e}")
    };
    assert_eq!(full.max_keys(), 1);
    assert_eq!(registry.metrics().refused, 1);
    // Its result lands in the breaker still in the registry.
    block_on(in_flight).unwrap();
    assert_eq!(registry.get(&key("a.internal")).unwrap().metrics().calls, 1);
    // Done, "a" is idle: evicted for "b".
    block_on(client.call(get("http://b.internal/"))).unwrap();
    assert!(registry.get(&key("a.internal")).is_none());
    assert_eq!(registry.metrics().evicted, 1);
}

#[test]
fn the_refusal_layer_answers_a_full_registry_503_and_a_config_error_500() {
    let registry = breakers(1);
    let held = registry.get_or_create(&key("a.internal")).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(
            RefusalLayer::new()
                .bulkhead_status(http::StatusCode::TOO_MANY_REQUESTS)
                .unwrap(),
        )
        .layer(BreakerLayer::keyed(registry.clone(), authority))
        .service_fn(backend);
    let r = block_on(async { svc.ready().await?.call(get("http://b.internal/")).await }).unwrap();
    assert_eq!(r.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    let r = block_on(async { svc.ready().await?.call(get("http://b.internal/")).await }).unwrap();
    assert_eq!(r.status(), http::StatusCode::OK);

    // A per-key override the builder refuses is the server's bug, not a refusal.
    let bad = Arc::new(
        Registry::builder(CircuitBreaker::builder())
            .per_key(|k: &Option<Authority>, b| match k {
                Some(a) if a.host() == "bad.internal" => b.half_open_probes(0),
                _ => b,
            })
            .build()
            .unwrap(),
    );
    let mut svc = ServiceBuilder::new()
        .layer(RefusalLayer::new())
        .layer(BreakerLayer::keyed(bad, authority))
        .service_fn(backend);
    let r = block_on(async { svc.ready().await?.call(get("http://bad.internal/")).await }).unwrap();
    assert_eq!(r.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    let r =
        block_on(async { svc.ready().await?.call(get("http://good.internal/")).await }).unwrap();
    assert_eq!(r.status(), http::StatusCode::OK);
}

/// A body of one frame.
fn one_frame() -> http::Response<String> {
    http::Response::new(String::from("x"))
}

#[test]
fn each_tenants_bulkhead_limits_its_own_requests_until_the_body_ends() {
    let bulkheads = Arc::new(
        Registry::builder(Bulkhead::builder().limit(1))
            .build()
            .unwrap(),
    );
    let mut svc = KeyedBulkheadLayer::new(bulkheads.clone(), |req: &Req| {
        req.headers()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_owned()
    })
    .until_body_end()
    .layer(tower::service_fn(|_: Req| async {
        Ok::<_, std::io::Error>(one_frame())
    }));
    let tenant = |t: &str| {
        http::Request::get("/")
            .header("x-tenant", t)
            .body(())
            .unwrap()
    };
    let mut call = |req| block_on(async { svc.ready().await?.call(req).await });

    let a = call(tenant("a")).unwrap(); // the head is ready, a's body not yet sent
    let e = call(tenant("a")).unwrap_err();
    assert!(e.downcast_ref::<BulkheadError>().unwrap().is_full());
    let b = call(tenant("b")).unwrap(); // b's own slot
    let in_flight = |t: &str| bulkheads.get(t).unwrap().metrics().in_flight;
    assert_eq!((in_flight("a"), in_flight("b")), (1, 1));

    // a's body ends: its slot is back.
    let mut body = a.into_body();
    while block_on(poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))).is_some() {}
    assert_eq!(in_flight("a"), 0);
    assert!(call(tenant("a")).is_ok());
    drop(b);
    assert_eq!(in_flight("b"), 0);
    assert_eq!(bulkheads.get("a").unwrap().metrics().refused, 1);
}

#[test]
fn a_full_bulkhead_registry_refuses_typed() {
    let bulkheads = Arc::new(
        Registry::builder(Bulkhead::builder().limit(4))
            .max_keys(1)
            .build()
            .unwrap(),
    );
    let mut svc = KeyedBulkheadLayer::new(bulkheads.clone(), |t: &u32| *t).layer(
        tower::service_fn(|t: u32| async move { Ok::<_, std::io::Error>(t) }),
    );
    let busy = svc.call(1);
    let e = block_on(svc.call(2)).unwrap_err();
    assert!(matches!(
        e.downcast_ref::<RegistryError>(),
        Some(RegistryError::Full(_))
    ));
    assert_eq!(block_on(busy).unwrap(), 1);
    assert_eq!(block_on(svc.call(2)).unwrap(), 2);
}

fn budgets(max_keys: usize) -> Arc<Registry<String, RetryBudget<ManualClock>>> {
    let template = RetryBudget::builder()
        .max_retries(1)
        .clock(ManualClock::new());
    Arc::new(
        Registry::builder(template)
            .max_keys(max_keys)
            .build()
            .unwrap(),
    )
}

/// A service failing every call, counting its calls by the request's tenant.
#[derive(Clone, Default)]
struct Failing {
    calls: Arc<AtomicU32>,
}

impl Service<(String, u32)> for Failing {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: (String, u32)) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Err("busy".into()))
    }
}

#[test]
fn each_tenants_retries_are_paid_from_its_own_budget() {
    let budgets = budgets(16);
    let failing = Failing::default();
    let policy = RetryPolicy::keyed(budgets.clone(), |req: &(String, u32)| req.0.clone())
        .timer(|_: Duration| std::future::ready(()))
        .max_attempts(3);
    let mut svc = ServiceBuilder::new().retry(policy).service(failing.clone());
    let mut call = |t: &str| block_on(svc.call((t.to_owned(), 0)));

    assert!(call("a").is_err()); // 1 attempt + a's one retry (a second one refused)
    assert_eq!(failing.calls.swap(0, Ordering::Relaxed), 2);
    assert!(call("a").is_err()); // a's budget is spent: no retry
    assert_eq!(failing.calls.swap(0, Ordering::Relaxed), 1);
    assert!(call("b").is_err()); // b's own budget
    assert_eq!(failing.calls.swap(0, Ordering::Relaxed), 2);
    let m = |t: &str| budgets.get(t).unwrap().metrics();
    let (a, b) = (m("a"), m("b"));
    assert_eq!(
        (a.deposits, a.retries_granted, a.retries_refused),
        (2, 1, 2)
    );
    assert_eq!(
        (b.deposits, b.retries_granted, b.retries_refused),
        (1, 1, 1)
    );
}

#[test]
fn a_key_the_budget_registry_refuses_is_not_retried() {
    let budgets = budgets(1);
    let held = budgets.get_or_create("a").unwrap();
    let failing = Failing::default();
    let policy = RetryPolicy::keyed(budgets.clone(), |req: &(String, u32)| req.0.clone())
        .timer(|_: Duration| std::future::ready(()));
    let mut svc = ServiceBuilder::new().retry(policy).service(failing.clone());
    assert!(block_on(svc.call(("b".to_owned(), 0))).is_err());
    assert_eq!(
        failing.calls.load(Ordering::Relaxed),
        1,
        "no budget: no retry"
    );
    assert!(budgets.get("b").is_none());
    assert_eq!(
        held.metrics().deposits,
        0,
        "nothing paid into another key's budget"
    );
}

#[test]
fn a_registry_refusal_below_the_retry_is_not_retried_and_earns_no_deposit() {
    let budget = Arc::new(RetryBudget::builder().max_retries(5).build().unwrap());
    let registry = Arc::new(
        Registry::builder(CircuitBreaker::builder())
            .max_keys(1)
            .build()
            .unwrap(),
    );
    let _held = registry.get_or_create("a").unwrap();
    let failing = Failing::default();
    let mut svc = ServiceBuilder::new()
        .retry(RetryPolicy::new(budget.clone()).timer(|_: Duration| std::future::ready(())))
        .layer(BreakerLayer::keyed(registry, |req: &(String, u32)| {
            req.0.clone()
        }))
        .service(failing.clone());
    let e = block_on(svc.call(("b".to_owned(), 0))).unwrap_err();
    assert!(e.is::<RegistryError>());
    assert_eq!(failing.calls.load(Ordering::Relaxed), 0);
    let m = budget.metrics();
    assert_eq!((m.deposits, m.retries_granted), (0, 0));
}
