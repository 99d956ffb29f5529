//! Backoff policies and jitter: how long to wait before a retry.
//!
//! A [`Backoff`] is a pure function `(attempt, previous delay, rng) -> Duration`: it holds no
//! state, never sleeps and never allocates, so one policy can be shared by every caller and the
//! same seeded rng gives the same delays.
//!
//! The delay is computed in three steps:
//!
//! 1. the **ceiling** for the attempt from the growth: constant `base`, linear `base × attempt`,
//!    or exponential `base × factor^(attempt-1)`, then **capped** at `cap` (before any jitter, so
//!    jitter never pushes a delay past the cap: backon#240);
//! 2. the **jitter**, drawn from the rng: none, full `U[0, ceiling]` (the default: the least work
//!    for the dependency in AWS's simulation), equal `ceiling/2 + U[0, ceiling/2]`, or
//!    decorrelated `min(cap, U[base, 3 × previous])`;
//! 3. the **floor**: never less than `min_retry_interval` (100 ms, say).
//!
//! A server hint (HTTP `Retry-After`, gRPC pushback) replaces the computed delay, clamped to the
//! configured [`retry_after_bounds`](BackoffBuilder::retry_after_bounds).
//!
//! ```
//! use resile::backoff::{Backoff, Jitter};
//! use rand::{SeedableRng, rngs::SmallRng};
//! use std::time::Duration;
//!
//! let backoff = Backoff::builder()
//!     .exponential(Duration::from_millis(100), 2)
//!     .cap(Duration::from_secs(5))
//!     .jitter(Jitter::Full)
//!     .min_retry_interval(Duration::from_millis(10))
//!     .build()?;
//! let mut rng = SmallRng::seed_from_u64(7);
//! let mut prev = Duration::ZERO;
//! for attempt in 1..=10 {
//!     let d = backoff.delay(attempt, prev, &mut rng);
//!     assert!(d >= Duration::from_millis(10) && d <= backoff.ceiling(attempt));
//!     prev = d;
//! }
//! # Ok::<(), resile::error::ConfigError>(())
//! ```

use crate::clock::duration_to_nanos;
use crate::error::ConfigError;
use rand::Rng;
use std::time::Duration;

/// How the ceiling grows with the attempt number.
///
/// Chosen by the builder's [`constant`](BackoffBuilder::constant),
/// [`linear`](BackoffBuilder::linear) or [`exponential`](BackoffBuilder::exponential); the
/// ceiling it gives is capped before any jitter:
///
/// ```
/// use resile::backoff::{Backoff, Growth};
/// use std::time::Duration;
///
/// let ms = Duration::from_millis;
/// let b = Backoff::builder().exponential(ms(100), 3).cap(ms(1000)).build()?;
/// assert_eq!(b.growth(), Growth::Exponential { factor: 3 });
/// let ceilings: Vec<_> = (1..=4).map(|n| b.ceiling(n)).collect();
/// assert_eq!(ceilings, [ms(100), ms(300), ms(900), ms(1000)]); // the last one capped
/// let b = Backoff::builder().linear(ms(100)).build()?;
/// assert_eq!((b.growth(), b.ceiling(3)), (Growth::Linear, ms(300)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Growth {
    /// `base` for every attempt.
    Constant,
    /// `base × attempt`.
    Linear,
    /// `base × factor^(attempt - 1)`.
    Exponential {
        /// The multiplier per attempt, `2..=100`.
        factor: u32,
    },
}

