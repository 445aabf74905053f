//! Hosting one runnable: what serving its calls needs, wherever it runs.
//!
//! A runner's runnable is hosted in one of two places: a worker process of
//! its own (`serve.rs`, the default), or inside every API-server process
//! when the runner is embedded (`embedded.rs`, `runners.<name>.embedded`).
//! Both load it the same way and run a call the same way, here: the
//! `bentoml_runner_*` metrics with the same labels (the worker index is the
//! API server's for an embedded runner), a span under the caller's, the
//! batch dispatcher for batchable methods, and a result tagged with the
//! client's request id when the model fails, and a non-batchable method
//! on the host's model thread (or, when cheap, the caller's: `pace.rs`).
//! They differ only in how a call arrives and leaves. A stream method's
//! call is served by `stream.rs`, on the blocking pool in both places, or,
//! in an embedded runner, on the caller's thread when its items take
//! microseconds (`stream/inline.rs`).

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
use crate::pace::Pace;
use crate::serial::{Job, Serial};
use crate::ticket::{CallTicket, CancelStage, cancelled_error};

/// The status a cancelled call or stream is recorded with in the runner's
/// metrics: nginx's "client closed request" (BentoML has none).
pub(crate) const CANCELLED_STATUS: u16 = 499;

/// A unary call between its arrival and its turn.
struct Queued {
    method: String,
    payload: Vec<u8>,
    cx: CallContext,
    span: Option<Span>,
    ticket: Arc<CallTicket>,
    /// When the host got it: a call cancelled before it ran is recorded
    /// with the time it waited.
    received: Instant,
}

/// A unary call not yet answered: what cancelling it needs, wherever its
/// caller's going away is noticed (a worker's reader, an embedded call's
/// dropped future).
pub(crate) struct PendingCall {
    /// The call's ticket, given to [`Host::call_with`].
    pub ticket: Arc<CallTicket>,
    /// For the cancel's log line.
    pub method: String,
    /// For the cancel's log line.
    pub request_id: String,
}

