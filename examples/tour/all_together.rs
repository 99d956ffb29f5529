//! All four together: the Resilience Patterns guide's `/api/v1/routes/resolve`, a database read behind drain
//! admission, a bulkhead, retries paid from a budget, and a breaker with a cache fallback, run
//! through one `Policy`. Against it: the same endpoint with what most clients have, plain retries.
//!
//! Simulated time: 100 requests a second for 50 s, then a deploy. The database answers in 20 ms,
//! except:
//! - t = 10 to 25 s: **down**, every call hangs until the 1 s timeout (the outage);
//! - t = 30 to 40 s: **overloaded**, 30% of calls fail after 50 ms (below the breaker's threshold:
//!   only the budget stands between the retries and the database) (where retries turn into a
//!   storm);
//! - t = 50 s: **deploy**: the load balancer health-checks every 100 ms. Without draining the
//!   process exits at the signal; with it, `/ready` turns 503, draining starts 150 ms later, and
//!   the process exits once the last request is done.

use crate::Scenario;
use crate::sim::Sim;
use crate::timeline::{
    BREAKER_OPEN, CALLS, DB_FAILURES, DRAINING, NOT_READY, REFUSED_BUDGET, REFUSED_BULKHEAD,
    REFUSED_CACHE, REFUSED_DRAIN, REQUESTS, REQUESTS_FAILED, Timeline,
};
use resile::backoff::Backoff;
use resile::breaker::{CircuitBreaker, State};
use resile::budget::RetryBudget;
use resile::bulkhead::Bulkhead;
use resile::drain::Drainer;
use resile::policy::{Policy, PolicyError};
use resile::retry::Retry;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

const PER_SEC: u64 = 100;
const DEPLOY: f64 = 50.0;
const HEALTH_CHECK: f64 = 0.1;
const DOWN: std::ops::Range<f64> = 10.0..25.0;
const OVERLOADED: std::ops::Range<f64> = 30.0..40.0;
const TIMEOUT: Duration = Duration::from_secs(1);
/// From `/ready` turning 503 to draining: longer than the health-check interval.
const NOT_READY_DELAY: Duration = Duration::from_millis(150);
const PLAIN: &str = "plain retries only";
const PROTECTED: &str = "one Policy (all four)";

#[derive(Default)]
struct Stats {
    requests: u64,
    /// Calls that reached the database while it was failing (down or overloaded).
    failing_calls: u64,
    overload_calls: u64,
    overload_requests: u64,
    latencies: Vec<u64>,
    waited: Duration,
    failed: u64,
    failed_in_deploy: u64,
    from_cache: u64,
    refused_by_drain: u64,
    refused_by_bulkhead: u64,
    /// Requests whose retry the budget refused (they fail with the last attempt's error).
    retries_refused: u64,
    in_flight: u64,
    peak_in_flight: u64,
}

/// The database: a fixed pseudo-random sequence decides which overloaded calls fail.
async fn database(
    sim: Sim,
    n: u64,
    stats: Rc<RefCell<Stats>>,
    tl: Rc<RefCell<Timeline>>,
) -> Result<&'static str, &'static str> {
    let t = sim.now_secs();
    tl.borrow_mut().count(CALLS, t);
    if DOWN.contains(&t) {
        stats.borrow_mut().failing_calls += 1;
        sim.sleep(TIMEOUT).await;
        tl.borrow_mut().count(DB_FAILURES, sim.now_secs());
        return Err("timeout");
    }
    if OVERLOADED.contains(&t) {
        let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        let fails = x % 100 < 30;
        {
            let mut st = stats.borrow_mut();
            st.overload_calls += 1;
            st.failing_calls += u64::from(fails);
        }
        if fails {
            sim.sleep(Duration::from_millis(50)).await;
            tl.borrow_mut().count(DB_FAILURES, sim.now_secs());
            return Err("overloaded");
        }
    }
    sim.sleep(Duration::from_millis(20)).await;
    Ok("fresh route")
}