/// How the delay is randomised below its ceiling.
///
/// Whatever the rng draws, a delay stays within the jitter's bounds (and never above the cap):
///
/// ```
/// use resile::backoff::{Backoff, Jitter};
/// use rand::{SeedableRng, rngs::SmallRng};
/// use std::time::Duration;
///
/// let mut rng = SmallRng::seed_from_u64(7);
/// let b = Backoff::builder().constant(Duration::from_secs(1)).jitter(Jitter::Equal).build()?;
/// assert_eq!(b.jitter_kind(), Jitter::Equal);
/// for _ in 0..100 {
///     let d = b.delay(1, Duration::ZERO, &mut rng);
///     assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1));
/// }
/// let none = Backoff::builder().constant(Duration::from_secs(1)).jitter(Jitter::None).build()?;
/// assert_eq!(none.delay(1, Duration::ZERO, &mut rng), Duration::from_secs(1));
/// assert_eq!(Jitter::default(), Jitter::Full);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// No randomness: the delay is the ceiling.
    None,
    /// `U[0, ceiling]` (the default).
    #[default]
    Full,
    /// `ceiling/2 + U[0, ceiling/2]`: at least half the ceiling.
    Equal,
    /// `min(cap, U[base, 3 × previous])`, with `previous = base` for the first retry; ignores the
    /// growth (AWS's "decorrelated jitter").
    Decorrelated,
}

/// A validated backoff policy: pure, `Copy`, and free of allocation.
///
/// Built by [`Backoff::builder`]; [`Backoff::default`] is exponential from 100 ms doubling up to
/// 10 s with full jitter and no floor.
///
/// ```
/// use resile::backoff::{Backoff, Jitter};
/// use std::time::Duration;
///
/// let b = Backoff::builder()
///     .constant(Duration::from_millis(250))
///     .jitter(Jitter::None)
///     .build()?;
/// let mut rng = rand::rng();
/// assert_eq!(b.delay(3, Duration::ZERO, &mut rng), Duration::from_millis(250));
/// // A server hint replaces the computed delay, clamped to the bounds (by default up to the
/// // cap, 10 s unless set).
/// assert_eq!(
///     b.hinted_delay(1, Duration::ZERO, Some(Duration::from_secs(60)), &mut rng),
///     Duration::from_secs(10),
/// );
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backoff {
    growth: Growth,
    jitter: Jitter,
    base: u64,
    cap: u64,
    floor: u64,
    hint_min: u64,
    hint_max: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            growth: Growth::Exponential { factor: 2 },
            jitter: Jitter::Full,
            base: 100_000_000,
            cap: 10_000_000_000,
            floor: 0,
            hint_min: 0,
            hint_max: 10_000_000_000,
        }
    }
}

// The pure arithmetic, in nanoseconds, apart from the type so that tests and fuzzing reach it.

/// The capped ceiling for `attempt` (attempts count from 1; 0 is read as 1).
#[inline]
fn ceiling_nanos(growth: Growth, base: u64, cap: u64, attempt: u32) -> u64 {
    let n = attempt.max(1);
    let raw = match growth {
        Growth::Constant => base,
        Growth::Linear => base.saturating_mul(u64::from(n)),
        Growth::Exponential { factor } => match u64::from(factor).checked_pow(n - 1) {
            Some(m) => base.saturating_mul(m),
            None => u64::MAX,
        },
    };
    raw.min(cap)
}

impl Backoff {
    /// A builder starting from [`Backoff::default`].
    pub fn builder() -> BackoffBuilder {
        BackoffBuilder {
            b: Backoff::default(),
            hint_bounds: None,
        }
    }

