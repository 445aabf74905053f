//! Prometheus metrics for a multi-process server: define, snapshot, merge, render.
//!
//! Every tiffin process (supervisor, API server, runner worker) records into its
//! own [`Registry`]. The data flows like this:
//!
//! 1. **Record** — [`registry`]: custom metrics mirroring `bentoml.metrics`
//!    ([`Counter`], [`Gauge`], [`Histogram`], [`Summary`]) plus BentoML's default
//!    request families ([`defaults`]). Recording is a hash lookup and an atomic
//!    add; nothing here blocks on I/O.
//! 2. **Snapshot** — [`snapshot`]: [`Registry::snapshot`] turns the registry into a
//!    plain serde value ([`Snapshot`]) that travels over the control socket as
//!    bincode.
//! 3. **Merge** — [`merge`](mod@merge): the supervisor folds the snapshots of all
//!    live processes, plus the last snapshots of processes that are gone, into one
//!    (counters/histograms/summaries add up, gauges follow their [`GaugeMode`]).
//! 4. **Render** — [`render`]: Prometheus text 0.0.4 (numbers formatted like
//!    BentoML's Python client, so dashboards keep matching) or OpenMetrics.
//!
//! Summaries keep a mergeable quantile [`Sketch`] instead of
//! per-process quantiles, because quantiles of different processes cannot be
//! averaged but sketches can be added exactly.

pub mod defaults;
pub mod merge;
pub mod registry;
pub mod render;
pub mod sketch;
pub mod snapshot;
#[cfg(test)]
mod testutil;

pub use defaults::{ApiServerMetrics, DEFAULT_DURATION_BUCKETS, InProgressGuard, RunnerMetrics};
pub use merge::{MergeConflict, Merged, WorkerId, merge, merge_report, retire};
pub use registry::{
    Counter, CounterChild, Gauge, GaugeChild, GaugeMode, Histogram, HistogramChild, Registry,
    Summary, SummaryChild, global,
};
pub use render::{
    OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render_for_accept, render_openmetrics, render_text,
};
pub use sketch::Sketch;
pub use snapshot::{Family, HistogramValue, Kind, Series, Snapshot, SummaryValue, Value};

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
    /// The underlying `prometheus` crate refused an operation (should not happen after validation).
    #[error("metric `{name}`: {message}")]
    Backend {
        /// The metric name.
        name: String,
        /// The backend's message.
        message: String,
    },
}
