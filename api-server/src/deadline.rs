//! A request's deadline (`api_server.traffic.timeout`), carried from the
//! front door to every runner call the request's handler makes.
//!
//! Handlers call runners through `Runner::call`, which knows nothing of
//! requests, so the deadline travels as a tokio task-local around the
//! handler's future: the runner pool reads it when it sends a call and hands
//! the time left to the worker (see `DataRequest::Call::budget_ms`).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `fut` with `deadline` as the request's deadline.
///
/// A plain function returning tokio's scope future, not an `async fn`: an
/// `async fn` keeps its argument `fut` and the future it awaits side by
/// side in its state, so each such wrapper doubled the size of a request's
/// future (see `request_scope::within`).
pub(crate) fn within<F: Future>(deadline: Instant, fut: F) -> impl Future<Output = F::Output> {
    DEADLINE.scope(deadline, fut)
}

/// Time left until the current request's deadline (`None`: no deadline is
/// set, e.g. outside a request).
pub(crate) fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}
