//! The per-process metric registry and the custom-metrics API (`bentoml.metrics` in Rust).
//!
//! ```
//! use tiffin_metrics::{Counter, Histogram};
//! # fn main() -> Result<(), tiffin_metrics::MetricsError> {
//! let polarity = Counter::new("polarity_total", "Count analyses by polarity", &["polarity"])?;
//! polarity.labels(&["True"]).inc();
//! let took = Histogram::new("inference_duration", "Duration of inference", &["cls"], &[])?;
//! took.labels(&["Vader"]).observe(0.004);
//! # Ok(()) }
//! ```
//!
//! How it behaves, and why:
//! - **One registry per process** ([`global`]). Counters, gauges and histograms
//!   live in a `prometheus::Registry` (atomics, no locks on the hot path);
//!   summaries live beside it because the `prometheus` crate has none, and
//!   they must carry a mergeable [`Sketch`] anyway.
//! - **Definitions are idempotent.** Defining a name again with the same kind,
//!   label names, buckets and gauge mode returns a handle to the same metric, so
//!   `LazyLock` statics in different modules (or a re-run constructor) are fine.
//!   Anything different is a [`MetricsError::Conflict`]; a clash between the
//!   samples two families would expose (`foo_count` of histogram `foo` vs a
//!   gauge `foo_count`) is one too.
//! - **Counters are exposed with `_total` exactly once**, as the Python client
//!   does: `requests` and `requests_total` both become `requests_total`.
//! - **Recording never panics.** Wrong label arity logs a warning (once per
//!   metric) and yields a detached child that records nothing; use
//!   `try_labels` to get the error instead. Negative counter increments are
//!   ignored with a warning.
//! - **Unlabelled metrics exist from the start** (value 0), labelled ones from
//!   their first `labels()` call, like the Python client in multiprocess mode.
//! - **Bad names and buckets fail at definition**, never at scrape time, by
//!   the shared rules of [`names`](crate::names) and [`finite_bounds`] (the
//!   configuration applies the same ones, so a configured namespace or bucket
//!   list cannot be refused here later).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};

use crate::buckets::{DEFAULT_DURATION_BUCKETS, finite_bounds};
use crate::error::MetricsError;
use crate::names::{NameError, check_label_names, check_metric_name};
use crate::sketch::Sketch;
use crate::snapshot::{
    Family, GaugeMode, HistogramValue, Kind, Series, Snapshot, SummaryValue, Value,
};

static GLOBAL: LazyLock<Registry> = LazyLock::new(Registry::new);

/// The process-wide registry that `Counter::new` & co. register into and that the control socket snapshots.
pub fn global() -> &'static Registry {
    &GLOBAL
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
    labelnames: Vec<String>,
    buckets: Vec<f64>,
    handle: Handle,
    meta: Arc<Meta>,
}

#[derive(Clone)]
enum Handle {
    Counter(prometheus::CounterVec),
    Gauge(prometheus::GaugeVec),
    Histogram(prometheus::HistogramVec),
    Summary(Arc<SummaryStore>),
}

/// Shared by all handles of one metric: what `labels()` needs to validate and warn.
struct Meta {
    name: String,
    arity: usize,
    warned: AtomicBool,
}

impl Meta {
    fn check(&self, got: usize) -> Result<(), MetricsError> {
        if got == self.arity {
            Ok(())
        } else {
            Err(MetricsError::LabelCount {
                name: self.name.clone(),
                expected: self.arity,
                got,
            })
        }
    }

    /// Logs a rejected `labels()` call once per metric, so a bad call on a hot path cannot flood the log.
    fn warn_once(&self, err: &MetricsError) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(metric = %self.name, error = %err, "metric labels rejected; recording nothing (logged once per metric)");
        }
    }

    fn backend(&self, err: prometheus::Error) -> MetricsError {
        MetricsError::Backend {
            name: self.name.clone(),
            message: err.to_string(),
        }
    }

    /// The series of a `prometheus` vector for `values`, after the arity check.
    fn child<B: MetricVecBuilder>(
        &self,
        vec: &MetricVec<B>,
        values: &[&str],
    ) -> Result<B::M, MetricsError> {
        self.check(values.len())?;
        vec.get_metric_with_label_values(values)
            .map_err(|e| self.backend(e))
    }

    /// What `labels()` hands out: the child, or after a warning a detached one that records nothing.
    fn or_detached<C: Default>(&self, child: Result<C, MetricsError>) -> C {
        child.unwrap_or_else(|e| {
            self.warn_once(&e);
            C::default()
        })
    }
}

