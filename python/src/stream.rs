//! Streams in a Python service's API server: the answer of a generator
//! handler ([`Sink`]) and the items of a runner's generator method that a
//! handler iterates ([`RunnerStream`], `runner.m.async_stream(...)`).
//!
//! Both keep the flow control of Rust streams (docs/streaming.md): a
//! handler's generator is pulled only once its answer has room for one
//! more item, a bounded channel of [`WINDOW`] items between Python and the
//! HTTP body, and a runner stream's next item is asked for only when Python
//! wants it. Waiting never holds the GIL: a generator's answer waits for
//! room on the asyncio loop (the wait ends through the
//! [`Inbox`](crate::inbox::Inbox) like a runner call's answer), and a plain
//! `def` handler iterating a runner stream waits on its thread with the GIL
//! released. A client that hangs up drops the channel's receiver, so
//! the next wait for room answers "closed" and Python closes the generator
//! (`GeneratorExit` at its `yield`); closing a runner stream drops it,
//! which cancels the runner's call.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tiffin_service::foreign::StreamApiHandler;
use tiffin_service::{ApiError, RunnerError as CallFailure, StreamFormat};
use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, OwnedPermit, Sender};

use crate::call::{RUNTIME, RunnerError, target};
use crate::inbox::{Item, Shared, Woken};

/// Items a generator handler may produce ahead of what the HTTP body took.
/// Sixteen, a quarter of the runner streams' window
/// (`tiffin_ipc::stream::STREAM_WINDOW`): that one is wide so that credits
/// wake a worker's model thread seldom, and bounded in bytes too; here the
/// items wait in a channel, whatever their size, and the generator's thread
/// is woken for each anyway.
pub const WINDOW: usize = 16;

type Written = Result<Bytes, ApiError>;

/// The handler of a streaming API: queues the request for the Python
/// thread with a [`Sink`] and answers the sink's items as they come.
pub fn api_handler(name: Arc<str>, format: StreamFormat, inbox: Arc<Shared>) -> StreamApiHandler {
    Box::new(move |body, content_type| {
        if RUNTIME.get().is_none()
            && let Ok(h) = Handle::try_current()
        {
            let _ = RUNTIME.set(h);
        }
        let (tx, mut rx) = mpsc::channel::<Written>(WINDOW);
        let sink = Sink(Arc::new(SinkInner {
            format,
            inbox: inbox.clone(),
            tx: Mutex::new(Some(tx)),
            permit: Mutex::new(None),
        }));
        inbox.push(Item::StreamRequest {
            api: name.clone(),
            body,
            content_type,
            sink: Box::new(move |py| Ok(Bound::new(py, sink)?.into_any())),
        });
        let items = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
        Box::pin(async move { Ok(items) })
    })
}

struct SinkInner {
    format: StreamFormat,
    inbox: Arc<Shared>,
    /// `None` once the answer ended (its last item or error was sent).
    tx: Mutex<Option<Sender<Written>>>,
    /// Room for one item, reserved before the generator is pulled.
    permit: Mutex<Option<OwnedPermit<Written>>>,
}

impl SinkInner {
    fn sender(&self) -> Option<Sender<Written>> {
        self.tx.lock().clone()
    }

    /// Keeps a reserved room; `false` when the client went away.
    fn keep(&self, permit: Result<OwnedPermit<Written>, impl Sized>) -> bool {
        match permit {
            Ok(p) => {
                *self.permit.lock() = Some(p);
                true
            }
            Err(_) => false,
        }
    }

    /// Sends one written item into the room reserved for it (or any room
    /// left: a handler that did not wait).
    fn put(&self, item: Written) {
        if let Some(permit) = self.permit.lock().take() {
            permit.send(item);
            return;
        }
        let Some(tx) = self.sender() else { return };
        if let Err(mpsc::error::TrySendError::Full(item)) = tx.try_send(item)
            && let Some(handle) = RUNTIME.get()
        {
            handle.spawn(async move {
                let _ = tx.send(item).await;
            });
        }
    }
}

/// Where a generator handler's items go: the body of its HTTP answer.
#[pyclass(frozen, module = "tiffin._native")]
pub struct Sink(Arc<SinkInner>);

#[pymethods]
impl Sink {
    /// Whether the answer has room for one more item now: `True` (and the
    /// room is kept for the next item), `False` when the client went away,
    /// `None` when it is full (wait with `wait_room`).
    fn room_now(&self) -> Option<bool> {
        if self.0.permit.lock().is_some() {
            return Some(true);
        }
        let tx = self.0.sender()?;
        match tx.try_reserve_owned() {
            Ok(p) => Some(self.0.keep(Ok::<_, ()>(p))),
            Err(mpsc::error::TrySendError::Full(_)) => None,
            Err(mpsc::error::TrySendError::Closed(_)) => Some(false),
        }
    }

