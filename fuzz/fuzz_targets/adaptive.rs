//! Differential fuzzing of the adaptive bulkhead against a plain sequential model: admissions,
//! reports (success, dropped, ignored, or a plain drop under the configured rule) and clock
//! steps, with AIMD, Vegas or Gradient2 under fuzzed settings. The model keeps one window of
//! plain sums, closes it by the same rule (due, with enough reports), and runs its own
//! sequential copy of each algorithm's update; after every step the bulkhead's limit, in-flight
//! count, refusals and closed windows must match it.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use resile::bulkhead::adaptive::{
    Aimd, Gradient2, LimitAlgorithm, LimitChange, Unreported, Vegas, WindowSummary,
};
use resile::bulkhead::{Bulkhead, BulkheadBuilder};
use resile::clock::ManualClock;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Acquire,
    /// Report on the permit at this index: 0 success, 1 dropped, 2 ignored, 3 plain drop.
    Report(u8, u8),
    /// Move the clock on by this many milliseconds.
    Advance(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Algo {
    Aimd {
        min: u8,
        span: u8,
        ratio: u8,
    },
    Vegas {
        min: u8,
        span: u8,
        smoothing: u8,
        probe: u8,
        seed: u64,
    },
    Gradient2 {
        min: u8,
        span: u8,
        smoothing: u8,
        queue: u8,
        tolerance: u8,
        long: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    algo: Algo,
    window_ms: u8,
    min_samples: u8,
    unreported: u8,
    ops: Vec<Op>,
}

const MAX_OPS: usize = 512;

/// Puts the fuzzed algorithm on a builder.
type Wrap = Box<dyn Fn(BulkheadBuilder) -> BulkheadBuilder>;

/// `max(1, ⌊log10(limit)⌋)`.
fn step(limit: u32) -> u32 {
    let mut l = limit.max(1);
    let mut s = 0;
    while l >= 10 {
        l /= 10;
        s += 1;
    }
    s.max(1)
}

fn to_limit(x: f64) -> u32 {
    (x as u32).clamp(1, resile::bulkhead::MAX_LIMIT)
}

/// The reference algorithms: the published update rules, written out sequentially.
enum Reference {
    Aimd {
        min: u32,
        max: u32,
        ratio: f64,
    },
    Vegas {
        min: f64,
        max: f64,
        smoothing: f64,
        probe: f64,
        est: f64,
        noload: u64,
        probes: u64,
        rng: u64,
        jitter: f64,
    },
    Gradient2 {
        min: f64,
        max: f64,
        smoothing: f64,
        queue: f64,
        tolerance: f64,
        long_window: f64,
        est: f64,
        long: f64,
        long_sum: f64,
        long_count: u32,
    },
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn jitter(x: u64) -> f64 {
    0.5 + 0.5 * ((x >> 11) as f64 / 9_007_199_254_740_992.0)
}

impl Reference {
    fn update(&mut self, limit: u32, w: &WindowSummary) -> u32 {
        match self {
            Reference::Aimd { min, max, ratio } => {
                // The timeout is 5 s and the clock moves at most 65 s a step: test it too.
                let slow = w.count > 0 && w.rtt_sum / w.count > 5_000_000_000;
                let next = if w.drops > 0 || slow {
                    ((limit as f64 * *ratio) as u32)
                        .min(limit.saturating_sub(1))
                        .max(1)
                } else if w.count > w.drops && 2 * u64::from(w.max_in_flight) >= u64::from(limit) {
                    limit + 1
                } else {
                    limit
                };
                next.clamp(*min, *max)
            }
            Reference::Vegas {
                min,
                max,
                smoothing,
                probe,
                est,
                noload,
                probes,
                rng,
                jitter: j,
            } => {
                let e = *est;
                let s = step(e as u32) as f64;
                let new;
                if w.count == w.drops {
                    if w.drops == 0 {
                        return to_limit(e);
                    }
                    new = e - s;
                } else {
                    let rtt = w.rtt_min.max(1);
                    *probes += 1;
                    if *j * *probe * e <= *probes as f64 {
                        *rng = xorshift(*rng);
                        *j = jitter(*rng);
                        *probes = 0;
                        *noload = rtt;
                        return to_limit(e);
                    }
                    if *noload == 0 || rtt < *noload {
                        *noload = rtt;
                        return to_limit(e);
                    }
                    let queue = (e * (1.0 - *noload as f64 / rtt as f64)).ceil();
                    new = if w.drops > 0 {
                        e - s
                    } else if (w.max_in_flight as f64) * 2.0 < e {
                        return to_limit(e);
                    } else if queue <= s {
                        e + 6.0 * s
                    } else if queue < 3.0 * s {
                        e + s
                    } else if queue > 6.0 * s {
                        e - s
                    } else {
                        return to_limit(e);
                    };
                }
                let new = new.clamp(*min, *max);
                *est = (1.0 - *smoothing) * e + *smoothing * new;
                to_limit(*est)
            }
            Reference::Gradient2 {
                min,
                max,
                smoothing,
                queue,
                tolerance,
                long_window,
                est,
                long,
                long_sum,
                long_count,
            } => {
                if w.count == 0 {
                    return to_limit(*est);
                }
                let short = (w.rtt_sum / w.count).max(1) as f64;
                if *long_count < 10 {
                    *long_count += 1;
                    *long_sum += short;
                    *long = *long_sum / *long_count as f64;
                } else {
                    let f = 2.0 / (*long_window + 1.0);
                    *long = *long * (1.0 - f) + short * f;
                }
                let l = *long;
                if l / short > 2.0 {
                    *long *= 0.9;
                }
                let e = *est;
                if (w.max_in_flight as f64) < e / 2.0 {
                    return to_limit(e);
                }
                let g = (*tolerance * l / short).clamp(0.5, 1.0);
                let new = e * g + *queue;
                let new = e * (1.0 - *smoothing) + new * *smoothing;
                *est = new.clamp(*min, *max);
                to_limit(*est)
            }
        }
    }
}

/// A permit of the bulkhead and the model's record of it.
struct Held {
    permit: resile::bulkhead::OwnedBulkheadPermit<ManualClock>,
    start: u64,
}

fuzz_target!(|input: Input| {
    // Settings: limits 1..=256 with initial = min, smoothing and ratios in range.
    let (builder_algo, initial, mut reference): (Wrap, u32, Reference) = match input.algo {
        Algo::Aimd { min, span, ratio } => {
            let (min, max) = (
                u32::from(min).max(1),
                u32::from(min).max(1) + u32::from(span),
            );
            let ratio = 0.5 + f64::from(ratio) / 512.0;
            let a = Aimd::default()
                .initial_limit(min)
                .min_limit(min)
                .max_limit(max)
                .backoff_ratio(ratio);
            assert!(a.validate().is_ok());
            (
                Box::new(move |b: BulkheadBuilder| b.adaptive(a)),
                min,
                Reference::Aimd { min, max, ratio },
            )
        }
        Algo::Vegas {
            min,
            span,
            smoothing,
            probe,
            seed,
        } => {
            let (min, max) = (
                u32::from(min).max(1),
                u32::from(min).max(1) + u32::from(span),
            );
            let smoothing = (f64::from(smoothing) + 1.0) / 256.0;
            let probe = u32::from(probe % 40) + 1;
            let v = Vegas::default()
                .min_limit(min)
                .max_limit(max)
                .initial_limit(min)
                .smoothing(smoothing)
                .probe_multiplier(probe)
                .seed(seed);
            assert!(v.validate().is_ok());
            let rng = xorshift(seed.max(1));
            (
                Box::new(move |b: BulkheadBuilder| b.adaptive(v.clone())),
                min,
                Reference::Vegas {
                    min: f64::from(min),
                    max: f64::from(max),
                    smoothing,
                    probe: f64::from(probe),
                    est: f64::from(min),
                    noload: 0,
                    probes: 0,
                    rng,
                    jitter: jitter(rng),
                },
            )
        }
        Algo::Gradient2 {
            min,
            span,
            smoothing,
            queue,
            tolerance,
            long,
        } => {
            let (min, max) = (
                u32::from(min).max(1),
                u32::from(min).max(1) + u32::from(span),
            );
            let smoothing = (f64::from(smoothing) + 1.0) / 256.0;
            let tolerance = 1.0 + f64::from(tolerance) / 64.0;
            let long_window = u32::from(long) + 1;
            let g = Gradient2::default()
                .min_limit(min)
                .max_limit(max)
                .initial_limit(min)
                .smoothing(smoothing)
                .queue_size(u32::from(queue % 16))
                .rtt_tolerance(tolerance)
                .long_window(long_window);
            assert!(g.validate().is_ok());
            (
                Box::new(move |b: BulkheadBuilder| b.adaptive(g.clone())),
                min,
                Reference::Gradient2 {
                    min: f64::from(min),
                    max: f64::from(max),
                    smoothing,
                    queue: f64::from(queue % 16),
                    tolerance,
                    long_window: f64::from(long_window),
                    est: f64::from(min),
                    long: 0.0,
                    long_sum: 0.0,
                    long_count: 0,
                },
            )
        }
    };
    let window = u64::from(input.window_ms).max(1) * 1_000_000;
    let min_samples = u64::from(input.min_samples % 16).max(1);
    let (unreported, unreported_kind) = match input.unreported % 3 {
        0 => (Unreported::Success, 0),
        1 => (Unreported::Dropped, 1),
        _ => (Unreported::Ignored, 2),
    };
    let clock = ManualClock::new();
    let changes: Arc<Mutex<Vec<LimitChange>>> = Arc::default();
    let b = Arc::new(
        builder_algo(Bulkhead::builder())
            .adaptive_window(Duration::from_nanos(window))
            .adaptive_min_samples(min_samples as u32)
            .unreported(unreported)
            .on_limit_change({
                let changes = changes.clone();
                move |c| changes.lock().unwrap().push(c)
            })
            .clock(clock.clone())
            .build()
            .unwrap(),
    );

    // The model.
    let mut now = 0u64;
    let mut limit = initial;
    let mut deadline = window;
    let mut acc = WindowSummary::default();
    let mut refused = 0u64;
    let mut windows = Vec::<(u32, u32, WindowSummary)>::new();
    let mut held: Vec<Held> = Vec::new();

    for op in input.ops.iter().take(MAX_OPS) {
        match *op {
            Op::Acquire => {
                let got = b.try_acquire_owned();
                if (held.len() as u32) < limit {
                    held.push(Held {
                        permit: got.expect("the model admits"),
                        start: now,
                    });
                } else {
                    refused += 1;
                    assert!(got.unwrap_err().is_full());
                }
            }
            Op::Report(i, kind) => {
                if held.is_empty() {
                    continue;
                }
                // The calls in flight as this one ends, itself counted.
                let in_flight = held.len() as u32;
                let h = held.remove(usize::from(i) % held.len());
                let outcome = match kind % 4 {
                    0 => {
                        h.permit.success();
                        0
                    }
                    1 => {
                        h.permit.dropped();
                        1
                    }
                    2 => {
                        h.permit.ignore();
                        2
                    }
                    _ => {
                        drop(h.permit);
                        unreported_kind
                    }
                };
                if outcome == 2 {
                    continue;
                }
                // A success or a drop: a sample with its RTT; a drop counted as one too, and
                // only successes in the minimum.
                let rtt = now - h.start;
                if outcome == 1 {
                    acc.drops += 1;
                } else {
                    acc.rtt_min = if acc.count == acc.drops {
                        rtt
                    } else {
                        acc.rtt_min.min(rtt)
                    };
                }
                acc.count += 1;
                acc.rtt_sum += rtt;
                acc.max_in_flight = acc.max_in_flight.max(in_flight);
                if now >= deadline && acc.count >= min_samples {
                    let from = limit;
                    let to = reference.update(from, &acc);
                    windows.push((from, to, acc));
                    limit = to;
                    acc = WindowSummary::default();
                    deadline = now + window;
                }
            }
            Op::Advance(ms) => {
                let d = u64::from(ms) * 1_000_000;
                now += d;
                clock.advance(Duration::from_nanos(d));
            }
        }
        let m = b.metrics();
        assert_eq!(m.limit, limit);
        assert_eq!(m.in_flight, held.len() as u32);
        assert_eq!(m.refused, refused);
        let seen = changes.lock().unwrap();
        assert_eq!(seen.len(), windows.len());
        for (got, want) in seen.iter().zip(&windows) {
            assert_eq!((got.from, got.to, got.window), *want);
        }
        assert_eq!(m.adaptive.unwrap().windows, windows.len() as u64);
    }
});
