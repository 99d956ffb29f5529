//! Process-level drain tests: start the service binary on loopback, load it with client loops,
//! send SIGTERM, and check what clients and the service saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What one HTTP exchange came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    /// The connection was refused: never admitted.
    ConnectRefused,
    /// Connected and sent, but no complete response came back.
    NoResponse,
}

fn get(port: u16, path: &str) -> Outcome {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return Outcome::ConnectRefused;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return Outcome::NoResponse;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    match text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
    {
        Some(code) => Outcome::Status(code),
        None => Outcome::NoResponse,
    }
}

fn body(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    buf.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()
}

struct Service {
    child: Child,
    port: u16,
    lines: Receiver<(Instant, String)>,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drain-service"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start service");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let (_, first) = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("service printed its address");
        let port = first
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Service { child, port, lines }
    }

    fn sigterm(&self) -> Instant {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill failed");
        Instant::now()
    }

    /// Waits (bounded) for a printed line starting with `prefix`.
    fn expect_line(&self, prefix: &str) -> (Instant, String) {
        loop {
            let (at, line) = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("service never printed {prefix:?}"));
            if line.starts_with(prefix) {
                return (at, line);
            }
        }
    }

    /// Waits (bounded) for the process to exit; returns when it did.
    fn wait_exit(mut self) -> Instant {
        let (tx, rx) = channel();
        thread::spawn(move || {
            let status = self.child.wait();
            let _ = tx.send((Instant::now(), status));
        });
        let (at, status) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("service exited");
        assert!(status.expect("wait").success());
        at
    }
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

#[test]
fn drains_on_sigterm_without_failing_admitted_requests() {
    let deadline = Duration::from_secs(5);
    let svc = Service::start(&[
        "--handler-ms",
        "20",
        "--not-ready-delay-ms",
        "300",
        "--deadline-ms",
        &deadline.as_millis().to_string(),
    ]);
    let port = svc.port;
    // One long request, admitted before the shutdown, keeps the drain open for a while, so the
    // client loops are refused (503) during it rather than finding the process gone.
    let long = thread::spawn(move || get(port, "/work?ms=2000"));
    let mut polls = 0u64;
    while body(port, "/inflight").trim() != "1" {
        polls += 1;
        assert!(polls < 1_000_000, "long request never admitted");
    }
    let successes = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new(Vec::<(Instant, Outcome)>::new()));

    // Client loops: /work until refused (503) or the service is gone; bounded.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (successes, results) = (successes.clone(), results.clone());
            thread::spawn(move || {
                for _ in 0..5_000 {
                    let o = get(port, "/work");
                    results.lock().unwrap().push((Instant::now(), o));
                    match o {
                        Outcome::Status(200) => {
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // A readiness poller: records when /ready first answered 503.
    let poller = thread::spawn(move || {
        for _ in 0..1_000_000 {
            match get(port, "/ready") {
                Outcome::Status(200) => continue,
                Outcome::Status(503) => return Some(Instant::now()),
                _ => return None,
            }
        }
        None
    });

    // Start the shutdown once every client is being served.
    let mut spins = 0u64;
    while successes.load(Ordering::Relaxed) < 8 {
        thread::yield_now();
        spins += 1;
        assert!(spins < 1_000_000_000, "clients never got going");
    }
    let sent = svc.sigterm();
    let (_, draining_line) = svc.expect_line("draining");
    assert_eq!(draining_line, "draining");
    let (_, summary) = svc.expect_line("drained:");
    let exited = svc.wait_exit();
    for c in clients {
        c.join().unwrap();
    }
    let ready_503 = poller.join().unwrap().expect("/ready turned 503");
    assert_eq!(long.join().unwrap(), Outcome::Status(200));

    let results = results.lock().unwrap();
    let ok = 1 + results
        .iter()
        .filter(|(_, o)| *o == Outcome::Status(200))
        .count() as u64;
    let refused = results
        .iter()
        .filter(|(_, o)| *o == Outcome::Status(503))
        .count() as u64;
    for (_, o) in results.iter() {
        assert!(
            matches!(
                o,
                Outcome::Status(200 | 503) | Outcome::ConnectRefused | Outcome::NoResponse
            ),
            "unexpected {o:?}"
        );
    }
    // No admitted request failed mid-flight: every admission produced a 200 a client received,
    // so anything else (503, a refused or unanswered connection) was never admitted.
    assert_eq!(field(&summary, "abandoned"), 0, "{summary}");
    assert_eq!(field(&summary, "admitted"), ok, "{summary}");
    assert!(refused <= field(&summary, "refused"), "{summary}");
    assert!(refused > 0, "clients saw refusals before admission");
    // Readiness turned 503 before the first refusal.
    let first_refusal = results
        .iter()
        .filter(|(_, o)| *o == Outcome::Status(503))
        .map(|(at, _)| *at)
        .min()
        .expect("a refusal");
    assert!(
        ready_503 < first_refusal,
        "/ready turned 503 after refusals began"
    );
    // Exited within the deadline (plus the not-ready delay and a margin for a loaded machine).
    let took = exited - sent;
    assert!(
        took < deadline + Duration::from_millis(300) + Duration::from_secs(3),
        "took {took:?}"
    );
}

#[test]
fn slow_handlers_are_abandoned_at_the_deadline_and_reported() {
    let svc = Service::start(&[
        "--handler-ms",
        "60000",
        "--not-ready-delay-ms",
        "0",
        "--deadline-ms",
        "500",
    ]);
    let port = svc.port;
    let slow: Vec<_> = (0..3)
        .map(|_| thread::spawn(move || get(port, "/work")))
        .collect();
    let mut polls = 0u64;
    while body(port, "/inflight").trim() != "3" {
        polls += 1;
        assert!(polls < 1_000_000, "slow requests never admitted");
    }
    let sent = svc.sigterm();
    let (_, summary) = svc.expect_line("drained:");
    let exited = svc.wait_exit();
    assert_eq!(field(&summary, "abandoned"), 3, "{summary}");
    assert!(field(&summary, "elapsed_ms") >= 500, "{summary}");
    let took = exited - sent;
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}, not the deadline"
    );
    for s in slow {
        assert_ne!(s.join().unwrap(), Outcome::Status(200));
    }
}
