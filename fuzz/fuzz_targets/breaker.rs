//! Differential fuzzing of the circuit breaker against a plain sequential model written from the
//! rules (resilience4j's, as the breaker's module documentation states them). Any difference in
//! state, counts, decisions, refusals or transitions is a crash.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use resile::breaker::{BreakerPermit, CircuitBreaker, State, StateChange, TripReason};
use resile::clock::{Clock, ManualClock};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TICK: u64 = 1 << 20;
/// An open deadline's unit: open periods end on a multiple of it.
const UNIT: u64 = 1 << 10;
const MS: u64 = 1_000_000;
/// How many ops one input runs.
const MAX_OPS: usize = 256;

#[derive(Arbitrary, Debug)]
struct Input {
    start: Start,
    time_window: Option<(u8, u8)>,
    size: u8,
    min_calls: u8,
    rate: Option<u8>,
    count: Option<u8>,
    slow: Option<(u8, u8)>,
    probes: u8,
    open_ms: u16,
    growth: Option<(u8, u8)>,
    half_open_ms: u16,
    metrics_only: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Start {
    Zero,
    BelowTickWrap(u16),
    Large(u32),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Acquire,
    Success(u8),
    Failure(u8),
    Ignore(u8),
    Drop(u8),
    AdvanceMs(u16),
    AdvanceNs(u32),
    /// Minutes: up to 45 days, past the 25-bit deadline field's wrap (about 9.8 hours).
    AdvanceMin(u16),
    ForceOpen,
    Disable,
    Reset,
    Trip(u8),
    TripForMs(u8, u16),
    /// Minutes, up to 4 h 15 min (the longest trip is about 4.9 hours).
    TripForMin(u8, u8),
    ForceHalfOpen,
    /// A running breaker's new failure rate, minimum calls, probes, open period and mode.
    Reconfigure(u8, u8, u8, u16, bool),
}

const REASONS: [TripReason; 5] = [
    TripReason::Manual,
    TripReason::HealthCheck,
    TripReason::AdaptiveLimit,
    TripReason::OutlierDetection,
    TripReason::Other,
];

fn reason(r: u8) -> TripReason {
    REASONS[usize::from(r) % REASONS.len()]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
    Closed,
    Open,
    HalfOpen,
    Forced,
    Disabled,
}

fn st(s: State) -> St {
    match s {
        State::Closed => St::Closed,
        State::Open => St::Open,
        State::HalfOpen => St::HalfOpen,
        State::ForcedOpen => St::Forced,
        State::Disabled => St::Disabled,
    }
}

struct Cfg {
    time: Option<(u64, u64)>, // (bucket ns, buckets)
    size: usize,
    min_calls: u32,
    rate_ppm: u64,
    slow_rate_ppm: u64,
    count: u32,
    slow_ns: Option<u64>,
    probes: u32,
    open_ns: [u64; 16],
    half_open_ns: u64,
    enforce: bool,
}

/// The open period per attempt: `open`, then with growth `(sixteenths, max)` each period the
/// previous one times `sixteenths / 16` (the multiplier, exactly), rounded down to a
/// nanosecond, capped: integer arithmetic, as the breaker's.
fn periods(open: u64, growth: Option<(u64, u64)>) -> [u64; 16] {
    let mut table = [open; 16];
    if let Some((m, max)) = growth {
        let mut grown = open;
        for (k, d) in table.iter_mut().enumerate().skip(1) {
            if k > 1 {
                grown = (u128::from(grown) * u128::from(m) / 16).min(u128::from(max)) as u64;
            }
            *d = grown.min(max);
        }
    }
    table
}

fn ppm(r: f64) -> u64 {
    ((r * 1e6).round() as u64).max(1)
}

fn ceil_tick(t: u64) -> u64 {
    t.div_ceil(TICK) * TICK
}

fn ceil_unit(t: u64) -> u64 {
    t.div_ceil(UNIT) * UNIT
}

struct Model {
    cfg: Cfg,
    state: St,
    epoch: u64,
    attempts: usize,
    deadline: u64,
    /// Open or forced open by a trip: its reason.
    cause: Option<TripReason>,
    count: VecDeque<(bool, bool)>,
    timed: Vec<(u64, bool, bool)>,
    adm: u32,
    res: u32,
    fail: u32,
    slow: u32,
    refused: u64,
    changed_at: u64,
    log: Vec<(St, St)>,
    /// Breaches of the closed window reported (trips, or metrics-only reports).
    breaches: u64,
    /// Metrics-only: the current breach has been reported.
    breached: bool,
}

struct MPermit {
    epoch: u64,
    start: u64,
}

impl Model {
    fn tally(&self, now: u64) -> (u32, u32, u32) {
        let mut t = (0, 0, 0);
        let mut add = |f: bool, s: bool| {
            t.0 += 1;
            t.1 += f as u32;
            t.2 += s as u32;
        };
        match self.cfg.time {
            None => self.count.iter().for_each(|&(f, s)| add(f, s)),
            Some((b, n)) => {
                let e = now / b;
                for &(at, f, s) in &self.timed {
                    if e - at / b < n {
                        add(f, s);
                    }
                }
            }
        }
        t
    }

