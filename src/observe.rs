//! Observability: each primitive's counters through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`), and breaker transitions as [`tracing`](https://docs.rs/tracing)
//! events (feature `tracing`; the drainer emits its own phase transitions, see
//! [`drain`](crate::drain)).
//!
//! Nothing here touches the hot path. [`Report::report`] reads a primitive's `metrics()`
//! snapshot and sets gauges and counters: call it from your scrape handler or a periodic task.
//! [`state_change_hook`] is a breaker's state-change hook, which runs only on a transition;
//! [`limit_change_hook`] an adaptive bulkhead's, which runs once per closed window.
//!
//! # Metrics
//!
//! Every series has a `name` label (the primitive's name, or the one given to
//! [`Report::report_as`]). Counters (`_total`) are set to the primitive's running totals;
//! the rest are gauges.
//!
//! | primitive | series |
//! | --- | --- |
//! | breaker | `resile_breaker_state{state}` (1 for the current state, 0 for the others: `closed`, `open`, `half_open`, `forced_open`, `disabled`), `resile_breaker_window_calls`, `resile_breaker_window_failures`, `resile_breaker_window_slow_calls`, `resile_breaker_failure_rate`, `resile_breaker_slow_call_rate` (-1 while the window holds fewer calls than the minimum, as resilience4j reports), `resile_breaker_refused_total`, `resile_breaker_refused_in_state`, `resile_breaker_breaches_total`; with the hook, `resile_breaker_transitions_total{from,to}` |
//! | retry budget | `resile_budget_balance`, `resile_budget_deposits_total`, `resile_budget_retries_granted_total`, `resile_budget_retries_refused_total` |
//! | bulkhead | `resile_bulkhead_in_flight`, `resile_bulkhead_limit`, `resile_bulkhead_waiting`, `resile_bulkhead_peak_in_flight`, `resile_bulkhead_refused_total`; [adaptive](crate::bulkhead::adaptive) ones add `resile_bulkhead_dropped_total`, `resile_bulkhead_limit_windows_total`, `resile_bulkhead_no_load_rtt_seconds` (once the algorithm has an estimate), and with the hook `resile_bulkhead_limit_changes_total{direction}` (`up`, `down`) |
//! | drainer | `resile_drain_phase{phase}` (1 for the current phase: `serving`, `not_ready`, `draining`, `drained`), `resile_drain_in_flight`, `resile_drain_admitted_total`, `resile_drain_refused_total` |
//!
//! The breaker's window counts are gauges, not `_total` counters: they describe the sliding
//! window and fall as it slides.
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use resile::bulkhead::Bulkhead;
//! use resile::observe::Report;
//!
//! let reads = Bulkhead::builder().name("reads").limit(8).build()?;
//! let _p = reads.try_acquire()?;
//! reads.report(); // resile_bulkhead_in_flight{name="reads"} 1, ...
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Tracing
//!
//! ```
//! use resile::breaker::CircuitBreaker;
//! use resile::observe::state_change_hook;
//!
//! let breaker = CircuitBreaker::builder()
//!     .name("db")
//!     .on_state_change(state_change_hook("db")) // an event per transition
//!     .build()?;
//! breaker.force_open(); // WARN resile::breaker: circuit breaker state changed breaker="db" from=Closed to=ForcedOpen
//! # Ok::<(), resile::error::ConfigError>(())
//! ```

use crate::breaker::{State, StateChange};
#[cfg(feature = "metrics")]
use crate::clock::Clock;
#[cfg(feature = "metrics")]
use crate::drain::Phase;
use std::borrow::Cow;

/// The label value of a breaker state.
fn state_label(s: State) -> &'static str {
    match s {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half_open",
        State::ForcedOpen => "forced_open",
        State::Disabled => "disabled",
    }
}