    /// The delay before retry number `attempt` (1 for the first retry), given the delay used
    /// before the previous retry (`Duration::ZERO` for the first; only decorrelated jitter reads
    /// it). Always within `[min_retry_interval, cap]`.
    #[inline]
    pub fn delay<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        previous: Duration,
        rng: &mut R,
    ) -> Duration {
        let d = match self.jitter {
            Jitter::None => self.ceiling_n(attempt),
            Jitter::Full => rng.random_range(0..=self.ceiling_n(attempt)),
            Jitter::Equal => {
                let c = self.ceiling_n(attempt);
                let half = c / 2;
                half + rng.random_range(0..=c - half)
            }
            Jitter::Decorrelated => {
                let prev = duration_to_nanos(previous).max(self.base);
                let hi = prev.saturating_mul(3).max(self.base);
                rng.random_range(self.base..=hi).min(self.cap)
            }
        };
        Duration::from_nanos(d.max(self.floor))
    }

    /// Like [`delay`](Self::delay), but a server hint (`Retry-After`, gRPC pushback), when
    /// present, replaces the computed delay, clamped to the
    /// [`retry_after_bounds`](BackoffBuilder::retry_after_bounds).
    #[inline]
    pub fn hinted_delay<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        previous: Duration,
        hint: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        match hint {
            Some(h) => self.clamp_hint(h),
            None => self.delay(attempt, previous, rng),
        }
    }

    /// A server hint clamped to the configured bounds.
    #[inline]
    pub fn clamp_hint(&self, hint: Duration) -> Duration {
        Duration::from_nanos(duration_to_nanos(hint).clamp(self.hint_min, self.hint_max))
    }

    /// The capped ceiling for `attempt` before jitter (and before the floor): the largest delay
    /// full or equal jitter can draw.
    #[inline]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        Duration::from_nanos(self.ceiling_n(attempt))
    }

    #[inline]
    fn ceiling_n(&self, attempt: u32) -> u64 {
        ceiling_nanos(self.growth, self.base, self.cap, attempt)
    }

    /// The growth.
    pub fn growth(&self) -> Growth {
        self.growth
    }
    /// The jitter.
    pub fn jitter_kind(&self) -> Jitter {
        self.jitter
    }
    /// The base delay.
    pub fn base(&self) -> Duration {
        Duration::from_nanos(self.base)
    }
    /// The cap, applied before jitter.
    pub fn cap(&self) -> Duration {
        Duration::from_nanos(self.cap)
    }
    /// The floor under every computed delay.
    pub fn min_retry_interval(&self) -> Duration {
        Duration::from_nanos(self.floor)
    }
}

/// Builds a validated [`Backoff`]; see [`Backoff::builder`].
///
/// ```
/// use resile::backoff::Backoff;
/// use std::time::Duration;
///
/// let err = Backoff::builder()
///     .exponential(Duration::from_secs(2), 2)
///     .cap(Duration::from_secs(1))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "base");
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a builder does nothing until `build()`"]
pub struct BackoffBuilder {
    b: Backoff,
    hint_bounds: Option<(u64, u64)>,
}

impl BackoffBuilder {
    /// The same delay before every retry.
    pub fn constant(mut self, delay: Duration) -> Self {
        self.b.growth = Growth::Constant;
        self.b.base = duration_to_nanos(delay);
        self
    }

    /// `step × attempt`.
    pub fn linear(mut self, step: Duration) -> Self {
        self.b.growth = Growth::Linear;
        self.b.base = duration_to_nanos(step);
        self
    }

    /// `base × factor^(attempt - 1)`; `factor` in `2..=100`.
    pub fn exponential(mut self, base: Duration, factor: u32) -> Self {
        self.b.growth = Growth::Exponential { factor };
        self.b.base = duration_to_nanos(base);
        self
    }

    /// The largest delay, applied before jitter (default 10 s).
    pub fn cap(mut self, cap: Duration) -> Self {
        self.b.cap = duration_to_nanos(cap);
        self
    }

    /// The jitter (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.b.jitter = jitter;
        self
    }

    /// The smallest delay (default zero; 100 ms is common). At most the cap, and at most the
    /// lower of the [`retry_after_bounds`](Self::retry_after_bounds), so that a server hint
    /// never brings a wait under it either.
    pub fn min_retry_interval(mut self, floor: Duration) -> Self {
        self.b.floor = duration_to_nanos(floor);
        self
    }

    /// The bounds a server hint is clamped to (default `[min_retry_interval, cap]`); `min` may
    /// not be below [`min_retry_interval`](Self::min_retry_interval).
    pub fn retry_after_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.hint_bounds = Some((duration_to_nanos(min), duration_to_nanos(max)));
        self
    }

    /// Validates the policy.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field when the cap is zero, the base is zero or above the
    /// cap, the factor is outside `2..=100`, the floor is above the cap, or the hint bounds are
    /// empty or reversed.
    pub fn build(self) -> Result<Backoff, ConfigError> {
        let mut b = self.b;
        if b.cap == 0 {
            return Err(ConfigError::new(
                "cap",
                Duration::ZERO,
                "a non-zero duration",
            ));
        }
        if b.base == 0 || b.base > b.cap {
            return Err(ConfigError::new(
                "base",
                Duration::from_nanos(b.base),
                format!(
                    "1ns..={:?} (non-zero, at most the cap)",
                    Duration::from_nanos(b.cap)
                ),
            ));
        }
        if let Growth::Exponential { factor } = b.growth {
            if !(2..=100).contains(&factor) {
                return Err(ConfigError::new("factor", factor, "2..=100"));
            }
        }
        if b.floor > b.cap {
            return Err(ConfigError::new(
                "min_retry_interval",
                Duration::from_nanos(b.floor),
                format!("0..={:?} (at most the cap)", Duration::from_nanos(b.cap)),
            ));
        }
        let (lo, hi) = self.hint_bounds.unwrap_or((b.floor, b.cap));
        if hi == 0 || lo > hi || lo < b.floor {
            return Err(ConfigError::new(
                "retry_after_bounds",
                (Duration::from_nanos(lo), Duration::from_nanos(hi)),
                format!(
                    "min_retry_interval ({:?}) <= min <= max, max non-zero",
                    Duration::from_nanos(b.floor)
                ),
            ));
        }
        b.hint_min = lo;
        b.hint_max = hi;
        Ok(b)
    }
}

