//! The access log: one line per request, written after the response is
//! built, in BentoML's shape (BentoML 1.2's `AccessLogMiddleware`,
//! `bentoml/_internal/server/http/access.py`):
//!
//! ```text
//! 127.0.0.1:53102 (scheme=http,method=POST,path=/classify,type=application/json,length=20) (status=200,type=application/json,length=3) 0.512ms (trace=…,span=…,sampled=0,request_id=…)
//! ```
//!
//! A gRPC call has the same line with `scheme=grpc`, the path
//! `/{service}/{method}`, and `status=` (its code as BentoML's metrics map
//! it to HTTP) followed by `grpc_status=`. It is written when the response's
//! headers are ready, which for a unary call is its end: tonic answers an
//! error with headers only (`grpc-status` among them), and a success's `0`
//! in the trailers (`grpc.rs`, `Observe`). For a streaming call (health
//! `Watch`, reflection) the line marks the stream's start.
//!
//! The request's and response's `type`/`length` appear as
//! `api_server.logging.access.request_content_*` / `response_content_*`
//! say; ids are written with `format.trace_id` / `format.span_id`. With
//! `logging.format: json` the same fields are keys of one JSON object
//! (`client`, `scheme`, `method`, `path`, `request_type`, `request_length`,
//! `status`, `response_type`, `response_length`, `latency_ms`, `trace_id`,
//! `span_id`, `sampled`, `request_id`).
//!
//! # Skipped paths
//!
//! Probes and scrapes ([`SKIP_PATHS`]: `/livez`, `/healthz`, `/readyz`,
//! `/metrics`, and gRPC's health `Check` and `Watch`) are not logged: an orchestrator polls them every few seconds
//! and they would drown the requests. BentoML's middleware takes
//! `skip_paths` but its configuration has no key for it, so neither does
//! tiffin: the list is fixed.
//!
//! # Cost
//!
//! The line is a `tracing` event at target `tiffin::access` (so
//! `TIFFIN_LOG=tiffin::access=off` silences it, as BentoML's `bentoml.access`
//! logger level does). Its values are borrowed and written by `Display`
//! wrappers straight into the subscriber's reused buffer; nothing is
//! allocated for the line itself. The subscriber writes through a bounded,
//! lossy non-blocking writer (`src/logging.rs`), so a slow stderr drops lines
//! (counted) rather than holding requests.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use hyper::header::HeaderValue;
use tiffin_config::{AccessLogConfig, IdFormat, LogFormat};

/// Paths never logged (probes and scrapes).
pub const SKIP_PATHS: [&str; 6] = [
    "/livez",
    "/healthz",
    "/readyz",
    "/metrics",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// Longest path written (a request line can be far longer; the rest is cut).
const MAX_LOGGED_PATH: usize = 1024;

/// The access log as configured (exists only when enabled).
pub(crate) struct AccessLog {
    request_type: bool,
    request_length: bool,
    response_type: bool,
    response_length: bool,
    trace_format: IdFormat,
    span_format: IdFormat,
    json: bool,
}

/// One finished request, as the line shows it.
pub(crate) struct Entry<'a> {
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// `http` (tiffin serves no TLS).
    pub scheme: &'static str,
    /// Request method.
    pub method: &'a Method,
    /// Request path.
    pub path: &'a str,
    /// Request `Content-Type`.
    pub request_type: Option<&'a HeaderValue>,
    /// Request `Content-Length`.
    pub request_length: Option<&'a HeaderValue>,
    /// Response status (for gRPC, its code as BentoML maps it to HTTP).
    pub status: u16,
    /// The gRPC status code (gRPC calls only).
    pub grpc_status: Option<i32>,
    /// Response `Content-Type`.
    pub response_type: Option<&'a HeaderValue>,
    /// Response body length, when known.
    pub response_length: Option<u64>,
    /// From request to response.
    pub latency: Duration,
    /// Trace id (0: not traced).
    pub trace_id: u128,
    /// The request span's id (0: not traced).
    pub span_id: u64,
    /// Whether the trace is sampled.
    pub sampled: bool,
    /// The request id.
    pub request_id: &'a str,
}

