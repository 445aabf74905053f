//! The per-process metric registry and the custom-metrics API (`bentoml.metrics` in Rust).
//!
//! A metric is usually a `static`, defined in the [`global`] registry at its
//! first use (`lazy` is a `const fn`); series are picked by label values in
//! definition order (`labels`) or by name in any order (`with`):
//!
//! ```
//! use tiffin_metrics::{Counter, DEFAULT_DURATION_BUCKETS, Histogram};
//!
//! static POLARITY: Counter =
//!     Counter::lazy("polarity_total", "Count analyses by polarity", &["polarity"]);
//! static INFERENCE: Histogram = Histogram::lazy(
//!     "inference_duration",
//!     "Duration of inference",
//!     &["nltk_version", "sentiment_cls"],
//!     &DEFAULT_DURATION_BUCKETS,
//! );
//!
//! # fn main() -> Result<(), tiffin_metrics::MetricsError> {
//! POLARITY.with(&[("polarity", "True")]).inc();
//! POLARITY.labels(&["True"]).inc();
//! // Named labels in any order; `try_with` says which one is wrong.
//! INFERENCE
//!     .try_with(&[("sentiment_cls", "Vader"), ("nltk_version", "3.8")])?
//!     .observe(0.004);
//! assert!(POLARITY.try_with(&[("colour", "red")]).is_err());
//!
//! // Or defined eagerly, with the definition's error right here.
//! let took = Histogram::new("took", "Time taken", &["cls"], &[])?;
//! took.labels(&["Vader"]).observe(0.004);
//! # Ok(()) }
//! ```
//!
//! How it behaves, and why:
//! - **One registry per process** ([`global`]); the metric kinds are one
//!   generic [`MetricFamily`] (positional and named labels, lazy statics) over
//!   their own series types, each in its own module, and this module owns the
//!   definitions and the [`Registry::snapshot`]. Counters, gauges and histograms
//!   live in a `prometheus::Registry` (atomics, no locks on the hot path);
//!   summaries live beside it because the `prometheus` crate has none, and
//!   they must carry a mergeable [`Sketch`](crate::Sketch) anyway.
//! - **Definitions are idempotent.** Defining a name again with the same kind,
//!   label names, buckets and gauge mode returns a handle to the same metric, so
//!   two `lazy` statics in different modules (or a re-run constructor) are fine.
//!   Anything different is a [`MetricsError::Conflict`]; a clash between the
//!   samples two families would expose (`foo_count` of histogram `foo` vs a
//!   gauge `foo_count`) is one too.
//! - **Counters are exposed with `_total` exactly once**, as the Python client
//!   does: `requests` and `requests_total` both become `requests_total`.
//! - **Recording never panics.** Wrong label arity, or an unknown, missing or
//!   repeated label name, logs a warning (once per metric) and yields a
//!   detached child that records nothing; use `try_labels` / `try_with` to get
//!   the error instead. A lazy static whose definition fails logs it once and
//!   records nothing; its `try_` methods return that error. Negative counter
//!   increments are ignored with a warning.
//! - **Unlabelled metrics exist from the start** (value 0; a lazy static's
//!   start is its first use), labelled ones from their first `labels()` /
//!   `with()` call, like the Python client in multiprocess mode.
//! - **Bad names and buckets fail at definition**, never at scrape time, by
//!   the shared rules of [`names`](crate::names) and [`finite_bounds`] (the
//!   configuration applies the same ones, so a configured namespace or bucket
//!   list cannot be refused here later).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use prometheus::core::Collector;

use crate::buckets::{DEFAULT_DURATION_BUCKETS, finite_bounds};
use crate::definition::{Defined, Handle, Meta, Spec};
use crate::error::MetricsError;
use crate::names::{NameError, check_label_names, check_metric_name};
use crate::snapshot::{Family, GaugeMode, HistogramValue, Kind, Series, Snapshot, Value};

pub use crate::counter::{Counter, CounterChild};
pub use crate::family::MetricFamily;
pub use crate::gauge::{Gauge, GaugeChild};
pub use crate::histogram::{Histogram, HistogramChild};
pub use crate::summary::{Summary, SummaryChild};

