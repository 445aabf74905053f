//! Counters: totals that only go up (requests served, errors), summed across
//! processes by the supervisor.
//!
//! A [`Counter`] is the generic [`MetricFamily`] over [`CounterChild`]; this
//! module owns how a counter is defined and what one of its series records.
//! Its exposed name ends in `_total` exactly once, whether or not the name
//! given does (see [`registry`](crate::registry)).

use crate::definition::Spec;
use crate::error::MetricsError;
use crate::family::{MetricFamily, prometheus_series};
use crate::registry::{global, lazy_in_global};

/// A counter family; `labels()` / `with()` select one series.
pub type Counter = MetricFamily<CounterChild>;

/// One counter series (or a detached no-op one if its labels were rejected).
#[derive(Clone, Debug, Default)]
pub struct CounterChild(Option<prometheus::Counter>);

impl Counter {
    /// Defines (or returns the existing) counter in the [`global`] registry.
    pub fn new(name: &str, documentation: &str, labelnames: &[&str]) -> Result<Self, MetricsError> {
        global().counter(name, documentation, labelnames)
    }

    /// A counter for a `static`, defined in the [`global`] registry at its first use.
    pub const fn lazy(
        name: &'static str,
        documentation: &'static str,
        labelnames: &'static [&'static str],
    ) -> Self {
        lazy_in_global(name, documentation, labelnames, Spec::Counter)
    }
}

prometheus_series!(CounterChild, Counter);

impl CounterChild {
    /// Adds one.
    pub fn inc(&self) {
        if let Some(c) = &self.0 {
            c.inc();
        }
    }

    /// Adds `amount`; negative or NaN amounts are ignored with a warning because counters only go up.
    pub fn inc_by(&self, amount: f64) {
        let Some(c) = &self.0 else { return };
        if amount >= 0.0 {
            c.inc_by(amount);
        } else {
            tracing::warn!(
                amount,
                "counter increment ignored: counters can only increase"
            );
        }
    }

    /// Current value (0 for a detached child).
    pub fn get(&self) -> f64 {
        self.0.as_ref().map_or(0.0, |c| c.get())
    }
}
