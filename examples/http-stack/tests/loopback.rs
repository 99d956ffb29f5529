//! The service on loopback, driven by a plain HTTP/1.1 client: counts, not timings. Each test
//! runs its own server on an ephemeral port and stops it itself.

use http_stack::{App, Config, serve};
use resile::drain::Phase;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A response as the client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on its own connection, read to the end (the server closes it).
async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

struct Server {
    addr: std::net::SocketAddr,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<Result<resile::drain::Drained, resile::drain::DrainTimeout>>,
}

impl Server {
    async fn start(not_ready_delay: Duration) -> Self {
        let config = Config {
            not_ready_delay,
            deadline: Duration::from_secs(10),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App::new(config).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(serve(listener, app.clone(), config, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            app,
            stop: Some(stop),
            done,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        request(self.addr, "GET", path).await.unwrap()
    }

    async fn set(&self, mode: &str) {
        let a = request(self.addr, "POST", &format!("/downstream/{mode}"))
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }

    /// The shutdown signal (SIGTERM, in the binary).
    fn terminate(&mut self) {
        let _ = self.stop.take().expect("signalled once").send(());
    }

    /// Waits, without sleeping, until the drainer has reached `phase` (or a later one).
    async fn until(&self, phase: Phase) {
        let rank = |p: Phase| match p {
            Phase::Serving => 0,
            Phase::NotReady => 1,
            Phase::Draining => 2,
            _ => 3,
        };
        while rank(self.app.drainer.phase()) < rank(phase) {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_downstream_is_down_few_requests_reach_it_and_the_rest_get_503_with_retry_after()
{
    let mut s = Server::start(Duration::ZERO).await;
    s.set("down").await;
    let mut refused_with_hint = 0;
    for _ in 0..40 {
        let a = s.get("/api").await;
        match a.status {
            500 => {} // reached the dead downstream (after its retry)
            503 => {
                let after: u64 = a.header("retry-after").expect("a hint").parse().unwrap();
                assert!((1..=30).contains(&after), "{after}");
                refused_with_hint += 1;
            }
            other => panic!("unexpected {other}: {a:?}"),
        }
    }
    // The breaker opens after 5 calls of its window of 10 half failed; with one retry each,
    // at most a handful of requests ever reach the downstream.
    assert!(
        s.app.downstream.calls() <= 10,
        "{}",
        s.app.downstream.calls()
    );
    assert!(refused_with_hint >= 34, "{refused_with_hint}");
    s.terminate();
    assert!(s.done.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_downstream_cannot_take_the_unrelated_route_down() {
    let mut s = Server::start(Duration::ZERO).await;
    s.set("slow").await;
    let addr = s.addr;
    let api: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { request(addr, "GET", "/api").await.unwrap() }))
        .collect();
    // While the slow calls hold /api's two slots, the other route answers every request.
    while s.app.api.metrics().in_flight < 2 {
        tokio::task::yield_now().await;
    }
    for _ in 0..20 {
        let a = s.get("/other").await;
        assert_eq!((a.status, a.body.as_str()), (200, "other"), "{a:?}");
    }
    let mut statuses = Vec::new();
    for h in api {
        statuses.push(h.await.unwrap().status);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "the api bulkhead shed some: {statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    s.terminate();
    assert!(s.done.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_completes_whole_across_the_shutdown() {
    let mut s = Server::start(Duration::from_millis(50)).await;
    let addr = s.addr;
    let stream = tokio::spawn(async move { request(addr, "GET", "/stream").await.unwrap() });
    while s.app.drainer.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    // What the stream had sent when the drain completed: the drain must wait for its body.
    let at_drain = {
        let app = s.app.clone();
        tokio::spawn(async move {
            app.drainer.wait().await;
            app.chunks_sent.load(std::sync::atomic::Ordering::SeqCst)
        })
    };
    s.terminate();
    // Readiness flips first, while requests are still admitted.
    s.until(Phase::NotReady).await;
    assert_eq!(s.get("/ready").await.status, 503);
    let admitted = s.get("/other").await;
    if s.app.drainer.phase() == Phase::NotReady {
        assert_eq!(admitted.status, 200, "admitted during the not-ready delay");
    }
    // Then draining: new requests are refused (or find the listener closed).
    s.until(Phase::Draining).await;
    match request(addr, "GET", "/other").await {
        Ok(a) => {
            assert_eq!(a.status, 503, "{a:?}");
            assert_eq!(a.header("connection"), Some("close"));
        }
        // The listener is closed: refused; or it closed with this connection still in its
        // accept queue, which the kernel resets (seen as a reset or an early end of stream).
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
            ),
            "{e:?}"
        ),
    }
    // The stream that was in flight (ten chunks over 200 ms, past the 50 ms delay) finishes
    // whole, and only then is the drain done.
    let streamed = stream.await.unwrap();
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.body.matches("chunk\n").count(), 10, "{streamed:?}");
    assert_eq!(
        at_drain.await.unwrap(),
        10,
        "the drain completed only after the last chunk"
    );
    let drained = s.done.await.unwrap();
    assert!(drained.is_ok(), "nothing abandoned: {drained:?}");
    assert_eq!(s.app.drainer.phase(), Phase::Drained);
}
