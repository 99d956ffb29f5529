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
//! | registry (`RegistryReport`, feature `registry`) | `resile_registry_keys`, `resile_registry_max_keys`, `resile_registry_reported_keys`, `resile_registry_created_total`, `resile_registry_evicted_total`, `resile_registry_removed_total`, `resile_registry_refused_total`, `resile_registry_overflowed_total`; and each of at most `max_keys` keys' primitive's series with a `key` label |
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
/// budget.report_labelled("db", &[("zone", "eu-1")]); // resile_budget_balance{name="db",zone="eu-1"} 10, ...
/// # Ok::<(), resile::error::ConfigError>(())
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub trait Report {
    /// Sets this primitive's series, labelled `name`.
    fn report_as(&self, name: &str);

    /// Sets this primitive's series, labelled `name` and the extra `labels` (a registry's
    /// `key`, say). The default ignores `labels`; the crate's primitives implement it.
    fn report_labelled(&self, name: &str, labels: &[(&'static str, &str)]) {
        let _ = labels;
        self.report_as(name);
    }

    /// The `name` label [`report`](Self::report) uses: the primitive's own name.
    fn metric_name(&self) -> &str;

    /// Sets this primitive's series, labelled with [`metric_name`](Self::metric_name).
    fn report(&self) {
        self.report_as(self.metric_name());
    }
}

/// The labels of one primitive's series: `name`, then the extra ones.
#[cfg(feature = "metrics")]
struct Labels(Vec<metrics::Label>);

#[cfg(feature = "metrics")]
impl Labels {
    fn new(name: &str, extra: &[(&'static str, &str)]) -> Self {
        let mut v = Vec::with_capacity(extra.len() + 1);
        v.push(metrics::Label::new("name", name.to_owned()));
        v.extend(
            extra
                .iter()
                .map(|(k, val)| metrics::Label::new(*k, (*val).to_owned())),
        );
        Self(v)
    }

    /// These labels and `key="value"`.
    fn and(&self, key: &'static str, value: &'static str) -> Vec<metrics::Label> {
        let mut v = self.0.clone();
        v.push(metrics::Label::from_static_parts(key, value));
        v
    }

    fn gauge(&self, series: &'static str, v: f64) {
        metrics::gauge!(series, self.0.iter()).set(v);
    }

    fn total(&self, series: &'static str, v: u64) {
        metrics::counter!(series, self.0.iter()).absolute(v);
    }
}

#[cfg(feature = "metrics")]
impl<C: Clock> Report for crate::breaker::CircuitBreaker<C> {
    fn report_as(&self, name: &str) {
        self.report_labelled(name, &[]);
    }

    fn report_labelled(&self, name: &str, labels: &[(&'static str, &str)]) {
        let m = self.metrics();
        let l = Labels::new(name, labels);
        for s in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::Disabled,
        ] {
            let on = if s == m.state { 1.0 } else { 0.0 };
            metrics::gauge!("resile_breaker_state", l.and("state", state_label(s))).set(on);
        }
        l.gauge("resile_breaker_window_calls", f64::from(m.calls));
        l.gauge("resile_breaker_window_failures", f64::from(m.failures));
        l.gauge("resile_breaker_window_slow_calls", f64::from(m.slow_calls));
        l.gauge(
            "resile_breaker_failure_rate",
            m.failure_rate.unwrap_or(-1.0),
        );
        l.gauge(
            "resile_breaker_slow_call_rate",
            m.slow_call_rate.unwrap_or(-1.0),
        );
        l.total("resile_breaker_refused_total", m.refused);
        l.gauge("resile_breaker_refused_in_state", m.refused_in_state as f64);
        l.total("resile_breaker_breaches_total", m.breaches);
    }

    fn metric_name(&self) -> &str {
        self.name()
    }
}

#[cfg(feature = "metrics")]
impl<C: Clock> Report for crate::budget::RetryBudget<C> {
    fn report_as(&self, name: &str) {
        self.report_labelled(name, &[]);
    }

    fn report_labelled(&self, name: &str, labels: &[(&'static str, &str)]) {
        let m = self.metrics();
        let l = Labels::new(name, labels);
        l.gauge("resile_budget_balance", m.balance as f64);
        l.total("resile_budget_deposits_total", m.deposits);
        l.total("resile_budget_retries_granted_total", m.retries_granted);
        l.total("resile_budget_retries_refused_total", m.retries_refused);
    }

    fn metric_name(&self) -> &str {
        self.name()
    }
}

#[cfg(feature = "metrics")]
impl<C: Clock> Report for crate::bulkhead::Bulkhead<C> {
    fn report_as(&self, name: &str) {
        self.report_labelled(name, &[]);
    }

    fn report_labelled(&self, name: &str, labels: &[(&'static str, &str)]) {
        let m = self.metrics();
        let l = Labels::new(name, labels);
        l.gauge("resile_bulkhead_in_flight", f64::from(m.in_flight));
        l.gauge("resile_bulkhead_limit", f64::from(m.limit));
        l.gauge("resile_bulkhead_waiting", m.waiting as f64);
        l.gauge(
            "resile_bulkhead_peak_in_flight",
            f64::from(m.peak_in_flight),
        );
        l.total("resile_bulkhead_refused_total", m.refused);
        if let Some(a) = m.adaptive {
            l.total("resile_bulkhead_dropped_total", a.drops);
            l.total("resile_bulkhead_limit_windows_total", a.windows);
            if let Some(rtt) = a.no_load_rtt {
                l.gauge("resile_bulkhead_no_load_rtt_seconds", rtt.as_secs_f64());
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
        self.report_labelled(name, &[]);
    }

    fn report_labelled(&self, name: &str, labels: &[(&'static str, &str)]) {
        let m = self.metrics();
        let l = Labels::new(name, labels);
        for (p, label) in [
            (Phase::Serving, "serving"),
            (Phase::NotReady, "not_ready"),
            (Phase::Draining, "draining"),
            (Phase::Drained, "drained"),
        ] {
            let on = if p == m.phase { 1.0 } else { 0.0 };
            metrics::gauge!("resile_drain_phase", l.and("phase", label)).set(on);
        }
        l.gauge("resile_drain_in_flight", m.in_flight as f64);
        l.total("resile_drain_admitted_total", m.admitted);
        l.total("resile_drain_refused_total", m.refused);
    }

    fn metric_name(&self) -> &str {
        self.name()
    }
}

/// Exports a [`Registry`](crate::registry::Registry)'s own series and the series of at most
/// [`max_keys`](Self::max_keys) of its keys (features `metrics` and `registry`): a registry of
/// ten thousand keys must not become ten thousand label sets at the metrics backend.
///
/// Each exported key's primitive reports its usual series (see the [module docs](self)) with
/// the label `name` set to the report's name and a `key` label: the key as
/// [`report`](Self::report) formats it (`Display`), or as the function given to
/// [`report_with`](Self::report_with) does. Keys holding evidence come first (a breaker open or
/// counting failures, a bulkhead with calls in flight, a budget with retries spent: those
/// [not idle](crate::registry::Keyed::is_idle)), then idle ones, up to the cap; which idle keys
/// fill the rest is the map's order. The registry's own series, labelled `name`:
///
/// | series | what |
/// | --- | --- |
/// | `resile_registry_keys` | keys held |
/// | `resile_registry_max_keys` | the registry's bound |
/// | `resile_registry_reported_keys` | keys whose series this report set (at most the cap) |
/// | `resile_registry_created_total`, `resile_registry_evicted_total`, `resile_registry_removed_total`, `resile_registry_refused_total`, `resile_registry_overflowed_total` | the registry's counts ([`RegistryMetrics`](crate::registry::RegistryMetrics)) |
///
/// The facade cannot delete a series: an evicted key's series stay at their last values until
/// the exporter drops them. Let it drop series not updated for a while (the Prometheus
/// exporter's `idle_timeout`), and report at least that often.
///
/// ```
/// use resile::breaker::CircuitBreaker;
/// use resile::observe::RegistryReport;
/// use resile::registry::Registry;
///
/// let breakers = Registry::builder(CircuitBreaker::builder()).build()?;
/// for host in ["a.internal", "b.internal", "c.internal"] {
///     breakers.get_or_create(&host)?;
/// }
/// breakers.get_or_create(&"c.internal")?.force_open();
/// // resile_registry_keys{name="upstreams"} 3, and the series of "c.internal" (not idle) and one
/// // other key: resile_breaker_state{name="upstreams",key="c.internal",state="forced_open"} 1, ...
/// assert_eq!(RegistryReport::new("upstreams").max_keys(2).report(&breakers), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(all(feature = "metrics", feature = "registry"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "metrics", feature = "registry"))))]
#[derive(Clone, Debug)]
pub struct RegistryReport {
    name: Cow<'static, str>,
    max_keys: usize,
}

#[cfg(all(feature = "metrics", feature = "registry"))]
impl RegistryReport {
    /// A report whose series are labelled `name`, exporting at most 100 keys.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            max_keys: 100,
        }
    }

    /// Exports the series of at most `max_keys` keys (0: the registry's own series only).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Sets the registry's series and those of at most [`max_keys`](Self::max_keys) of its keys,
    /// each labelled `key` with the key's `Display`; returns how many keys it exported.
    pub fn report<K, P>(&self, registry: &crate::registry::Registry<K, P>) -> usize
    where
        K: std::fmt::Display + std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        P: crate::registry::Keyed + Report,
    {
        self.report_with(registry, |k| k.to_string())
    }

    /// As [`report`](Self::report), with each key's `key` label `label(key)`.
    ///
    /// ```
    /// use http::uri::Authority;
    /// use resile::bulkhead::Bulkhead;
    /// use resile::observe::RegistryReport;
    /// use resile::registry::Registry;
    ///
    /// let registry = Registry::<Option<Authority>, _>::builder(Bulkhead::builder()).build()?;
    /// registry.get_or_create(&None)?;
    /// let label = |k: &Option<Authority>| k.as_ref().map_or_else(|| "none".into(), |a| a.to_string());
    /// assert_eq!(RegistryReport::new("hosts").report_with(&registry, label), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report_with<K, P>(
        &self,
        registry: &crate::registry::Registry<K, P>,
        label: impl Fn(&K) -> String,
    ) -> usize
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        P: crate::registry::Keyed + Report,
    {
        let mut reported = 0;
        // Keys with evidence first, then idle ones, to the cap.
        for idle in [false, true] {
            if reported >= self.max_keys {
                break;
            }
            registry.for_each(usize::MAX, |k, p| {
                if reported < self.max_keys && p.is_idle() == idle {
                    p.report_labelled(&self.name, &[("key", &label(k))]);
                    reported += 1;
                }
            });
        }
        let m = registry.metrics();
        let l = Labels::new(&self.name, &[]);
        l.gauge("resile_registry_keys", m.keys as f64);
        l.gauge("resile_registry_max_keys", m.max_keys as f64);
        l.gauge("resile_registry_reported_keys", reported as f64);
        l.total("resile_registry_created_total", m.created);
        l.total("resile_registry_evicted_total", m.evicted);
        l.total("resile_registry_removed_total", m.removed);
        l.total("resile_registry_refused_total", m.refused);
        l.total("resile_registry_overflowed_total", m.overflowed);
        reported
    }
}
