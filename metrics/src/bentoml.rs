//! BentoML's default metric families, with the exact names, help texts and label sets.
//!
//! Dashboards and alerts written for BentoML must work unchanged, so every
//! name and label here is copied from BentoML 1.x (see the default metrics in
//! <https://docs.bentoml.com/en/latest/guides/observability/metrics.html>):
//!
//! | family | type | labels |
//! |---|---|---|
//! | `<ns>_request_in_progress` | gauge (live sum) | endpoint, service_name, service_version [, runner_name] |
//! | `<ns>_request_total` | counter | endpoint, service_name, service_version, http_response_code [, runner_name] |
//! | `<ns>_request_duration_seconds` | histogram | endpoint, service_name, service_version, http_response_code [, runner_name] |
//! | `bentoml_runner_adaptive_batch_size` | histogram | runner_name, worker_index, method_name, service_version, service_name |
//!
//! `<ns>` is `bentoml_api_server` / `bentoml_runner` by default and configurable;
//! the batch-size family ignores it because BentoML hard-codes that one.
//!
//! The hot path (one `start` + one `finish` per request) resolves label
//! children once per endpoint/status and caches them, so a request costs one
//! read-locked map lookup and a few atomic adds instead of hashing every label
//! value twice.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::buckets::batch_size_buckets;
use crate::count_guard::CountGuard;
use crate::error::MetricsError;
use crate::registry::{
    Counter, CounterChild, Gauge, GaugeChild, Histogram, HistogramChild, Registry,
};

/// Default namespace of the API server's families.
pub const API_SERVER_NAMESPACE: &str = "bentoml_api_server";

/// Default namespace of the runner workers' families.
pub const RUNNER_NAMESPACE: &str = "bentoml_runner";

/// Name of the adaptive batch size histogram (not affected by the configured namespace).
pub const ADAPTIVE_BATCH_SIZE: &str = "bentoml_runner_adaptive_batch_size";

/// The `service_version` label value when the service has no version, as BentoML writes it.
pub const NOT_AVAILABLE: &str = "not available";

/// Joins namespace and name with `_`, leaving out an empty namespace.
fn metric_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}_{name}")
    }
}

/// The three request families plus the cached children per endpoint.
struct RequestFamilies {
    in_progress: Gauge,
    total: Counter,
    duration: Histogram,
    service_name: String,
    service_version: String,
    /// `runner_name` for runners; goes after the labels the API server also has.
    /// Runners also prefix a bare method name with `/` to form the endpoint.
    runner_name: Option<String>,
    endpoints: RwLock<HashMap<String, Endpoint>>,
}

struct Endpoint {
    in_progress: GaugeChild,
    /// Per status code: few distinct codes per endpoint, so a scan beats hashing.
    finished: Vec<(u16, CounterChild, HistogramChild)>,
}

/// Help texts of one role's request families, word for word from BentoML.
struct Help {
    in_progress: &'static str,
    total: &'static str,
    duration: &'static str,
}

/// The API server's help texts (HTTP requests).
const API_SERVER_HELP: Help = Help {
    in_progress: "Total number of HTTP requests in progress now",
    total: "Total number of HTTP requests",
    duration: "API HTTP request duration in seconds",
};

/// A runner's help texts (runner RPCs).
const RUNNER_HELP: Help = Help {
    in_progress: "Total number of runner RPC in progress now",
    total: "Total number of runner RPC",
    duration: "runner RPC duration in seconds",
};

