//! Request ids: taken from the client when sane, made up otherwise, returned
//! in the response and carried to every runner call the request makes.
//!
//! # Rules
//!
//! 1. A client's `X-Request-ID` is kept when it is 1 to
//!    [`MAX_REQUEST_ID_LEN`] bytes of visible ASCII (`!` to `~`): such a value
//!    can be echoed in a header and written in a log line without escaping,
//!    and its size is bounded whatever the client sends. Anything else is
//!    replaced as if it were absent; a hostile value is never echoed.
//! 2. Without one, a valid W3C `traceparent` gives the id: its trace id, 32
//!    hex digits, so the id finds the request in the tracing backend.
//! 3. Otherwise the id is new: the trace id of the request's span when
//!    tracing is on (same reason), else 128 random bits in hex.
//!
//! The response carries it as `X-Request-ID` and as BentoML's
//! `X-BentoML-Request-ID`. Runner calls take it from a task-local set
//! around the request's handler (`request_scope.rs`, as `deadline.rs` does for the
//! deadline), so `Runner::call`, which knows nothing of requests, still sends
//! it in `DataRequest::Call`, and the runner worker's log lines and errors
//! for that call carry it.
//!
//! # Cost
//!
//! One `HeaderValue` per request (a client's is shared, not copied), cloned
//! by reference count into both response headers and the task-local; one
//! small `String` per runner call for the frame.

use std::cell::Cell;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};

use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Body;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, Response};
use tiffin_telemetry::{Span, TraceContext};

use crate::access_log::{AccessLog, Entry};
use crate::core::Core;
use crate::request_scope::{RequestScope, within};

pub use tiffin_ipc::proto::MAX_REQUEST_ID_LEN;

