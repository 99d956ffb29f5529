//! Serves the router of [`axum_stack`] on loopback until SIGTERM, then drains it.
//!
//! `cargo run -p axum-stack -- [--port N]`; it prints `listening on 127.0.0.1:PORT`, and on
//! SIGTERM `drained in ...` or `abandoned N`.

use axum_stack::{App, Config, router};
use resile::clock::SystemClock;
use resile::timer::TokioTimer;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut port = 0u16;
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--port", Some(p)) => port = p,
            _ => return Err(format!("usage: axum-stack [--port N], not {flag}").into()),
        }
    }
    let app = App::new(Config::default(), SystemClock::new(), TokioTimer)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    let drainer = app.drainer.clone();
    // On SIGTERM: refuse new requests (503 with `Connection: close`), then stop accepting and
    // let axum finish the connections; the drainer reports whether every response ended.
    axum::serve(listener, router(&app))
        .with_graceful_shutdown(async move {
            term.recv().await;
            drainer.start_draining();
        })
        .await?;
    match app.drainer.wait_timeout(Duration::from_secs(10)).await {
        Ok(drained) => println!("drained in {:?}", drained.elapsed()),
        Err(left) => println!("abandoned {}", left.in_flight()),
    }
    Ok(())
}
