//! Differential fuzzing of the graceful drainer against a plain sequential model: enter, guard
//! drop and clone, not-ready, start, wait polls (blocking with a zero timeout, and async), clock
//! advances, and the drop of the drainer itself while owned guards are alive, checking every
//! result and the metrics after every step.
//!
//! The drainer's clock is an `Arc<ManualClock>` that only the harness and the drainer's shared
//! state hold, so its strong count says whether that state is still allocated: it must live
//! exactly while the drainer or an owned guard does, and be freed once, by the last of them.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use resile::clock::ManualClock;
use resile::drain::{DrainGuard, DrainRefused, Drainer, OwnedDrainGuard, Phase};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Op {
    Enter,
    EnterOwned,
    /// Drop the guard at this index (mod the number alive).
    Drop(u8),
    Clone(u8),
    MarkNotReady,
    Start,
    WaitZero,
    PollWait,
    PollDraining,
    DropWaitFuture,
    Advance(u16),
    /// Drop the drainer (the harness's `Arc`, its last handle) and go on with the owned guards
    /// alone; the borrowed guards and the futures, which borrow it, are dropped first.
    DropDrainer,
}

/// The sequential model.
#[derive(Default)]
struct Model {
    not_ready: bool,
    draining: bool,
    drained: bool,
    count: u64,
    admitted: u64,
    refused: u64,
    now: u64,
    started_at: u64,
    drained_at: u64,
}

impl Model {
    fn phase(&self) -> Phase {
        if self.drained {
            Phase::Drained
        } else if self.draining {
            Phase::Draining
        } else if self.not_ready {
            Phase::NotReady
        } else {
            Phase::Serving
        }
    }
    fn release(&mut self) {
        self.count -= 1;
        self.settle();
    }
    fn settle(&mut self) {
        if self.draining && !self.drained && self.count == 0 {
            self.drained = true;
            self.drained_at = self.now;
        }
    }
}

type Clock = Arc<ManualClock>;

enum Guard<'a> {
    Borrowed(DrainGuard<'a, Clock>),
    Owned(OwnedDrainGuard<Clock>),
}

/// How many ops one input runs.
const MAX_OPS: usize = 256;

fuzz_target!(|ops: Vec<Op>| {
    let ops = &ops[..ops.len().min(MAX_OPS)];
    let clock = Arc::new(ManualClock::new());
    let d = Arc::new(Drainer::builder().clock(clock.clone()).build().unwrap());
    let mut m = Model::default();
    let (owned, rest) = serve(&d, &clock, &mut m, ops);
    let Some(rest) = rest else {
        for g in owned {
            drop(g);
            m.release();
        }
        assert_eq!(d.in_flight(), 0);
        assert_eq!(d.phase(), m.phase());
        drop(d);
        assert_eq!(Arc::strong_count(&clock), 1, "state not freed");
        return;
    };
    orphaned(d, &clock, &mut m, owned, rest);
});