    /// Waits on the runtime for room; the inbox says `(1, call_id, room, None)`.
    fn wait_room(&self, call_id: u64) -> PyResult<()> {
        let handle = runtime()?;
        let sink = self.0.clone();
        handle.spawn(async move {
            let room = match sink.sender() {
                Some(tx) => sink.keep(tx.reserve_owned().await),
                None => false,
            };
            sink.inbox.push(Item::Woke {
                call_id,
                outcome: Woken::Room(room),
            });
        });
        Ok(())
    }

    /// Sends a text item (a `bentoml.io.Text` output's string).
    fn send_text(&self, text: &str) -> PyResult<()> {
        let written = self.0.format.item(&text).map_err(value_error)?;
        self.0.put(Ok(written));
        Ok(())
    }

    /// Sends a JSON item, encoded by the output descriptor.
    fn send_json(&self, json: &[u8]) -> PyResult<()> {
        let value: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| PyValueError::new_err(format!("a stream item is not JSON: {e}")))?;
        let written = self.0.format.item(&value).map_err(value_error)?;
        self.0.put(Ok(written));
        Ok(())
    }

    /// Ends the answer with an error: the request's status before the
    /// first item, the format's error ending after items.
    fn fail(&self, status: u16, message: &str) {
        self.0.put(Err(ApiError::new(status, message)));
        self.close();
    }

    /// Ends the answer: its last item was sent.
    fn close(&self) {
        self.0.permit.lock().take();
        self.0.tx.lock().take();
    }
}

fn value_error(e: ApiError) -> PyErr {
    PyValueError::new_err(e.message)
}

fn runtime() -> PyResult<Handle> {
    RUNTIME.get().cloned().ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("streams run in a tiffin API server's handlers")
    })
}

type Items = BoxStream<'static, Result<Vec<u8>, CallFailure>>;

/// The items of a runner's stream method, as a handler iterates them.
/// Dropping or closing it cancels the runner's call.
#[pyclass(frozen, module = "tiffin._native")]
pub struct RunnerStream {
    items: Arc<tokio::sync::Mutex<Option<Items>>>,
    handle: Handle,
    inbox: Arc<Shared>,
}

/// Starts a call of the stream method `runner.method` with `payload`.
#[pyfunction]
pub fn stream(runner: &str, method: &str, payload: &[u8]) -> PyResult<RunnerStream> {
    let (calls, runner, handle) = target(runner)?;
    // The transport may start tasks of its own: inside the runtime.
    let items = {
        let _entered = handle.enter();
        runner.call_stream_raw(method, payload.to_vec())
    };
    Ok(RunnerStream {
        items: Arc::new(tokio::sync::Mutex::new(Some(items))),
        handle,
        inbox: calls.inbox.clone(),
    })
}

async fn next_of(
    items: &tokio::sync::Mutex<Option<Items>>,
) -> Result<Option<Vec<u8>>, CallFailure> {
    let mut items = items.lock().await;
    let Some(stream) = items.as_mut() else {
        return Ok(None);
    };
    match stream.next().await {
        Some(Ok(item)) => Ok(Some(item)),
        Some(Err(e)) => {
            *items = None;
            Err(e)
        }
        None => {
            *items = None;
            Ok(None)
        }
    }
}

#[pymethods]
impl RunnerStream {
    /// Asks for the next item; the inbox says `(1, call_id, True, item)`,
    /// `(1, call_id, True, None)` at the end or `(1, call_id, False,
    /// (status, message))`.
    fn next(&self, call_id: u64) {
        let items = self.items.clone();
        let inbox = self.inbox.clone();
        self.handle.spawn(async move {
            let outcome = match next_of(&items).await {
                Ok(item) => Woken::Item(item),
                Err(e) => Woken::Failed(e),
            };
            inbox.push(Item::Woke { call_id, outcome });
        });
    }

    /// The next item, waited for without the GIL; `None` at the end.
    fn next_blocking<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let items = self.items.clone();
        let handle = self.handle.clone();
        let next = py.allow_threads(move || handle.block_on(next_of(&items)));
        match next {
            Ok(item) => Ok(item.map(|b| PyBytes::new(py, &b))),
            Err(e) => {
                let status = ApiError::from(e.clone()).status;
                Err(RunnerError::new_err((status, e.to_string())))
            }
        }
    }

    /// Stops the stream: the runner's call is cancelled if it still runs.
    fn close(&self) {
        match self.items.try_lock() {
            Ok(mut items) => *items = None,
            Err(_) => {
                let items = self.items.clone();
                self.handle.spawn(async move {
                    *items.lock().await = None;
                });
            }
        }
    }
}
