//! Stress: 4 threads call one breaker through closed, open and half-open spells (one thread
//! moves a manual clock past each open period), failing in bursts. At the end the counts
//! balance exactly: every attempt was either let through or refused, the breaker's refused
//! count is the callers' own, and for every state the transitions into it equal those out of it,
//! plus one for the state it ends in.

use resile::breaker::{CircuitBreaker, State, StateChange};
use resile::clock::ManualClock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const THREADS: usize = 4;
/// Calls per thread (a fraction of a second in a debug build on 2 cores; under miri, which
/// interprets every call, sixteen spells).
const CALLS: u64 = if cfg!(miri) {
    16 * SPELL
} else if cfg!(debug_assertions) {
    250_000
} else {
    2_500_000
};
/// The length of a spell: each thread fails one spell in four, and the clock moves on every half
/// spell.
const SPELL: u64 = if cfg!(miri) { 64 } else { 1024 };

fn index(s: State) -> usize {
    match s {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
        State::ForcedOpen => 3,
        State::Disabled => 4,
    }
}

#[derive(Default)]
struct Transitions {
    into: [AtomicU64; 5],
    out_of: [AtomicU64; 5],
}

impl Transitions {
    fn record(&self, change: &StateChange) {
        self.out_of[index(change.from)].fetch_add(1, Ordering::Relaxed);
        self.into[index(change.to)].fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn attempts_refusals_and_transitions_balance_exactly() {
    let clock = ManualClock::new();
    let transitions = Arc::new(Transitions::default());
    let hook = transitions.clone();
    let breaker = CircuitBreaker::builder()
        .name("stress")
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(0.5)
        .open_for(Duration::from_millis(500))
        .half_open_probes(2)
        .clock(clock.clone())
        .on_state_change(move |c| hook.record(c))
        .build()
        .unwrap();
    let let_through = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (breaker, clock, let_through, refused) = (&breaker, &clock, &let_through, &refused);
            s.spawn(move || {
                for i in 0..CALLS {
                    if t == 0 && i % (SPELL / 2) == 0 {
                        clock.advance(Duration::from_millis(300));
                    }
                    match breaker.try_acquire() {
                        Ok(permit) => {
                            let_through.fetch_add(1, Ordering::Relaxed);
                            // Bursts: a spell of failures every four spells of each thread.
                            if (i / SPELL) % 4 == 1 {
                                permit.failure();
                            } else {
                                permit.success();
                            }
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let (through, refused) = (let_through.into_inner(), refused.into_inner());
    assert_eq!(
        through + refused,
        THREADS as u64 * CALLS,
        "an attempt was lost"
    );
    let m = breaker.metrics();
    assert_eq!(
        m.refused, refused,
        "the breaker's refused count is the callers'"
    );
    assert!(m.calls <= 20 && m.failures <= m.calls);
    let into = |s: State| transitions.into[index(s)].load(Ordering::Relaxed);
    let out = |s: State| transitions.out_of[index(s)].load(Ordering::Relaxed);
    assert!(
        into(State::Open) > 0 && into(State::HalfOpen) > 0 && into(State::Closed) > 0,
        "the stress did not take the breaker through open, half-open and closed"
    );
    for s in [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ] {
        let start = u64::from(s == State::Closed);
        let end = u64::from(s == m.state);
        assert_eq!(
            start + into(s),
            out(s) + end,
            "transitions of {s:?} do not balance"
        );
    }
}