/// Runs `ops` against the drainer until a [`Op::DropDrainer`]; then drops the borrowed guards and
/// returns the owned ones and the ops after it.
fn serve<'o>(
    d: &Arc<Drainer<Clock>>,
    clock: &Clock,
    m: &mut Model,
    ops: &'o [Op],
) -> (Vec<OwnedDrainGuard<Clock>>, Option<&'o [Op]>) {
    let mut guards: Vec<Guard<'_>> = Vec::new();
    let mut wait_fut = Box::pin(d.wait());
    let mut wait_live = true;
    let mut notice = Box::pin(d.draining());
    let mut notice_done = false;
    let mut cx = Context::from_waker(Waker::noop());

    for (k, op) in ops.iter().enumerate() {
        match op {
            Op::Enter | Op::EnterOwned => {
                let r = if matches!(op, Op::Enter) {
                    d.enter().map(Guard::Borrowed)
                } else {
                    d.enter_owned().map(Guard::Owned)
                };
                if m.draining {
                    assert_eq!(r.err(), Some(DrainRefused::Draining));
                    m.refused += 1;
                } else {
                    guards.push(r.expect("admitted while not draining"));
                    m.count += 1;
                    m.admitted += 1;
                }
            }
            Op::Drop(i) => {
                if !guards.is_empty() {
                    let i = *i as usize % guards.len();
                    drop(guards.swap_remove(i));
                    m.release();
                }
            }
            Op::Clone(i) => {
                if !guards.is_empty() {
                    let i = *i as usize % guards.len();
                    let c = match &guards[i] {
                        Guard::Borrowed(g) => Guard::Borrowed(g.clone()),
                        Guard::Owned(g) => Guard::Owned(g.clone()),
                    };
                    guards.push(c);
                    m.count += 1;
                }
            }
            Op::MarkNotReady => {
                assert_eq!(d.mark_not_ready(), !m.not_ready);
                m.not_ready = true;
            }
            Op::Start => {
                assert_eq!(d.start_draining(), !m.draining);
                if !m.draining {
                    m.draining = true;
                    m.not_ready = true;
                    m.started_at = m.now;
                    m.settle();
                }
            }
            Op::WaitZero => match d.blocking_wait_timeout(Duration::ZERO) {
                Ok(drained) => {
                    assert!(m.drained);
                    assert_eq!(
                        drained.elapsed().as_nanos() as u64,
                        m.drained_at - m.started_at
                    );
                }
                Err(t) => {
                    assert!(!m.drained);
                    assert_eq!(t.in_flight(), m.count);
                }
            },
            Op::PollWait => {
                if !wait_live {
                    wait_fut = Box::pin(d.wait());
                    wait_live = true;
                }
                match wait_fut.as_mut().poll(&mut cx) {
                    Poll::Ready(drained) => {
                        assert!(m.drained);
                        assert_eq!(
                            drained.elapsed().as_nanos() as u64,
                            m.drained_at - m.started_at
                        );
                        wait_live = false;
                    }
                    Poll::Pending => assert!(!m.drained),
                }
            }
            Op::DropWaitFuture => {
                wait_fut = Box::pin(d.wait());
                wait_live = true;
            }
            Op::PollDraining => {
                if !notice_done {
                    let ready = notice.as_mut().poll(&mut cx).is_ready();
                    assert_eq!(ready, m.draining);
                    notice_done = ready;
                }
                assert_eq!(d.is_draining(), m.draining);
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(*ms)));
                m.now += u64::from(*ms) * 1_000_000;
            }
            Op::DropDrainer => {
                let mut owned = Vec::new();
                for g in guards {
                    match g {
                        Guard::Borrowed(g) => {
                            drop(g);
                            m.release();
                        }
                        Guard::Owned(g) => owned.push(g),
                    }
                }
                assert_eq!(d.in_flight(), if m.drained { 0 } else { m.count });
                return (owned, Some(&ops[k + 1..]));
            }
        }
        assert_eq!(Arc::strong_count(clock), 2);
        let met = d.metrics();
        assert_eq!(met.phase, m.phase());
        assert_eq!(d.phase(), m.phase());
        assert_eq!(met.in_flight, if m.drained { 0 } else { m.count });
        assert_eq!(met.admitted, m.admitted);
        assert_eq!(met.refused, m.refused);
        assert_eq!(d.is_ready(), !m.not_ready);
        assert_eq!(
            met.since_draining,
            m.draining
                .then(|| Duration::from_nanos(m.now - m.started_at))
        );
    }
    let mut owned = Vec::new();
    for g in guards {
        match g {
            Guard::Borrowed(g) => {
                drop(g);
                m.release();
            }
            Guard::Owned(g) => owned.push(g),
        }
    }
    (owned, None)
}

/// Drops the drainer, its last handle, with `owned` alive, and runs `ops` against the guards
/// alone: they release (and clone) as before, see the drain as the model does, and the last of
/// them frees the drainer's state.
fn orphaned(
    d: Arc<Drainer<Clock>>,
    clock: &Clock,
    m: &mut Model,
    mut owned: Vec<OwnedDrainGuard<Clock>>,
    ops: &[Op],
) {
    assert_eq!(owned.len() as u64, m.count);
    drop(Arc::into_inner(d).expect("the harness holds the only handle"));
    for op in ops {
        match op {
            Op::Drop(i) if !owned.is_empty() => {
                let i = *i as usize % owned.len();
                drop(owned.swap_remove(i));
                m.release();
            }
            Op::Clone(i) if !owned.is_empty() => {
                let i = *i as usize % owned.len();
                let c = owned[i].clone();
                owned.push(c);
                m.count += 1;
            }
            Op::PollDraining => {
                for g in &owned {
                    assert_eq!(g.is_draining(), m.draining);
                }
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(*ms)));
                m.now += u64::from(*ms) * 1_000_000;
            }
            // Everything else needs the drainer.
            _ => {}
        }
        // The state lives exactly while a guard does.
        assert_eq!(Arc::strong_count(clock), 1 + usize::from(!owned.is_empty()));
    }
    drop(owned);
    assert_eq!(Arc::strong_count(clock), 1, "state not freed");
}
