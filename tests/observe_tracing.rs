//! Breaker transitions as `tracing` events: target, level and fields.
#![cfg(feature = "tracing")]

use resile::breaker::CircuitBreaker;
use resile::clock::ManualClock;
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
