//! The outage: the database stops answering for 30 s. Every call to it hangs until the client's
//! 1 s timeout. Without a breaker every request waits out that timeout; with one, the breaker
//! trips within about a second of the first timeouts and callers are answered at once (with the
//! refusal and its `retry_after`), while a few half-open probes find out when the database is back.
//!
//! Simulated time: 100 requests a second for 60 s; healthy calls take 20 ms; the database is down
//! from t = 10 s to t = 40 s. The calls run through the crate's `Policy::call_async` on a
//! simulated executor.

use crate::Scenario;
use crate::sim::Sim;
use crate::timeline::{BREAKER_OPEN, CALLS, DB_FAILURES, REFUSED_BREAKER, REQUESTS, Timeline};
use resile::breaker::{CircuitBreaker, State};
use resile::policy::Policy;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

const SECONDS: u64 = 60;
const PER_SEC: u64 = 100;
const DOWN: std::ops::Range<f64> = 10.0..40.0;
const HEALTHY: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Stats {
    /// Calls that reached the database while it was down.
    dead_calls: u64,
    /// Time callers spent waiting on the dead database.
    waited: Duration,
    /// Latency of every request during the outage (ns).
    outage_latency: Vec<u64>,
    /// When the breaker first refused.
    first_refusal: Option<f64>,
    /// Requests that got the dependency's error (a timeout).
    failed: u64,
    /// Requests the breaker refused at once.
    refused: u64,
    /// When the breaker was closed again after the database came back.
    closed_again: Option<f64>,
}

/// The simulated database call: 20 ms and success, or a 1 s timeout while it is down.
async fn database(
    sim: Sim,
    stats: Rc<RefCell<Stats>>,
    tl: Rc<RefCell<Timeline>>,
) -> Result<(), &'static str> {
    let t = sim.now_secs();
    tl.borrow_mut().count(CALLS, t);
    if DOWN.contains(&t) {
        stats.borrow_mut().dead_calls += 1;
        sim.sleep(TIMEOUT).await;
        stats.borrow_mut().waited += TIMEOUT;
        tl.borrow_mut().count(DB_FAILURES, sim.now_secs());
        Err("timeout")
    } else {
        sim.sleep(HEALTHY).await;
        Ok(())
    }
}

fn simulate(with_breaker: bool) -> (Stats, Timeline) {
    let sim = Sim::new();
    let stats = Rc::new(RefCell::new(Stats::default()));
    let variant = if with_breaker {
        "with breaker"
    } else {
        "without breaker"
    };
    let tl = Rc::new(RefCell::new(Timeline::new(variant, 0.5)));
    let breaker = Arc::new(
        CircuitBreaker::builder()
            .name("database")
            .count_window(20)
            .minimum_calls(10)
            .failure_rate_threshold(0.5)
            .open_for(Duration::from_secs(5))
            .half_open_probes(3)
            .clock(sim.clock.clone())
            .build()
            .expect("valid breaker"),
    );
    let policy = Rc::new(
        Policy::builder()
            .breaker(breaker.clone())
            .build()
            .expect("valid policy"),
    );
    let driver = {
        let (sim, stats, tl) = (sim.clone(), stats.clone(), tl.clone());
        async move {
            for _ in 0..SECONDS * PER_SEC {
                let (sim2, stats2, tl2, policy) =
                    (sim.clone(), stats.clone(), tl.clone(), policy.clone());
                sim.spawn(async move {
                    let (tl, stats) = (tl2, stats2);
                    let start = sim2.now();
                    tl.borrow_mut().count(REQUESTS, sim2.now_secs());
                    let out = if with_breaker {
                        policy
                            .call_async(|| database(sim2.clone(), stats.clone(), tl.clone()))
                            .await
                            .map_err(|e| e.is_breaker_open())
                    } else {
                        database(sim2.clone(), stats.clone(), tl.clone())
                            .await
                            .map_err(|_| false)
                    };
                    let mut st = stats.borrow_mut();
                    if DOWN.contains(&(start as f64 / 1e9)) {
                        st.outage_latency.push(sim2.now() - start);
                    }
                    match out {
                        Ok(()) => {}
                        Err(true) => {
                            st.refused += 1;
                            st.first_refusal.get_or_insert(sim2.now_secs());
                            tl.borrow_mut().count(REFUSED_BREAKER, sim2.now_secs());
                        }
                        Err(false) => st.failed += 1,
                    }
                });
                if with_breaker {
                    let now = sim.now_secs();
                    if breaker.state() != State::Closed {
                        tl.borrow_mut().shade(BREAKER_OPEN, now);
                    } else if now >= DOWN.end {
                        stats.borrow_mut().closed_again.get_or_insert(now);
                    }
                }
                sim.sleep(Duration::from_nanos(1_000_000_000 / PER_SEC))
                    .await;
            }
        }
    };
    sim.spawn(driver);
    sim.run_until(u64::MAX);
    let stats = Rc::try_unwrap(stats).ok().expect("tasks done").into_inner();
    let tl = Rc::try_unwrap(tl).ok().expect("tasks done").into_inner();
    (stats, tl)
}

pub(crate) fn run() -> Scenario {
    let mut s = Scenario::new(
        "outage",
        format!(
            "outage: database down {:.0} s, {PER_SEC} req/s, {} s timeout",
            DOWN.end - DOWN.start,
            TIMEOUT.as_secs()
        ),
    );
    let mut runs = Vec::new();
    for with_breaker in [false, true] {
        let (mut st, tl) = simulate(with_breaker);
        let v = tl.variant.clone();
        s.key_row(&v, "calls that reached the dead database", st.dead_calls);
        s.key_row(
            &v,
            "time callers waited on the dead database",
            format!("{:.0} s", st.waited.as_secs_f64()),
        );
        st.outage_latency.sort_unstable();
        let p = |q: f64| Duration::from_nanos(crate::percentile(&st.outage_latency, q));
        s.row(
            &v,
            "latency during the outage p50 / p99",
            format!("{} / {}", crate::ms(p(0.5)), crate::ms(p(0.99))),
        );
        if let Some(t) = st.first_refusal {
            s.key_row(
                &v,
                "callers stop waiting (first refusal after the outage began)",
                format!("{:.2} s", t - DOWN.start),
            );
        }
        s.row(&v, "requests failed (timed out)", st.failed);
        s.row(&v, "requests refused at once (breaker open)", st.refused);
        s.timeline(tl);
        runs.push(st);
    }
    let (without, with) = (&runs[0], &runs[1]);
    let secs = TIMEOUT.as_secs();
    s.notice(format!(
        "the breaker turns {} waits of {secs} s on the dead database into {}; from {} into the \
         outage the other requests are refused at once ({} of them, each told when to retry), \
         and {}",
        without.dead_calls,
        with.dead_calls,
        with.first_refusal
            .map_or("-".to_owned(), |t| format!("{:.2} s", t - DOWN.start)),
        with.refused,
        with.closed_again
            .map_or("the breaker never closes again".to_owned(), |t| format!(
                "half-open probes close the breaker {:.1} s after the database is back",
                t - DOWN.end
            )),
    ));
    s
}
