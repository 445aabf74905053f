//! Histograms: observations counted into fixed buckets (request durations,
//! batch sizes), summed bucket by bucket across processes.
//!
//! A [`Histogram`] is the generic [`MetricFamily`] over [`HistogramChild`];
//! this module owns how a histogram is defined and what one of its series
//! records. The bucket bounds are part of the definition because the
//! supervisor can only add histograms with the same bounds: an empty list
//! means [`DEFAULT_DURATION_BUCKETS`](crate::DEFAULT_DURATION_BUCKETS), and a
//! bad list is refused at definition (see [`buckets`](crate::buckets)).

use crate::definition::Spec;
use crate::error::MetricsError;
use crate::family::{MetricFamily, prometheus_series};
use crate::registry::{global, lazy_in_global};

/// A histogram family; `labels()` / `with()` select one series.
pub type Histogram = MetricFamily<HistogramChild>;

/// One histogram series (or a detached no-op one if its labels were rejected).
#[derive(Clone, Debug, Default)]
pub struct HistogramChild(Option<prometheus::Histogram>);

impl Histogram {
    /// Defines (or returns the existing) histogram in the [`global`] registry; empty `buckets` means the default duration buckets.
    pub fn new(
        name: &str,
        documentation: &str,
        labelnames: &[&str],
        buckets: &[f64],
    ) -> Result<Self, MetricsError> {
        global().histogram(name, documentation, labelnames, buckets)
    }

    /// A histogram for a `static`, defined in the [`global`] registry at its
    /// first use; empty `buckets` means the default duration buckets, as for
    /// [`Histogram::new`].
    pub const fn lazy(
        name: &'static str,
        documentation: &'static str,
        labelnames: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        lazy_in_global(name, documentation, labelnames, Spec::Histogram(buckets))
    }
}

prometheus_series!(HistogramChild, Histogram);

impl HistogramChild {
    /// Records one observation.
    pub fn observe(&self, v: f64) {
        if let Some(h) = &self.0 {
            h.observe(v);
        }
    }
}