impl RequestFamilies {
    /// Defines the families of a runner (`runner_name` set) or of the API server.
    fn new(
        reg: &Registry,
        namespace: &str,
        duration_buckets: &[f64],
        service_name: &str,
        service_version: &str,
        runner_name: Option<&str>,
    ) -> Result<Self, MetricsError> {
        let help = if runner_name.is_some() {
            &RUNNER_HELP
        } else {
            &API_SERVER_HELP
        };
        let mut gauge_labels = vec!["endpoint", "service_name", "service_version"];
        let mut done_labels = vec![
            "endpoint",
            "service_name",
            "service_version",
            "http_response_code",
        ];
        if runner_name.is_some() {
            gauge_labels.push("runner_name");
            done_labels.push("runner_name");
        }
        let in_progress = reg.gauge(
            &metric_name(namespace, "request_in_progress"),
            help.in_progress,
            &gauge_labels,
        )?;
        let total = reg.counter(
            &metric_name(namespace, "request_total"),
            help.total,
            &done_labels,
        )?;
        let duration = reg.histogram(
            &metric_name(namespace, "request_duration_seconds"),
            help.duration,
            &done_labels,
            duration_buckets,
        )?;
        Ok(RequestFamilies {
            in_progress,
            total,
            duration,
            service_name: service_name.to_owned(),
            service_version: version_label(service_version),
            runner_name: runner_name.map(str::to_owned),
            endpoints: RwLock::default(),
        })
    }

    fn start(&self, endpoint: &str) -> InProgressGuard {
        let cached = self
            .endpoints
            .read()
            .get(endpoint)
            .map(|e| e.in_progress.clone());
        let gauge = cached.unwrap_or_else(|| {
            let mut map = self.endpoints.write();
            self.entry(&mut map, endpoint).in_progress.clone()
        });
        CountGuard::enter(gauge)
    }

    fn finish(&self, endpoint: &str, status_code: u16, seconds: f64) {
        // A clock step can make a measured duration negative; a duration is never below 0.
        let seconds = seconds.max(0.0);
        {
            let map = self.endpoints.read();
            if let Some((_, total, duration)) = map
                .get(endpoint)
                .and_then(|e| e.finished.iter().find(|(code, ..)| *code == status_code))
            {
                total.inc();
                duration.observe(seconds);
                return;
            }
        }
        let mut map = self.endpoints.write();
        let code = status_code.to_string();
        let label = self.endpoint_label(endpoint);
        let mut values = vec![
            label.as_ref(),
            &self.service_name,
            &self.service_version,
            code.as_str(),
        ];
        values.extend(self.runner_name.as_deref());
        let entry = self.entry(&mut map, endpoint);
        let pos = match entry.finished.iter().position(|(c, ..)| *c == status_code) {
            Some(pos) => pos,
            None => {
                entry.finished.push((
                    status_code,
                    self.total.labels(&values),
                    self.duration.labels(&values),
                ));
                entry.finished.len() - 1
            }
        };
        let (_, total, duration) = &entry.finished[pos];
        total.inc();
        duration.observe(seconds);
    }

    fn entry<'m>(
        &self,
        map: &'m mut HashMap<String, Endpoint>,
        endpoint: &str,
    ) -> &'m mut Endpoint {
        map.entry(endpoint.to_owned()).or_insert_with(|| {
            let label = self.endpoint_label(endpoint);
            let mut values = vec![label.as_ref(), &self.service_name, &self.service_version];
            values.extend(self.runner_name.as_deref());
            Endpoint {
                in_progress: self.in_progress.labels(&values),
                finished: Vec::new(),
            }
        })
    }
}

impl RequestFamilies {
    /// The `endpoint` label value: runners accept `is_positive` for `/is_positive`.
    fn endpoint_label<'a>(&self, endpoint: &'a str) -> Cow<'a, str> {
        if self.runner_name.is_some() && !endpoint.starts_with('/') {
            Cow::Owned(format!("/{endpoint}"))
        } else {
            Cow::Borrowed(endpoint)
        }
    }
}

/// BentoML writes `not available` for a missing version.
fn version_label(version: &str) -> String {
    if version.is_empty() {
        NOT_AVAILABLE.to_owned()
    } else {
        version.to_owned()
    }
}

/// Counts a request as in progress until dropped (so early returns and panics are covered).
pub type InProgressGuard = CountGuard<GaugeChild>;

/// The API server's default families (`bentoml_api_server_*`); clones share the families and caches.
#[derive(Clone)]
pub struct ApiServerMetrics {
    families: Arc<RequestFamilies>,
}

