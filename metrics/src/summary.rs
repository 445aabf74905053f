//! Summaries: count, sum and quantiles of observations (payload sizes), kept
//! as a mergeable [`Sketch`] per series.
//!
//! A [`Summary`] is the generic [`MetricFamily`] over [`SummaryChild`]; this
//! module owns how a summary is defined and what one series records. The
//! `prometheus` crate has no summary, so a summary's series live in its own
//! store (`summary_store.rs`, below this module and the definitions), which
//! [`Registry::snapshot`](crate::Registry::snapshot) reads beside the
//! `prometheus` families.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::definition::{Handle, Spec};
use crate::error::MetricsError;
use crate::family::{MetricFamily, Series, wrong_kind};
use crate::registry::{global, lazy_in_global};
use crate::summary_store::SummaryState;

/// A summary family (count, sum, mergeable quantiles); `labels()` / `with()` select one series.
pub type Summary = MetricFamily<SummaryChild>;

/// One summary series (or a detached no-op one if its labels were rejected).
#[derive(Clone, Default)]
pub struct SummaryChild(Option<Arc<Mutex<SummaryState>>>);

impl Summary {
    /// Defines (or returns the existing) summary in the [`global`] registry.
    pub fn new(name: &str, documentation: &str, labelnames: &[&str]) -> Result<Self, MetricsError> {
        global().summary(name, documentation, labelnames)
    }

    /// A summary for a `static`, defined in the [`global`] registry at its first use.
    pub const fn lazy(
        name: &'static str,
        documentation: &'static str,
        labelnames: &'static [&'static str],
    ) -> Self {
        lazy_in_global(name, documentation, labelnames, Spec::Summary)
    }
}

impl Series for SummaryChild {
    const KIND: &'static str = "Summary";

    fn attach(handle: &Handle, values: &[&str]) -> Result<Self, prometheus::Error> {
        match handle {
            Handle::Summary(store) => Ok(Self(Some(store.child(values)))),
            _ => Err(wrong_kind::<Self>()),
        }
    }
}

impl SummaryChild {
    /// Records one observation into count, sum and the quantile sketch.
    pub fn observe(&self, v: f64) {
        if let Some(state) = &self.0 {
            state.lock().observe(v);
        }
    }
}

impl fmt::Debug for SummaryChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SummaryChild")
            .field("attached", &self.0.is_some())
            .finish()
    }
}
