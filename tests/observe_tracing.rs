//! Breaker transitions and drainer phase transitions as `tracing` events: target, level and
//! fields, one event per transition and none otherwise.
#![cfg(feature = "tracing")]

use resile::breaker::CircuitBreaker;
use resile::clock::ManualClock;
use resile::drain::Drainer;
use resile::observe::state_change_hook;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Debug)]
struct Seen {
    target: String,
    level: Level,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Seen {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
}

#[test]
fn each_transition_is_one_event() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder()
            .name("db")
            .count_window(2)
            .minimum_calls(2)
            .open_for(Duration::from_secs(1))
            .half_open_probes(1)
            .clock(clock.clone())
            .on_state_change(state_change_hook("db"))
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().failure(); // closed -> open
        assert!(breaker.try_acquire().is_err()); // no transition: no event
        clock.advance(Duration::from_secs(2));
        breaker.try_acquire().unwrap().success(); // open -> half-open -> closed
    });
    let seen = capture.0.lock().unwrap();
    let moves: Vec<_> = seen
        .iter()
        .map(|e| {
            assert_eq!(e.target, "resile::breaker");
            assert_eq!(e.fields["breaker"], "db");
            assert_eq!(e.fields["message"], "circuit breaker state changed");
            (e.level, e.fields["from"].as_str(), e.fields["to"].as_str())
        })
        .collect();
    assert_eq!(
        moves,
        [
            (Level::WARN, "closed", "open"),
            (Level::INFO, "open", "half_open"),
            (Level::INFO, "half_open", "closed"),
        ]
    );
}

/// The drainer's events under `f`, as (level, phase, message, other fields), checking the target.
fn drain_events(f: impl FnOnce()) -> Vec<(Level, String, String, BTreeMap<String, String>)> {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, f);
    let mut seen = capture.0.lock().unwrap();
    seen.drain(..)
        .map(|mut e| {
            assert_eq!(e.target, "resile::drain");
            let phase = e.fields.remove("phase").unwrap();
            let message = e.fields.remove("message").unwrap();
            (e.level, phase, message, e.fields)
        })
        .collect()
}

fn fields(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn each_drainer_phase_transition_is_one_event_and_enter_and_exit_emit_none() {
    let events = drain_events(|| {
        let clock = ManualClock::new();
        let drainer = Drainer::builder()
            .name("api")
            .clock(clock.clone())
            .build()
            .unwrap();
        drop(drainer.enter().unwrap()); // serving: nothing
        assert!(drainer.mark_not_ready()); // serving -> not ready
        assert!(!drainer.mark_not_ready()); // no change: nothing
        let a = drainer.enter().unwrap();
        let b = drainer.enter().unwrap();
        assert!(drainer.start_draining()); // not ready -> draining, 2 in flight
        assert!(!drainer.start_draining()); // idempotent: nothing
        assert!(!drainer.mark_not_ready());
        assert!(drainer.enter().is_err()); // refused: nothing
        clock.advance(Duration::from_millis(250));
        drop(a); // 1 left: nothing
        drop(b); // the last guard: draining -> drained
        assert!(drainer.blocking_wait_timeout(Duration::ZERO).is_ok());
    });
    assert_eq!(
        events,
        [
            (
                Level::INFO,
                "not_ready".to_owned(),
                "drainer marked not ready".to_owned(),
                fields(&[("drainer", "api")])
            ),
            (
                Level::INFO,
                "draining".to_owned(),
                "drainer started draining".to_owned(),
                fields(&[("drainer", "api"), ("in_flight", "2")])
            ),
            (
                Level::INFO,
                "drained".to_owned(),
                "drainer drained".to_owned(),
                fields(&[("drainer", "api"), ("elapsed_ms", "250")])
            ),
        ]
    );
}

#[test]
fn draining_an_idle_drainer_emits_draining_then_drained() {
    let events = drain_events(|| {
        let drainer = Drainer::builder()
            .clock(ManualClock::new())
            .build()
            .unwrap();
        assert!(drainer.start_draining());
    });
    let phases: Vec<_> = events
        .iter()
        .map(|(_, phase, _, f)| (phase.as_str(), f.clone()))
        .collect();
    assert_eq!(
        phases,
        [
            (
                "draining",
                fields(&[("drainer", "drainer"), ("in_flight", "0")])
            ),
            (
                "drained",
                fields(&[("drainer", "drainer"), ("elapsed_ms", "0")])
            ),
        ]
    );
}
