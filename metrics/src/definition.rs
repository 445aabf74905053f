//! What a defined metric is, below everything that defines or records one:
//! the [`Spec`] a definition asks for, the [`Handle`] to the series store it
//! gets, the [`Meta`] that picking a series checks against, and the two
//! together as [`Defined`].
//!
//! These are the vocabulary shared by the generic family (`family.rs`, which
//! picks series from a [`Defined`]), the registry (`registry.rs`, which makes
//! one from a [`Spec`]) and the four kinds on top of both; keeping them in
//! this leaf module is what lets those modules import one way only. The
//! module is private to the crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{LabelProblem, MetricsError};
use crate::snapshot::GaugeMode;
use crate::summary_store::SummaryStore;

/// What to define: the kind, with what only that kind has.
#[derive(Clone, Copy)]
pub enum Spec<'a> {
    /// A counter.
    Counter,
    /// A gauge, merged across processes by its mode.
    Gauge(GaugeMode),
    /// A histogram with these bucket bounds (empty: the defaults).
    Histogram(&'a [f64]),
    /// A summary.
    Summary,
}

/// The backend of one defined metric, by kind.
#[derive(Clone)]
pub enum Handle {
    /// A counter's series.
    Counter(prometheus::CounterVec),
    /// A gauge's series.
    Gauge(prometheus::GaugeVec),
    /// A histogram's series.
    Histogram(prometheus::HistogramVec),
    /// A summary's series (the `prometheus` crate has no mergeable summary).
    Summary(Arc<SummaryStore>),
}

/// Shared by all handles of one metric: what picking a series needs to validate and warn.
pub struct Meta {
    /// The metric name as exposed (counters end in `_total`).
    pub name: String,
    /// The label names, in definition order.
    pub labelnames: Vec<String>,
    warned: AtomicBool,
}

impl Meta {
    /// The metadata of a metric just defined.
    pub fn new(name: String, labelnames: &[&str]) -> Self {
        Meta {
            name,
            labelnames: labelnames.iter().map(|l| (*l).to_owned()).collect(),
            warned: AtomicBool::new(false),
        }
    }

    /// Wraps a backend failure with the metric's name.
    pub fn backend(&self, err: prometheus::Error) -> MetricsError {
        MetricsError::Backend {
            name: self.name.clone(),
            message: err.to_string(),
        }
    }

    /// Logs a rejected call once per metric, so a bad call on a hot path cannot flood the log.
    pub(crate) fn warn_once(&self, err: &MetricsError) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(metric = %self.name, error = %err, "metric labels rejected; recording nothing (logged once per metric)");
        }
    }

    pub(crate) fn check_count(&self, got: usize) -> Result<(), MetricsError> {
        if got == self.labelnames.len() {
            Ok(())
        } else {
            Err(MetricsError::LabelCount {
                name: self.name.clone(),
                expected: self.labelnames.len(),
                got,
            })
        }
    }

    fn label_error(&self, label: &str, problem: LabelProblem) -> MetricsError {
        MetricsError::LabelName {
            name: self.name.clone(),
            label: label.to_owned(),
            problem,
        }
    }

    /// Writes the values of named `labels` into `values` in definition order
    /// (`values` has one slot per label name), or names the first label at fault.
    pub(crate) fn order<'v>(
        &self,
        labels: &[(&str, &'v str)],
        values: &mut [&'v str],
    ) -> Result<(), MetricsError> {
        for (j, &(label, value)) in labels.iter().enumerate() {
            if labels[..j].iter().any(|(seen, _)| *seen == label) {
                return Err(self.label_error(label, LabelProblem::Duplicate));
            }
            let i = self
                .labelnames
                .iter()
                .position(|name| name == label)
                .ok_or_else(|| self.label_error(label, LabelProblem::Unknown))?;
            values[i] = value;
        }
        // Known and distinct names: fewer of them than label names means one is missing.
        if labels.len() < self.labelnames.len()
            && let Some(missing) = self
                .labelnames
                .iter()
                .find(|name| !labels.iter().any(|(label, _)| label == name))
        {
            return Err(self.label_error(missing, LabelProblem::Missing));
        }
        Ok(())
    }
}

/// A metric defined in a registry: its backend and its metadata.
#[derive(Clone)]
pub struct Defined {
    /// The series store.
    pub handle: Handle,
    /// Name and label names.
    pub meta: Arc<Meta>,
}
