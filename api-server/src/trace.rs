//! The API server's spans: one per request or gRPC call (kind server, child
//! of the client's `traceparent`), and one per runner call it makes (kind client,
//! whose context travels in `DataRequest::Call` to become the parent of the
//! runner worker's span). The exporter and sampler are in `tiffin-telemetry`.
//!
//! Span names follow OpenTelemetry's HTTP conventions: `{method} {route}`
//! for an API or a probe (`Route::names_http_span`), `{method}` alone
//! otherwise (a scanner's paths must not become span names); `url.path` is
//! an attribute, cut to [`MAX_PATH_ATTRIBUTE`] bytes.

use hyper::Method;
use tiffin_telemetry::{Kind, Span, TraceContext, Tracer};

use crate::route::Route;

/// Longest `url.path` attribute recorded.
const MAX_PATH_ATTRIBUTE: usize = 256;

/// Starts the span of one request to `path`, which `route` resolved.
pub(crate) fn start_request(
    tracer: &Tracer,
    method: &Method,
    route: Route<'_>,
    path: &str,
    parent: Option<&TraceContext>,
) -> Span {
    let name = if route.names_http_span() {
        format!("{method} {path}")
    } else {
        method.as_str().to_owned()
    };
    let mut span = tracer.start(name, Kind::Server, parent);
    if span.is_recording() {
        span.set_str("http.request.method", method.as_str().to_owned());
        let mut end = path.len().min(MAX_PATH_ATTRIBUTE);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        span.set_str("url.path", path[..end].to_owned());
    }
    span
}

/// Records the outcome of a request on its span.
pub(crate) fn finish_request(span: &mut Span, status: u16, request_id: &str) {
    let error = || (status >= 500).then(|| format!("HTTP {status}"));
    record_outcome(
        span,
        ("http.response.status_code", i64::from(status)),
        request_id,
        error,
    );
}

/// Sets a finished span's status attribute and request id, and its error
/// when `error` names one (nothing when the span is not recorded).
fn record_outcome(
    span: &mut Span,
    (status_key, status): (&'static str, i64),
    request_id: &str,
    error: impl FnOnce() -> Option<String>,
) {
    if !span.is_recording() {
        return;
    }
    span.set_i64(status_key, status);
    span.set_str("tiffin.request_id", request_id.to_owned());
    if let Some(error) = error() {
        span.set_error(error);
    }
}

/// Starts the span of one gRPC call to `path`, named as OpenTelemetry's
/// RPC conventions name it (`{service}/{method}`, the path without its `/`)
/// when `route` is a method this server has, plain `grpc` otherwise.
pub(crate) fn start_rpc(
    tracer: &Tracer,
    route: Route<'_>,
    path: &str,
    parent: Option<&TraceContext>,
) -> Span {
    let known = route.names_grpc_span();
    let full = path.trim_start_matches('/');
    let name = if known {
        full.to_owned()
    } else {
        "grpc".to_owned()
    };
    let mut span = tracer.start(name, Kind::Server, parent);
    if span.is_recording() {
        span.set_str("rpc.system", "grpc");
        if known && let Some((service, method)) = full.split_once('/') {
            span.set_str("rpc.service", service.to_owned());
            span.set_str("rpc.method", method.to_owned());
        }
    }
    span
}

/// Records the outcome of a gRPC call on its span: the status code, and an
/// error for the codes OpenTelemetry counts as server errors (`UNKNOWN`,
/// `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`,
/// `DATA_LOSS`); a client's bad argument is not the server's error.
pub(crate) fn finish_rpc(span: &mut Span, code: i32, request_id: &str) {
    let error = || matches!(code, 2 | 4 | 12 | 13 | 14 | 15).then(|| format!("gRPC status {code}"));
    record_outcome(
        span,
        ("rpc.grpc.status_code", i64::from(code)),
        request_id,
        error,
    );
}

/// Starts the client span of a runner call inside the current request
/// (`None`: tracing off, or not inside a request).
pub(crate) fn start_runner_call(runner: &str, method: &str) -> Option<Span> {
    let (tracer, parent) = crate::request_scope::current(|s| s.trace.clone()).flatten()?;
    let mut span = tracer.start(
        format!("runner {runner}.{method}"),
        Kind::Client,
        Some(&parent),
    );
    if span.is_recording() {
        span.set_str("tiffin.runner", runner.to_owned());
        span.set_str("tiffin.runner.method", method.to_owned());
    }
    Some(span)
}
