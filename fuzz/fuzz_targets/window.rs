//! Differential fuzzing of the sliding windows against plain sequential models.
//!
//! One input is a configuration, a starting time and a sequence of operations, applied at once
//! to a [`CountWindow`], two [`TimeWindow`]s (one plain, one with fast calls, the breaker's kind)
//! and to their models (a `VecDeque` of outcomes; lists of timestamped events). Any difference
//! panics.
//!
//! The clock stays within 2^41 ns of its start (saturating at `u64::MAX`), which keeps every
//! bucket's lap within the 42-bit tag (see the time window's caveats); the start itself is any
//! `u64`, including just below the maximum.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use resile::window::{CountWindow, Lanes, Outcome, Tally, TimeWindow};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Record an outcome into both windows.
    Record { failed: bool, slow: bool },
    /// Many plain successes (the count window's write-free path).
    Successes(u8),
    /// Plain successes recorded as a breaker does, deferred while the totals as they stand hold
    /// fewer than `limit` failures (or `slow_limit` slow calls).
    LazySuccesses { n: u8, limit: u8, slow_limit: u8 },
    /// A few fast calls (lane 0, outside the totals) into the window that has them, and the
    /// same into the plain window (where they are plain adds).
    FastCalls(u8),
    /// Add to the time window's lanes (large values saturate).
    Add([u32; 3]),
    /// A budget-like check-and-debit: admit while lane 1 < lane 0 * num / 8 + floor.
    TryAdd { num: u8, floor: u8, amount: u8 },
    /// Move the clock on by a few nanoseconds.
    Tick(u16),
    /// Move the clock on by up to 2^32 ns.
    Advance(u32),
    /// Jump far ahead (bounded, see the module docs).
    Jump(u64),
    /// A stale `now`: the caller read the clock a while ago.
    Stale(u16),
    /// Compare the snapshots.
    Snapshot,
    /// Empty both windows.
    Reset,
}

#[derive(Arbitrary, Debug)]
struct Input {
    count_size: u8,
    buckets: u8,
    bucket_nanos: u16,
    start: u64,
    start_near_end: bool,
    /// An arbitrary configuration, which must be refused or accepted without a panic.
    raw_size: u32,
    raw_span: u64,
    raw_buckets: u32,
    ops: Vec<Op>,
}

struct CountModel {
    size: usize,
    ring: VecDeque<Outcome>,
    /// The tally of `ring`, kept as outcomes come and go.
    sum: Tally,
}

impl CountModel {
    fn record(&mut self, o: Outcome) -> Tally {
        if self.ring.len() == self.size {
            let old = self.ring.pop_front().unwrap();
            self.sum.calls -= 1;
            self.sum.failures -= old.is_failure() as u32;
            self.sum.slow -= old.is_slow() as u32;
        }
        self.ring.push_back(o);
        self.sum.calls += 1;
        self.sum.failures += o.is_failure() as u32;
        self.sum.slow += o.is_slow() as u32;
        self.sum
    }
    /// The tally counted afresh from `ring`.
    fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for o in &self.ring {
            t.calls += 1;
            t.failures += o.is_failure() as u32;
            t.slow += o.is_slow() as u32;
        }
        t
    }
}

struct TimeModel {
    n: u64,
    bucket: u64,
    head: u64,
    /// What was added in each live bucket epoch (at most `n` of them).
    events: Vec<(u64, Lanes)>,
    /// The fast calls in each live epoch: lane 0, never saturating the totals, never seen by
    /// `admit`.
    fast: Vec<(u64, u32)>,
}

