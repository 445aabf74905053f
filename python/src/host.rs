//! A Python service as a [`Service`]: the description its Python process
//! printed (`tiffin_service::foreign`), with handlers that hand requests to
//! the Python thread's inbox (API servers) and runnables whose methods call
//! the Python runnable (runner workers).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use tiffin_service::foreign::{ApiHandler, Description, RunnableLoader};
use tiffin_service::{
    ApiError, CallError, Cancellation, EncodedItems, Runnable, Service, StreamFormat,
};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::call::RUNTIME;
use crate::cancel::Running;
use crate::inbox::{Item, Shared};
use crate::stream;

/// `Type: message` of a Python exception, as a client sees it.
pub fn describe_error(py: Python<'_>, e: &PyErr) -> String {
    let kind = e
        .get_type(py)
        .name()
        .map_or_else(|_| "Exception".to_string(), |n| n.to_string());
    format!("{kind}: {}", e.value(py))
}

/// The API servers' service: every API's handler queues the request for
/// the Python thread and waits for its [`Reply`](crate::inbox::Reply), or,
/// for a generator handler, answers the items of its
/// [`Sink`](crate::stream::Sink).
pub fn api_service(description: &Description, inbox: Arc<Shared>) -> Service {
    let streams = inbox.clone();
    description.build_streaming(
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
                let request = REQUESTS.fetch_add(1, Ordering::Relaxed);
                inbox.push(Item::Request {
                    api: name.clone(),
                    body,
                    content_type,
                    reply,
                    request,
                });
                let hang_up = HangUp {
                    inbox: Some(inbox.clone()),
                    request,
                };
                Box::pin(async move {
                    let answer = answer.await.unwrap_or_else(|_| {
                        Err(ApiError::internal(
                            "the Python handler ended without answering",
                        ))
                    });
                    hang_up.answered();
                    answer
                })
            });
            handler
        },
        |api| {
            let format = api.stream.map_or(StreamFormat::EventStream, |s| s.format());
            stream::api_handler(api.name.as_str().into(), format, streams.clone())
        },
        |_| Box::new(|| Err("runners are not loaded by an API server".to_string())),
    )
}

/// Numbers the requests of this API server's Python handlers.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Dropped with a request's future before its answer came (the client
/// went away, or the request's deadline passed), it tells the Python
/// thread, which cancels the handler and the runner call it waits for
/// (`call.rs`, [`CallCancel`](crate::call::CallCancel)).
struct HangUp {
    /// `None` once answered.
    inbox: Option<Arc<Shared>>,
    request: u64,
}

impl HangUp {
    /// The answer came: nothing to tell.
    fn answered(mut self) {
        self.inbox = None;
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            inbox.push(Item::HungUp {
                request: self.request,
            });
        }
    }
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
                    runnable = if m.stream {
                        runnable.raw_stream_method(&m.name, move |input| {
                            open_stream(&host, &name, input)
                        })
                    } else if m.batchable {
                        runnable.raw_batch_method(&m.name, move |inputs| {
                            call_batch(&host, &name, inputs)
                        })
                    } else {
                        runnable.raw_cancellable_method(&m.name, move |input, cancel| {
                            call_one(&host, &name, input, cancel)
                        })
                    };
                }
                Ok(runnable)
            });
            loader
        },
    )
}

/// One call of a plain method; a caller that goes away while it runs
/// raises `asyncio.CancelledError` in it (`cancel.rs`).
fn call_one(
    host: &Py<PyAny>,
    method: &str,
    input: &[u8],
    cancel: &Cancellation,
) -> Result<Vec<u8>, CallError> {
    Python::with_gil(|py| {
        let running = Running::start(py, cancel);
        let out = host.call_method1(py, "call", (method, PyBytes::new(py, input)));
        running.end(py);
        let out = out.map_err(|e| CallError::Failed(describe_error(py, &e)))?;
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

/// Starts a call of a generator method: `host.call_stream` makes the
/// generator (the Python `_Pulled` of `python/tiffin/_worker.py`), whose
/// items the worker pulls one at a time.
fn open_stream(host: &Py<PyAny>, method: &str, input: &[u8]) -> Result<EncodedItems, CallError> {
    Python::with_gil(|py| {
        let pulled = host
            .call_method1(py, "call_stream", (method, PyBytes::new(py, input)))
            .map_err(|e| CallError::Failed(describe_error(py, &e)))?;
        Ok(Box::new(Pulled(Some(pulled))) as EncodedItems)
    })
}

/// A Python generator's items, pickled: each `next` takes the GIL for one
/// `pull()`, so the generator runs only when the worker has room for its
/// item (`runner-worker/src/stream.rs`), and the GIL is free while the
/// worker waits. Dropped before its end (the caller went away), it closes
/// the generator: `GeneratorExit` at its `yield`, its `finally` blocks run.
struct Pulled(Option<Py<PyAny>>);

impl Iterator for Pulled {
    type Item = Result<Vec<u8>, CallError>;

    fn next(&mut self) -> Option<Self::Item> {
        let pulled = self.0.as_ref()?;
        let item = Python::with_gil(|py| match pulled.call_method0(py, "pull") {
            Ok(out) if out.is_none(py) => None,
            Ok(out) => Some(match out.downcast_bound::<PyBytes>(py) {
                Ok(b) => Ok(b.as_bytes().to_vec()),
                Err(_) => Err(CallError::Failed(
                    "the runnable's item was not encoded to bytes".into(),
                )),
            }),
            Err(e) => Some(Err(CallError::Failed(describe_error(py, &e)))),
        });
        if !matches!(item, Some(Ok(_))) {
            // Ended or failed: nothing left to close.
            self.0 = None;
        }
        item
    }
}

impl Drop for Pulled {
    fn drop(&mut self) {
        if let Some(pulled) = self.0.take() {
            Python::with_gil(|py| {
                if let Err(e) = pulled.call_method0(py, "close") {
                    // A `finally` that raises: the stream is over anyway.
                    e.print(py);
                }
            });
        }
    }
}