    fn breach(&self, calls: u32, f: u32, s: u32, count_limit: u32) -> bool {
        let c = &self.cfg;
        (c.rate_ppm != 0 && f as u64 * 1_000_000 >= c.rate_ppm * calls as u64)
            || (c.slow_rate_ppm != 0 && s as u64 * 1_000_000 >= c.slow_rate_ppm * calls as u64)
            || (count_limit != 0 && f >= count_limit)
    }

    fn go(&mut self, to: St, now: u64) {
        self.log.push((self.state, to));
        self.state = to;
        self.epoch += 1;
        self.changed_at = now;
        self.cause = None;
        self.breached = false;
        match to {
            St::Open => self.deadline = ceil_unit(now + self.cfg.open_ns[self.attempts]),
            St::HalfOpen => {
                self.deadline = ceil_tick(now + self.cfg.half_open_ns);
                (self.adm, self.res, self.fail, self.slow) = (0, 0, 0, 0);
            }
            St::Closed => {
                self.attempts = 0;
                self.count.clear();
                self.timed.clear();
            }
            St::Forced | St::Disabled => self.attempts = 0,
        }
    }

    fn reopen(&mut self, now: u64) {
        self.attempts = (self.attempts + 1).min(15);
        self.go(St::Open, now);
    }

    /// `trip(reason)`: forced open; over forced open only the reason changes.
    fn trip(&mut self, reason: TripReason, now: u64) {
        if self.state != St::Forced {
            self.go(St::Forced, now);
        }
        self.cause = Some(reason);
    }

    /// `trip_for(reason, d)`: open until `now + d`, unless a refusal in force lasts as long.
    fn trip_for(&mut self, reason: TripReason, d: u64, now: u64) {
        match self.state {
            St::Forced => return,
            St::Open if self.deadline > now && self.deadline - now >= d => return,
            St::Open | St::HalfOpen => {}
            _ => self.attempts = 0,
        }
        if self.state == St::Open {
            // A new open state, but no transition: no hook.
            self.epoch += 1;
            self.changed_at = now;
        } else {
            self.go(St::Open, now);
        }
        self.deadline = ceil_unit(now + d);
        self.cause = Some(reason);
    }

    fn force_half_open(&mut self, now: u64) {
        if self.state != St::HalfOpen {
            if matches!(self.state, St::Closed | St::Forced | St::Disabled) {
                self.attempts = 0;
            }
            self.go(St::HalfOpen, now);
        }
    }