enum Spec<'a> {
    Counter,
    Gauge(GaugeMode),
    Histogram(&'a [f64]),
    Summary,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let defs = self.defs.lock().unwrap_or_else(PoisonError::into_inner);
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
        match self.define(name, documentation, labelnames, Spec::Counter)? {
            (Handle::Counter(vec), meta) => Ok(Counter { vec, meta }),
            (_, meta) => Err(kind_mismatch(&meta)),
        }
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
        match self.define(name, documentation, labelnames, Spec::Gauge(mode))? {
            (Handle::Gauge(vec), meta) => Ok(Gauge { vec, meta }),
            (_, meta) => Err(kind_mismatch(&meta)),
        }
    }

    /// Defines (or returns the existing) histogram; empty `buckets` means [`DEFAULT_DURATION_BUCKETS`], a trailing `+Inf` is dropped.
    pub fn histogram(
        &self,
        name: &str,
        documentation: &str,
        labelnames: &[&str],
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        match self.define(name, documentation, labelnames, Spec::Histogram(buckets))? {
            (Handle::Histogram(vec), meta) => Ok(Histogram { vec, meta }),
            (_, meta) => Err(kind_mismatch(&meta)),
        }
    }

    /// Defines (or returns the existing) summary (count, sum and quantiles 0.5/0.9/0.99).
    pub fn summary(
        &self,
        name: &str,
        documentation: &str,
        labelnames: &[&str],
    ) -> Result<Summary, MetricsError> {
        match self.define(name, documentation, labelnames, Spec::Summary)? {
            (Handle::Summary(store), meta) => Ok(Summary { store, meta }),
            (_, meta) => Err(kind_mismatch(&meta)),
        }
    }

    /// Captures every family that has at least one series, sorted by name, series sorted by labels.
    pub fn snapshot(&self) -> Snapshot {
        // Gather before locking the definitions so the two locks never nest.
        let gathered = self.prom.gather();
        let defs = self.defs.lock().unwrap_or_else(PoisonError::into_inner);
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
            if let Handle::Summary(store) = &def.handle {
                let series = store.series(&def.labelnames);
                if !series.is_empty() {
                    families.push(family(name, def, series));
                }
            }
        }
        families.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot { families }
    }

    fn define(
        &self,
        name: &str,
        help: &str,
        labelnames: &[&str],
        spec: Spec<'_>,
    ) -> Result<(Handle, Arc<Meta>), MetricsError> {
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

        let mut defs = self.defs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(def) = defs.by_name.get(&exposed) {
            def.check_same(&exposed, kind, labelnames, &buckets)?;
            return Ok((def.handle.clone(), def.meta.clone()));
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
        let meta = Arc::new(Meta {
            name: exposed.clone(),
            arity: labelnames.len(),
            warned: AtomicBool::new(false),
        });
        let handle = self.create(&meta, help, labelnames, kind, &buckets)?;
        for s in samples {
            defs.samples.insert(s, exposed.clone());
        }
        defs.by_name.insert(
            exposed,
            Def {
                kind,
                help: help.to_owned(),
                labelnames: labelnames.iter().map(|l| (*l).to_owned()).collect(),
                buckets,
                handle: handle.clone(),
                meta: meta.clone(),
            },
        );
        Ok((handle, meta))
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
        if !self.labelnames.iter().eq(labelnames.iter().copied()) {
            return Err(conflict(format!(
                "already defined with labels {:?}, not {labelnames:?}",
                self.labelnames
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

/// Unreachable in practice: a definition's handle always matches its kind.
fn kind_mismatch(meta: &Meta) -> MetricsError {
    MetricsError::Conflict {
        name: meta.name.clone(),
        detail: "internal handle does not match its kind".to_owned(),
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

/// A counter family; `labels()` selects one series.
#[derive(Clone)]
pub struct Counter {
    vec: prometheus::CounterVec,
    meta: Arc<Meta>,
}

/// One counter series (or a detached no-op one if its labels were rejected).
#[derive(Clone, Debug, Default)]
pub struct CounterChild(Option<prometheus::Counter>);

impl Counter {
    /// Defines (or returns the existing) counter in the [`global`] registry.
    pub fn new(name: &str, documentation: &str, labelnames: &[&str]) -> Result<Self, MetricsError> {
        global().counter(name, documentation, labelnames)
    }

    /// Selects the series for these label values (in definition order); a wrong count yields a no-op child and a warning.
    pub fn labels(&self, values: &[&str]) -> CounterChild {
        self.meta.or_detached(self.try_labels(values))
    }

    /// Selects the series for these label values, or says why it cannot.
    pub fn try_labels(&self, values: &[&str]) -> Result<CounterChild, MetricsError> {
        let child = self.meta.child(&self.vec, values)?;
        Ok(CounterChild(Some(child)))
    }
}

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

/// A gauge family; `labels()` selects one series.
#[derive(Clone)]
pub struct Gauge {
    vec: prometheus::GaugeVec,
    meta: Arc<Meta>,
}

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

    /// Selects the series for these label values; a wrong count yields a no-op child and a warning.
    pub fn labels(&self, values: &[&str]) -> GaugeChild {
        self.meta.or_detached(self.try_labels(values))
    }

    /// Selects the series for these label values, or says why it cannot.
    pub fn try_labels(&self, values: &[&str]) -> Result<GaugeChild, MetricsError> {
        let child = self.meta.child(&self.vec, values)?;
        Ok(GaugeChild(Some(child)))
    }
}

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

/// A histogram family; `labels()` selects one series.
#[derive(Clone)]
pub struct Histogram {
    vec: prometheus::HistogramVec,
    meta: Arc<Meta>,
}

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

    /// Selects the series for these label values; a wrong count yields a no-op child and a warning.
    pub fn labels(&self, values: &[&str]) -> HistogramChild {
        self.meta.or_detached(self.try_labels(values))
    }

    /// Selects the series for these label values, or says why it cannot.
    pub fn try_labels(&self, values: &[&str]) -> Result<HistogramChild, MetricsError> {
        let child = self.meta.child(&self.vec, values)?;
        Ok(HistogramChild(Some(child)))
    }
}

impl HistogramChild {
    /// Records one observation.
    pub fn observe(&self, v: f64) {
        if let Some(h) = &self.0 {
            h.observe(v);
        }
    }
}

/// A summary family (count, sum, mergeable quantiles); `labels()` selects one series.
#[derive(Clone)]
pub struct Summary {
    store: Arc<SummaryStore>,
    meta: Arc<Meta>,
}

/// One summary series (or a detached no-op one if its labels were rejected).
#[derive(Clone, Default)]
pub struct SummaryChild(Option<Arc<Mutex<SummaryState>>>);

#[derive(Default)]
struct SummaryState {
    count: u64,
    sum: f64,
    sketch: Sketch,
}

/// Summary series keyed by a hash of their label values (collisions resolved by comparing the values).
type SummaryMap = HashMap<u64, Vec<(Vec<String>, Arc<Mutex<SummaryState>>)>>;

#[derive(Default)]
struct SummaryStore {
    children: RwLock<SummaryMap>,
}

impl SummaryStore {
    fn child(&self, values: &[&str]) -> Arc<Mutex<SummaryState>> {
        let mut hasher = DefaultHasher::new();
        values.hash(&mut hasher);
        let key = hasher.finish();
        let find = |map: &SummaryMap| {
            map.get(&key)?
                .iter()
                .find(|(have, _)| have.iter().eq(values.iter().copied()))
                .map(|(_, state)| state.clone())
        };
        if let Some(state) = find(&self.children.read().unwrap_or_else(PoisonError::into_inner)) {
            return state;
        }
        let mut map = self
            .children
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = find(&map) {
            return state;
        }
        let state = Arc::<Mutex<SummaryState>>::default();
        map.entry(key).or_default().push((
            values.iter().map(|v| (*v).to_owned()).collect(),
            state.clone(),
        ));
        state
    }

    fn series(&self, labelnames: &[String]) -> Vec<Series> {
        let map = self.children.read().unwrap_or_else(PoisonError::into_inner);
        map.values()
            .flatten()
            .map(|(values, state)| {
                let state = state.lock().unwrap_or_else(PoisonError::into_inner);
                Series {
                    labels: labelnames
                        .iter()
                        .cloned()
                        .zip(values.iter().cloned())
                        .collect(),
                    value: Value::Summary(SummaryValue {
                        count: state.count,
                        sum: state.sum,
                        sketch: state.sketch.clone(),
                    }),
                }
            })
            .collect()
    }
}

impl Summary {
    /// Defines (or returns the existing) summary in the [`global`] registry.
    pub fn new(name: &str, documentation: &str, labelnames: &[&str]) -> Result<Self, MetricsError> {
        global().summary(name, documentation, labelnames)
    }

    /// Selects the series for these label values; a wrong count yields a no-op child and a warning.
    pub fn labels(&self, values: &[&str]) -> SummaryChild {
        self.meta.or_detached(self.try_labels(values))
    }

    /// Selects the series for these label values, or says why it cannot.
    pub fn try_labels(&self, values: &[&str]) -> Result<SummaryChild, MetricsError> {
        self.meta.check(values.len())?;
        Ok(SummaryChild(Some(self.store.child(values))))
    }
}

impl SummaryChild {
    /// Records one observation into count, sum and the quantile sketch.
    pub fn observe(&self, v: f64) {
        if let Some(state) = &self.0 {
            let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
            s.count = s.count.saturating_add(1);
            s.sum += v;
            s.sketch.add(v);
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

macro_rules! debug_by_name {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t)).field("name", &self.meta.name).finish()
            }
        }
    )*};
}
debug_by_name!(Counter, Gauge, Histogram, Summary);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::value;

    #[test]
    fn every_kind_lands_in_the_snapshot() {
        let reg = Registry::new();
        let polarity = reg
            .counter("polarity_total", "Count by polarity", &["polarity"])
            .unwrap();
        for _ in 0..20 {
            polarity.labels(&["True"]).inc();
        }
        polarity.labels(&["False"]).inc_by(2.5);
        let requests = reg.counter("requests", "Requests", &[]).unwrap();
        requests.labels(&[]).inc();
        let g = reg.gauge("temp", "Temperature", &["room"]).unwrap();
        g.labels(&["a"]).set(3.0);
        g.labels(&["a"]).inc();
        g.labels(&["a"]).sub(0.5);
        g.labels(&["b"]).dec();
        let h = reg
            .histogram("lat", "Latency", &["ep"], &[0.1, 1.0, f64::INFINITY])
            .unwrap();
        for v in [0.05, 0.5, 0.5, 5.0] {
            h.labels(&["/x"]).observe(v);
        }
        let s = reg.summary("size", "Size", &["k"]).unwrap();
        for v in 1..=100 {
            s.labels(&["v"]).observe(f64::from(v));
        }

        let snap = reg.snapshot();
        let names: Vec<_> = snap.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["lat", "polarity_total", "requests_total", "size", "temp"]
        );
        assert_eq!(
            value(&snap, "polarity_total", &[("polarity", "True")]),
            &Value::Counter(20.0)
        );
        assert_eq!(
            value(&snap, "polarity_total", &[("polarity", "False")]),
            &Value::Counter(2.5)
        );
        assert_eq!(value(&snap, "requests_total", &[]), &Value::Counter(1.0));
        assert_eq!(value(&snap, "temp", &[("room", "a")]), &Value::Gauge(3.5));
        assert_eq!(value(&snap, "temp", &[("room", "b")]), &Value::Gauge(-1.0));
        assert_eq!(
            value(&snap, "lat", &[("ep", "/x")]),
            &Value::Histogram(HistogramValue {
                buckets: vec![(0.1, 1), (1.0, 3)],
                count: 4,
                sum: 0.05 + 0.5 + 0.5 + 5.0,
            })
        );
        let Value::Summary(sv) = value(&snap, "size", &[("k", "v")]) else {
            panic!("not a summary")
        };
        assert_eq!((sv.count, sv.sum), (100, 5050.0));
        assert!((sv.sketch.quantile(0.5) - 50.0).abs() <= 0.5);
        assert_eq!(
            snap.family("temp").unwrap().kind,
            Kind::Gauge(GaugeMode::LiveSum)
        );
        assert_eq!(snap.family("lat").unwrap().help, "Latency");
    }

    #[test]
    fn unlabelled_metrics_exist_at_zero_labelled_ones_do_not() {
        let reg = Registry::new();
        reg.counter("a", "A", &[]).unwrap();
        reg.histogram("b", "B", &[], &[]).unwrap();
        reg.summary("c", "C", &[]).unwrap();
        reg.gauge("d", "D", &["x"]).unwrap();
        let snap = reg.snapshot();
        let names: Vec<_> = snap.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a_total", "b", "c"]);
        let Value::Histogram(h) = value(&snap, "b", &[]) else {
            panic!()
        };
        assert_eq!(h.buckets.len(), DEFAULT_DURATION_BUCKETS.len());
    }

    #[test]
    fn redefinition_is_idempotent() {
        let reg = Registry::new();
        let a = reg.counter("hits", "Hits", &["k"]).unwrap();
        let b = reg.counter("hits_total", "Hits", &["k"]).unwrap();
        a.labels(&["x"]).inc();
        b.labels(&["x"]).inc();
        assert_eq!(a.labels(&["x"]).get(), 2.0);
        let h1 = reg.histogram("h", "H", &[], &[1.0, 2.0]).unwrap();
        let h2 = reg
            .histogram("h", "H", &[], &[1.0, 2.0, f64::INFINITY])
            .unwrap();
        h1.labels(&[]).observe(1.0);
        h2.labels(&[]).observe(1.0);
        let Value::Histogram(v) = value(&reg.snapshot(), "h", &[]).clone() else {
            panic!()
        };
        assert_eq!(v.count, 2);
        let g1 = reg.gauge_with_mode("g", "G", &[], GaugeMode::Max).unwrap();
        let g2 = reg.gauge_with_mode("g", "G", &[], GaugeMode::Max).unwrap();
        g1.labels(&[]).set(4.0);
        assert_eq!(g2.labels(&[]).get(), 4.0);
        let s1 = reg.summary("s", "S", &["a"]).unwrap();
        let s2 = reg.summary("s", "S", &["a"]).unwrap();
        s1.labels(&["1"]).observe(1.0);
        s2.labels(&["1"]).observe(2.0);
        let Value::Summary(v) = value(&reg.snapshot(), "s", &[("a", "1")]).clone() else {
            panic!()
        };
        assert_eq!(v.count, 2);
    }

    #[test]
    fn conflicts_are_errors_naming_the_metric() {
        let reg = Registry::new();
        reg.counter("jobs", "Jobs", &["k"]).unwrap();
        reg.histogram("lat", "Lat", &[], &[1.0]).unwrap();
        reg.gauge_with_mode("g", "G", &[], GaugeMode::Max).unwrap();
        let cases = [
            reg.gauge("jobs_total", "x", &["k"]).map(drop),
            reg.counter("jobs", "x", &["other"]).map(drop),
            reg.counter("jobs", "x", &["k", "j"]).map(drop),
            reg.histogram("lat", "x", &[], &[2.0]).map(drop),
            reg.histogram("lat", "x", &[], &[]).map(drop),
            reg.summary("lat", "x", &[]).map(drop),
            reg.gauge("g", "x", &[]).map(drop),
            // Sample-name clashes between different families.
            reg.gauge("lat_count", "x", &[]).map(drop),
            reg.gauge("jobs", "x", &[]).map(drop),
            reg.histogram("g", "x", &[], &[]).map(drop),
        ];
        for (i, r) in cases.into_iter().enumerate() {
            match r {
                Err(MetricsError::Conflict { name, detail }) => {
                    assert!(!name.is_empty() && !detail.is_empty(), "case {i}");
                }
                other => panic!("case {i}: expected conflict, got {other:?}"),
            }
        }
        let err = reg.gauge("jobs_total", "x", &[]).unwrap_err();
        assert!(err.to_string().contains("jobs_total"), "{err}");
    }

    #[test]
    fn invalid_names_and_buckets_are_rejected() {
        let reg = Registry::new();
        for bad in ["", "1abc", "a-b", "a b", "é"] {
            assert!(
                matches!(
                    reg.counter(bad, "x", &[]),
                    Err(MetricsError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        for labels in [&["a-b"][..], &["__x"], &["1a"], &["a", "a"], &[""]] {
            assert!(
                matches!(
                    reg.gauge("ok", "x", labels),
                    Err(MetricsError::InvalidName { .. })
                ),
                "{labels:?}"
            );
        }
        assert!(matches!(
            reg.histogram("h", "x", &["le"], &[]),
            Err(MetricsError::InvalidName { .. })
        ));
        assert!(matches!(
            reg.summary("s", "x", &["quantile"]),
            Err(MetricsError::InvalidName { .. })
        ));
        assert!(matches!(
            reg.gauge_with_mode("w", "x", &["worker"], GaugeMode::All),
            Err(MetricsError::InvalidName { .. })
        ));
        for buckets in [
            &[2.0, 1.0][..],
            &[1.0, 1.0],
            &[f64::NAN],
            &[f64::INFINITY, 1.0],
        ] {
            assert!(
                matches!(
                    reg.histogram("h", "x", &[], buckets),
                    Err(MetricsError::InvalidBuckets { .. })
                ),
                "{buckets:?}"
            );
        }
        // Only +Inf: a histogram with just the implicit bucket.
        reg.histogram("only_inf", "x", &[], &[f64::INFINITY])
            .unwrap()
            .labels(&[])
            .observe(3.0);
        let Value::Histogram(h) = value(&reg.snapshot(), "only_inf", &[]).clone() else {
            panic!()
        };
        assert_eq!((h.buckets.len(), h.count), (0, 1));
        // Nothing half-registered after failures.
        assert_eq!(reg.snapshot().families.len(), 1);
    }

    #[test]
    fn wrong_label_arity_records_nothing_and_does_not_panic() {
        let reg = Registry::new();
        let c = reg.counter("c", "C", &["a", "b"]).unwrap();
        c.labels(&["x"]).inc();
        c.labels(&["x", "y", "z"]).inc_by(2.0);
        assert!(matches!(
            c.try_labels(&[]),
            Err(MetricsError::LabelCount {
                expected: 2,
                got: 0,
                ..
            })
        ));
        let g = reg.gauge("g", "G", &["a"]).unwrap();
        g.labels(&[]).set(1.0);
        let h = reg.histogram("h", "H", &["a"], &[]).unwrap();
        h.labels(&["1", "2"]).observe(1.0);
        let s = reg.summary("s", "S", &["a"]).unwrap();
        s.labels(&[]).observe(1.0);
        assert!(reg.snapshot().families.is_empty());
        // Negative and NaN increments are ignored.
        let ok = reg.counter("ok", "Ok", &[]).unwrap();
        ok.labels(&[]).inc_by(-1.0);
        ok.labels(&[]).inc_by(f64::NAN);
        assert_eq!(ok.labels(&[]).get(), 0.0);
    }

    #[test]
    fn handles_are_send_sync_and_work_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Counter>();
        assert_send_sync::<Gauge>();
        assert_send_sync::<Histogram>();
        assert_send_sync::<Summary>();
        assert_send_sync::<CounterChild>();
        assert_send_sync::<SummaryChild>();
        let reg = Registry::new();
        let c = reg.counter("c", "C", &["t"]).unwrap();
        let s = reg.summary("s", "S", &[]).unwrap();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..1000 {
                        c.labels(&["x"]).inc();
                        s.labels(&[]).observe(f64::from(i));
                    }
                });
            }
        });
        assert_eq!(c.labels(&["x"]).get(), 4000.0);
        let Value::Summary(v) = value(&reg.snapshot(), "s", &[]).clone() else {
            panic!()
        };
        assert_eq!(v.count, 4000);
        assert_eq!(v.sketch.count(), 4000);
    }

    #[test]
    fn global_constructors_use_the_global_registry() {
        let c = Counter::new("tiffin_test_global_counter", "Test", &[]).unwrap();
        c.labels(&[]).inc();
        let again = Counter::new("tiffin_test_global_counter_total", "Test", &[]).unwrap();
        assert_eq!(again.labels(&[]).get(), 1.0);
        assert!(
            global()
                .snapshot()
                .family("tiffin_test_global_counter_total")
                .is_some()
        );
        assert!(Gauge::with_mode("tiffin_test_global_gauge", "T", &[], GaugeMode::Min).is_ok());
        assert!(Histogram::new("tiffin_test_global_hist", "T", &[], &[]).is_ok());
        assert!(Summary::new("tiffin_test_global_summary", "T", &[]).is_ok());
        assert!(Gauge::new("tiffin_test_global_gauge", "T", &[]).is_err());
    }

    #[test]
    fn bincode_round_trip_with_every_kind() {
        let reg = Registry::new();
        reg.counter("requests", "Requests.", &["code"])
            .unwrap()
            .labels(&["200"])
            .inc_by(3.0);
        for mode in [
            GaugeMode::LiveSum,
            GaugeMode::All,
            GaugeMode::Max,
            GaugeMode::Min,
        ] {
            let name = format!("g_{mode}");
            reg.gauge_with_mode(&name, "A gauge.", &[], mode)
                .unwrap()
                .labels(&[])
                .set(-1.5);
        }
        reg.histogram("latency", "Latency.", &["ep"], &[0.1, 1.0])
            .unwrap()
            .labels(&["/a"])
            .observe(0.5);
        let s = reg.summary("size", "Size.", &[]).unwrap();
        for v in [0.0, -2.0, 3.0, 1e9] {
            s.labels(&[]).observe(v);
        }
        let snap = reg.snapshot();
        assert_eq!(snap.families.len(), 7);

        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&snap, config).unwrap();
        let (back, used): (Snapshot, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, snap);

        // JSON too, for debugging endpoints.
        let json = serde_json::to_string(&snap).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
    }
}