fn simulate(protected: bool) -> (Stats, Timeline) {
    let sim = Sim::new();
    let clock = sim.clock.clone();
    let variant = if protected { PROTECTED } else { PLAIN };
    let tl = Rc::new(RefCell::new(Timeline::new(variant, 0.5)));
    let stats = Rc::new(RefCell::new(Stats::default()));

    let drainer = Arc::new(
        Drainer::builder()
            .clock(clock.clone())
            .build()
            .expect("valid drainer"),
    );
    let bulkhead = Arc::new(
        Bulkhead::builder()
            .name("reads")
            .limit(30)
            .clock(clock.clone())
            .build()
            .expect("valid bulkhead"),
    );
    let breaker = Arc::new(
        CircuitBreaker::builder()
            .name("database")
            .count_window(50)
            .minimum_calls(20)
            .failure_rate_threshold(0.5)
            .open_for(Duration::from_secs(5))
            .half_open_probes(3)
            .clock(clock.clone())
            .build()
            .expect("valid breaker"),
    );
    let budget = Arc::new(
        RetryBudget::builder()
            .ratio(0.1)
            .min_per_sec(5)
            .window(Duration::from_secs(10))
            .clock(clock.clone())
            .build()
            .expect("valid budget"),
    );
    let backoff = Backoff::builder()
        .exponential(Duration::from_millis(50), 2)
        .cap(Duration::from_secs(1))
        .build()
        .expect("valid backoff");
    let mut retry = Retry::builder()
        .max_attempts(3)
        .backoff(backoff)
        .clock(clock.clone())
        .timer(sim.timer())
        // A fixed seed for the backoff jitter: the same table on every run.
        .rng_seed(2024);
    let fallback: fn(&PolicyError<&'static str>) -> Option<&'static str> = if protected {
        retry = retry.budget(budget);
        |e| e.is_breaker_open().then_some("cached route")
    } else {
        // The same policy with its layers switched off: a disabled breaker, a bulkhead that never
        // fills, no budget, no fallback, and a drainer that is never drained.
        breaker.disable();
        bulkhead
            .set_limit(resile::bulkhead::MAX_LIMIT)
            .expect("valid limit");
        |_| None
    };
    let policy = Policy::builder()
        .drainer(drainer.clone())
        .bulkhead(bulkhead)
        .breaker(breaker.clone())
        .retry(retry.build().expect("valid retry"))
        .fallback(fallback)
        .build()
        .expect("valid policy");
    let policy = Rc::new(policy);

    let deploy_ns = (DEPLOY * 1e9) as u64;
    let routed = Rc::new(Cell::new(true));
    let calls = Rc::new(Cell::new(0u64));
    // The deploy: health checks, and (with draining) not-ready then draining.
    if protected {
        let (sim2, drainer, tl) = (sim.clone(), drainer.clone(), tl.clone());
        sim.spawn(async move {
            const TICK: Duration = Duration::from_millis(10);
            sim2.sleep(Duration::from_secs_f64(DEPLOY)).await;
            drainer.mark_not_ready();
            let draining_at = sim2.now() + NOT_READY_DELAY.as_nanos() as u64;
            while sim2.now() < draining_at {
                tl.borrow_mut().shade(NOT_READY, sim2.now_secs());
                sim2.sleep(TICK).await;
            }
            drainer.start_draining();
            while !drainer.is_drained() {
                tl.borrow_mut().shade(DRAINING, sim2.now_secs());
                sim2.sleep(TICK).await;
            }
        });
    }
    {
        let (sim2, routed, drainer) = (sim.clone(), routed.clone(), drainer.clone());
        sim.spawn(async move {
            loop {
                sim2.sleep(Duration::from_secs_f64(HEALTH_CHECK)).await;
                // Without draining, the process is gone after the signal: the next check fails.
                let ready = if protected {
                    drainer.is_ready()
                } else {
                    sim2.now_secs() <= DEPLOY
                };
                routed.set(ready);
                if !ready {
                    break;
                }
            }
        });
    }
    let driver = {
        let (sim, stats, tl) = (sim.clone(), stats.clone(), tl.clone());
        let breaker = breaker.clone();
        async move {
            while routed.get() {
                let (sim2, stats, tl, policy, calls) = (
                    sim.clone(),
                    stats.clone(),
                    tl.clone(),
                    policy.clone(),
                    calls.clone(),
                );
                let now = sim.now_secs();
                {
                    let mut st = stats.borrow_mut();
                    st.requests += 1;
                    st.overload_requests += u64::from(OVERLOADED.contains(&now));
                    st.in_flight += 1;
                    st.peak_in_flight = st.peak_in_flight.max(st.in_flight);
                }
                tl.borrow_mut().count(REQUESTS, now);
                if protected && breaker.state() != State::Closed {
                    tl.borrow_mut().shade(BREAKER_OPEN, now);
                }
                sim.spawn(async move {
                    let start = sim2.now();
                    let out = policy
                        .call_async(|| {
                            calls.set(calls.get() + 1);
                            database(sim2.clone(), calls.get(), stats.clone(), tl.clone())
                        })
                        .await;
                    let mut st = stats.borrow_mut();
                    st.in_flight -= 1;
                    let took = sim2.now() - start;
                    st.latencies.push(took);
                    st.waited += Duration::from_nanos(took);
                    // In flight at the signal or later, and not answered: failed in the deploy
                    // (a 503 from the draining instance included).
                    let in_deploy = sim2.now() >= deploy_ns;
                    let now = sim2.now_secs();
                    let mut tl = tl.borrow_mut();
                    match out {
                        Ok("cached route") => {
                            st.from_cache += 1;
                            tl.count(REFUSED_CACHE, now);
                        }
                        Ok(_) => {}
                        Err(PolicyError::Drain(_)) => {
                            st.refused_by_drain += 1;
                            st.failed_in_deploy += u64::from(in_deploy);
                            tl.count(REFUSED_DRAIN, now);
                        }
                        Err(e) => {
                            st.failed += 1;
                            st.failed_in_deploy += u64::from(in_deploy);
                            match e {
                                PolicyError::Bulkhead(_) => {
                                    st.refused_by_bulkhead += 1;
                                    tl.count(REFUSED_BULKHEAD, now);
                                }
                                PolicyError::BudgetExhausted { .. } => {
                                    st.retries_refused += 1;
                                    tl.count(REFUSED_BUDGET, now);
                                }
                                _ => {}
                            }
                            tl.count(REQUESTS_FAILED, now);
                        }
                    }
                });
                sim.sleep(Duration::from_nanos(1_000_000_000 / PER_SEC))
                    .await;
            }
        }
    };
    sim.spawn(driver);
    let unfinished = sim.run_until(if protected { u64::MAX } else { deploy_ns });
    let mut st = Rc::try_unwrap(stats).ok().expect("tasks done").into_inner();
    if !protected {
        // The process exits at the signal: what was in flight fails, and so does what the
        // balancer routes here until its next health check (the driver and checker are tasks too).
        let in_flight = unfinished.saturating_sub(2) as u64;
        let until_check = (HEALTH_CHECK * PER_SEC as f64) as u64;
        st.failed_in_deploy = in_flight + until_check;
        st.failed += st.failed_in_deploy;
        st.requests += until_check;
        let mut tl = tl.borrow_mut();
        tl.add(REQUESTS_FAILED, DEPLOY, st.failed_in_deploy as f64);
        tl.add(REQUESTS, DEPLOY, until_check as f64);
    }
    let tl = Rc::try_unwrap(tl).ok().expect("tasks done").into_inner();
    (st, tl)
}

pub(crate) fn run() -> Scenario {
    let mut s = Scenario::new("all together", "all together: outage, overload, deploy");
    let mut runs = Vec::new();
    for protected in [false, true] {
        let (mut st, tl) = simulate(protected);
        let v = tl.variant.clone();
        s.key_row(
            &v,
            "calls that reached the failing database",
            st.failing_calls,
        );
        s.key_row(
            &v,
            "load multiplier while overloaded (calls / requests)",
            format!(
                "{:.2}x",
                st.overload_calls as f64 / st.overload_requests.max(1) as f64
            ),
        );
        s.row(
            &v,
            "time callers waited, all requests",
            format!("{:.0} s", st.waited.as_secs_f64()),
        );
        st.latencies.sort_unstable();
        let p = |q: f64| Duration::from_nanos(crate::percentile(&st.latencies, q));
        let (p50, p99) = (p(0.5), p(0.99));
        s.key_row(
            &v,
            "latency p50 / p99",
            format!("{} / {}", crate::ms(p50), crate::ms(p99)),
        );
        s.row(&v, "peak requests in flight", st.peak_in_flight);
        s.row(&v, "answered from cache (breaker open)", st.from_cache);
        s.row(
            &v,
            "requests failed",
            format!("{} of {}", st.failed, st.requests),
        );
        if protected {
            s.row(
                &v,
                "of which refused by the bulkhead / by the retry budget",
                format!("{} / {}", st.refused_by_bulkhead, st.retries_refused),
            );
        }
        s.key_row(&v, "requests failed during the deploy", st.failed_in_deploy);
        if protected {
            s.row(
                &v,
                "requests refused while draining (503)",
                st.refused_by_drain,
            );
        }
        s.timeline(tl);
        runs.push((st, p99));
    }
    let ((plain, plain_p99), (policy, policy_p99)) = (&runs[0], &runs[1]);
    s.notice(format!(
        "through the same outage, overload and deploy, one Policy sends {} calls to the failing \
         database instead of {}, keeps the p99 at {} instead of {}, answers {} requests from \
         cache while the breaker is open, and fails {} requests in the deploy instead of {}",
        policy.failing_calls,
        plain.failing_calls,
        crate::ms(*policy_p99),
        crate::ms(*plain_p99),
        policy.from_cache,
        policy.failed_in_deploy,
        plain.failed_in_deploy,
    ));
    s
}
