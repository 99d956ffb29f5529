//! Each primitive's series, as a `metrics` recorder sees them: names, labels and values.
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use resile::breaker::CircuitBreaker;
use resile::budget::RetryBudget;
use resile::bulkhead::Bulkhead;
use resile::drain::Drainer;
use resile::observe::{Report, state_change_hook};
use std::collections::HashMap;

type Series = HashMap<(String, Vec<(String, String)>), DebugValue>;

/// Runs `f` with a local recorder and returns every series it set, keyed by name and sorted
/// labels.
fn record(f: impl FnOnce()) -> Series {
    let recorder = DebuggingRecorder::new();
    let snapshotter: Snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, f);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v): (CompositeKey, _, _, _)| {
            let key = k.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let _: MetricKind = k.kind();
            ((key.name().to_owned(), labels), v)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

fn gauge(s: &Series, name: &str, l: &[(&str, &str)]) -> f64 {
    match s.get(&(name.to_owned(), labels(l))) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name} {l:?}: {other:?} in {:#?}", s.keys()),
    }
}

fn counter(s: &Series, name: &str, l: &[(&str, &str)]) -> u64 {
    match s.get(&(name.to_owned(), labels(l))) {
        Some(DebugValue::Counter(v)) => *v,
        other => panic!("{name} {l:?}: {other:?} in {:#?}", s.keys()),
    }
}