impl TimeModel {
    fn advance(&mut self, now: u64) -> u64 {
        let e = now / self.bucket;
        self.head = self.head.max(e);
        let (h, n) = (self.head, self.n);
        self.events.retain(|&(ev, _)| h - ev < n);
        self.fast.retain(|&(ev, _)| h - ev < n);
        e
    }
    /// `t` with the live fast calls added to lane 0, as a read reports it.
    fn with_fast(&self, mut t: Lanes) -> Lanes {
        let fast: u32 = self.fast.iter().map(|&(_, k)| k).sum();
        t[0] = t[0].saturating_add(fast);
        t
    }
    fn add_fast(&mut self, now: u64) {
        let e = self.advance(now);
        if self.head - e < self.n {
            match self.fast.iter_mut().find(|(ev, _)| *ev == e) {
                Some((_, k)) => *k += 1,
                None => self.fast.push((e, 1)),
            }
        }
    }
    fn sum(&self) -> Lanes {
        let mut t = [0u32; 3];
        for (_, l) in &self.events {
            for j in 0..3 {
                t[j] += l[j];
            }
        }
        t
    }
    fn totals(&mut self, now: u64) -> Lanes {
        self.advance(now);
        self.with_fast(self.sum())
    }
    fn add(&mut self, now: u64, d: Lanes) -> Lanes {
        match self.try_add(now, d, |_| true) {
            Ok(t) | Err(t) => t,
        }
    }
    fn try_add(
        &mut self,
        now: u64,
        d: Lanes,
        admit: impl Fn(Lanes) -> bool,
    ) -> Result<Lanes, Lanes> {
        let e = self.advance(now);
        let cur = self.sum();
        if self.head - e >= self.n || !admit(cur) {
            return Err(self.with_fast(cur));
        }
        let mut applied = [0u32; 3];
        for j in 0..3 {
            applied[j] = d[j].min(TimeWindow::MAX_LANE - cur[j]);
        }
        match self.events.iter_mut().find(|(ev, _)| *ev == e) {
            Some((_, l)) => (0..3).for_each(|j| l[j] += applied[j]),
            None => self.events.push((e, applied)),
        }
        Ok(self.with_fast(self.sum()))
    }
}

const MAX_OFFSET: u64 = 1 << 41;
/// How many ops one input runs.
const MAX_OPS: usize = 256;