    fn acquire(&mut self, now: u64) -> Result<MPermit, (State, Option<u64>, Option<TripReason>)> {
        let cause = self.cause;
        let r = match self.state {
            St::Closed | St::Disabled => Ok(()),
            St::Forced => Err((State::ForcedOpen, None, cause)),
            St::Open if now >= self.deadline => {
                self.go(St::HalfOpen, now);
                self.adm = 1;
                Ok(())
            }
            St::Open => Err((State::Open, Some(self.deadline - now), cause)),
            St::HalfOpen if now >= self.deadline => {
                self.reopen(now);
                Err((State::Open, Some(self.deadline - now), None))
            }
            St::HalfOpen if self.adm < self.cfg.probes => {
                self.adm += 1;
                Ok(())
            }
            // At the latest: the timeout, then the next open period.
            St::HalfOpen => Err((
                State::HalfOpen,
                Some(self.deadline - now + self.cfg.open_ns[(self.attempts + 1).min(15)]),
                None,
            )),
        };
        match r {
            Ok(()) => Ok(MPermit {
                epoch: self.epoch,
                start: now,
            }),
            Err(e) => {
                self.refused += 1;
                Err(e)
            }
        }
    }

    fn result(&mut self, p: MPermit, failed: bool, now: u64) {
        if p.epoch != self.epoch {
            return;
        }
        let slow = self.cfg.slow_ns.is_some_and(|t| now - p.start > t);
        match self.state {
            St::Closed => {
                match self.cfg.time {
                    None => {
                        if self.count.len() == self.cfg.size {
                            self.count.pop_front();
                        }
                        self.count.push_back((failed, slow));
                    }
                    Some(_) => self.timed.push((now, failed, slow)),
                }
                let (c, f, s) = self.tally(now);
                let min = match self.cfg.time {
                    None => self.cfg.min_calls.min(self.cfg.size as u32),
                    Some(_) => self.cfg.min_calls,
                };
                if c >= min && self.breach(c, f, s, self.cfg.count) {
                    if self.cfg.enforce {
                        self.breaches += 1;
                        self.attempts = 1;
                        self.go(St::Open, now);
                    } else if !self.breached {
                        self.breaches += 1;
                        self.breached = true;
                    }
                } else if !failed && !slow {
                    // A fast success that breaches nothing ends the reported breach.
                    self.breached = false;
                }
            }
            // The timeout re-opened it before this result, which does not count.
            St::HalfOpen if now >= self.deadline => self.reopen(now),
            St::HalfOpen => {
                self.res += 1;
                self.fail += failed as u32;
                self.slow += slow as u32;
                let needed = self.cfg.min_calls.min(self.cfg.probes);
                if self.res >= needed {
                    let limit = if self.cfg.count == 0 {
                        0
                    } else {
                        self.cfg.count.min(needed)
                    };
                    if self.breach(self.res, self.fail, self.slow, limit) {
                        self.reopen(now);
                    } else {
                        self.go(St::Closed, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// `reset`: back to closed with an empty window; from closed that is no transition (no
    /// hook, the time since the last transition runs on), but earlier permits still lapse.
    fn reset(&mut self, now: u64) {
        if self.state == St::Closed {
            self.epoch += 1;
            self.count.clear();
            self.timed.clear();
            self.breached = false;
        } else {
            self.go(St::Closed, now);
        }
    }

    fn release(&mut self, p: MPermit) {
        if p.epoch == self.epoch && self.state == St::HalfOpen {
            self.adm -= 1;
        }
    }
}

fuzz_target!(|input: Input| {
    let base = match input.start {
        Start::Zero => 0,
        Start::BelowTickWrap(k) => ((1u64 << 25) * TICK) - u64::from(k) * MS,
        Start::Large(x) => u64::from(x) << 28,
    };
    let clock = ManualClock::starting_at(base);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let mut b = CircuitBreaker::builder()
        .clock(clock.clone())
        .on_state_change(move |c: &StateChange| l.lock().unwrap().push((st(c.from), st(c.to))));
    let size = usize::from(input.size % 8) + 1;
    let time = input.time_window.map(|(bucket_s, n)| {
        let n = u64::from(n % 8) + 1;
        let bucket = (u64::from(bucket_s % 10) + 1) * 1_000 * MS;
        (bucket, n)
    });
    b = match time {
        None => b.count_window(size as u32),
        Some((bucket, n)) => b.time_window(Duration::from_nanos(bucket * n), n as u32),
    };
    let min_calls = u32::from(input.min_calls % 10) + 1;
    let probes = u32::from(input.probes % 4) + 1;
    let mut rate = input.rate.map(|r| (f64::from(r) + 1.0) / 256.0);
    // A count window refuses a count threshold above its size.
    let count = input.count.map(|c| {
        let c = u32::from(c % 6) + 1;
        if time.is_none() {
            c.min(size as u32)
        } else {
            c
        }
    });
    let slow = input
        .slow
        .map(|(t, r)| (u64::from(t % 50) * MS, (f64::from(r) + 1.0) / 256.0));
    if rate.is_none() && count.is_none() && slow.is_none() {
        rate = Some(0.5);
    }
    b = b
        .minimum_calls(min_calls)
        .failure_rate_threshold(rate)
        .half_open_probes(probes)
        .open_for(Duration::from_millis(u64::from(input.open_ms)))
        .half_open_timeout(Duration::from_millis(u64::from(input.half_open_ms) + 1))
        .metrics_only(input.metrics_only);
    if let Some(c) = count {
        b = b.failure_count_threshold(c);
    }
    if let Some((t, r)) = slow {
        b = b.slow_calls(Duration::from_nanos(t), r);
    }
    let open = u64::from(input.open_ms) * MS;
    let mut grow = None;
    if let Some((m, x)) = input.growth {
        let mult = 1.0 + f64::from(m) / 16.0;
        let max = open * (u64::from(x % 8) + 1);
        b = b.open_for_growth(mult, Duration::from_nanos(max));
        grow = Some((16 + u64::from(m), max));
    }
    let open_ns = periods(open, grow);
    let breaker = b.build().expect("a valid config");
    let mut m = Model {
        cfg: Cfg {
            time,
            size,
            min_calls,
            rate_ppm: rate.map_or(0, ppm),
            slow_rate_ppm: slow.map_or(0, |(_, r)| ppm(r)),
            count: count.unwrap_or(0),
            slow_ns: slow.map(|(t, _)| t),
            probes,
            open_ns,
            half_open_ns: (u64::from(input.half_open_ms) + 1) * MS,
            enforce: !input.metrics_only,
        },
        state: St::Closed,
        epoch: 0,
        attempts: 0,
        deadline: 0,
        cause: None,
        count: VecDeque::new(),
        timed: Vec::new(),
        adm: 0,
        res: 0,
        fail: 0,
        slow: 0,
        refused: 0,
        changed_at: base,
        log: Vec::new(),
        breaches: 0,
        breached: false,
    };
    let growth = input.growth.map(|(m, x)| (16 + u64::from(m), x));

    let mut held: Vec<(BreakerPermit<'_, ManualClock>, MPermit)> = Vec::new();
    for op in input.ops.into_iter().take(MAX_OPS) {
        let now = clock.now();
        match op {
            Op::Acquire => {
                let real = breaker.try_acquire();
                let model = m.acquire(now);
                match (real, model) {
                    (Ok(p), Ok(mp)) => held.push((p, mp)),
                    (Err(e), Err((refusal, after, cause))) => {
                        assert_eq!(e.state(), refusal);
                        assert_eq!(e.retry_after(), after.map(Duration::from_nanos));
                        assert_eq!(e.tripped_by(), cause);
                    }
                    (r, m) => panic!(
                        "acquire differs: real {:?} model {:?}",
                        r.is_ok(),
                        m.is_ok()
                    ),
                }
            }
            Op::Success(i) | Op::Failure(i) | Op::Ignore(i) | Op::Drop(i) => {
                if held.is_empty() {
                    continue;
                }
                let (p, mp) = held.remove(usize::from(i) % held.len());
                match op {
                    Op::Success(_) => {
                        p.success();
                        m.result(mp, false, now);
                    }
                    Op::Failure(_) => {
                        p.failure();
                        m.result(mp, true, now);
                    }
                    Op::Ignore(_) => {
                        p.ignore();
                        m.release(mp);
                    }
                    _ => {
                        drop(p);
                        m.release(mp);
                    }
                }
            }
            Op::AdvanceMs(ms) => clock.advance(Duration::from_millis(u64::from(ms))),
            Op::AdvanceNs(ns) => clock.advance(Duration::from_nanos(u64::from(ns))),
            Op::AdvanceMin(min) => clock.advance(Duration::from_secs(60 * u64::from(min))),
            Op::ForceOpen => {
                breaker.force_open();
                m.trip(TripReason::Manual, now);
            }
            Op::Trip(r) => {
                breaker.trip(reason(r));
                m.trip(reason(r), now);
            }
            Op::TripForMs(r, ms) => {
                let d = u64::from(ms) * MS;
                breaker
                    .trip_for(reason(r), Duration::from_nanos(d))
                    .expect("within the longest trip");
                m.trip_for(reason(r), d, now);
            }
            Op::TripForMin(r, min) => {
                let d = u64::from(min) * 60_000 * MS;
                breaker
                    .trip_for(reason(r), Duration::from_nanos(d))
                    .expect("within the longest trip");
                m.trip_for(reason(r), d, now);
            }
            Op::ForceHalfOpen => {
                breaker.force_half_open();
                m.force_half_open(now);
            }
            Op::Reconfigure(r, min, probes, open_ms, metrics_only) => {
                let rate = (f64::from(r) + 1.0) / 256.0;
                let min_calls = u32::from(min % 10) + 1;
                let probes = u32::from(probes % 4) + 1;
                let open = u64::from(open_ms) * MS;
                let max = growth.map(|(_, x)| open * (u64::from(x % 8) + 1));
                breaker
                    .reconfigure(|c| {
                        let c = c
                            .failure_rate_threshold(rate)
                            .minimum_calls(min_calls)
                            .half_open_probes(probes)
                            .open_for(Duration::from_nanos(open))
                            .metrics_only(metrics_only);
                        match (growth, max) {
                            (Some((m, _)), Some(max)) => {
                                c.open_for_growth(m as f64 / 16.0, Duration::from_nanos(max))
                            }
                            _ => c,
                        }
                    })
                    .expect("a valid config");
                let cfg = &mut m.cfg;
                cfg.rate_ppm = ppm(rate);
                cfg.min_calls = min_calls;
                cfg.probes = probes;
                cfg.enforce = !metrics_only;
                cfg.open_ns = periods(open, growth.zip(max).map(|((m, _), max)| (m, max)));
            }
            Op::Disable => {
                breaker.disable();
                if m.state != St::Disabled {
                    m.go(St::Disabled, now);
                }
            }
            Op::Reset => {
                breaker.reset();
                m.reset(now);
            }
        }
        let now = clock.now();
        let metrics = breaker.metrics();
        assert_eq!(st(metrics.state), m.state);
        let (c, f, s) = m.tally(now);
        assert_eq!(
            (metrics.calls, metrics.failures, metrics.slow_calls),
            (c, f, s)
        );
        assert_eq!(metrics.refused, m.refused);
        assert_eq!(metrics.breaches, m.breaches);
        assert_eq!(
            metrics.since_last_transition,
            Duration::from_nanos(now - m.changed_at)
        );
        assert_eq!(*log.lock().unwrap(), m.log);
    }
});