impl ApiServerMetrics {
    /// Defines the families in `reg` under `namespace`; empty `duration_buckets` means the defaults, an empty version means `not available`.
    pub fn new(
        reg: &Registry,
        namespace: &str,
        duration_buckets: &[f64],
        service_name: &str,
        service_version: &str,
    ) -> Result<Self, MetricsError> {
        let families = RequestFamilies::new(
            reg,
            namespace,
            duration_buckets,
            service_name,
            service_version,
            None,
        )?;
        Ok(ApiServerMetrics {
            families: Arc::new(families),
        })
    }

    /// Marks a request to `endpoint` (the path, e.g. `/analysis`) as in progress until the guard drops.
    pub fn start(&self, endpoint: &str) -> InProgressGuard {
        self.families.start(endpoint)
    }

    /// Records a finished request: `<ns>_request_total` and `<ns>_request_duration_seconds`.
    pub fn finish(&self, endpoint: &str, status_code: u16, seconds: f64) {
        self.families.finish(endpoint, status_code, seconds);
    }
}

/// A runner worker's default families (`bentoml_runner_*` and the adaptive batch size); clones share them.
#[derive(Clone)]
pub struct RunnerMetrics {
    inner: Arc<RunnerInner>,
}

struct RunnerInner {
    families: RequestFamilies,
    batch: Histogram,
    /// Label values after `method_name` are fixed, so only the method varies.
    worker_index: String,
    batch_children: RwLock<HashMap<String, HistogramChild>>,
}

impl RunnerMetrics {
    /// Defines the families in `reg`; `worker_index` is the 1-based index BentoML uses, empty `batch_buckets` means [`batch_size_buckets`]`(100)`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per BentoML label value; a struct would only rename them"
    )]
    pub fn new(
        reg: &Registry,
        namespace: &str,
        duration_buckets: &[f64],
        batch_buckets: &[f64],
        service_name: &str,
        service_version: &str,
        runner_name: &str,
        worker_index: usize,
    ) -> Result<Self, MetricsError> {
        let families = RequestFamilies::new(
            reg,
            namespace,
            duration_buckets,
            service_name,
            service_version,
            Some(runner_name),
        )?;
        let default_batch;
        let batch_buckets = if batch_buckets.is_empty() {
            // BentoML's default max_batch_size.
            default_batch = batch_size_buckets(100);
            &default_batch
        } else {
            batch_buckets
        };
        let batch = reg.histogram(
            ADAPTIVE_BATCH_SIZE,
            "Runner adaptive batch size",
            &[
                "runner_name",
                "worker_index",
                "method_name",
                "service_version",
                "service_name",
            ],
            batch_buckets,
        )?;
        Ok(RunnerMetrics {
            inner: Arc::new(RunnerInner {
                families,
                batch,
                worker_index: worker_index.to_string(),
                batch_children: RwLock::default(),
            }),
        })
    }

    /// Marks a call as in progress until the guard drops; `endpoint` is `/<method>` (a bare method name gets the `/`).
    pub fn start(&self, endpoint: &str) -> InProgressGuard {
        self.inner.families.start(endpoint)
    }

    /// Records a finished call: `<ns>_request_total` and `<ns>_request_duration_seconds`.
    pub fn finish(&self, endpoint: &str, status_code: u16, seconds: f64) {
        self.inner.families.finish(endpoint, status_code, seconds);
    }

    /// Records the size of one dispatched batch of `method_name` in `bentoml_runner_adaptive_batch_size`.
    pub fn observe_batch(&self, method_name: &str, size: usize) {
        let inner = &*self.inner;
        let cached = inner.batch_children.read().get(method_name).cloned();
        let child = cached.unwrap_or_else(|| {
            let mut map = inner.batch_children.write();
            map.entry(method_name.to_owned())
                .or_insert_with(|| {
                    let f = &inner.families;
                    let runner = f.runner_name.as_deref().unwrap_or_default();
                    inner.batch.labels(&[
                        runner,
                        &inner.worker_index,
                        method_name,
                        &f.service_version,
                        &f.service_name,
                    ])
                })
                .clone()
        });
        child.observe(size as f64);
    }
}

