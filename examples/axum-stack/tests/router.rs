//! The router of `axum-stack`, driven with `oneshot` (no socket): each of the stack's answers as
//! a response. Time is one `ManualClock`, the clock and the timer of the breaker, the budget and
//! the time limits: a sleep moves it on and ends at once, so a hung downstream times out in no
//! wall time.

use axum::body::Body;
use axum_stack::{App, Client, Config, Mode, router};
use http::{Request, Response, StatusCode};
use resile::backoff::{Backoff, Jitter};
use resile::clock::{Clock, ManualClock};
use std::time::Duration;
use tower::ServiceExt;

const SECOND: u64 = 1_000_000_000;

fn app() -> (App<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let config = Config {
        // 10 ms between attempts, exactly.
        backoff: Backoff::builder()
            .constant(Duration::from_millis(10))
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        ..Config::default()
    };
    let app = App::new(config, clock.clone(), clock.clone()).unwrap();
    (app, clock)
}

async fn get(app: &App<ManualClock>, path: &str) -> (Response<Body>, String) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = router(app).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
    (
        Response::from_parts(parts, Body::empty()),
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn success_is_200_a_hung_downstream_504_an_open_breaker_503_with_retry_after() {
    let (app, clock) = app();

    let (r, body) = get(&app, "/api").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, "fresh stock");
    assert_eq!(app.downstream.calls(), 1);

    // Hung: attempts at 0 and 410 ms time out after 400 ms; the third, at 820 ms, is cut at the
    // 1 s deadline.
    app.downstream.set(Mode::Hang);
    let (r, _) = get(&app, "/api").await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(clock.now(), SECOND);
    assert_eq!(app.downstream.calls(), 4);
    let m = app.breaker.metrics();
    assert_eq!(
        (m.calls, m.failures),
        (4, 3),
        "each timed-out or cut attempt"
    );

    // Three failures of four calls: open. Refused without reaching the downstream, with the
    // breaker's hint.
    app.downstream.set(Mode::Ok);
    let (r, _) = get(&app, "/api").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The 30 s open period, rounded up to the breaker's tick and then to whole seconds.
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((30..=31).contains(&after), "{after}");
    assert_eq!(app.downstream.calls(), 4);

    // The unrelated route never touches the downstream.
    let (r, body) = get(&app, "/other").await;
    assert_eq!((r.status(), body.as_str()), (StatusCode::OK, "other"));
}

#[tokio::test]
async fn a_down_downstream_answers_its_own_500_until_the_breaker_opens() {
    let (app, _clock) = app();
    app.downstream.set(Mode::Down);
    let (r, body) = get(&app, "/api").await;
    assert_eq!(
        (r.status(), body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "down")
    );
    assert!(app.downstream.calls() >= 2, "the 500 was retried");
    let mut refused = false;
    for _ in 0..4 {
        let (r, _) = get(&app, "/api").await;
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            refused = r.headers().contains_key("retry-after");
            break;
        }
    }
    assert!(
        refused,
        "the breaker opened, and its refusal carries Retry-After"
    );
}

#[tokio::test]
async fn a_full_bulkhead_and_draining_are_503() {
    let (app, _clock) = app();
    let held = [
        app.api.try_acquire().unwrap(),
        app.api.try_acquire().unwrap(),
    ];
    let (r, _) = get(&app, "/api").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!r.headers().contains_key("retry-after"));
    assert_eq!(app.downstream.calls(), 0);
    drop(held);
    assert_eq!(get(&app, "/api").await.0.status(), StatusCode::OK);

    app.drainer.start_draining();
    for path in ["/api", "/other"] {
        let (r, _) = get(&app, path).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["connection"], "close");
    }
    assert_eq!(app.drainer.in_flight(), 0);
}

/// The client stack is a type that can be written down and stored, and what axum asks of state.
#[test]
fn the_client_is_nameable_clone_send_and_sync() {
    fn state<T: Clone + Send + Sync + 'static>() {}
    state::<Client<ManualClock>>();
    state::<App<ManualClock>>();
}