static GLOBAL: LazyLock<Registry> = LazyLock::new(Registry::new);

/// The process-wide registry that `Counter::new` & co. (and every `lazy` static) register into and that the control socket snapshots.
pub fn global() -> &'static Registry {
    &GLOBAL
}

/// A family for a `static` that defines itself in the [`global`] registry at
/// its first use: what each kind's `const fn lazy` returns. The family module
/// sits below this one, so it is handed the function to call rather than
/// naming the registry.
pub(crate) const fn lazy_in_global<C>(
    name: &'static str,
    help: &'static str,
    labelnames: &'static [&'static str],
    spec: Spec<'static>,
) -> MetricFamily<C> {
    MetricFamily::lazy_from(name, help, labelnames, spec, define_in_global)
}

/// Defines a metric in the [`global`] registry (a lazy family's first use).
fn define_in_global(
    name: &str,
    help: &str,
    labelnames: &[&str],
    spec: Spec<'_>,
) -> Result<Defined, MetricsError> {
    global().define(name, help, labelnames, spec)
}

/// A set of metric definitions plus their current values.
pub struct Registry {
    /// Counters, gauges and histograms.
    prom: prometheus::Registry,
    /// Definitions by exposed name; also guards creation so definition is atomic.
    defs: Mutex<Defs>,
}

#[derive(Default)]
struct Defs {
    /// Exposed family name → definition.
    by_name: HashMap<String, Def>,
    /// Every sample name a family exposes (and its OpenMetrics family name) → owning family.
    samples: HashMap<String, String>,
}

struct Def {
    kind: Kind,
    help: String,
    buckets: Vec<f64>,
    defined: Defined,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let defs = self.defs.lock();
        f.debug_struct("Registry")
            .field("metrics", &defs.by_name.len())
            .finish()
    }
}

impl Registry {
    /// Creates an empty registry (tests and embedders; processes normally use [`global`]).
    pub fn new() -> Self {
        Registry {
            prom: prometheus::Registry::new(),
            defs: Mutex::new(Defs::default()),
        }
    }

    /// Defines (or returns the existing) counter; `name` may or may not end in `_total`.
    pub fn counter(
        &self,
        name: &str,
        documentation: &str,
        labelnames: &[&str],
    ) -> Result<Counter, MetricsError> {
        self.define(name, documentation, labelnames, Spec::Counter)
            .map(MetricFamily::defined)
    }

    /// Defines (or returns the existing) gauge aggregated with [`GaugeMode::LiveSum`].
    pub fn gauge(
        &self,
        name: &str,
        documentation: &str,
        labelnames: &[&str],
    ) -> Result<Gauge, MetricsError> {
        self.gauge_with_mode(name, documentation, labelnames, GaugeMode::LiveSum)
    }

    /// Defines (or returns the existing) gauge with an explicit cross-process aggregation mode.
    pub fn gauge_with_mode(
        &self,
        name: &str,
        documentation: &str,
        labelnames: &[&str],
        mode: GaugeMode,
    ) -> Result<Gauge, MetricsError> {
        self.define(name, documentation, labelnames, Spec::Gauge(mode))
            .map(MetricFamily::defined)
    }

    /// Defines (or returns the existing) histogram; empty `buckets` means [`DEFAULT_DURATION_BUCKETS`], a trailing `+Inf` is dropped.
    pub fn histogram(
        &self,
        name: &str,
        documentation: &str,
        labelnames: &[&str],
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        self.define(name, documentation, labelnames, Spec::Histogram(buckets))
            .map(MetricFamily::defined)
    }

    /// Defines (or returns the existing) summary (count, sum and quantiles 0.5/0.9/0.99).
    pub fn summary(
        &self,
        name: &str,
        documentation: &str,
        labelnames: &[&str],
    ) -> Result<Summary, MetricsError> {
        self.define(name, documentation, labelnames, Spec::Summary)
            .map(MetricFamily::defined)
    }

