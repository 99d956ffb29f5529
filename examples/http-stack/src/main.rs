//! Runs the service of [`http_stack`] on loopback until SIGTERM, then drains it.
//!
//! `cargo run -p http-stack -- [--port N]`; it prints `listening on 127.0.0.1:PORT`, and on
//! SIGTERM `drained in ...` or `abandoned N`.

use http_stack::{App, Config, serve};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut port = 0u16;
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--port", Some(p)) => port = p,
            _ => return Err(format!("usage: http-stack [--port N], not {flag}").into()),
        }
    }
    let config = Config {
        not_ready_delay: Duration::from_secs(2),
        deadline: Duration::from_secs(10),
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    let app = App::new(config)?;
    match serve(listener, app, config, async move {
        term.recv().await;
    })
    .await
    {
        Ok(drained) => println!("drained in {:?}", drained.elapsed()),
        Err(left) => println!("abandoned {}", left.in_flight()),
    }
    Ok(())
}
