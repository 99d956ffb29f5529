//! Differential fuzzing of the retry budget (both modes) against a plain sequential model: a list
//! of timestamped events, summed over the window's buckets on every query.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use resile::budget::{MAX_RETRIES, RetryBudget};
use resile::clock::{Clock, ManualClock};
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Op {
    Deposit,
    Withdraw,
    Peek,
    /// Advance the clock by this many milliseconds.
    Advance(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    fixed: bool,
    max_retries: u8,
    ratio_milli: u16,
    min_per_sec: u8,
    buckets: u8,
    bucket_ms: u16,
    start: u64,
    ops: Vec<Op>,
}

/// The sequential model: every deposit and granted retry with the bucket epoch it landed in.
struct Model {
    bucket: u64,
    buckets: u64,
    fixed: Option<u64>,
    ratio_milli: u64,
    reserve: u64,
    events: Vec<(u64, bool)>, // (epoch, is_request)
}

impl Model {
    fn lanes(&self, now: u64) -> (u64, u64) {
        let e = now / self.bucket;
        // Fixed mode keeps a spent retry one bucket longer: a whole window at least.
        let span = |req: bool| self.buckets + u64::from(self.fixed.is_some() && !req);
        let live = self
            .events
            .iter()
            .filter(|(ev, req)| *ev <= e && e - *ev < span(*req));
        live.fold(
            (0, 0),
            |(r, t), (_, req)| {
                if *req { (r + 1, t) } else { (r, t + 1) }
            },
        )
    }
    fn balance(&self, now: u64) -> u64 {
        let (req, ret) = self.lanes(now);
        let allowance = match self.fixed {
            Some(m) => m,
            None => self.ratio_milli * req / 1000 + self.reserve,
        };
        allowance.min(u64::from(MAX_RETRIES)).saturating_sub(ret)
    }
}

/// How many ops one input runs: enough to fill and cycle every window these configurations make.
const MAX_OPS: usize = 256;

fuzz_target!(|input: Input| {
    let buckets = u32::from(input.buckets % 8) + 1;
    let bucket_ms = u64::from(input.bucket_ms % 2000) + 1;
    let bucket = bucket_ms * 1_000_000;
    let window = Duration::from_nanos(bucket * u64::from(buckets));
    // Start anywhere, including close to the end of the clock's range.
    let start = input.start % (u64::MAX / 2) * 2;
    let clock = ManualClock::starting_at(start);
    let builder = RetryBudget::builder()
        .window(window)
        .buckets(buckets)
        .clock(clock.clone());
    let (builder, fixed, ratio_milli, reserve) = if input.fixed {
        let m = u32::from(input.max_retries % 40) + 1;
        (builder.max_retries(m), Some(u64::from(m)), 0, 0)
    } else {
        let r = u64::from(input.ratio_milli % 3001);
        let min = u32::from(input.min_per_sec % 6);
        let reserve =
            (u128::from(min) * u128::from(bucket * u64::from(buckets)) / 1_000_000_000) as u64;
        (
            builder.ratio(r as f64 / 1000.0).min_per_sec(min),
            None,
            r,
            reserve,
        )
    };
    let budget = match builder.build() {
        Ok(b) => b,
        Err(e) => {
            // The only rejection these inputs can reach: a ratio budget that allows nothing.
            assert!(fixed.is_none() && ratio_milli == 0 && reserve == 0, "{e}");
            return;
        }
    };
    let mut model = Model {
        bucket,
        buckets: u64::from(buckets),
        fixed,
        ratio_milli,
        reserve,
        events: Vec::new(),
    };
    let (mut deposits, mut granted, mut refused) = (0u64, 0u64, 0u64);
    for op in input.ops.iter().take(MAX_OPS) {
        let now = clock.now();
        match op {
            Op::Deposit => {
                budget.deposit();
                deposits += 1;
                if fixed.is_none() {
                    model.events.push((now / bucket, true));
                }
            }
            Op::Withdraw => {
                let expect = model.balance(now) > 0;
                assert_eq!(budget.try_withdraw().is_ok(), expect, "withdraw at {now}");
                if expect {
                    granted += 1;
                    model.events.push((now / bucket, false));
                } else {
                    refused += 1;
                }
            }
            Op::Peek => {
                assert_eq!(budget.balance(), model.balance(now));
                assert_eq!(budget.can_retry(), model.balance(now) > 0);
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(*ms)));
                // Time only moves on, so an event older than the longest span stays out of it.
                let e = clock.now() / bucket;
                model.events.retain(|(ev, _)| e - ev <= model.buckets);
            }
        }
        let m = budget.metrics();
        assert_eq!(
            (m.deposits, m.retries_granted, m.retries_refused, m.balance),
            (deposits, granted, refused, model.balance(clock.now()))
        );
    }
});