    /// Captures every family that has at least one series, sorted by name, series sorted by labels.
    pub fn snapshot(&self) -> Snapshot {
        // Gather before locking the definitions so the two locks never nest.
        let gathered = self.prom.gather();
        let defs = self.defs.lock();
        let mut families = Vec::with_capacity(defs.by_name.len());
        for mf in &gathered {
            // Only our own definitions are ever registered, so every family has one.
            let Some(def) = defs.by_name.get(mf.name()) else {
                continue;
            };
            let series = mf
                .get_metric()
                .iter()
                .filter_map(|m| {
                    let value = match def.kind {
                        Kind::Counter => Value::Counter(m.get_counter().get_value()),
                        Kind::Gauge(_) => Value::Gauge(m.get_gauge().get_value()),
                        Kind::Histogram => {
                            let h = m.get_histogram();
                            Value::Histogram(HistogramValue {
                                buckets: h
                                    .get_bucket()
                                    .iter()
                                    .map(|b| (b.upper_bound(), b.cumulative_count()))
                                    .collect(),
                                count: h.get_sample_count(),
                                sum: h.get_sample_sum(),
                            })
                        }
                        Kind::Summary => return None,
                    };
                    let labels = m
                        .get_label()
                        .iter()
                        .map(|p| (p.name().to_owned(), p.value().to_owned()))
                        .collect();
                    Some(Series { labels, value })
                })
                .collect();
            families.push(family(mf.name(), def, series));
        }
        for (name, def) in &defs.by_name {
            if let Handle::Summary(store) = &def.defined.handle {
                let series = store.series(&def.defined.meta.labelnames);
                if !series.is_empty() {
                    families.push(family(name, def, series));
                }
            }
        }
        families.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot { families }
    }

    /// Defines a metric of any kind, or returns the existing one if it is the same.
    pub(crate) fn define(
        &self,
        name: &str,
        help: &str,
        labelnames: &[&str],
        spec: Spec<'_>,
    ) -> Result<Defined, MetricsError> {
        check_metric_name(name).map_err(|e| invalid_name(name, e))?;
        let (kind, exposed, buckets) = match spec {
            Spec::Counter => {
                // Python's client strips `_total` and adds it back on exposition.
                let base = name.strip_suffix("_total").unwrap_or(name);
                (Kind::Counter, format!("{base}_total"), Vec::new())
            }
            Spec::Gauge(mode) => (Kind::Gauge(mode), name.to_owned(), Vec::new()),
            Spec::Histogram(b) => (Kind::Histogram, name.to_owned(), histogram_bounds(name, b)?),
            Spec::Summary => (Kind::Summary, name.to_owned(), Vec::new()),
        };
        check_label_names(kind, labelnames).map_err(|(label, e)| invalid_name(label, e))?;

        let mut defs = self.defs.lock();
        if let Some(def) = defs.by_name.get(&exposed) {
            def.check_same(&exposed, kind, labelnames, &buckets)?;
            return Ok(def.defined.clone());
        }
        let samples = sample_names(&exposed, kind);
        if let Some((sample, owner)) = samples
            .iter()
            .find_map(|s| defs.samples.get(s).map(|owner| (s, owner)))
        {
            return Err(MetricsError::Conflict {
                name: exposed.clone(),
                detail: format!("its sample name `{sample}` is already used by metric `{owner}`"),
            });
        }
        let meta = Meta::new(exposed.clone(), labelnames);
        let handle = self.create(&meta, help, labelnames, kind, &buckets)?;
        let defined = Defined {
            handle,
            meta: Arc::new(meta),
        };
        for s in samples {
            defs.samples.insert(s, exposed.clone());
        }
        defs.by_name.insert(
            exposed,
            Def {
                kind,
                help: help.to_owned(),
                buckets,
                defined: defined.clone(),
            },
        );
        Ok(defined)
    }