impl AccessLog {
    /// The access log `config` asks for, or `None` when it is disabled.
    /// The id formats were checked at start (`Config::validate`); a bad one
    /// here falls back to BentoML's default.
    pub(crate) fn new(config: &AccessLogConfig, format: LogFormat) -> Option<AccessLog> {
        if !config.enabled {
            return None;
        }
        let parse = |spec: &str, default: &str| {
            IdFormat::parse(spec)
                .or_else(|_| IdFormat::parse(default))
                .ok()
        };
        Some(AccessLog {
            request_type: config.request_content_type,
            request_length: config.request_content_length,
            response_type: config.response_content_type,
            response_length: config.response_content_length,
            trace_format: parse(&config.format.trace_id, "032x")?,
            span_format: parse(&config.format.span_id, "016x")?,
            json: format == LogFormat::Json,
        })
    }

    /// Whether requests to `path` are left out.
    pub(crate) fn skips(path: &str) -> bool {
        SKIP_PATHS.contains(&path)
    }

    /// Writes the line of one request.
    pub(crate) fn write(&self, e: &Entry<'_>) {
        let trace = Id(self.trace_format, e.trace_id);
        let span = Id(self.span_format, u128::from(e.span_id));
        let client = Client(e.client);
        if self.json {
            tracing::info!(
                target: "tiffin::access",
                client = %client,
                scheme = e.scheme,
                method = e.method.as_str(),
                path = e.path,
                request_type = shown(e.request_type, self.request_type),
                request_length = shown(e.request_length, self.request_length),
                status = e.status,
                grpc_status = e.grpc_status,
                response_type = shown(e.response_type, self.response_type),
                response_length = e.response_length.filter(|_| self.response_length),
                latency_ms = e.latency.as_secs_f64() * 1000.0,
                trace_id = %trace,
                span_id = %span,
                sampled = u8::from(e.sampled),
                request_id = e.request_id,
            );
        } else {
            tracing::info!(
                target: "tiffin::access",
                "{client} ({}) ({}) {:.3}ms (trace={trace},span={span},sampled={},request_id={})",
                RequestPart(self, e),
                ResponsePart(self, e),
                e.latency.as_secs_f64() * 1000.0,
                u8::from(e.sampled),
                e.request_id,
            );
        }
    }
}

/// A header shown in a JSON line: its text when the key is on.
fn shown(v: Option<&HeaderValue>, on: bool) -> Option<&str> {
    v.filter(|_| on).and_then(|v| v.to_str().ok())
}

/// An id in its configured format.
struct Id(IdFormat, u128);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, self.1)
    }
}

/// `ip:port`, or `_` as BentoML writes an unknown client.
struct Client(Option<SocketAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("_"),
        }
    }
}

/// A header's value as text (`?` for bytes that are not visible ASCII).
struct Header<'a>(Option<&'a HeaderValue>);

impl fmt::Display for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.map(HeaderValue::to_str) {
            Some(Ok(s)) => f.write_str(s),
            Some(Err(_)) => f.write_str("?"),
            None => Ok(()),
        }
    }
}

/// `scheme=…,method=…,path=…[,type=…][,length=…]`.
struct RequestPart<'a>(&'a AccessLog, &'a Entry<'a>);

impl fmt::Display for RequestPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (log, e) = (self.0, self.1);
        let mut end = e.path.len().min(MAX_LOGGED_PATH);
        while !e.path.is_char_boundary(end) {
            end -= 1;
        }
        write!(
            f,
            "scheme={},method={},path={}",
            e.scheme,
            e.method,
            &e.path[..end]
        )?;
        if log.request_type {
            write!(f, ",type={}", Header(e.request_type))?;
        }
        if log.request_length {
            write!(f, ",length={}", Header(e.request_length))?;
        }
        Ok(())
    }
}

/// `status=…[,type=…][,length=…]`.
struct ResponsePart<'a>(&'a AccessLog, &'a Entry<'a>);

impl fmt::Display for ResponsePart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (log, e) = (self.0, self.1);
        write!(f, "status={}", e.status)?;
        if let Some(code) = e.grpc_status {
            write!(f, ",grpc_status={code}")?;
        }
        if log.response_type {
            write!(f, ",type={}", Header(e.response_type))?;
        }
        if log.response_length {
            f.write_str(",length=")?;
            if let Some(n) = e.response_length {
                write!(f, "{n}")?;
            }
        }
        Ok(())
    }
}
