//! An HTTP/1.1 service behind resile's whole tower stack, the way an axum or hyper service
//! would mount it: one drainer for every route, a bulkhead per route, budgeted retries and a
//! breaker around a downstream that can be made to fail or slow down at run time.
//!
//! | route | what runs |
//! | --- | --- |
//! | `GET /api` | bulkhead `api` (2 at once, fail fast) -> budgeted retries -> breaker -> the downstream |
//! | `GET /other` | bulkhead `other` (16) -> an answer that never touches the downstream |
//! | `GET /stream` | ten chunks, one every 20 ms: the drain waits for the last |
//! | `GET /ready` | 200 while ready, 503 once shutdown has begun (the load balancer's check) |
//! | `POST /downstream/{ok,down,slow}` | what the downstream does from now on |
//!
//! Every route is admitted through the drainer, whose guard lives until the response body ends
//! (`until_body_end`), and every refusal is answered by `RefusalLayer`: 503 with
//! `Connection: close` while draining, 503 with `Retry-After` while the breaker is open, 503
//! when a bulkhead is full. [`serve`] runs the accept loop and, once the shutdown signal fires,
//! the drainer's shutdown: not ready, the not-ready delay (still admitting), draining (the
//! listener closes), and the wait for every response, streamed ones included.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use resile::breaker::CircuitBreaker;
use resile::budget::RetryBudget;
use resile::bulkhead::Bulkhead;
use resile::drain::{DrainTimeout, Drained, Drainer};
use resile::http::{RefusalLayer, StatusClassify};
use resile::timer::TokioTimer;
use resile::tower::{BoxError, BreakerLayer, BulkheadLayer, DrainLayer, RetryPolicy};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Every route's response body.
pub type BoxedBody = BoxBody<Bytes, BoxError>;

/// A route's response future, boxed: the routes' futures differ, and the box states `Send`
/// once, where the concrete types are known.
type RouteFuture = Pin<Box<dyn Future<Output = Result<Response<BoxedBody>, BoxError>> + Send>>;

/// What the downstream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers 200 at once.
    Ok,
    /// Answers 500 at once: a hard-down dependency.
    Down,
    /// Answers 200 after 300 ms: an overloaded one.
    Slow,
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
            2 => Mode::Slow,
            _ => Mode::Ok,
        }
    }

    async fn call(&self) -> Response<BoxedBody> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.mode() {
            Mode::Ok => text(StatusCode::OK, "fresh"),
            Mode::Down => text(StatusCode::INTERNAL_SERVER_ERROR, "down"),
            Mode::Slow => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                text(StatusCode::OK, "slow")
            }
        }
    }
}

/// The service's settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long `/ready` fails before draining starts.
    pub not_ready_delay: Duration,
    /// How long the drain may take before what is left is abandoned.
    pub deadline: Duration,
}

/// The shared state: the drainer, the downstream, and the primitives the tests inspect.
#[derive(Debug)]
pub struct App {
    /// The one drainer of every route.
    pub drainer: Arc<Drainer>,
    /// The downstream behind `/api`.
    pub downstream: Arc<Downstream>,
    /// The breaker around the downstream.
    pub breaker: Arc<CircuitBreaker>,
    /// `/api`'s bulkhead.
    pub api: Arc<Bulkhead>,
    /// Chunks `/stream` has sent, over all requests.
    pub chunks_sent: Arc<AtomicU64>,
}

impl App {
    /// The service's state, with `config`.
    pub fn new(config: Config) -> Result<Arc<Self>, resile::error::ConfigError> {
        Ok(Arc::new(Self {
            drainer: Arc::new(
                Drainer::builder()
                    .name("http-stack")
                    .not_ready_delay(config.not_ready_delay)
                    .timer(TokioTimer)
                    .build()?,
            ),
            downstream: Arc::default(),
            breaker: Arc::new(
                CircuitBreaker::builder()
                    .name("downstream")
                    .count_window(10)
                    .minimum_calls(5)
                    .failure_rate_threshold(0.5)
                    .open_for(Duration::from_secs(30))
                    .build()?,
            ),
            api: Arc::new(Bulkhead::builder().name("api").limit(2).build()?),
            chunks_sent: Arc::default(),
        }))
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<BoxedBody> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// Ten chunks, one every 20 ms.
struct Chunks {
    left: u32,
    tick: Option<Pin<Box<tokio::time::Sleep>>>,
    sent: Arc<AtomicU64>,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let tick = self
            .tick
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
        if tick.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.tick = None;
        self.left -= 1;
        self.sent.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"chunk\n")))))
    }
}