/// A breaker state-change hook that emits each transition: a `tracing` event (feature
/// `tracing`; target `resile::breaker`, `WARN` when the breaker opens, `INFO` otherwise, fields
/// `breaker`, `from`, `to`, `cause`) and a `resile_breaker_transitions_total{name,from,to}` counter
/// (feature `metrics`). With neither feature it does nothing. Pass it to
/// [`on_state_change`](crate::breaker::BreakerBuilder::on_state_change); it runs once per transition,
/// on the thread that made it.
///
/// ```
/// use resile::breaker::{Cause, CircuitBreaker, State, StateChange};
/// use resile::observe::state_change_hook;
/// let hook = state_change_hook("payments");
/// hook(&StateChange::new(State::Closed, State::Open, Cause::OpenPeriodEnded));
/// let breaker = CircuitBreaker::builder().on_state_change(state_change_hook("db")).build()?;
/// breaker.force_open(); // a WARN event and a counter, where the features are on
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
pub fn state_change_hook(
    name: impl Into<Cow<'static, str>>,
) -> impl Fn(&StateChange) + Send + Sync + 'static {
    let name: Cow<'static, str> = name.into();
    move |change: &StateChange| {
        let (from, to) = (state_label(change.from), state_label(change.to));
        #[cfg(feature = "tracing")]
        {
            let breaker: &str = &name;
            let cause = tracing::field::debug(&change.cause);
            if matches!(change.to, State::Open | State::ForcedOpen) {
                tracing::warn!(target: "resile::breaker", breaker, from, to, cause, "circuit breaker state changed");
            } else {
                tracing::info!(target: "resile::breaker", breaker, from, to, cause, "circuit breaker state changed");
            }
        }
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "resile_breaker_transitions_total",
            "name" => name.to_string(),
            "from" => from,
            "to" => to
        )
        .increment(1);
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        let _ = (&name, from, to);
    }
}

/// An adaptive bulkhead's limit-change hook that emits each change of its limit: a `tracing`
/// event (feature `tracing`; target `resile::bulkhead`, `INFO` when it shrinks, `DEBUG` when it
/// grows, fields `bulkhead`, `from`, `to`, `drops`, `mean_rtt_ns`) and a
/// `resile_bulkhead_limit_changes_total{name,direction}` counter (feature `metrics`). A window
/// that keeps the limit emits nothing. Pass it to
/// [`on_limit_change`](crate::bulkhead::BulkheadBuilder::on_limit_change).
///
/// ```
/// use resile::bulkhead::Bulkhead;
/// use resile::bulkhead::adaptive::Aimd;
/// use resile::observe::limit_change_hook;
/// let b = Bulkhead::builder()
///     .name("db")
///     .adaptive(Aimd::default())
///     .on_limit_change(limit_change_hook("db"))
///     .build()?;
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
pub fn limit_change_hook(
    name: impl Into<Cow<'static, str>>,
) -> impl Fn(crate::bulkhead::adaptive::LimitChange) + Send + Sync + 'static {
    let name: Cow<'static, str> = name.into();
    move |change| {
        if change.from == change.to {
            return;
        }
        let direction = if change.to > change.from {
            "up"
        } else {
            "down"
        };
        #[cfg(feature = "tracing")]
        {
            let (bulkhead, from, to, drops): (&str, _, _, _) =
                (&name, change.from, change.to, change.window.drops);
            let mean_rtt_ns = change.window.mean_rtt();
            if direction == "down" {
                tracing::info!(target: "resile::bulkhead", bulkhead, from, to, drops, mean_rtt_ns, "adaptive limit changed");
            } else {
                tracing::debug!(target: "resile::bulkhead", bulkhead, from, to, drops, mean_rtt_ns, "adaptive limit changed");
            }
        }
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "resile_bulkhead_limit_changes_total",
            "name" => name.to_string(),
            "direction" => direction
        )
        .increment(1);
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        let _ = (&name, direction);
    }
}

/// Exports a primitive's `metrics()` snapshot through the `metrics` facade (feature
/// `metrics`): see the [module docs](self) for the series. Implemented by
/// [`CircuitBreaker`](crate::breaker::CircuitBreaker), [`RetryBudget`](crate::budget::RetryBudget),
/// [`Bulkhead`](crate::bulkhead::Bulkhead) and [`Drainer`](crate::drain::Drainer).
///
/// ```
/// use resile::budget::RetryBudget;
/// use resile::observe::Report;
/// let budget = RetryBudget::builder().max_retries(10).build()?;
/// budget.report_as("db"); // resile_budget_balance{name="db"} 10, ...
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub trait Report {
    /// Sets this primitive's series, labelled `name`.
    fn report_as(&self, name: &str);

    /// The `name` label [`report`](Self::report) uses: the primitive's own name.
    fn metric_name(&self) -> &str;

    /// Sets this primitive's series, labelled with [`metric_name`](Self::metric_name).
    fn report(&self) {
        self.report_as(self.metric_name());
    }
}