    fn create(
        &self,
        meta: &Meta,
        help: &str,
        labelnames: &[&str],
        kind: Kind,
        buckets: &[f64],
    ) -> Result<Handle, MetricsError> {
        let name = meta.name.as_str();
        // prometheus' `Desc` rejects an empty help; snapshots use our own copy of the real one.
        let opts = prometheus::Opts::new(name, if help.is_empty() { name } else { help });
        let err = |e| meta.backend(e);
        let handle = match kind {
            Kind::Counter => Handle::Counter(
                prometheus::CounterVec::new(opts, labelnames)
                    .and_then(|vec| self.register(vec))
                    .map_err(err)?,
            ),
            Kind::Gauge(_) => Handle::Gauge(
                prometheus::GaugeVec::new(opts, labelnames)
                    .and_then(|vec| self.register(vec))
                    .map_err(err)?,
            ),
            Kind::Histogram => {
                // An empty list would make the crate substitute its own defaults;
                // `[+Inf]` is how to ask it for "only the +Inf bucket".
                let bounds = if buckets.is_empty() {
                    vec![f64::INFINITY]
                } else {
                    buckets.to_vec()
                };
                let opts = prometheus::HistogramOpts {
                    common_opts: opts,
                    buckets: bounds,
                };
                Handle::Histogram(
                    prometheus::HistogramVec::new(opts, labelnames)
                        .and_then(|vec| self.register(vec))
                        .map_err(err)?,
                )
            }
            Kind::Summary => Handle::Summary(Arc::default()),
        };
        if labelnames.is_empty() {
            // An unlabelled metric is one series; show it at 0 before the first event.
            let none: [&str; 0] = [];
            match &handle {
                Handle::Counter(v) => v.get_metric_with_label_values(&none).map(drop),
                Handle::Gauge(v) => v.get_metric_with_label_values(&none).map(drop),
                Handle::Histogram(v) => v.get_metric_with_label_values(&none).map(drop),
                Handle::Summary(s) => {
                    s.child(&none);
                    Ok(())
                }
            }
            .map_err(err)?;
        }
        Ok(handle)
    }

    /// Registers a `prometheus` vector with the backend and hands it back.
    fn register<C>(&self, vec: C) -> Result<C, prometheus::Error>
    where
        C: Collector + Clone + 'static,
    {
        self.prom.register(Box::new(vec.clone()))?;
        Ok(vec)
    }
}

impl Def {
    fn check_same(
        &self,
        name: &str,
        kind: Kind,
        labelnames: &[&str],
        buckets: &[f64],
    ) -> Result<(), MetricsError> {
        let conflict = |detail: String| MetricsError::Conflict {
            name: name.to_owned(),
            detail,
        };
        if self.kind != kind {
            return Err(conflict(format!(
                "already defined as a {}, not a {kind}",
                self.kind
            )));
        }
        let have = &self.defined.meta.labelnames;
        if !have.iter().eq(labelnames.iter().copied()) {
            return Err(conflict(format!(
                "already defined with labels {have:?}, not {labelnames:?}"
            )));
        }
        if self.buckets != buckets {
            return Err(conflict(format!(
                "already defined with buckets {:?}, not {buckets:?}",
                self.buckets
            )));
        }
        Ok(())
    }
}

fn family(name: &str, def: &Def, mut series: Vec<Series>) -> Family {
    for s in &mut series {
        s.labels.sort();
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Family {
        name: name.to_owned(),
        help: def.help.clone(),
        kind: def.kind,
        series,
    }
}

/// Names a family puts into the exposition, including its OpenMetrics family name.
fn sample_names(exposed: &str, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Counter => {
            let base = exposed.strip_suffix("_total").unwrap_or(exposed);
            vec![exposed.to_owned(), base.to_owned()]
        }
        Kind::Gauge(_) => vec![exposed.to_owned()],
        Kind::Histogram => ["", "_bucket", "_count", "_sum"]
            .iter()
            .map(|suffix| format!("{exposed}{suffix}"))
            .collect(),
        Kind::Summary => ["", "_count", "_sum"]
            .iter()
            .map(|suffix| format!("{exposed}{suffix}"))
            .collect(),
    }
}

fn invalid_name(name: &str, rule: NameError) -> MetricsError {
    MetricsError::InvalidName {
        name: name.to_owned(),
        reason: rule.to_string(),
    }
}

/// Substitutes the defaults for an empty list, else the list's [`finite_bounds`].
fn histogram_bounds(name: &str, buckets: &[f64]) -> Result<Vec<f64>, MetricsError> {
    if buckets.is_empty() {
        return Ok(DEFAULT_DURATION_BUCKETS.to_vec());
    }
    finite_bounds(buckets)
        .map(<[f64]>::to_vec)
        .map_err(|e| MetricsError::InvalidBuckets {
            name: name.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests;
