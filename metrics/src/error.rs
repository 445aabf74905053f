//! The one error type of the crate's fallible calls.
//!
//! Only defining a metric and picking a series with `try_labels` or
//! `try_with` can fail (recording never does, see
//! [`registry`](crate::registry)), and callers in
//! other crates wrap the failure in their own error with `#[from]`, so one
//! enum serves them all. It sits
//! in a file of its own, importing nothing of the crate, so that the registry
//! and the default families can use it without importing the crate root that
//! re-exports them; it is public as `tiffin_metrics::MetricsError`.

/// Why a metric could not be defined or addressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// The name is already taken by a metric of another kind, label set, bucket layout or gauge mode.
    #[error("metric `{name}` conflicts with an existing definition: {detail}")]
    Conflict {
        /// The metric name as exposed (counters include `_total`).
        name: String,
        /// What differs.
        detail: String,
    },
    /// A metric or label name is not valid in the Prometheus data model.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The offending metric or label name.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Histogram buckets are not finite and strictly increasing.
    #[error("invalid buckets for histogram `{name}`: {reason}")]
    InvalidBuckets {
        /// The histogram's name.
        name: String,
        /// Why the buckets are rejected.
        reason: String,
    },
    /// `labels()` got a different number of values than the metric has label names.
    #[error("metric `{name}` takes {expected} label values, got {got}")]
    LabelCount {
        /// The metric name.
        name: String,
        /// Number of label names the metric was defined with.
        expected: usize,
        /// Number of values passed.
        got: usize,
    },
    /// `with()` named a label the metric does not have, left one of its labels out, or named one twice.
    #[error("metric `{name}`: label `{label}` {problem}")]
    LabelName {
        /// The metric name.
        name: String,
        /// The label name at fault.
        label: String,
        /// What is wrong with it.
        problem: LabelProblem,
    },
    /// The underlying `prometheus` crate refused an operation (should not happen after validation).
    #[error("metric `{name}`: {message}")]
    Backend {
        /// The metric name.
        name: String,
        /// The backend's message.
        message: String,
    },
}

/// What is wrong with a label name passed to `with()` ([`MetricsError::LabelName`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LabelProblem {
    /// The metric was not defined with this label.
    #[error("is not one of the metric's labels")]
    Unknown,
    /// The metric has this label but the call gave it no value.
    #[error("is missing")]
    Missing,
    /// The call gave this label two values.
    #[error("is given twice")]
    Duplicate,
}
