//! Runner calls made by Python handlers: `runner.method.async_run(...)`
//! ([`call`], answered through the [`Inbox`](crate::inbox::Inbox)) and
//! `runner.method.run(...)` ([`call_blocking`], which waits without the GIL).
//!
//! Payloads are what Python encoded (pickles, `python/tiffin/_runner.py`):
//! the runner worker hands them to the runnable's Python as they are.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::asyncio::CancelledError;
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tiffin_service::{ApiError, CallError, Runner, RunnerError as CallFailure};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::inbox::{Item, Shared};

create_exception!(
    _native,
    RunnerError,
    PyException,
    "A runner call failed: args are (HTTP status, message)."
);

/// What this API-server process calls runners with, set when its service is built.
pub struct Calls {
    /// The service's runners by name.
    pub runners: HashMap<String, Runner>,
    /// Where the answers of `async_run` calls go.
    pub inbox: Arc<Shared>,
    /// How long a runner call may wait (`api_server.traffic.timeout`).
    pub bound: Duration,
}

/// Set once per API-server process (`host.rs`).
pub static CALLS: OnceLock<Calls> = OnceLock::new();

/// The API server's runtime, learnt from the first request it hands Python
/// (handlers are the only callers of runners).
pub static RUNTIME: OnceLock<Handle> = OnceLock::new();

pub(crate) fn target(runner: &str) -> PyResult<(&'static Calls, Runner, Handle)> {
    let calls = CALLS.get().ok_or_else(|| {
        PyRuntimeError::new_err("runners are called from API handlers, in an API-server process")
    })?;
    let found = *calls.runners.get(runner).ok_or_else(|| {
        PyRuntimeError::new_err(format!("this service has no runner named '{runner}'"))
    })?;
    let handle = RUNTIME.get().cloned().ok_or_else(|| {
        PyRuntimeError::new_err("runners are called from API handlers, once the API server serves")
    })?;
    Ok((calls, found, handle))
}

fn raise(e: CallFailure) -> PyErr {
    let status = ApiError::from(e.clone()).status;
    RunnerError::new_err((status, e.to_string()))
}

/// A handler's way to drop its runner calls when its client went away.
///
/// The API server tells the Python thread of a hang-up (`host.rs`); the
/// handler's task is cancelled (`_worker.py`), and whatever runner call it
/// waits for is cancelled with it: `async_run` sets the [`CallCancel`] it
/// gave [`call`], a plain `def` handler's request sets the one its `run()`
/// calls wait on ([`call_blocking`]). The runner call's future is then
/// dropped, which cancels the call in the runner worker
/// (docs/streaming.md, "Cancelling a unary call").
#[pyclass(frozen, module = "tiffin._native")]
pub struct CallCancel(watch::Sender<bool>);

#[pymethods]
impl CallCancel {
    #[new]
    fn new() -> Self {
        CallCancel(watch::Sender::new(false))
    }

    /// The caller went away: the calls waiting on this are dropped.
    fn set(&self) {
        self.0.send_replace(true);
    }
}

/// Ends when `cancel` was set (before or after); never without one.
fn cancelled(
    cancel: Option<&CallCancel>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let rx = cancel.map(|c| c.0.subscribe());
    async move {
        // No token, or the sender gone (an error): never set, so never ends.
        let set = match rx {
            Some(mut rx) => rx.wait_for(|set| *set).await.is_ok(),
            None => false,
        };
        if !set {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts a call of `runner.method` with `payload`; its outcome arrives in
/// the inbox as `(1, call_id, ...)`, unless `cancel` is set first (then the
/// call is dropped and nothing arrives: its handler was cancelled).
#[pyfunction]
#[pyo3(signature = (runner, method, payload, call_id, cancel=None))]
pub fn call(
    runner: &str,
    method: &str,
    payload: &[u8],
    call_id: u64,
    cancel: Option<&CallCancel>,
) -> PyResult<()> {
    let (calls, runner, handle) = target(runner)?;
    let fut = runner.call_raw(method, payload.to_vec());
    let inbox = calls.inbox.clone();
    let bound = calls.bound;
    let cancelled = cancelled(cancel);
    handle.spawn(async move {
        // Bounded as `run` is, so an awaiting handler always gets an answer.
        let call = async {
            tokio::time::timeout(bound, fut)
                .await
                .unwrap_or(Err(CallFailure::Call(CallError::DeadlineExceeded)))
        };
        let result = tokio::select! {
            result = call => result,
            () = cancelled => return,
        };
        inbox.push(Item::Done { call_id, result });
    });
    Ok(())
}

/// Calls `runner.method` and waits for its answer without holding the GIL
/// (from a plain `def` handler, which runs on a thread of its own). When
/// `cancel` is set meanwhile (the handler's client went away), the call is
/// dropped and `asyncio.CancelledError` raised in the handler.
#[pyfunction]
#[pyo3(signature = (runner, method, payload, cancel=None))]
pub fn call_blocking<'py>(
    py: Python<'py>,
    runner: &str,
    method: &str,
    payload: &[u8],
    cancel: Option<&CallCancel>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (calls, runner, handle) = target(runner)?;
    let fut = runner.call_raw(method, payload.to_vec());
    let bound = calls.bound;
    let cancelled = cancelled(cancel);
    let out = py.allow_threads(move || {
        handle.block_on(async move {
            let call = async {
                match tokio::time::timeout(bound, fut).await {
                    Ok(r) => r.map_err(raise),
                    Err(_) => Err(RunnerError::new_err((
                        504,
                        format!("the runner call took longer than {} s", bound.as_secs_f64()),
                    ))),
                }
            };
            tokio::select! {
                result = call => result,
                () = cancelled => Err(PyErr::new::<CancelledError, _>(
                    "the request's client went away",
                )),
            }
        })
    })?;
    Ok(PyBytes::new(py, &out))
}