#[cfg(feature = "metrics")]
fn gauge(series: &'static str, name: &str, v: f64) {
    metrics::gauge!(series, "name" => name.to_owned()).set(v);
}

#[cfg(feature = "metrics")]
fn total(series: &'static str, name: &str, v: u64) {
    metrics::counter!(series, "name" => name.to_owned()).absolute(v);
}

#[cfg(feature = "metrics")]
impl<C: Clock> Report for crate::breaker::CircuitBreaker<C> {
    fn report_as(&self, name: &str) {
        let m = self.metrics();
        for s in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::Disabled,
        ] {
            let on = if s == m.state { 1.0 } else { 0.0 };
            metrics::gauge!("resile_breaker_state", "name" => name.to_owned(), "state" => state_label(s))
                .set(on);
        }
        gauge("resile_breaker_window_calls", name, f64::from(m.calls));
        gauge(
            "resile_breaker_window_failures",
            name,
            f64::from(m.failures),
        );
        gauge(
            "resile_breaker_window_slow_calls",
            name,
            f64::from(m.slow_calls),
        );
        gauge(
            "resile_breaker_failure_rate",
            name,
            m.failure_rate.unwrap_or(-1.0),
        );
        gauge(
            "resile_breaker_slow_call_rate",
            name,
            m.slow_call_rate.unwrap_or(-1.0),
        );
        total("resile_breaker_refused_total", name, m.refused);
        gauge(
            "resile_breaker_refused_in_state",
            name,
            m.refused_in_state as f64,
        );
        total("resile_breaker_breaches_total", name, m.breaches);
    }

    fn metric_name(&self) -> &str {
        self.name()
    }
}

#[cfg(feature = "metrics")]
impl<C: Clock> Report for crate::budget::RetryBudget<C> {
    fn report_as(&self, name: &str) {
        let m = self.metrics();
        gauge("resile_budget_balance", name, m.balance as f64);
        total("resile_budget_deposits_total", name, m.deposits);
        total(
            "resile_budget_retries_granted_total",
            name,
            m.retries_granted,
        );
        total(
            "resile_budget_retries_refused_total",
            name,
            m.retries_refused,
        );
    }

    fn metric_name(&self) -> &str {
        self.name()
    }
}

#[cfg(feature = "metrics")]
impl<C: Clock> Report for crate::bulkhead::Bulkhead<C> {
    fn report_as(&self, name: &str) {
        let m = self.metrics();
        gauge("resile_bulkhead_in_flight", name, f64::from(m.in_flight));
        gauge("resile_bulkhead_limit", name, f64::from(m.limit));
        gauge("resile_bulkhead_waiting", name, m.waiting as f64);
        gauge(
            "resile_bulkhead_peak_in_flight",
            name,
            f64::from(m.peak_in_flight),
        );
        total("resile_bulkhead_refused_total", name, m.refused);
        if let Some(a) = m.adaptive {
            total("resile_bulkhead_dropped_total", name, a.drops);
            total("resile_bulkhead_limit_windows_total", name, a.windows);
            if let Some(rtt) = a.no_load_rtt {
                gauge(
                    "resile_bulkhead_no_load_rtt_seconds",
                    name,
                    rtt.as_secs_f64(),
                );
            }
        }
    }

    fn metric_name(&self) -> &str {
        self.name()
    }
}

#[cfg(feature = "metrics")]
impl<C: Clock> Report for crate::drain::Drainer<C> {
    fn report_as(&self, name: &str) {
        let m = self.metrics();
        for (p, label) in [
            (Phase::Serving, "serving"),
            (Phase::NotReady, "not_ready"),
            (Phase::Draining, "draining"),
            (Phase::Drained, "drained"),
        ] {
            let on = if p == m.phase { 1.0 } else { 0.0 };
            metrics::gauge!("resile_drain_phase", "name" => name.to_owned(), "phase" => label)
                .set(on);
        }
        gauge("resile_drain_in_flight", name, m.in_flight as f64);
        total("resile_drain_admitted_total", name, m.admitted);
        total("resile_drain_refused_total", name, m.refused);
    }

    fn metric_name(&self) -> &str {
        self.name()
    }
}