#[test]
fn breaker_series() {
    let breaker = CircuitBreaker::builder()
        .name("db")
        .count_window(2)
        .minimum_calls(2)
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().success();
    breaker.try_acquire().unwrap().failure(); // 50%: open
    assert!(breaker.try_acquire().is_err());
    let s = record(|| breaker.report());
    let name = [("name", "db")];
    assert_eq!(
        gauge(
            &s,
            "resile_breaker_state",
            &[("name", "db"), ("state", "open")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            &s,
            "resile_breaker_state",
            &[("name", "db"), ("state", "closed")]
        ),
        0.0
    );
    assert_eq!(gauge(&s, "resile_breaker_window_calls", &name), 2.0);
    assert_eq!(gauge(&s, "resile_breaker_window_failures", &name), 1.0);
    assert_eq!(gauge(&s, "resile_breaker_window_slow_calls", &name), 0.0);
    assert_eq!(gauge(&s, "resile_breaker_failure_rate", &name), 0.5);
    assert_eq!(gauge(&s, "resile_breaker_slow_call_rate", &name), 0.0);
    assert_eq!(counter(&s, "resile_breaker_refused_total", &name), 1);
}

#[test]
fn the_hook_counts_transitions() {
    let s = record(|| {
        let breaker = CircuitBreaker::builder()
            .on_state_change(state_change_hook("db"))
            .build()
            .unwrap();
        breaker.force_open();
        breaker.reset();
        breaker.force_open();
    });
    let open = [("name", "db"), ("from", "closed"), ("to", "forced_open")];
    assert_eq!(counter(&s, "resile_breaker_transitions_total", &open), 2);
    let back = [("name", "db"), ("from", "forced_open"), ("to", "closed")];
    assert_eq!(counter(&s, "resile_breaker_transitions_total", &back), 1);
}

#[test]
fn budget_series() {
    let budget = RetryBudget::builder()
        .name("payments-retries")
        .max_retries(2)
        .build()
        .unwrap();
    budget.deposit();
    budget.try_withdraw().unwrap();
    budget.try_withdraw().unwrap();
    assert!(budget.try_withdraw().is_err());
    let s = record(|| budget.report_as("db"));
    let name = [("name", "db")];
    assert_eq!(gauge(&s, "resile_budget_balance", &name), 0.0);
    assert_eq!(counter(&s, "resile_budget_deposits_total", &name), 1);
    assert_eq!(counter(&s, "resile_budget_retries_granted_total", &name), 2);
    assert_eq!(counter(&s, "resile_budget_retries_refused_total", &name), 1);
    // `report` labels the series with the budget's own name.
    let s = record(|| budget.report());
    assert_eq!(
        counter(
            &s,
            "resile_budget_retries_granted_total",
            &[("name", "payments-retries")]
        ),
        2
    );
}

#[test]
fn bulkhead_series() {
    let b = Bulkhead::builder().name("reads").limit(2).build().unwrap();
    let p = b.try_acquire().unwrap();
    let q = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(q);
    let s = record(|| b.report());
    let name = [("name", "reads")];
    assert_eq!(gauge(&s, "resile_bulkhead_in_flight", &name), 1.0);
    assert_eq!(gauge(&s, "resile_bulkhead_limit", &name), 2.0);
    assert_eq!(gauge(&s, "resile_bulkhead_waiting", &name), 0.0);
    assert_eq!(gauge(&s, "resile_bulkhead_peak_in_flight", &name), 2.0);
    assert_eq!(counter(&s, "resile_bulkhead_refused_total", &name), 1);
    drop(p);
}

#[test]
fn drain_series() {
    let d = Drainer::new();
    let g = d.enter().unwrap();
    d.start_draining();
    assert!(d.enter().is_err());
    let s = record(|| d.report_as("api"));
    let name = [("name", "api")];
    assert_eq!(
        gauge(
            &s,
            "resile_drain_phase",
            &[("name", "api"), ("phase", "draining")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            &s,
            "resile_drain_phase",
            &[("name", "api"), ("phase", "serving")]
        ),
        0.0
    );
    assert_eq!(gauge(&s, "resile_drain_in_flight", &name), 1.0);
    assert_eq!(counter(&s, "resile_drain_admitted_total", &name), 1);
    assert_eq!(counter(&s, "resile_drain_refused_total", &name), 1);
    drop(g);
}

#[test]
fn adaptive_bulkhead_series() {
    use resile::bulkhead::adaptive::Vegas;
    use resile::clock::ManualClock;
    use resile::observe::limit_change_hook;
    use std::time::Duration;

    let clock = ManualClock::new();
    let b = Bulkhead::builder()
        .name("db")
        .adaptive(Vegas::default().initial_limit(20))
        .adaptive_min_samples(2)
        .clock(clock.clone())
        .on_limit_change(limit_change_hook("db"))
        .build()
        .unwrap();
    let call_of_10ms = || {
        let p = b.try_acquire().unwrap();
        clock.advance(Duration::from_millis(10));
        p.success();
    };
    let s = record(|| {
        // The first window measures the no-load RTT (Vegas keeps the limit).
        call_of_10ms();
        clock.advance(Duration::from_secs(1));
        call_of_10ms();
        // The second has a drop: Vegas backs off.
        call_of_10ms();
        clock.advance(Duration::from_secs(1));
        b.try_acquire().unwrap().dropped();
    });
    let name = [("name", "db")];
    assert_eq!(
        counter(
            &s,
            "resile_bulkhead_limit_changes_total",
            &[("name", "db"), ("direction", "down")]
        ),
        1
    );
    assert!(b.limit() < 20);
    let s = record(|| b.report());
    assert_eq!(
        gauge(&s, "resile_bulkhead_limit", &name),
        f64::from(b.limit())
    );
    assert_eq!(counter(&s, "resile_bulkhead_dropped_total", &name), 1);
    assert_eq!(counter(&s, "resile_bulkhead_limit_windows_total", &name), 2);
    assert_eq!(
        gauge(&s, "resile_bulkhead_no_load_rtt_seconds", &name),
        0.01
    );
}

#[test]
fn a_label_set_beside_the_name() {
    let b = Bulkhead::builder().limit(3).build().unwrap();
    let s = record(|| b.report_labelled("reads", &[("zone", "eu-1")]));
    let l = [("name", "reads"), ("zone", "eu-1")];
    assert_eq!(gauge(&s, "resile_bulkhead_limit", &l), 3.0);
    assert!(!s.contains_key(&(
        "resile_bulkhead_limit".to_owned(),
        labels(&[("name", "reads")])
    )));
}

#[cfg(feature = "registry")]
mod registry {
    use super::*;
    use resile::observe::RegistryReport;
    use resile::registry::Registry;

    /// The keys whose series were set, from one series every primitive of the kind reports.
    fn keys(s: &Series, series: &str) -> Vec<String> {
        let mut v: Vec<String> = s
            .keys()
            .filter(|(n, _)| n == series)
            .filter_map(|(_, l)| l.iter().find(|(k, _)| k == "key").map(|(_, v)| v.clone()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn at_most_the_cap_of_keys_and_those_with_evidence_first() {
        let r = Registry::builder(CircuitBreaker::builder().count_window(2).minimum_calls(2))
            .max_keys(8)
            .build()
            .unwrap();
        for k in 0..8u32 {
            drop(r.get_or_create(&k).unwrap());
        }
        // Keys 5 and 6 hold evidence: 5 a failure in its window, 6 forced open.
        r.get_or_create(&5)
            .unwrap()
            .try_acquire()
            .unwrap()
            .failure();
        r.get_or_create(&6).unwrap().force_open();

        let report = RegistryReport::new("upstreams").max_keys(2);
        let mut reported = 0;
        let s = record(|| reported = report.report(&r));
        assert_eq!(reported, 2);
        assert_eq!(keys(&s, "resile_breaker_window_calls"), ["5", "6"]);
        let six = [
            ("name", "upstreams"),
            ("key", "6"),
            ("state", "forced_open"),
        ];
        assert_eq!(gauge(&s, "resile_breaker_state", &six), 1.0);
        let five = [("name", "upstreams"), ("key", "5")];
        assert_eq!(gauge(&s, "resile_breaker_window_failures", &five), 1.0);

        // A larger cap fills up with idle keys; the registry's own series are labelled `name`.
        let s = record(|| reported = report.clone().max_keys(5).report(&r));
        assert_eq!(reported, 5);
        let k = keys(&s, "resile_breaker_window_calls");
        assert_eq!(k.len(), 5);
        assert!(k.contains(&"5".to_owned()) && k.contains(&"6".to_owned()));
        let name = [("name", "upstreams")];
        assert_eq!(gauge(&s, "resile_registry_keys", &name), 8.0);
        assert_eq!(gauge(&s, "resile_registry_max_keys", &name), 8.0);
        assert_eq!(gauge(&s, "resile_registry_reported_keys", &name), 5.0);
        assert_eq!(counter(&s, "resile_registry_created_total", &name), 8);
        assert_eq!(counter(&s, "resile_registry_evicted_total", &name), 0);
    }

    #[test]
    fn the_registry_counts_and_no_key_at_a_cap_of_zero() {
        let r = Registry::builder(Bulkhead::builder().limit(1))
            .max_keys(1)
            .build()
            .unwrap();
        let held = r.get_or_create("a").unwrap();
        let slot = held.try_acquire().unwrap();
        assert!(r.get_or_create("b").is_err());
        drop(slot);
        drop(held);
        drop(r.get_or_create("b").unwrap());
        assert!(r.remove("b"));
        let s = record(|| {
            RegistryReport::new("tenants").max_keys(0).report(&r);
        });
        let name = [("name", "tenants")];
        assert_eq!(gauge(&s, "resile_registry_keys", &name), 0.0);
        assert_eq!(gauge(&s, "resile_registry_reported_keys", &name), 0.0);
        assert_eq!(counter(&s, "resile_registry_created_total", &name), 2);
        assert_eq!(counter(&s, "resile_registry_evicted_total", &name), 1);
        assert_eq!(counter(&s, "resile_registry_removed_total", &name), 1);
        assert_eq!(counter(&s, "resile_registry_refused_total", &name), 1);
        assert_eq!(counter(&s, "resile_registry_overflowed_total", &name), 0);
        assert!(keys(&s, "resile_bulkhead_limit").is_empty());
    }

    #[test]
    fn budget_keys_by_a_label_function() {
        let r = Registry::builder(RetryBudget::builder().max_retries(3))
            .build()
            .unwrap();
        r.get_or_create(&(1u8, 2u8))
            .unwrap()
            .try_withdraw()
            .unwrap();
        let s = record(|| {
            RegistryReport::new("retries").report_with(&r, |(a, b)| format!("{a}-{b}"));
        });
        let l = [("name", "retries"), ("key", "1-2")];
        assert_eq!(gauge(&s, "resile_budget_balance", &l), 2.0);
        assert_eq!(counter(&s, "resile_budget_retries_granted_total", &l), 1);
    }
}
