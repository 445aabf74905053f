//! Gauges: values that go up and down (requests in progress, queue length).
//!
//! A [`Gauge`] is the generic [`MetricFamily`] over [`GaugeChild`]; this
//! module owns how a gauge is defined and what one of its series records. A
//! gauge is defined with a [`GaugeMode`] because the supervisor must know how
//! to combine the values of many processes (sum them, keep each, or take the
//! largest or smallest), and it learns that only from the snapshot.

use crate::definition::Spec;
use crate::error::MetricsError;
use crate::family::{MetricFamily, prometheus_series};
use crate::registry::{global, lazy_in_global};
use crate::snapshot::GaugeMode;

/// A gauge family; `labels()` / `with()` select one series.
pub type Gauge = MetricFamily<GaugeChild>;

/// One gauge series (or a detached no-op one if its labels were rejected).
#[derive(Clone, Debug, Default)]
pub struct GaugeChild(Option<prometheus::Gauge>);

impl Gauge {
    /// Defines (or returns the existing) live-sum gauge in the [`global`] registry.
    pub fn new(name: &str, documentation: &str, labelnames: &[&str]) -> Result<Self, MetricsError> {
        global().gauge(name, documentation, labelnames)
    }

    /// Defines (or returns the existing) gauge with an aggregation mode in the [`global`] registry.
    pub fn with_mode(
        name: &str,
        documentation: &str,
        labelnames: &[&str],
        mode: GaugeMode,
    ) -> Result<Self, MetricsError> {
        global().gauge_with_mode(name, documentation, labelnames, mode)
    }

    /// A live-sum gauge for a `static`, defined in the [`global`] registry at its first use.
    pub const fn lazy(
        name: &'static str,
        documentation: &'static str,
        labelnames: &'static [&'static str],
    ) -> Self {
        Self::lazy_with_mode(name, documentation, labelnames, GaugeMode::LiveSum)
    }

    /// A gauge with an aggregation mode for a `static`, defined in the [`global`] registry at its first use.
    pub const fn lazy_with_mode(
        name: &'static str,
        documentation: &'static str,
        labelnames: &'static [&'static str],
        mode: GaugeMode,
    ) -> Self {
        lazy_in_global(name, documentation, labelnames, Spec::Gauge(mode))
    }
}

prometheus_series!(GaugeChild, Gauge);

impl GaugeChild {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        if let Some(g) = &self.0 {
            g.set(v);
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.sub(1.0);
    }

    /// Adds `v` (may be negative).
    pub fn add(&self, v: f64) {
        if let Some(g) = &self.0 {
            g.add(v);
        }
    }

    /// Subtracts `v`.
    pub fn sub(&self, v: f64) {
        if let Some(g) = &self.0 {
            g.sub(v);
        }
    }

    /// Current value (0 for a detached child).
    pub fn get(&self) -> f64 {
        self.0.as_ref().map_or(0.0, |g| g.get())
    }
}
