//! Request ids, spans and access-log lines for every gRPC call, as the HTTP
//! front door has them (`observation.rs`): a tower layer around all of the
//! server's services, so health, metadata and reflection calls are seen
//! too. The id comes from the `x-request-id` metadata (or `traceparent`)
//! and goes back in the response's initial metadata (an error's too); the
//! handler runs in the request's scope (`request_scope.rs`), so its runner
//! calls carry the id and the span across the IPC hop.
//!
//! The line and the span end when the response's headers are ready. For a
//! unary call that is its end: tonic answers an error with headers only,
//! `grpc-status` among them, and a success's `0` in the trailers, which is
//! why a missing `grpc-status` reads as `OK`. A streaming API's `CallStream`
//! goes on in its response body (`tail.rs`): its line and span are written
//! when its stream ends, with the code it ends with (`CANCELLED` when the
//! client cancelled or went away). For the other streaming calls (health
//! `Watch`, reflection) they mark the stream's start.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Code;

use super::status::{code_for_http_status, http_status_for_code};
use crate::observation::Observation;
use crate::state::ServerState;
use crate::tail::{CLIENT_CLOSED, Tail};

/// The layer (see the module docs), added with `Server::builder().layer`.
#[derive(Clone)]
pub(super) struct ObserveLayer {
    /// The API server's state: routes, tracer, access log.
    pub(super) state: Arc<ServerState>,
}

impl<S> tower_layer::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service [`ObserveLayer`] makes.
#[derive(Clone)]
pub(super) struct Observe<S> {
    inner: S,
    state: Arc<ServerState>,
}

impl<S, ReqBody, ResBody> tower_service::Service<hyper::Request<ReqBody>> for Observe<S>
where
    S: tower_service::Service<hyper::Request<ReqBody>, Response = hyper::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: hyper::body::Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<ReqBody>) -> Self::Future {
        let state = self.state.clone();
        let path = req.uri().path().to_owned();
        // Spans are named after the methods this server has (reflection's
        // even when it is off); any other path is a span named `grpc`, so
        // that a scanner's paths never become span names.
        let route = state.routes.resolve(&path);
        let client = req
            .extensions()
            .get::<super::incoming::ConnInfo>()
            .and_then(|info| {
                // The connection's first call has begun: a drain need not wait for it.
                info.fresh.begun();
                info.tcp.remote_addr()
            });
        let observed = Observation::begin(
            &state,
            route,
            req.method(),
            req.headers(),
            |tracer, parent| crate::trace::start_rpc(tracer, route, &path, parent),
        );
        // The call's tail: a `CallStream` takes it (`crate::stream`).
        let tail = Tail::default();
        let handled = crate::tail::within(tail.clone(), self.inner.call(req));
        Box::pin(async move {
            let mut resp = observed.scope(&state, handled).await?;
            // An error is a headers-only response carrying `grpc-status`; a
            // unary success has none there (its `0` is in the trailers).
            let code = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            let status = http_status_for_code(Code::from_i32(code));
            if tail.streaming() {
                let code = Some(stream_end_code as fn(u16) -> i32);
                let at_end = observed.finish_at_end(&state, client, &path, &mut resp, code);
                if let Err(now) = tail.defer(at_end) {
                    // The stream ended already.
                    now(status);
                }
            } else {
                observed.finish_grpc(&state, client, &path, &mut resp, code, status);
            }
            Ok(resp)
        })
    }
}

/// The code a `CallStream` ended with, from the status its stream ended
/// with (`crate::stream`: the code's own status, or 499 when dropped).
fn stream_end_code(status: u16) -> i32 {
    let code = if status == CLIENT_CLOSED {
        Code::Cancelled
    } else {
        code_for_http_status(status)
    };
    code as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_ends_with_the_code_of_its_status_or_cancelled() {
        assert_eq!(stream_end_code(200), 0);
        assert_eq!(stream_end_code(CLIENT_CLOSED), Code::Cancelled as i32);
        assert_eq!(stream_end_code(504), Code::DeadlineExceeded as i32);
        assert_eq!(stream_end_code(500), Code::Internal as i32);
    }
}