impl PendingCall {
    /// Its caller went away: see [`Host::cancel`] (never waits for the
    /// model; nothing happens once the call was answered).
    pub fn cancel(&self, host: &Host) {
        host.cancel(&self.ticket, &self.method, &self.request_id);
    }
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
    /// Calls and streams cancelled by their caller while running
    /// (`stream.rs`, [`Host::cancel`]).
    pub cancelled: tiffin_metrics::CounterChild,
    /// Calls cancelled by their caller before they started ([`Host::cancel`]).
    cancelled_queued: tiffin_metrics::CounterChild,
    /// The model thread of non-batchable calls.
    serial: Serial,
    /// How fast each non-batchable method has been (`pace.rs`).
    paces: HashMap<String, Pace>,
    /// How fast each stream method's items have been (`pace.rs`,
    /// `stream/inline.rs`).
    pub(crate) stream_paces: HashMap<String, Pace>,
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
        let paces = runnable
            .methods()
            .filter(|(name, kind)| {
                !dispatchers.contains_key(*name) && !matches!(kind, MethodKind::Stream(_))
            })
            .map(|(name, _)| (name.to_owned(), Pace::default()))
            .collect();
        let stream_paces = runnable
            .methods()
            .filter(|(_, kind)| matches!(kind, MethodKind::Stream(_)))
            .map(|(name, _)| (name.to_owned(), Pace::default()))
            .collect();
        Ok(Host {
            paces,
            stream_paces,
            runnable,
            dispatchers,
            metrics,
            tracer,
            runner: runner.to_owned(),
            requests: AtomicU64::new(0),
            cancelled: cancelled_counter(cfg.metrics.enabled, runner, CancelStage::Running),
            cancelled_queued: cancelled_counter(cfg.metrics.enabled, runner, CancelStage::Queued),
            serial: Serial::default(),
        })
    }

    /// Runs one call of `method` and hands its result to `deliver`: now
    /// (a refusal, or a cheap method on this thread), or later from the
    /// model or batch thread. A non-batchable method runs on the host's
    /// model thread, one call at a time in the order they came
    /// (`serial.rs`), as a BentoML runner without multi-threading does,
    /// while the caller's thread keeps going (a worker's reader reads the
    /// next calls and cancels; an API server answers other requests); a
    /// method whose calls take microseconds runs on the caller's thread
    /// instead (`pace.rs`). A call whose deadline has passed is refused
    /// without running; one whose deadline passes while it is queued is
    /// refused when its turn comes (the dispatcher drops it from its queue).
    /// With the call's `ticket`: [`Host::cancel`] with
    /// the same ticket, when the caller goes away, takes a queued call out
    /// (it is answered with the cancelled error, never run) or tells a
    /// running cancellable method. A cancelled call is recorded with status
    /// [`CANCELLED_STATUS`] and its result dropped by whoever delivers it.
    pub fn call_with(
        self: &Arc<Self>,
        method: String,
        payload: Vec<u8>,
        cx: CallContext,
        ticket: Arc<CallTicket>,
        deliver: impl FnOnce(Result<Vec<u8>, CallError>) + Send + 'static,
    ) {
        if cx.expires.is_some_and(|t| Instant::now() >= t) {
            ticket.finish();
            deliver(Err(CallError::DeadlineExceeded));
            return;
        }
        let span = self.span(&method, cx.trace.as_ref());
        let call = Queued {
            method,
            payload,
            cx,
            span,
            ticket,
            received: Instant::now(),
        };
        if let Some(dispatcher) = self.dispatchers.get(&call.method) {
            self.submit_batched(dispatcher, call, deliver);
            return;
        }
        let pace = self.paces.get_key_value(call.method.as_str());
        if let Some((method, pace)) = pace.filter(|(_, p)| p.try_inline()) {
            let started = Instant::now();
            let result = self.run_single(call);
            if pace.ran_inline(started.elapsed()) {
                tracing::warn!(
                    runner = %self.runner,
                    method = %method,
                    took_ms = started.elapsed().as_millis() as u64,
                    "a call on the caller's thread was slow; the method runs on the model thread until it is cheap again"
                );
            }
            deliver(result);
            return;
        }
        let host = Arc::clone(self);
        let ticket = Arc::clone(&call.ticket);
        let run = Box::new(move || {
            let started = Instant::now();
            let pace = host.paces.get_key_value(call.method.as_str());
            let result = host.run_single(call);
            if let Some((method, pace)) = pace
                && pace.ran_queued(started.elapsed())
            {
                tracing::info!(
                    runner = %host.runner,
                    method = %method,
                    "a cheap method: its calls run on the caller's thread from now on"
                );
            }
            deliver(result);
        });
        self.serial.push(Job { ticket, run });
    }

    /// Hands a call of a batchable method to its dispatcher; like
    /// BentoML's, its duration and `request_in_progress` include the wait
    /// for its batch.
    fn submit_batched(
        self: &Arc<Self>,
        dispatcher: &Dispatcher,
        call: Queued,
        deliver: impl FnOnce(Result<Vec<u8>, CallError>) + Send + 'static,
    ) {
        // RunnerMetrics labels `method` as the endpoint `/<method>` itself.
        let guard = self.metrics.as_ref().map(|m| m.start(&call.method));
        let mut call = call;
        let batched = Call {
            payload: std::mem::take(&mut call.payload),
            expires: call.cx.expires,
            trace: call.span.as_ref().map(Span::context),
            ticket: Some(Arc::clone(&call.ticket)),
        };
        let host = Arc::clone(self);
        let reply = Reply::new(move |result| {
            let Queued {
                method,
                cx,
                span,
                ticket,
                received,
                ..
            } = call;
            ticket.finish();
            let result = host.finish(&method, received, result, &cx.request_id, span, &ticket);
            drop(guard);
            deliver(result);
        });
        dispatcher.submit(batched, reply);
    }

    /// Runs a non-batchable call on this thread, now that its turn came:
    /// unless it was cancelled or its deadline passed while it waited.
    fn run_single(&self, call: Queued) -> Result<Vec<u8>, CallError> {
        let Queued {
            method,
            payload,
            cx,
            span,
            ticket,
            received,
        } = call;
        if cx.expires.is_some_and(|t| Instant::now() >= t) {
            ticket.finish();
            return Err(CallError::DeadlineExceeded);
        }
        if !ticket.start() {
            let cancelled = Err(cancelled_error());
            return self.finish(&method, received, cancelled, &cx.request_id, span, &ticket);
        }
        let started = Instant::now();
        let guard = self.metrics.as_ref().map(|m| m.start(&method));
        let result = guarded(|| {
            self.runnable
                .call_cancellable(&method, &payload, ticket.token())
        });
        ticket.finish();
        let result = self.finish(&method, started, result, &cx.request_id, span, &ticket);
        drop(guard);
        result
    }

    /// The caller of the call with `ticket` went away: a queued call is
    /// taken out and answered without running, a running one is told
    /// (its token turns). Counted once in [`CANCELLED`] with the stage it
    /// was in, and logged with its request id; a call already answered
    /// is left alone.
    pub fn cancel(&self, ticket: &Arc<CallTicket>, method: &str, request_id: &str) {
        let Some(stage) = ticket.cancel() else {
            return;
        };
        match stage {
            CancelStage::Queued => self.cancelled_queued.inc(),
            CancelStage::Running => self.cancelled.inc(),
        }
        tracing::info!(
            request_id = %request_id,
            method,
            stage = stage.as_str(),
            "call cancelled by its caller"
        );
        // Answered here (without running: its ticket says cancelled), so
        // it holds no place in the model's queue; a batch dispatcher takes
        // its own out when woken.
        if let Some(job) = self.serial.remove(ticket) {
            (job.run)();
        }
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

    /// Records a finished call (metrics, span, a log line naming the request
    /// if it failed) and returns its result, a model error tagged with the
    /// request id so the client's error body names it too. A cancelled
    /// call is recorded with [`CANCELLED_STATUS`] and answers the
    /// cancelled error (its cancel was logged already).
    fn finish(
        &self,
        endpoint: &str,
        started: Instant,
        result: Result<Vec<u8>, CallError>,
        request_id: &str,
        span: Option<Span>,
        ticket: &CallTicket,
    ) -> Result<Vec<u8>, CallError> {
        if ticket.is_cancelled() {
            if let Some(mut span) = span {
                span.set_error("cancelled by the caller".to_owned());
            }
            if let Some(m) = &self.metrics {
                m.finish(endpoint, CANCELLED_STATUS, started.elapsed().as_secs_f64());
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            return Err(cancelled_error());
        }
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
        // batchable ones through a dispatcher, the rest on the model thread.
        let batch = match method {
            MethodKind::Batch(f) => f.clone(),
            MethodKind::Single(_) | MethodKind::Stream(_) | MethodKind::Cancellable(_) => continue,
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

/// Runner calls cancelled because their caller went away, by `stage`:
/// `queued` (a unary call taken out before it ran), `running` (a unary
/// call whose method was running, told through its `Cancellation`, or a
/// stream stopped between items).
pub const CANCELLED: &str = "tiffin_runner_calls_cancelled_total";

/// The counter of calls cancelled in `stage`, for `runner` (detached when
/// metrics are disabled or the family cannot be defined).
pub(crate) fn cancelled_counter(enabled: bool, runner: &str, stage: CancelStage) -> CounterChild {
    if !enabled {
        return CounterChild::default();
    }
    match tiffin_metrics::global().counter(
        CANCELLED,
        "Runner calls cancelled because their caller went away, by the stage they were in",
        &["runner_name", "stage"],
    ) {
        Ok(family) => family.labels(&[runner, stage.as_str()]),
        Err(e) => {
            tracing::error!(error = %e, "cannot define the cancelled calls counter");
            CounterChild::default()
        }
    }
}
