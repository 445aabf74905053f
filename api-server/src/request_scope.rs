//! The request a task is serving, for code that knows nothing of requests.
//!
//! `Runner::call` runs deep inside a service's handler; the request id and
//! the span its runner calls hang under are set around that handler as a
//! task-local ([`within`]) and read where a call leaves for a runner
//! ([`current`]), as `deadline.rs` does for the deadline. This module is a
//! leaf: `request_id.rs` sets the scope, `pool.rs` and `trace.rs` read it.

use std::future::Future;

use hyper::header::HeaderValue;
use tiffin_telemetry::{TraceContext, Tracer};

/// What a request carries to its runner calls.
#[derive(Clone)]
pub(crate) struct RequestScope {
    /// The request id (visible ASCII, at most
    /// [`MAX_REQUEST_ID_LEN`](tiffin_ipc::proto::MAX_REQUEST_ID_LEN) bytes).
    pub id: HeaderValue,
    /// The tracer and the span runner calls are children of (tracing on only).
    pub trace: Option<(Tracer, TraceContext)>,
}

tokio::task_local! {
    static SCOPE: RequestScope;
}

/// Runs `fut` (a request's handler) with `scope` as the current request.
pub(crate) async fn within<F: Future>(scope: RequestScope, fut: F) -> F::Output {
    SCOPE.scope(scope, fut).await
}

/// Reads the current request's scope (`None` outside a request).
pub(crate) fn current<R>(f: impl FnOnce(&RequestScope) -> R) -> Option<R> {
    SCOPE.try_with(f).ok()
}
