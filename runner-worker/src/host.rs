//! Hosting one runnable: what serving its calls needs, wherever it runs.
//!
//! A runner's runnable is hosted in one of two places: a worker process of
//! its own (`serve.rs`, the default), or inside every API-server process
//! when the runner is embedded (`embedded.rs`, `runners.<name>.embedded`).
//! Both load it the same way and run a call the same way, here: the
//! `bentoml_runner_*` metrics with the same labels (the worker index is the
//! API server's for an embedded runner), a span under the caller's, the
//! batch dispatcher for batchable methods, and a result tagged with the
//! client's request id when the model fails. They differ only in how a
//! call arrives and leaves, and in where a non-batchable method runs
//! ([`Single`]). A stream method's call is served by `stream.rs`, on the
//! blocking pool in both places.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tiffin_config::{BatchingConfig, Config};
use tiffin_metrics::{self as metrics, CounterChild, RunnerMetrics};
use tiffin_service::{CallError, MethodKind, Runnable, Service};
use tiffin_telemetry::{Kind, Span, TraceContext, Tracer};

use crate::WorkerError;
use crate::batch::{BatchLimits, BatchSpans, Call, Dispatcher, Reply};

/// Where a non-batchable method runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Single {
    /// On the calling thread: a worker process's single-threaded runtime
    /// serves one such call at a time, as a BentoML runner without
    /// multi-threading does, and so does an embedded runner's model thread
    /// (`embedded.rs`).
    Inline,
}

/// A loaded runnable and what serving it needs.
pub(crate) struct Host {
    pub runnable: Runnable,
    dispatchers: HashMap<String, Dispatcher>,
    pub metrics: Option<RunnerMetrics>,
    /// The tracer, when `tracing.exporter_type` is set.
    pub tracer: Option<Tracer>,
    /// The runner's name, for span names and errors.
    pub runner: String,
    /// Calls answered, for the supervisor's status.
    pub requests: AtomicU64,
    /// Streams stopped because their caller went away (`stream.rs`).
    pub cancelled: tiffin_metrics::CounterChild,
}

/// One call, besides its method and input: what the caller's request says
/// about it.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The request's deadline.
    pub expires: Option<Instant>,
    /// The client request's id (`X-Request-ID`), for log lines and errors.
    pub request_id: String,
    /// The API server's span for this call, when traced.
    pub trace: Option<TraceContext>,
}

impl Host {
    /// Loads `runner` of `service` as worker `index` of the process `role`
    /// (for the tracer's name): the runnable, its metrics, tracer and a
    /// batch dispatcher per batchable method.
    pub fn load(
        service: &Service,
        runner: &str,
        config: &Config,
        index: usize,
        role: &str,
    ) -> Result<Host, WorkerError> {
        let load_error = |message: String| WorkerError::Load {
            runner: runner.to_owned(),
            message,
        };
        let found = service
            .find_runner(runner)
            .ok_or_else(|| WorkerError::UnknownRunner(runner.to_owned()))?;
        let started = Instant::now();
        let runnable = found.load().map_err(load_error)?;
        tracing::info!(
            runner,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "runnable loaded"
        );
        let cfg = &config.runners;
        let batching = cfg.batching_for(runner);
        let metrics = if cfg.metrics.enabled {
            let buckets = cfg
                .metrics
                .duration
                .buckets("runners.metrics")
                .map_err(|e| load_error(e.to_string()))?;
            let batch_buckets = tiffin_config::batch_size_buckets(batching.max_batch_size);
            Some(RunnerMetrics::new(
                metrics::global(),
                &cfg.metrics.namespace,
                &buckets,
                &batch_buckets,
                &service.name,
                service.version_label(),
                runner,
                index,
            )?)
        } else {
            None
        };
        let tracer = Tracer::from_config(&config.tracing, &service.name, role)
            .map_err(|e| load_error(e.to_string()))?;
        let dispatchers = dispatchers(
            &runnable,
            &batching,
            metrics.as_ref(),
            tracer.as_ref(),
            runner,
        );
        Ok(Host {
            runnable,
            dispatchers,
            metrics,
            tracer,
            runner: runner.to_owned(),
            requests: AtomicU64::new(0),
            cancelled: cancelled_counter(cfg.metrics.enabled, runner),
        })
    }

    /// Runs one call of `method` and hands its result to `deliver`: now
    /// (a non-batchable method with [`Single::Inline`], or a refusal), or
    /// later from the batch or blocking thread. A call whose deadline has
    /// passed is refused without running; the dispatcher drops one whose
    /// deadline passes while it is queued.
    pub fn call(
        self: &Arc<Self>,
        method: String,
        payload: Vec<u8>,
        cx: CallContext,
        single: Single,
        deliver: impl FnOnce(Result<Vec<u8>, CallError>) + Send + 'static,
    ) {
        let CallContext {
            expires,
            request_id,
            trace,
        } = cx;
        if expires.is_some_and(|t| Instant::now() >= t) {
            deliver(Err(CallError::DeadlineExceeded));
            return;
        }
        let span = self.span(&method, trace.as_ref());
        // RunnerMetrics labels `method` as the endpoint `/<method>` itself.
        let started = Instant::now();
        let guard = self.metrics.as_ref().map(|m| m.start(&method));
        match (self.dispatchers.get(&method), single) {
            (Some(dispatcher), _) => {
                let call = Call {
                    payload,
                    expires,
                    trace: span.as_ref().map(Span::context),
                };
                let host = Arc::clone(self);
                dispatcher.submit(
                    call,
                    Reply::new(move |result| {
                        let result = host.finish(&method, started, result, &request_id, span);
                        drop(guard);
                        deliver(result);
                    }),
                );
            }
            (None, Single::Inline) => {
                let result = self.call_guarded(&method, &payload);
                let result = self.finish(&method, started, result, &request_id, span);
                drop(guard);
                deliver(result);
            }
        }
    }