fuzz_target!(|input: Input| {
    // Arbitrary configurations: refused with an error or accepted, never a panic.
    let ok = (1..=CountWindow::MAX_SIZE).contains(&input.raw_size);
    assert_eq!(CountWindow::new(input.raw_size).is_ok(), ok);
    let span = Duration::from_nanos(input.raw_span);
    let ok = (1..=TimeWindow::MAX_BUCKETS).contains(&input.raw_buckets)
        && input.raw_span != 0
        && input
            .raw_span
            .is_multiple_of(u64::from(input.raw_buckets.max(1)));
    assert_eq!(TimeWindow::new(span, input.raw_buckets).is_ok(), ok);

    let size = u32::from(input.count_size % 70) + 1;
    let cw = CountWindow::new(size).unwrap();
    let mut cm = CountModel {
        size: size as usize,
        ring: VecDeque::new(),
        sum: Tally::default(),
    };

    let n = u64::from(input.buckets % 8) + 1;
    let bucket = u64::from(input.bucket_nanos % 1000) + 1;
    let tw = TimeWindow::new(Duration::from_nanos(n * bucket), n as u32).unwrap();
    let tf = TimeWindow::with_fast_calls(Duration::from_nanos(n * bucket), n as u32).unwrap();
    let model = || TimeModel {
        n,
        bucket,
        head: 0,
        events: Vec::new(),
        fast: Vec::new(),
    };
    let (mut tm, mut tfm) = (model(), model());

    let start = if input.start_near_end {
        u64::MAX - input.start % (1 << 20)
    } else {
        input.start
    };
    let mut offset = 0u64;
    let now_at = |offset: u64| start.saturating_add(offset);

    for op in input.ops.into_iter().take(MAX_OPS) {
        let now = now_at(offset);
        match op {
            Op::Record { failed, slow } => {
                let o = Outcome::new(failed, slow);
                assert_eq!(cw.record(o), cm.record(o));
                // An outcome goes in whole while calls have room, else not at all.
                let whole = |t: Lanes| t[0] < TimeWindow::MAX_LANE;
                let (Ok(want) | Err(want)) = tm.try_add(now, o.tally().into(), whole);
                assert_eq!(tw.record(now, o), Tally::from(want));
                let (Ok(want) | Err(want)) = tfm.try_add(now, o.tally().into(), whole);
                assert_eq!(tf.record(now, o), Tally::from(want));
            }
            Op::FastCalls(k) => {
                for _ in 0..k % 8 {
                    tf.add_fast(now);
                    tfm.add_fast(now);
                    // Without fast words it is a plain add to lane 0.
                    tw.add_fast(now);
                    tm.add(now, [1, 0, 0]);
                }
            }
            Op::Successes(k) => {
                for _ in 0..k % 100 {
                    assert_eq!(cw.record(Outcome::Success), cm.record(Outcome::Success));
                }
            }
            Op::LazySuccesses {
                n,
                limit,
                slow_limit,
            } => {
                let matters =
                    |t: &Tally| t.failures >= u32::from(limit) || t.slow >= u32::from(slow_limit);
                for _ in 0..n % 100 {
                    let mut asked = None;
                    let got = cw.record_success_lazily(|t| {
                        asked = Some(*t);
                        matters(t)
                    });
                    let want = cm.record(Outcome::Success);
                    match asked {
                        // Deferred (unless its stripe filled, which claims them all, exactly):
                        // the totals as they stood, which bound the model's above.
                        Some(t) if !matters(&t) && got != want => {
                            assert_eq!(got, t);
                            assert_eq!(got.calls, want.calls);
                            assert!(got.failures >= want.failures && got.slow >= want.slow);
                        }
                        // Claimed at once (or with its stripe's batch): exact.
                        _ => assert_eq!(got, want),
                    }
                }
            }
            Op::Add(d) => {
                let want = tm.add(now, d);
                assert_eq!(tw.add(now, d), want);
                let want = tfm.add(now, d);
                assert_eq!(tf.add(now, d), want);
            }
            Op::TryAdd { num, floor, amount } => {
                let admit = move |t: Lanes| {
                    u64::from(t[1]) < u64::from(t[0]) * u64::from(num) / 8 + u64::from(floor)
                };
                let d = [0, u32::from(amount % 4), 0];
                assert_eq!(tw.try_add(now, d, admit), tm.try_add(now, d, admit));
                assert_eq!(tf.try_add(now, d, admit), tfm.try_add(now, d, admit));
            }
            Op::Tick(d) => offset = (offset + u64::from(d % 64)).min(MAX_OFFSET),
            Op::Advance(d) => offset = (offset + u64::from(d)).min(MAX_OFFSET),
            Op::Jump(d) => offset = (offset + d % MAX_OFFSET).min(MAX_OFFSET),
            Op::Stale(back) => {
                let then = now.saturating_sub(u64::from(back));
                let want = tm.add(then, [1, 0, 0]);
                assert_eq!(tw.add(then, [1, 0, 0]), want);
                tf.add_fast(then);
                tfm.add_fast(then);
            }
            Op::Snapshot => {
                assert_eq!(cw.snapshot(), cm.tally());
                assert_eq!(tw.tally(now), Tally::from(tm.totals(now)));
                assert_eq!(tf.tally(now), Tally::from(tfm.totals(now)));
            }
            Op::Reset => {
                cw.reset();
                cm.ring.clear();
                cm.sum = Tally::default();
                tw.reset();
                tm.events.clear();
                tf.reset();
                tfm.events.clear();
                tfm.fast.clear();
            }
        }
        let now = now_at(offset);
        assert_eq!(cw.snapshot(), cm.sum);
        assert_eq!(tw.totals(now), tm.totals(now));
        assert_eq!(tf.totals(now), tfm.totals(now));
    }
    // The count window's contents are the model's (as a multiset; the ring may be rotated).
    let mut a: Vec<_> = cw
        .outcomes()
        .iter()
        .map(|o| (o.is_failure(), o.is_slow()))
        .collect();
    let mut b: Vec<_> = cm
        .ring
        .iter()
        .map(|o| (o.is_failure(), o.is_slow()))
        .collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
});
