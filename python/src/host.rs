//! A Python service as a [`Service`]: the description its Python process
//! printed (`tiffin_service::foreign`), with handlers that hand requests to
//! the Python thread's inbox (API servers) and runnables whose methods call
//! the Python runnable (runner workers).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use tiffin_service::foreign::{ApiHandler, Description, RunnableLoader};
use tiffin_service::{ApiError, CallError, Runnable, Service};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::call::RUNTIME;
use crate::inbox::{Item, Shared};

/// `Type: message` of a Python exception, as a client sees it.
pub fn describe_error(py: Python<'_>, e: &PyErr) -> String {
    let kind = e
        .get_type(py)
        .name()
        .map_or_else(|_| "Exception".to_string(), |n| n.to_string());
    format!("{kind}: {}", e.value(py))
}

/// The API servers' service: every API's handler queues the request for
/// the Python thread and waits for its [`Reply`](crate::inbox::Reply).
pub fn api_service(description: &Description, inbox: Arc<Shared>) -> Service {
    description.build(
        |api| {
            let inbox = inbox.clone();
            let name: Arc<str> = api.name.as_str().into();
            let handler: ApiHandler = Box::new(move |body, content_type| {
                if RUNTIME.get().is_none()
                    && let Ok(h) = Handle::try_current()
                {
                    let _ = RUNTIME.set(h);
                }
                let (reply, answer) = oneshot::channel();
                inbox.push(Item::Request {
                    api: name.clone(),
                    body,
                    content_type,
                    reply,
                });
                Box::pin(async move {
                    answer.await.unwrap_or_else(|_| {
                        Err(ApiError::internal(
                            "the Python handler ended without answering",
                        ))
                    })
                })
            });
            handler
        },
        |_| Box::new(|| Err("runners are not loaded by an API server".to_string())),
    )
}

/// A runner worker's service: its runner's loader asks `host` (the Python
/// `_RunnerHost` of `python/tiffin/_worker.py`) to build the runnable, and
/// each method calls `host.call` or `host.call_batch` with the encoded inputs.
pub fn runner_service(description: &Description, runner: &str, host: Py<PyAny>) -> Service {
    let host = Arc::new(host);
    description.build(
        |_| Box::new(|_, _| Box::pin(async { Err(ApiError::internal("not an API server")) })),
        |r| {
            if r.name != runner {
                return Box::new(|| Err("another worker's runner".to_string()));
            }
            let host = host.clone();
            let methods = r.methods.clone();
            let loader: RunnableLoader = Box::new(move || {
                Python::with_gil(|py| {
                    // `_RunnerHost.load` words the failure itself, with the
                    // user's traceback (its own frames would only add noise).
                    host.call_method0(py, "load")
                        .map_err(|e| describe_error(py, &e))
                })?;
                let mut runnable = Runnable::new();
                for m in &methods {
                    let host = host.clone();
                    let name = m.name.clone();
                    runnable = if m.batchable {
                        runnable.raw_batch_method(&m.name, move |inputs| {
                            call_batch(&host, &name, inputs)
                        })
                    } else {
                        runnable.raw_method(&m.name, move |input| call_one(&host, &name, input))
                    };
                }
                Ok(runnable)
            });
            loader
        },
    )
}

fn call_one(host: &Py<PyAny>, method: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
    Python::with_gil(|py| {
        let out = host
            .call_method1(py, "call", (method, PyBytes::new(py, input)))
            .map_err(|e| CallError::Failed(describe_error(py, &e)))?;
        let bytes = out.downcast_bound::<PyBytes>(py).map_err(|_| {
            CallError::Failed("the runnable's answer was not encoded to bytes".into())
        })?;
        Ok(bytes.as_bytes().to_vec())
    })
}

fn call_batch(host: &Py<PyAny>, method: &str, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> {
    Python::with_gil(|py| {
        let list = PyList::new(py, inputs.iter().map(|b| PyBytes::new(py, b)))
            .map_err(|e| CallError::Failed(describe_error(py, &e)))?;
        let out = host
            .call_method1(py, "call_batch", (method, list))
            .map_err(|e| CallError::Failed(describe_error(py, &e)))?;
        let outs = out
            .downcast_bound::<PyList>(py)
            .map_err(|_| CallError::Failed("the runnable's batch answer was not a list".into()))?;
        outs.iter()
            .map(|o| {
                o.downcast::<PyBytes>()
                    .map(|b| b.as_bytes().to_vec())
                    .map_err(|_| {
                        CallError::Failed("the runnable's answer was not encoded to bytes".into())
                    })
            })
            .collect()
    })
}