    /// Whether calls of `method` go through a batch dispatcher (which only
    /// queues them) rather than running on the caller's thread.
    pub(crate) fn batches(&self, method: &str) -> bool {
        self.dispatchers.contains_key(method)
    }

    /// The runner's span for a call of `method`: a child of the caller's.
    pub(crate) fn span(&self, method: &str, parent: Option<&TraceContext>) -> Option<Span> {
        match (&self.tracer, parent) {
            (Some(tracer), Some(parent)) => Some(tracer.start(
                format!("{}.{method}", self.runner),
                Kind::Server,
                Some(parent),
            )),
            _ => None,
        }
    }

    /// Runs a non-batchable method here; a panic in the model becomes this
    /// call's error (as a batch's does in the dispatcher), not the end of
    /// the thread, its connection or the process.
    fn call_guarded(&self, method: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        guarded(|| self.runnable.call(method, payload))
    }

    /// Records a finished call (metrics, span, a log line naming the request
    /// if it failed) and returns its result, a model error tagged with the
    /// request id so the client's error body names it too.
    fn finish(
        &self,
        endpoint: &str,
        started: Instant,
        result: Result<Vec<u8>, CallError>,
        request_id: &str,
        span: Option<Span>,
    ) -> Result<Vec<u8>, CallError> {
        let status = match &result {
            Ok(_) => 200,
            Err(e) => e.http_status(),
        };
        let result = result.map_err(|e| {
            tracing::warn!(request_id = %request_id, method = endpoint, error = %e, "call failed");
            tag_with_request(e, request_id)
        });
        if let (Some(mut span), Err(e)) = (span, &result) {
            span.set_error(e.to_string());
        }
        if let Some(m) = &self.metrics {
            m.finish(endpoint, status, started.elapsed().as_secs_f64());
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        result
    }
}

/// Runs `f`, a piece of the model's work; a panic becomes its error.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, CallError>) -> Result<T, CallError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(CallError::Failed(format!(
            "the model panicked: {}",
            crate::batch::dispatch::panic_message(&*p)
        )))
    })
}

/// A dispatcher for each batchable method, when batching is enabled: a batch
/// size histogram per method and, when tracing, a span per batch.
fn dispatchers(
    runnable: &Runnable,
    batching: &BatchingConfig,
    metrics: Option<&RunnerMetrics>,
    tracer: Option<&Tracer>,
    runner: &str,
) -> HashMap<String, Dispatcher> {
    let mut dispatchers = HashMap::new();
    if !batching.enabled {
        return dispatchers;
    }
    // Queue bound: see `BatchLimits::new`.
    let limits = BatchLimits::new(
        batching.max_batch_size,
        Duration::from_millis(batching.max_latency_ms),
    );
    for (name, method) in runnable.methods() {
        // The one place a method's kind decides how it is served:
        // batchable ones through a dispatcher, the rest as `Single` says.
        let batch = match method {
            MethodKind::Batch(f) => f.clone(),
            MethodKind::Single(_) | MethodKind::Stream(_) => continue,
        };
        let observer_metrics = metrics.cloned();
        let method_name = name.to_string();
        let observe = Arc::new(move |n: usize| {
            if let Some(m) = &observer_metrics {
                m.observe_batch(&method_name, n);
            }
        });
        let spans = tracer.map(|tracer| BatchSpans {
            tracer: tracer.clone(),
            name: format!("{runner}.{name}"),
        });
        let dispatcher = Dispatcher::spawn(batch, limits, observe, spans);
        dispatchers.insert(name.to_string(), dispatcher);
    }
    dispatchers
}

/// A model's error (failed or bad input) with ` (request id: …)` appended;
/// others are the host's own and pass unchanged.
pub(crate) fn tag_with_request(e: CallError, request_id: &str) -> CallError {
    if request_id.is_empty() {
        return e;
    }
    match e {
        CallError::Failed(m) => CallError::Failed(format!("{m} (request id: {request_id})")),
        CallError::BadInput(m) => CallError::BadInput(format!("{m} (request id: {request_id})")),
        other => other,
    }
}

/// Runner calls cancelled because their caller went away, by `stage`
/// (`running`: a stream stopped between items). Unary calls are not
/// cancelled yet (docs/streaming.md).
pub const CANCELLED: &str = "tiffin_runner_calls_cancelled_total";

/// The counter of streams cancelled while running, for `runner`
/// (detached when metrics are disabled or the family cannot be defined).
pub(crate) fn cancelled_counter(enabled: bool, runner: &str) -> CounterChild {
    if !enabled {
        return CounterChild::default();
    }
    match tiffin_metrics::global().counter(
        CANCELLED,
        "Runner calls cancelled because their caller went away, by the stage they were in",
        &["runner_name", "stage"],
    ) {
        Ok(family) => family.labels(&[runner, "running"]),
        Err(e) => {
            tracing::error!(error = %e, "cannot define the cancelled calls counter");
            CounterChild::default()
        }
    }
}