fn set(app: &App, mode: Mode) -> Response<BoxedBody> {
    app.downstream.set(mode);
    text(StatusCode::OK, "set")
}

/// The whole service: refusals as responses, one drainer, and the routes.
pub fn service(
    app: &Arc<App>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<impl Body<Data = Bytes, Error = BoxError> + Send + 'static>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    let budget = Arc::new(
        RetryBudget::builder()
            .name("downstream")
            .ratio(0.2)
            .min_per_sec(2)
            .build()
            .expect("a valid budget"),
    );
    let api = ServiceBuilder::new()
        .layer(BulkheadLayer::new(app.api.clone()).until_body_end())
        .retry(
            RetryPolicy::new(budget)
                .timer(TokioTimer)
                .max_attempts(2)
                .classify(StatusClassify::new()),
        )
        .layer(BreakerLayer::new(app.breaker.clone()).classify(StatusClassify::new()))
        .service_fn({
            let downstream = app.downstream.clone();
            move |()| {
                let downstream = downstream.clone();
                async move { Ok::<_, BoxError>(downstream.call().await) }
            }
        })
        .map_response(|r| r.map(BodyExt::boxed));
    let api = BoxCloneService::new(api);
    let other = ServiceBuilder::new()
        .layer(
            BulkheadLayer::new(Arc::new(
                Bulkhead::builder()
                    .name("other")
                    .limit(16)
                    .build()
                    .expect("a valid bulkhead"),
            ))
            .until_body_end(),
        )
        .service_fn(|()| async { Ok::<_, BoxError>(text(StatusCode::OK, "other")) })
        .map_response(|r| r.map(BodyExt::boxed));
    let other = BoxCloneService::new(other);
    let drainer = app.drainer.clone();
    let app = app.clone();
    let router = tower::service_fn(move |req: Request<Incoming>| -> RouteFuture {
        // Decided before any await, so the future holds no borrow of the request.
        let route = match (req.method().as_str(), req.uri().path()) {
            ("GET", "/api") => return Box::pin(api.clone().oneshot(())),
            ("GET", "/other") => return Box::pin(other.clone().oneshot(())),
            ("GET", "/stream") => Response::new(
                Chunks {
                    left: 10,
                    tick: None,
                    sent: app.chunks_sent.clone(),
                }
                .boxed(),
            ),
            ("GET", "/ready") if app.drainer.is_ready() => text(StatusCode::OK, "ready"),
            ("GET", "/ready") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
            ("POST", "/downstream/ok") => set(&app, Mode::Ok),
            ("POST", "/downstream/down") => set(&app, Mode::Down),
            ("POST", "/downstream/slow") => set(&app, Mode::Slow),
            _ => text(StatusCode::NOT_FOUND, "no such route"),
        };
        Box::pin(std::future::ready(Ok(route)))
    });
    ServiceBuilder::new()
        .layer(RefusalLayer::new())
        .layer(DrainLayer::new(drainer).until_body_end())
        .service(router)
}

/// Serves `listener` until `shutdown` fires, then runs the drainer's shutdown: the listener keeps
/// accepting through the not-ready delay and closes once draining starts; connections already
/// accepted are served to the end. Returns what the drain reports.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<Drained, DrainTimeout> {
    let svc = service(&app);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut shutting_down = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let svc = TowerToHyperService::new(svc.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            () = &mut shutdown, if shutting_down.is_none() => {
                let drainer = app.drainer.clone();
                let deadline = config.deadline;
                shutting_down = Some(tokio::spawn(async move { drainer.shutdown(deadline).await }));
            }
            () = app.drainer.draining(), if shutting_down.is_some() => break,
        }
    }
    drop(listener); // draining: new connections are refused by the kernel from now on
    match shutting_down {
        Some(task) => task
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        None => unreachable!("the loop ends only once the shutdown has started"),
    }
}
