//! Prometheus metrics for a multi-process server: define, snapshot, merge, render.
//!
//! Every tiffin process (supervisor, API server, runner worker) records into its
//! own [`Registry`]; only the supervisor answers scrapes. Prometheus therefore
//! sees one target whose numbers are the sum of many processes, including ones
//! that have died or been scaled away, and that is the reason for each step
//! below (the whole flow is described in `docs/architecture.md`):
//!
//! 1. **Record** — [`registry`]: custom metrics mirroring `bentoml.metrics`
//!    ([`Counter`], [`Gauge`], [`Histogram`], [`Summary`]: each one generic
//!    [`MetricFamily`] over its own series type, usable as a `static` through
//!    its `const fn lazy`, with positional or named labels); [`bentoml`] defines
//!    BentoML's default request families on top of it. Recording is a hash
//!    lookup and an atomic add, because it happens on every request; nothing
//!    here blocks on I/O.
//! 2. **Snapshot** — [`snapshot`]: [`Registry::snapshot`] turns the registry into a
//!    plain serde value ([`Snapshot`]) that travels over the control socket as
//!    bincode; it carries each gauge's [`GaugeMode`] so the supervisor knows
//!    how to merge it without seeing the worker's registry.
//! 3. **Merge** — [`merge`](mod@merge): the supervisor folds the snapshots of all
//!    live processes, plus the last snapshots of processes that are gone, into one
//!    (counters/histograms/summaries add up, gauges follow their [`GaugeMode`]),
//!    so counters never go backwards when a worker restarts.
//! 4. **Render** — [`render`](mod@render): Prometheus text 0.0.4 (numbers formatted like
//!    BentoML's Python client, so dashboards keep matching) or OpenMetrics.
//!
//! Two rule modules are shared with the configuration crate, so that a value
//! the configuration accepts is never refused later by the registry:
//! [`buckets`] (BentoML's default bounds and the one bucket-list check) and
//! [`names`] (which metric and label names Prometheus accepts).
//!
//! Summaries keep a mergeable quantile [`Sketch`] ([`sketch`]) instead of
//! per-process quantiles, because quantiles of different processes cannot be
//! averaged but sketches can be added exactly.
//!
//! The modules only depend "downwards": [`snapshot`] (with [`sketch`]) is the
//! shared vocabulary; [`registry`] builds on it and on [`names`] and
//! [`buckets`], itself layered (what a definition is, then the generic family,
//! then the registry, then the four kinds on top, so no two of them import
//! each other); [`bentoml`] builds on [`registry`]; [`merge`](mod@merge) and
//! [`render`](mod@render) only need [`snapshot`], so the supervisor's side never depends on
//! how a worker records. [`MetricsError`], the one error type, sits in a
//! private leaf module for the same reason. BentoML's families and their names
//! are documented at
//! <https://docs.bentoml.com/en/latest/guides/observability/metrics.html>.

pub mod bentoml;
pub mod buckets;
pub mod count_guard;
mod counter;
mod definition;
mod error;
mod family;
mod gauge;
mod histogram;
pub mod merge;
pub mod names;
pub mod registry;
pub mod render;
pub mod sketch;
pub mod snapshot;
mod summary;
mod summary_store;
#[cfg(test)]
mod testutil;

pub use bentoml::{ApiServerMetrics, InProgressGuard, RunnerMetrics};
pub use buckets::{DEFAULT_DURATION_BUCKETS, batch_size_buckets};
pub use count_guard::{Count, CountGuard};
pub use error::{LabelProblem, MetricsError};
pub use merge::{MergeConflict, Merged, WorkerId, merge, merge_report, retire};
pub use registry::{
    Counter, CounterChild, Gauge, GaugeChild, Histogram, HistogramChild, MetricFamily, Registry,
    Summary, SummaryChild, global,
};
pub use render::{
    Format, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render, render_openmetrics, render_text,
};
pub use sketch::Sketch;
pub use snapshot::{
    Family, GaugeMode, HistogramValue, Kind, Series, Snapshot, SummaryValue, Value,
};
