//! A small HTTP/1.1 service on loopback that drains with resile's [`Drainer`] on SIGTERM.
//!
//! Routes:
//! - `GET /work[?ms=N]`: admitted through [`Drainer::enter`]; sleeps `--handler-ms` (or N ms),
//!   answers 200. Once
//!   draining has started it is refused before admission: 503 with `Connection: close`.
//! - `GET /ready`: 200 while ready, 503 once not ready (the load balancer's health check).
//! - `GET /inflight`: the number of admitted requests still running.
//!
//! On SIGTERM it marks itself not ready (printing `not-ready`), keeps admitting for
//! `--not-ready-delay-ms`, starts draining (printing `draining`), waits up to `--deadline-ms`
//! for admitted requests to finish, prints
//! `drained: abandoned=N elapsed_ms=M admitted=A refused=R` and exits.
//!
//! It prints `listening on 127.0.0.1:PORT` once it accepts connections (it binds an ephemeral
//! port unless `--port` is given).

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use resile::drain::Drainer;
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

struct Config {
    port: u16,
    handler: Duration,
    not_ready_delay: Duration,
    deadline: Duration,
}

fn parse_args() -> Config {
    let mut cfg = Config {
        port: 0,
        handler: Duration::from_millis(20),
        not_ready_delay: Duration::from_millis(200),
        deadline: Duration::from_secs(5),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: u64 = args
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--port" => cfg.port = u16::try_from(value).expect("port fits u16"),
            "--handler-ms" => cfg.handler = Duration::from_millis(value),
            "--not-ready-delay-ms" => cfg.not_ready_delay = Duration::from_millis(value),
            "--deadline-ms" => cfg.deadline = Duration::from_millis(value),
            other => panic!("unknown flag {other}"),
        }
    }
    cfg
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    drainer: Arc<Drainer>,
    handler: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match req.uri().path() {
        "/ready" if drainer.is_ready() => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/inflight" => {
            let n = drainer.in_flight().to_string();
            Response::new(Full::new(Bytes::from(n)))
        }
        "/work" => match drainer.enter_owned() {
            Ok(guard) => {
                // `?ms=N` overrides the handler time for this request.
                let handler = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("ms="))
                    .and_then(|v| v.parse().ok())
                    .map_or(handler, Duration::from_millis);
                // The guard lives for the whole handler; if the connection is dropped mid-way the
                // future is dropped and so is the guard.
                tokio::time::sleep(handler).await;
                drop(guard);
                text(StatusCode::OK, "done\n")
            }
            Err(_) => {
                let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
                r.headers_mut()
                    .insert(hyper::header::CONNECTION, "close".parse().expect("header"));
                r
            }
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

async fn serve(listener: TcpListener, drainer: Arc<Drainer>, handler: Duration) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let drainer = drainer.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, drainer.clone(), handler));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cfg = parse_args();
    let drainer = Arc::new(Drainer::new());
    let mut sigterm = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let listener = TcpListener::bind(("127.0.0.1", cfg.port))
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    say(&format!("listening on {addr}"));
    tokio::spawn(serve(listener, drainer.clone(), cfg.handler));

    sigterm.recv().await;
    let t0 = Instant::now();
    drainer.mark_not_ready();
    say("not-ready");
    tokio::time::sleep(cfg.not_ready_delay).await;
    drainer.start_draining();
    say("draining");
    let abandoned = match tokio::time::timeout(cfg.deadline, drainer.wait()).await {
        Ok(_drained) => 0,
        Err(_) => drainer.in_flight(),
    };
    let m = drainer.metrics();
    say(&format!(
        "drained: abandoned={abandoned} elapsed_ms={} admitted={} refused={}",
        t0.elapsed().as_millis(),
        m.admitted,
        m.refused
    ));
    // Forcing the abandoned work closed is the caller's decision: here, exiting the process.
    std::process::exit(0);
}