#[cfg(all(test, not(resile_loom)))]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::SmallRng};

    const MS: Duration = Duration::from_millis(1);

    fn draws(b: &Backoff, seed: u64, mut check: impl FnMut(u32, Duration, Duration)) {
        // Fewer runs under miri, which interprets each draw.
        let runs = if cfg!(miri) { 10 } else { 200 };
        let mut rng = SmallRng::seed_from_u64(seed);
        for _run in 0..runs {
            let mut prev = Duration::ZERO;
            for attempt in 1..=40 {
                let d = b.delay(attempt, prev, &mut rng);
                check(attempt, prev, d);
                prev = d;
            }
        }
    }

    #[test]
    fn ceilings_grow_as_configured_and_stop_at_the_cap() {
        let cap = Duration::from_secs(1);
        let c = Backoff::builder()
            .constant(100 * MS)
            .cap(cap)
            .build()
            .unwrap();
        let l = Backoff::builder()
            .linear(100 * MS)
            .cap(cap)
            .build()
            .unwrap();
        let e = Backoff::builder()
            .exponential(100 * MS, 2)
            .cap(cap)
            .build()
            .unwrap();
        for a in 1..=64u32 {
            assert_eq!(c.ceiling(a), 100 * MS);
            assert_eq!(l.ceiling(a), (100 * MS * a).min(cap));
            assert!(e.ceiling(a) <= cap);
        }
        assert_eq!(e.ceiling(1), 100 * MS);
        assert_eq!(e.ceiling(2), 200 * MS);
        assert_eq!(e.ceiling(4), 800 * MS);
        assert_eq!(e.ceiling(5), cap);
        // Huge attempt numbers saturate at the cap instead of overflowing.
        assert_eq!(e.ceiling(u32::MAX), cap);
        assert_eq!(l.ceiling(u32::MAX), cap);
        // Attempt 0 reads as the first retry.
        assert_eq!(e.ceiling(0), e.ceiling(1));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling_and_uses_the_range() {
        let cap = Duration::from_secs(2);
        let b = Backoff::builder()
            .exponential(10 * MS, 2)
            .cap(cap)
            .build()
            .unwrap();
        let (mut low, mut high) = (false, false);
        draws(&b, 1, |a, _, d| {
            assert!(d <= b.ceiling(a) && d <= cap);
            low |= d < b.ceiling(a) / 4;
            high |= d > b.ceiling(a) * 3 / 4;
        });
        assert!(low && high, "full jitter covers its range");
    }

    #[test]
    fn equal_jitter_keeps_at_least_half() {
        let b = Backoff::builder()
            .exponential(10 * MS, 3)
            .cap(Duration::from_secs(1))
            .jitter(Jitter::Equal)
            .build()
            .unwrap();
        draws(&b, 2, |a, _, d| {
            let c = b.ceiling(a);
            assert!(d >= c / 2 && d <= c, "{d:?} vs {c:?}");
        });
    }

    #[test]
    fn decorrelated_jitter_stays_within_base_and_cap() {
        let (base, cap) = (50 * MS, Duration::from_secs(3));
        let b = Backoff::builder()
            .exponential(base, 2)
            .cap(cap)
            .jitter(Jitter::Decorrelated)
            .build()
            .unwrap();
        let mut reached_cap_region = false;
        draws(&b, 3, |_, prev, d| {
            assert!(d >= base && d <= cap, "{d:?}");
            assert!(d <= prev.max(base) * 3);
            reached_cap_region |= d > cap / 2;
        });
        assert!(reached_cap_region);
    }

    #[test]
    fn no_jitter_is_the_ceiling_and_the_floor_holds() {
        let floor = 100 * MS;
        let b = Backoff::builder()
            .exponential(MS, 2)
            .cap(Duration::from_secs(1))
            .jitter(Jitter::None)
            .min_retry_interval(floor)
            .build()
            .unwrap();
        let mut rng = SmallRng::seed_from_u64(4);
        assert_eq!(b.delay(1, Duration::ZERO, &mut rng), floor);
        assert_eq!(b.delay(8, Duration::ZERO, &mut rng), 128 * MS);
        let full = Backoff::builder()
            .exponential(MS, 2)
            .min_retry_interval(floor)
            .build()
            .unwrap();
        draws(&full, 5, |_, _, d| assert!(d >= floor && d <= full.cap()));
    }

    #[test]
    fn seeded_rngs_reproduce_the_same_delays() {
        let b = Backoff::default();
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (1..=10)
                .map(|a| b.delay(a, Duration::ZERO, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn hints_are_clamped_to_bounds() {
        let b = Backoff::builder()
            .exponential(100 * MS, 2)
            .cap(Duration::from_secs(5))
            .min_retry_interval(100 * MS)
            .build()
            .unwrap();
        let mut rng = SmallRng::seed_from_u64(6);
        let hint = |h| b.hinted_delay(1, Duration::ZERO, Some(h), &mut SmallRng::seed_from_u64(0));
        assert_eq!(hint(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(hint(Duration::from_secs(3600)), Duration::from_secs(5));
        assert_eq!(hint(Duration::ZERO), 100 * MS);
        assert!(b.hinted_delay(1, Duration::ZERO, None, &mut rng) <= 100 * MS);
        let wide = Backoff::builder()
            .retry_after_bounds(Duration::from_secs(1), Duration::from_secs(120))
            .build()
            .unwrap();
        assert_eq!(
            wide.clamp_hint(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(wide.clamp_hint(MS), Duration::from_secs(1));
    }

    #[test]
    fn builder_rejects_bad_configs_naming_the_field() {
        let f = |b: BackoffBuilder| b.build().unwrap_err().field();
        assert_eq!(f(Backoff::builder().cap(Duration::ZERO)), "cap");
        assert_eq!(f(Backoff::builder().constant(Duration::ZERO)), "base");
        assert_eq!(
            f(Backoff::builder().linear(Duration::from_secs(11))),
            "base"
        );
        assert_eq!(f(Backoff::builder().exponential(MS, 1)), "factor");
        assert_eq!(f(Backoff::builder().exponential(MS, 101)), "factor");
        assert_eq!(
            f(Backoff::builder().min_retry_interval(Duration::from_secs(11))),
            "min_retry_interval"
        );
        assert_eq!(
            f(Backoff::builder()
                .retry_after_bounds(Duration::from_secs(2), Duration::from_secs(1))),
            "retry_after_bounds"
        );
        // A hint may not undercut the floor: a lower bound below it is refused, by name.
        let e = Backoff::builder()
            .min_retry_interval(100 * MS)
            .retry_after_bounds(Duration::ZERO, Duration::from_secs(5))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "retry_after_bounds");
        assert!(e.to_string().contains("min_retry_interval (100ms)"), "{e}");
        let e = Backoff::builder().cap(Duration::ZERO).build().unwrap_err();
        assert!(e.to_string().contains("non-zero"), "{e}");
    }
}