/// The client's request id header, and ours in responses.
pub(crate) const X_REQUEST_ID: &str = "x-request-id";
/// BentoML's response header for the same id.
pub(crate) const X_BENTOML_REQUEST_ID: &str = "x-bentoml-request-id";
/// W3C trace context.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// Whether a client's id may be kept (rule 1).
pub(crate) fn is_sane(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The client's `X-Request-ID` when sane, and its `traceparent` when valid.
pub(crate) fn from_headers(headers: &HeaderMap) -> (Option<HeaderValue>, Option<TraceContext>) {
    let id = headers
        .get(X_REQUEST_ID)
        .filter(|v| is_sane(v.as_bytes()))
        .cloned();
    let parent = headers
        .get(TRACEPARENT)
        .and_then(|v| tiffin_telemetry::parse_traceparent(v.as_bytes()));
    (id, parent)
}

/// The id for a request without a sane `X-Request-ID` (rules 2 and 3):
/// `trace_id` (the client's or our span's) when known, else random.
pub(crate) fn make(trace_id: Option<u128>) -> HeaderValue {
    let n = trace_id.filter(|&t| t != 0).unwrap_or_else(random_u128);
    let mut buf = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // 32 hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

thread_local! {
    /// SplitMix64 state, seeded once per thread from std's per-process
    /// random hash keys (which come from the OS).
    static RNG: Cell<u64> = Cell::new({
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        h.finish()
    });
}

/// 128 random bits: unique enough for ids, not for secrets.
fn random_u128() -> u128 {
    RNG.with(|state| {
        let next = || {
            let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(s);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (u128::from(next()) << 64) | u128::from(next())
    })
}

/// Sets both response headers to `id`.
pub(crate) fn set_response_headers(headers: &mut HeaderMap, id: &HeaderValue) {
    headers.insert(X_REQUEST_ID, id.clone());
    headers.insert(X_BENTOML_REQUEST_ID, id.clone());
}

/// What is known about one request from its arrival to its access-log
/// line: the id, the span, and the request's half of the line.
pub(crate) struct Observed {
    started: Instant,
    id: HeaderValue,
    span: Option<Span>,
    /// Trace id, span id and sampled flag for the log (the client's when
    /// tracing is off, all zero without a `traceparent`).
    ids: (u128, u64, bool),
    /// The request's half of the access-log line, unless not logged.
    logged: Option<(Method, Option<HeaderValue>, Option<HeaderValue>)>,
}

impl Observed {
    /// Reads the id and trace context of an HTTP request and starts its
    /// span. `route` is the path when it names a route of this server.
    pub(crate) fn begin(
        core: &Core,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
        route: Option<&str>,
    ) -> Observed {
        let started = Instant::now();
        let (client_id, parent) = from_headers(headers);
        let span = core
            .tracer
            .as_ref()
            .map(|t| crate::trace::start_request(t, method, route, path, parent.as_ref()));
        Self::with(
            core, started, method, headers, path, client_id, parent, span,
        )
    }

    /// The same for a gRPC call (an HTTP/2 `POST` to `/{service}/{method}`,
    /// its metadata the request's headers); `known` when this server has the
    /// method.
    pub(crate) fn begin_grpc(
        core: &Core,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
        known: bool,
    ) -> Observed {
        let started = Instant::now();
        let (client_id, parent) = from_headers(headers);
        let span = core
            .tracer
            .as_ref()
            .map(|t| crate::trace::start_rpc(t, path, known, parent.as_ref()));
        Self::with(
            core, started, method, headers, path, client_id, parent, span,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn with(
        core: &Core,
        started: Instant,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
        client_id: Option<HeaderValue>,
        parent: Option<TraceContext>,
        span: Option<Span>,
    ) -> Observed {
        let ctx = span.as_ref().map(Span::context).or(parent);
        let ids = ctx.map_or((0, 0, false), |c| (c.trace_id, c.span_id, c.sampled));
        let id = client_id.unwrap_or_else(|| make(ctx.map(|c| c.trace_id)));
        let logged = core
            .access_log
            .as_ref()
            .filter(|_| !AccessLog::skips(path))
            .map(|_| {
                (
                    method.clone(),
                    headers.get(CONTENT_TYPE).cloned(),
                    headers.get(CONTENT_LENGTH).cloned(),
                )
            });
        Observed {
            started,
            id,
            span,
            ids,
            logged,
        }
    }

    /// Runs the request's handler with this request as the current one.
    ///
    /// Not an `async fn`, so that the handler's future is held once (see
    /// `request_scope::within`); the returned future borrows nothing.
    pub(crate) fn scope<F: Future>(
        &self,
        core: &Core,
        fut: F,
    ) -> impl Future<Output = F::Output> + use<F> {
        let trace = match (&core.tracer, &self.span) {
            (Some(t), Some(s)) => Some((t.clone(), s.context())),
            _ => None,
        };
        let scope = RequestScope {
            id: self.id.clone(),
            trace,
        };
        within(scope, fut)
    }

    /// Adds the id headers to an HTTP response, ends the span and writes
    /// the access-log line.
    pub(crate) fn finish<B: Body>(
        self,
        core: &Core,
        client: Option<SocketAddr>,
        path: &str,
        resp: &mut Response<B>,
    ) {
        let status = resp.status().as_u16();
        self.end(core, client, path, resp, status, None);
    }

    /// The same for a gRPC call that ended with `code`, which BentoML's
    /// metrics and this log show as the HTTP `status`.
    pub(crate) fn finish_grpc<B: Body>(
        self,
        core: &Core,
        client: Option<SocketAddr>,
        path: &str,
        resp: &mut Response<B>,
        code: i32,
        status: u16,
    ) {
        self.end(core, client, path, resp, status, Some(code));
    }

    fn end<B: Body>(
        self,
        core: &Core,
        client: Option<SocketAddr>,
        path: &str,
        resp: &mut Response<B>,
        status: u16,
        grpc_status: Option<i32>,
    ) {
        set_response_headers(resp.headers_mut(), &self.id);
        let id = self.id.to_str().unwrap_or("");
        if let Some(mut span) = self.span {
            match grpc_status {
                Some(code) => crate::trace::finish_rpc(&mut span, code, id),
                None => crate::trace::finish_request(&mut span, status, id),
            }
        }
        if let (Some(log), Some((method, request_type, request_length))) =
            (&core.access_log, &self.logged)
        {
            log.write(&Entry {
                client,
                scheme: if grpc_status.is_some() {
                    "grpc"
                } else {
                    "http"
                },
                method,
                path,
                request_type: request_type.as_ref(),
                request_length: request_length.as_ref(),
                status,
                grpc_status,
                response_type: resp.headers().get(CONTENT_TYPE),
                response_length: resp.body().size_hint().exact(),
                latency: self.started.elapsed(),
                trace_id: self.ids.0,
                span_id: self.ids.1,
                sampled: self.ids.2,
                request_id: id,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_bounded_visible_ascii() {
        assert!(is_sane(b"abc-123_x.y"));
        assert!(is_sane(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_sane(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(b"tab\there"));
        assert!(!is_sane("é".as_bytes()));
    }

    #[test]
    fn made_ids_are_32_hex_digits_and_follow_the_trace() {
        let id = make(Some(0xabc));
        assert_eq!(id.to_str().ok(), Some("00000000000000000000000000000abc"));
        let a = make(None);
        let b = make(None);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
