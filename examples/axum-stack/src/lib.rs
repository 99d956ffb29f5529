//! An axum router behind resile's whole stack, every piece of it a type that can be written down
//! (no closure inside the stack) and no error-mapping glue (no `HandleErrorLayer`, no
//! `downcast_ref`): the refusals and time limits become responses in `RefusalLayer`.
//!
//! | route | what runs |
//! | --- | --- |
//! | `GET /api` | bulkhead `api` (a route layer, 2 at once, fail fast) -> [`api`] -> the [`Client`]: deadline -> budgeted retries -> breaker -> attempt timeout -> the [`Downstream`] |
//! | `GET /other` | an answer that never touches the downstream |
//!
//! Every route is admitted through one drainer (a router layer), whose guard lives until the
//! response body ends. The answers a client sees:
//!
//! | what happened | response |
//! | --- | --- |
//! | the downstream answered | its response (`200 fresh`) |
//! | it did not answer within the deadline, or every attempt timed out | `504` |
//! | the breaker is open | `503` with `Retry-After` |
//! | the `api` bulkhead is full | `503` |
//! | the service is draining | `503` with `Connection: close` |
//!
//! The stack's clock and timer are type parameters of [`App`]: the system clock and tokio's
//! timer in `main`, one `ManualClock` in the test, so its timeouts pass in no wall time.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::{Response, StatusCode};
use resile::backoff::Backoff;
use resile::breaker::CircuitBreaker;
use resile::budget::RetryBudget;
use resile::bulkhead::Bulkhead;
use resile::clock::{Clock, SystemClock};
use resile::drain::Drainer;
use resile::error::ConfigError;
use resile::http::{RefusalLayer, RefusalService, StatusClassify};
use resile::timer::Timer;
use resile::tower::{
    BoxError, BreakerLayer, BreakerService, BulkheadLayer, DeadlineLayer, DeadlineService,
    DrainLayer, RetryPolicy, TimeoutLayer, TimeoutService,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::retry::Retry;
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the downstream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers `200 fresh` at once.
    Ok,
    /// Answers `500` at once: a hard-down dependency.
    Down,
    /// Never answers: a hung one.
    Hang,
}

/// The simulated downstream: its mode, and how many calls reached it.
#[derive(Debug, Default)]
pub struct Downstream {
    mode: AtomicU8,
    calls: AtomicU64,
}

impl Downstream {
    /// Sets what the downstream does from now on.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// How many calls have reached it.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Down,
            2 => Mode::Hang,
            _ => Mode::Ok,
        }
    }
}

/// One call to the downstream: what the handler asks for. `Clone`, so the retry can repeat it.
#[derive(Clone, Debug)]
pub struct Call {
    /// What to look up.
    pub query: String,
}

/// The downstream as a tower service (a named type, as a real client is: a `service_fn` closure
/// here would make the stack's type unnameable).
#[derive(Clone, Debug)]
pub struct DownstreamService(Arc<Downstream>);

/// The downstream's response future.
pub type DownstreamFuture =
    Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>>;

impl Service<Call> for DownstreamService {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = DownstreamFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> DownstreamFuture {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        match self.0.mode() {
            Mode::Ok => Box::pin(std::future::ready(Ok(text(
                StatusCode::OK,
                format!("fresh {}", call.query),
            )))),
            Mode::Down => Box::pin(std::future::ready(Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "down".into(),
            )))),
            Mode::Hang => Box::pin(std::future::pending()),
        }
    }
}

/// The client stack in front of the downstream, written down: refusals and time limits as
/// responses, a deadline over the whole call, budgeted retries classified by status, a breaker
/// around each attempt and a timeout on each. Its error is `Infallible`, and it is `Clone + Send
/// + Sync`, so it lives in the router's state.
pub type Client<C = SystemClock> = RefusalService<
    DeadlineService<
        Retry<
            RetryPolicy<C, StatusClassify>,
            BreakerService<TimeoutService<DownstreamService>, C, StatusClassify>,
        >,
    >,
>;

