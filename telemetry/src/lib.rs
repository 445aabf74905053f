//! OpenTelemetry tracing for tiffin's processes, shared by the API server and
//! the runner worker.
//!
//! # Why a crate of its own
//!
//! Both process kinds make spans, and a trace is only whole if they agree on
//! the exporter, the sampler and how a span's identity crosses the IPC hop.
//! This crate holds those three things and nothing else; it hides the
//! `opentelemetry` types behind [`Tracer`] and [`Span`], so the process
//! crates speak only [`TraceContext`] (the plain ids of `ipc/src/proto.rs`).
//!
//! # What one request makes
//!
//! ```text
//! API server    POST /classify            (server span; parent: the client's traceparent)
//!                └ runner iris_clf.classify (client span; its context goes in DataRequest::Call)
//! runner worker     └ iris_clf.classify     (server span, in the worker's process)
//!                      └ batch              (internal; attribute batch.size; links to every call in it)
//! ```
//!
//! # Cost
//!
//! With `tracing.exporter_type` unset there is no [`Tracer`]: callers hold an
//! `Option<Tracer>` and a request pays one `None` check. When on, spans are
//! handed to the SDK's batch processor, which exports from its own thread
//! with a bounded queue ([`MAX_QUEUED_SPANS`]; spans past it are dropped and
//! counted by the SDK, never waited for) and a per-export timeout from the
//! configuration. Shutdown flushes within [`Tracer::shutdown`]'s bound;
//! [`flush_traces`] is that shutdown as an exiting process calls it.

mod context;

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tiffin_config::{OtlpProtocol, TracingConfig};

pub use context::{TraceContext, format_traceparent, parse_traceparent};

/// Spans waiting for export, at most; past it new spans are dropped.
pub const MAX_QUEUED_SPANS: usize = 4096;

/// How long an exiting process waits for its last spans to be exported
/// ([`flush_traces`]).
pub const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Spans in one export request, at most.
const EXPORT_BATCH: usize = 512;

/// How often queued spans are exported.
const EXPORT_EVERY: Duration = Duration::from_millis(500);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the configuration.
    #[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
    Exporter {
        /// `tracing.otlp.endpoint` as used.
        endpoint: String,
        /// The exporter's error.
        reason: String,
    },
}

/// What a span is, in OpenTelemetry's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Handles a request from another process (a client's, the API server's).
    Server,
    /// Sends a request to another process (a runner call).
    Client,
    /// Work inside one process (a batch).
    Internal,
}

/// A process's tracer: cheap to clone, one exporter per process.
#[derive(Clone)]
pub struct Tracer {
    provider: SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::SdkTracer,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracer")
    }
}

impl Tracer {
    /// The tracer `config` asks for, or `None` when tracing is off.
    /// `service` becomes the resource's `service.name`; `process`
    /// (`api_server:0`, `runner:iris_clf:1`) and the pid tell the spans of
    /// the processes apart. Call inside the process's tokio runtime: the gRPC
    /// exporter's connection lives on it.
    pub fn from_config(
        config: &TracingConfig,
        service: &str,
        process: &str,
    ) -> Result<Option<Tracer>, TelemetryError> {
        if !config.enabled() {
            return Ok(None);
        }
        let endpoint = config.endpoint();
        let built = match config.protocol() {
            OtlpProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_timeout(config.timeout())
                .build(),
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(config.timeout())
                .build(),
        };
        let exporter = built.map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(MAX_QUEUED_SPANS)
            .with_max_export_batch_size(EXPORT_BATCH)
            .with_scheduled_delay(EXPORT_EVERY)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let rate = config.sample_rate();
        if rate == 0.0 {
            tracing::warn!(
                "tracing.sample_rate is 0: only requests whose traceparent is sampled are traced"
            );
        }
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .with_attributes([
                KeyValue::new("tiffin.process", process.to_owned()),
                KeyValue::new("process.pid", i64::from(std::process::id())),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                rate,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("tiffin");
        tracing::info!(endpoint = %endpoint, sample_rate = rate, "tracing on");
        Ok(Some(Tracer { provider, tracer }))
    }

    /// Starts a span named `name`, child of `parent` when given (else the
    /// root of a new trace, sampled by the configured rate).
    pub fn start(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        parent: Option<&TraceContext>,
    ) -> Span {
        self.start_linked(name, kind, parent, &[])
    }

    /// As [`Tracer::start`], with links to other spans (the calls of a batch).
    pub fn start_linked(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        parent: Option<&TraceContext>,
        links: &[TraceContext],
    ) -> Span {
        let cx = match parent {
            Some(p) => Context::new().with_remote_span_context(span_context(p)),
            None => Context::new(),
        };
        let kind = match kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
            Kind::Internal => SpanKind::Internal,
        };
        let mut builder = self.tracer.span_builder(name).with_kind(kind);
        if !links.is_empty() {
            builder = builder.with_links(
                links
                    .iter()
                    .map(|l| Link::with_context(span_context(l)))
                    .collect(),
            );
        }
        Span(builder.start_with_context(&self.tracer, &cx))
    }

    /// Exports what is queued and stops the exporter, waiting at most
    /// `within`. Blocks: call it from a blocking thread
    /// (`tokio::task::spawn_blocking`) inside a runtime.
    pub fn shutdown(&self, within: Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(within) {
            tracing::warn!(error = %e, "tracing did not flush on shutdown");
        }
    }
}

/// Exports the spans still queued and stops `tracer`'s exporter, before a
/// process exits: at most [`FLUSH_LIMIT`] for the export, and twice that in
/// all (the blocking pool may be busy). Does nothing when tracing is off.
/// Call it inside the process's tokio runtime; [`Tracer::shutdown`] blocks,
/// so it runs on the blocking pool, and the caller's thread keeps serving.
pub async fn flush_traces(tracer: Option<&Tracer>) {
    if let Some(tracer) = tracer.cloned() {
        let flushed = tokio::task::spawn_blocking(move || tracer.shutdown(FLUSH_LIMIT));
        let _ = tokio::time::timeout(FLUSH_LIMIT * 2, flushed).await;
    }
}

fn span_context(ctx: &TraceContext) -> SpanContext {
    let flags = if ctx.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    SpanContext::new(
        TraceId::from_bytes(ctx.trace_id.to_be_bytes()),
        SpanId::from_bytes(ctx.span_id.to_be_bytes()),
        flags,
        true,
        TraceState::default(),
    )
}

/// A started span; it ends when dropped.
pub struct Span(opentelemetry_sdk::trace::Span);

impl Span {
    /// This span's identity, to carry to another process or log.
    pub fn context(&self) -> TraceContext {
        let sc = self.0.span_context();
        TraceContext {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            sampled: sc.is_sampled(),
        }
    }

    /// Whether anything set on this span will be exported (a span that was
    /// not sampled records nothing; skip building its attributes).
    pub fn is_recording(&self) -> bool {
        self.0.is_recording()
    }

    /// Sets a string attribute.
    pub fn set_str(&mut self, key: &'static str, value: impl Into<Cow<'static, str>>) {
        if self.0.is_recording() {
            self.0.set_attribute(KeyValue::new(key, value.into()));
        }
    }

    /// Sets an integer attribute.
    pub fn set_i64(&mut self, key: &'static str, value: i64) {
        if self.0.is_recording() {
            self.0.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with a description.
    pub fn set_error(&mut self, description: impl Into<Cow<'static, str>>) {
        if self.0.is_recording() {
            self.0.set_status(Status::error(description));
        }
    }
}
