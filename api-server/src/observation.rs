//! What one request leaves behind besides its answer: its request id
//! (`request_id.rs`) in the response, its span (`trace.rs`), and its
//! access-log line (`access_log.rs`).
//!
//! Both front doors observe a request the same way: [`Observation::begin`]
//! when it arrives (the id is chosen and the span started before the
//! handler runs, so its runner calls can carry both), [`Observation::scope`]
//! around the handler, and [`Observation::finish`] (or `finish_grpc`) once
//! the response's headers are ready. HTTP does it in `http.rs`, gRPC in the
//! tower layer of `grpc/observe.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Body;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, Response};
use tiffin_telemetry::{Span, TraceContext, Tracer};

use crate::access_log::{AccessLog, Entry};
use crate::request_id;
use crate::request_scope::{RequestScope, within};
use crate::route::Route;
use crate::state::ServerState;

/// What is known about one request from its arrival to its access-log
/// line: the id, the span, and the request's half of the line.
pub(crate) struct Observation {
    started: Instant,
    id: HeaderValue,
    span: Option<Span>,
    /// Trace id, span id and sampled flag for the log (the client's when
    /// tracing is off, all zero without a `traceparent`).
    ids: (u128, u64, bool),
    /// The request's half of the access-log line, unless not logged.
    logged: Option<(Method, Option<HeaderValue>, Option<HeaderValue>)>,
}

impl Observation {
    /// Reads the id and trace context of a request (for gRPC, an HTTP/2
    /// `POST` to `/{service}/{method}` whose metadata are its headers) and,
    /// when tracing is on, starts its span with `start_span` (given the
    /// client's context, if any, as the parent). Probes are not logged.
    pub(crate) fn begin(
        state: &ServerState,
        route: Route<'_>,
        method: &Method,
        headers: &HeaderMap,
        start_span: impl FnOnce(&Tracer, Option<&TraceContext>) -> Span,
    ) -> Observation {
        let started = Instant::now();
        let (client_id, parent) = request_id::from_headers(headers);
        let span = state
            .tracer
            .as_ref()
            .map(|t| start_span(t, parent.as_ref()));
        let ctx = span.as_ref().map(Span::context).or(parent);
        let ids = ctx.map_or((0, 0, false), |c| (c.trace_id, c.span_id, c.sampled));
        let id = client_id.unwrap_or_else(|| request_id::make(ctx.map(|c| c.trace_id)));
        let logged = state
            .access_log
            .as_ref()
            .filter(|_| !route.is_probe())
            .map(|_| {
                (
                    method.clone(),
                    headers.get(CONTENT_TYPE).cloned(),
                    headers.get(CONTENT_LENGTH).cloned(),
                )
            });
        Observation {
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
        state: &ServerState,
        fut: F,
    ) -> impl Future<Output = F::Output> + use<F> {
        let trace = match (&state.tracer, &self.span) {
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
        state: &ServerState,
        client: Option<SocketAddr>,
        path: &str,
        resp: &mut Response<B>,
    ) {
        let status = resp.status().as_u16();
        self.end(state, client, path, resp, status, None);
    }

    /// The same for a gRPC call that ended with `code`, which BentoML's
    /// metrics and this log show as the HTTP `status`.
    pub(crate) fn finish_grpc<B: Body>(
        self,
        state: &ServerState,
        client: Option<SocketAddr>,
        path: &str,
        resp: &mut Response<B>,
        code: i32,
        status: u16,
    ) {
        self.end(state, client, path, resp, status, Some(code));
    }

    /// For a streaming answer (its request goes on in its body, `tail.rs`):
    /// adds the id headers now, and answers what ends the span and writes
    /// the access-log line when the stream ends, given the stream's status,
    /// so that both last as long as the request does. A gRPC call's `code`
    /// is the status code its stream's status ends it with.
    pub(crate) fn finish_at_end<B: Body>(
        self,
        state: &ServerState,
        client: Option<SocketAddr>,
        path: &str,
        resp: &mut Response<B>,
        code: Option<fn(u16) -> i32>,
    ) -> impl FnOnce(u16) + Send + 'static {
        request_id::set_response_headers(resp.headers_mut(), &self.id);
        let log = state.access_log.clone();
        let path = path.to_owned();
        let response_type = resp.headers().get(CONTENT_TYPE).cloned();
        move |status| {
            let answer = Answered {
                status,
                grpc_status: code.map(|code| code(status)),
                response_type: response_type.as_ref(),
                // Streamed in chunks: no length to log.
                response_length: None,
            };
            self.record(log.as_ref(), client, &path, &answer);
        }
    }

    fn end<B: Body>(
        self,
        state: &ServerState,
        client: Option<SocketAddr>,
        path: &str,
        resp: &mut Response<B>,
        status: u16,
        grpc_status: Option<i32>,
    ) {
        request_id::set_response_headers(resp.headers_mut(), &self.id);
        let answer = Answered {
            status,
            grpc_status,
            response_type: resp.headers().get(CONTENT_TYPE),
            response_length: resp.body().size_hint().exact(),
        };
        self.record(state.access_log.as_ref(), client, path, &answer);
    }

    /// Ends the span and writes the access-log line (when `log` is on).
    fn record(
        self,
        log: Option<&AccessLog>,
        client: Option<SocketAddr>,
        path: &str,
        answer: &Answered<'_>,
    ) {
        let Answered {
            status,
            grpc_status,
            response_type,
            response_length,
        } = *answer;
        let id = self.id.to_str().unwrap_or("");
        if let Some(mut span) = self.span {
            match grpc_status {
                Some(code) => crate::trace::finish_rpc(&mut span, code, id),
                None => crate::trace::finish_request(&mut span, status, id),
            }
        }
        if let (Some(log), Some((method, request_type, request_length))) = (log, &self.logged) {
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
                response_type,
                response_length,
                latency: self.started.elapsed(),
                trace_id: self.ids.0,
                span_id: self.ids.1,
                sampled: self.ids.2,
                request_id: id,
            });
        }
    }
}

/// The response's half of a request's access-log line.
#[derive(Clone, Copy)]
struct Answered<'a> {
    status: u16,
    grpc_status: Option<i32>,
    response_type: Option<&'a HeaderValue>,
    response_length: Option<u64>,
}