impl std::fmt::Debug for ApiServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerMetrics")
            .field("service_name", &self.families.service_name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RunnerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerMetrics")
            .field("runner_name", &self.inner.families.runner_name)
            .field("worker_index", &self.inner.worker_index)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::DEFAULT_DURATION_BUCKETS;
    use crate::snapshot::{GaugeMode, HistogramValue, Kind, Snapshot, Value};

    fn label_names(snap: &Snapshot, family: &str) -> Vec<String> {
        let f = snap
            .family(family)
            .unwrap_or_else(|| panic!("missing {family}"));
        let mut names: Vec<String> = f.series[0].labels.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn api_server_families_match_bentoml() {
        let reg = Registry::new();
        let m = ApiServerMetrics::new(&reg, API_SERVER_NAMESPACE, &[], "sentiment_analyzer", "")
            .unwrap();
        {
            let _guard = m.start("/analysis");
            let snap = reg.snapshot();
            let f = snap
                .family("bentoml_api_server_request_in_progress")
                .unwrap();
            assert_eq!(f.series[0].value, Value::Gauge(1.0));
        }
        for _ in 0..3 {
            let _g = m.start("/analysis");
            m.finish("/analysis", 200, 0.003);
        }
        m.finish("/analysis", 500, 0.2);
        m.finish("/readyz", 200, 0.0);

        let snap = reg.snapshot();
        let names: Vec<_> = snap.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bentoml_api_server_request_duration_seconds",
                "bentoml_api_server_request_in_progress",
                "bentoml_api_server_request_total",
            ]
        );
        assert_eq!(
            label_names(&snap, "bentoml_api_server_request_in_progress"),
            sorted(&["endpoint", "service_name", "service_version"])
        );
        let done = sorted(&[
            "endpoint",
            "service_name",
            "service_version",
            "http_response_code",
        ]);
        assert_eq!(label_names(&snap, "bentoml_api_server_request_total"), done);
        assert_eq!(
            label_names(&snap, "bentoml_api_server_request_duration_seconds"),
            done
        );

        let total = snap.family("bentoml_api_server_request_total").unwrap();
        assert_eq!(total.kind, Kind::Counter);
        assert_eq!(total.help, "Total number of HTTP requests");
        let ok = total
            .series_with(&[
                ("endpoint", "/analysis"),
                ("http_response_code", "200"),
                ("service_name", "sentiment_analyzer"),
                ("service_version", "not available"),
            ])
            .unwrap();
        assert_eq!(ok.value, Value::Counter(3.0));
        assert_eq!(total.series.len(), 3);

        let in_progress = snap
            .family("bentoml_api_server_request_in_progress")
            .unwrap();
        assert_eq!(in_progress.kind, Kind::Gauge(GaugeMode::LiveSum));
        assert!(
            in_progress
                .series
                .iter()
                .all(|s| s.value == Value::Gauge(0.0))
        );

        let duration = snap
            .family("bentoml_api_server_request_duration_seconds")
            .unwrap();
        let Value::Histogram(HistogramValue { buckets, count, .. }) = &duration
            .series_with(&[
                ("endpoint", "/analysis"),
                ("http_response_code", "200"),
                ("service_name", "sentiment_analyzer"),
                ("service_version", "not available"),
            ])
            .unwrap()
            .value
        else {
            panic!("not a histogram")
        };
        assert_eq!(*count, 3);
        let bounds: Vec<f64> = buckets.iter().map(|(b, _)| *b).collect();
        assert_eq!(bounds, DEFAULT_DURATION_BUCKETS);
        assert_eq!(buckets[0].1, 3);
    }

    #[test]
    fn runner_families_match_bentoml() {
        let reg = Registry::new();
        let m = RunnerMetrics::new(
            &reg,
            RUNNER_NAMESPACE,
            &[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0],
            &batch_size_buckets(100),
            "sentiment_analyzer",
            "1.0",
            "nltk_sentiment",
            1,
        )
        .unwrap();
        drop(m.start("/is_positive"));
        m.finish("/is_positive", 200, 0.01);
        m.finish("is_positive", 200, 0.01);
        m.observe_batch("is_positive", 3);
        m.observe_batch("is_positive", 1);

        let snap = reg.snapshot();
        let names: Vec<_> = snap.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bentoml_runner_adaptive_batch_size",
                "bentoml_runner_request_duration_seconds",
                "bentoml_runner_request_in_progress",
                "bentoml_runner_request_total",
            ]
        );
        assert_eq!(
            label_names(&snap, "bentoml_runner_request_in_progress"),
            sorted(&["endpoint", "service_name", "service_version", "runner_name"])
        );
        let done = sorted(&[
            "endpoint",
            "service_name",
            "service_version",
            "http_response_code",
            "runner_name",
        ]);
        assert_eq!(label_names(&snap, "bentoml_runner_request_total"), done);
        assert_eq!(
            label_names(&snap, "bentoml_runner_request_duration_seconds"),
            done
        );
        assert_eq!(
            label_names(&snap, ADAPTIVE_BATCH_SIZE),
            sorted(&[
                "runner_name",
                "worker_index",
                "method_name",
                "service_version",
                "service_name",
            ])
        );
        let batch = snap.family(ADAPTIVE_BATCH_SIZE).unwrap();
        let s = batch
            .series_with(&[
                ("runner_name", "nltk_sentiment"),
                ("worker_index", "1"),
                ("method_name", "is_positive"),
                ("service_version", "1.0"),
                ("service_name", "sentiment_analyzer"),
            ])
            .unwrap();
        let Value::Histogram(h) = &s.value else {
            panic!()
        };
        assert_eq!(h.count, 2);
        assert_eq!(h.sum, 4.0);
        assert_eq!(
            h.buckets.iter().map(|(b, _)| *b).collect::<Vec<_>>(),
            [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0]
        );
        let total = snap.family("bentoml_runner_request_total").unwrap();
        assert_eq!(total.help, "Total number of runner RPC");
        assert_eq!(total.series[0].label("endpoint"), Some("/is_positive"));
        // `is_positive` and `/is_positive` are the same endpoint.
        assert_eq!(total.series.len(), 1);
        assert_eq!(total.series[0].value, Value::Counter(2.0));
        // Clones share everything; guards can cross threads and awaits.
        fn assert_send<T: Send + 'static>(_: T) {}
        let clone = m.clone();
        assert_send(clone.start("/x"));
    }

    #[test]
    fn defining_twice_shares_the_families_and_other_buckets_conflict() {
        let reg = Registry::new();
        let a = ApiServerMetrics::new(&reg, API_SERVER_NAMESPACE, &[], "svc", "v").unwrap();
        let b = ApiServerMetrics::new(&reg, API_SERVER_NAMESPACE, &[], "svc", "v").unwrap();
        a.finish("/x", 200, 0.1);
        b.finish("/x", 200, 0.1);
        let snap = reg.snapshot();
        let total = snap.family("bentoml_api_server_request_total").unwrap();
        assert_eq!(total.series[0].value, Value::Counter(2.0));
        assert!(matches!(
            ApiServerMetrics::new(&reg, API_SERVER_NAMESPACE, &[1.0], "svc", "v"),
            Err(MetricsError::Conflict { .. })
        ));
        assert!(matches!(
            ApiServerMetrics::new(&reg, "bad-ns", &[], "svc", "v"),
            Err(MetricsError::InvalidName { .. })
        ));
    }

    #[test]
    fn batch_buckets_follow_bentoml() {
        assert_eq!(batch_size_buckets(1), [1.0]);
        assert_eq!(batch_size_buckets(0), [1.0]);
        assert_eq!(batch_size_buckets(4), [1.0, 2.0, 4.0]);
        assert_eq!(batch_size_buckets(5), [1.0, 2.0, 4.0, 5.0]);
    }
}
