//! The request a task is serving, for code that knows nothing of requests.
//!
//! `Runner::call` runs deep inside a service's handler; the request id and
//! the span its runner calls hang under are set around that handler as a
//! task-local ([`within`]) and read where a call leaves for a runner
//! ([`current`]), as `deadline.rs` does for the deadline. This module is a
//! leaf: `observation.rs` sets the scope, `pool.rs` and `trace.rs` read it.

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
///
/// Deliberately not an `async fn`: rustc stores an `async fn`'s arguments
/// apart from the futures it awaits, so `async fn within(.., fut)` held the
/// handler's future twice. Three such wrappers around a 4.7 KB handler made
/// a 20 KB future that hyper copied into place for every request (`perf`
/// put 18% of the API servers' user time in `memmove`). Returning tokio's
/// scope future holds `fut` once.
pub(crate) fn within<F: Future>(scope: RequestScope, fut: F) -> impl Future<Output = F::Output> {
    SCOPE.scope(scope, fut)
}

/// Reads the current request's scope (`None` outside a request).
pub(crate) fn current<R>(f: impl FnOnce(&RequestScope) -> R) -> Option<R> {
    SCOPE.try_with(f).ok()
}