/// The service's settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The deadline of one downstream call, all its attempts included.
    pub deadline: Duration,
    /// The time limit of each attempt.
    pub attempt_timeout: Duration,
    /// The delays between attempts.
    pub backoff: Backoff,
    /// How long the breaker stays open.
    pub open_for: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(1),
            attempt_timeout: Duration::from_millis(400),
            backoff: Backoff::default(),
            open_for: Duration::from_secs(30),
        }
    }
}

/// The router's state: the primitives the tests inspect, and the client.
#[derive(Clone, Debug)]
pub struct App<C: Clock = SystemClock> {
    /// The one drainer of every route.
    pub drainer: Arc<Drainer>,
    /// `/api`'s bulkhead.
    pub api: Arc<Bulkhead>,
    /// The breaker around the downstream.
    pub breaker: Arc<CircuitBreaker<C>>,
    /// The downstream behind `/api`.
    pub downstream: Arc<Downstream>,
    /// The stack `/api` calls the downstream through.
    pub client: Client<C>,
}

impl<C: Clock + Clone> App<C> {
    /// The service's state, its breaker, budget and time limits on `clock` and `timer`.
    ///
    /// # Errors
    /// A [`ConfigError`] for a setting out of range (a zero deadline or attempt timeout, say).
    pub fn new(config: Config, clock: C, timer: impl Timer + Clone) -> Result<Self, ConfigError> {
        let breaker = Arc::new(
            CircuitBreaker::builder()
                .name("downstream")
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(0.5)
                .open_for(config.open_for)
                .clock(clock.clone())
                .build()?,
        );
        let budget = Arc::new(
            RetryBudget::builder()
                .name("downstream")
                .ratio(0.2)
                .min_per_sec(5)
                .clock(clock.clone())
                .build()?,
        );
        let downstream = Arc::new(Downstream::default());
        let client = ServiceBuilder::new()
            .layer(RefusalLayer::new())
            .layer(
                DeadlineLayer::new(config.deadline)?
                    .clock(clock)
                    .timer(timer.clone()),
            )
            .retry(
                RetryPolicy::new(budget)
                    .timer(timer.clone())
                    .max_attempts(3)
                    .backoff(config.backoff)
                    .classify(StatusClassify::new()),
            )
            .layer(BreakerLayer::new(breaker.clone()).classify(StatusClassify::new()))
            .layer(TimeoutLayer::new(config.attempt_timeout)?.timer(timer))
            .service(DownstreamService(downstream.clone()));
        Ok(Self {
            drainer: Arc::new(Drainer::builder().name("axum-stack").build()?),
            api: Arc::new(Bulkhead::builder().name("api").limit(2).build()?),
            breaker,
            downstream,
            client,
        })
    }
}

fn text(status: StatusCode, body: String) -> Response<String> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

/// `GET /api`: the downstream's answer, or the response for why there is none. The client's
/// error is `Infallible`: there is nothing to map.
pub async fn api<C: Clock + Clone>(State(app): State<App<C>>) -> Response<String> {
    let Ok(response) = app
        .client
        .oneshot(Call {
            query: "stock".into(),
        })
        .await;
    response
}

/// `GET /other`: never touches the downstream.
pub async fn other() -> &'static str {
    "other"
}

/// The router: `/api` behind its bulkhead (a route layer), every route behind the drainer (a
/// router layer), each layer with `RefusalLayer` outside it so that its error is `Infallible`, as
/// axum asks. Both hold their guard until the response body ends.
pub fn router<C: Clock + Clone>(app: &App<C>) -> Router {
    Router::new()
        .route("/api", get(api::<C>))
        .route_layer(
            ServiceBuilder::new()
                .layer(RefusalLayer::new())
                .layer(BulkheadLayer::new(app.api.clone()).until_body_end()),
        )
        .route("/other", get(other))
        .layer(
            ServiceBuilder::new()
                .layer(RefusalLayer::new())
                .layer(DrainLayer::new(app.drainer.clone()).until_body_end()),
        )
        .with_state(app.clone())
}
