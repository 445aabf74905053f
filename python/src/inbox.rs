//! The inbox of an API server's Python thread: requests for its handlers and
//! the answers of the runner calls they await, in one queue that wakes the
//! asyncio loop through a socket it watches (`loop.add_reader`).
//!
//! Tokio's threads never take the GIL to hand Python work: they push onto
//! the queue and, when it was empty, write one byte to wake the loop. The
//! loop's thread, which holds the GIL anyway, takes everything queued at
//! once ([`Inbox::take`]). The answer to a request goes back through a
//! [`Reply`], which completes the request's future without the GIL.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use tiffin_service::{ApiError, RunnerError};
use tokio::sync::oneshot;

/// A streaming request's sink, as the Python object its handler writes to.
pub type IntoSink = Box<dyn for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>> + Send>;

/// What an API's future waits for.
pub type Answer = Result<tiffin_service::Answer, ApiError>;

/// One piece of work for the Python thread.
pub enum Item {
    /// A request for the API `api`.
    Request {
        /// The API's name.
        api: Arc<str>,
        /// The request body.
        body: Bytes,
        /// Its `Content-Type`, if any.
        content_type: Option<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Answer>,
        /// The request's number in this process, which a [`Item::HungUp`]
        /// names.
        request: u64,
    },
    /// The client of request `request` went away before its answer.
    HungUp {
        /// The number its [`Item::Request`] carried.
        request: u64,
    },
    /// A request for the streaming API `api` (a generator handler),
    /// whose items go to `sink`.
    StreamRequest {
        /// The API's name.
        api: Arc<str>,
        /// The request body.
        body: Bytes,
        /// Its `Content-Type`, if any.
        content_type: Option<String>,
        /// Where the items go: `stream.rs`'s sink, made a Python object
        /// on the Python thread (the inbox does not need to know its type).
        sink: IntoSink,
    },
    /// A wait `call_id` of a stream ended (`stream.rs`).
    Woke {
        /// The id Python gave the wait.
        call_id: u64,
        /// What it waited for.
        outcome: Woken,
    },
    /// The outcome of the runner call `call_id` (`call.rs`).
    Done {
        /// The id Python gave the call.
        call_id: u64,
        /// The method's encoded output, or why it failed.
        result: Result<Vec<u8>, RunnerError>,
    },
}

/// How a stream's wait ended.
pub enum Woken {
    /// A streaming answer has room for one more item (`true`), or its
    /// client went away (`false`).
    Room(bool),
    /// A runner stream's next item; `None` at its end.
    Item(Option<Vec<u8>>),
    /// A runner stream failed.
    Failed(RunnerError),
}

/// The queue and its wake-up socket, shared by tokio's threads and Python's.
pub struct Shared {
    queue: Mutex<Queue>,
    wake_rx: UnixStream,
}

struct Queue {
    items: VecDeque<Item>,
    /// Whether a wake-up byte is unread: at most one is ever written, so
    /// the socket's buffer cannot fill.
    armed: bool,
    wake_tx: UnixStream,
}

impl Shared {
    /// Queues `item` and wakes the loop if the queue was idle.
    pub fn push(&self, item: Item) {
        let mut q = self.queue.lock();
        q.items.push_back(item);
        if !q.armed {
            q.armed = true;
            // A full buffer cannot happen (one byte at most is unread);
            // a closed one means the loop is gone and nothing waits.
            let _ = q.wake_tx.write(&[1]);
        }
    }
}

/// The inbox of the Python thread of an API server.
#[pyclass(frozen, module = "tiffin._native")]
pub struct Inbox {
    /// Shared with the handlers of the service (`host.rs`).
    pub shared: Arc<Shared>,
}

#[pymethods]
impl Inbox {
    #[new]
    fn new() -> PyResult<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Inbox {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    items: VecDeque::new(),
                    armed: false,
                    wake_tx,
                }),
                wake_rx,
            }),
        })
    }

    /// The descriptor the loop watches for readability.
    fn fileno(&self) -> i32 {
        self.shared.wake_rx.as_raw_fd()
    }

    /// Everything queued, as tuples: `(0, api, body, content_type, reply,
    /// request)` for a request, `(3, request)` when its client went away
    /// first, `(2, api, body, content_type, sink)` for a request
    /// of a streaming API, `(1, call_id, True, payload)` or
    /// `(1, call_id, False, (status, message))` for a finished runner call
    /// or a runner stream's item (`payload` `None` at its end), and
    /// `(1, call_id, room, None)` for a streaming answer's wait for room.
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let items = {
            let mut q = self.shared.queue.lock();
            let mut sink = [0u8; 64];
            loop {
                match (&self.shared.wake_rx).read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            q.armed = false;
            std::mem::take(&mut q.items)
        };
        items
            .into_iter()
            .map(|item| match item {
                Item::Request {
                    api,
                    body,
                    content_type,
                    reply,
                    request,
                } => (
                    0u8,
                    &*api,
                    PyBytes::new(py, &body),
                    content_type,
                    Reply(Mutex::new(Some(reply))),
                    request,
                )
                    .into_pyobject(py),
                Item::HungUp { request } => (3u8, request).into_pyobject(py),
                Item::StreamRequest {
                    api,
                    body,
                    content_type,
                    sink,
                } => sink(py).and_then(|sink| {
                    (2u8, &*api, PyBytes::new(py, &body), content_type, sink).into_pyobject(py)
                }),
                Item::Done { call_id, result } => match result {
                    Ok(payload) => {
                        (1u8, call_id, true, PyBytes::new(py, &payload)).into_pyobject(py)
                    }
                    Err(e) => failed(py, call_id, &e),
                },
                Item::Woke { call_id, outcome } => match outcome {
                    Woken::Room(room) => (1u8, call_id, room, py.None()).into_pyobject(py),
                    Woken::Item(Some(payload)) => {
                        (1u8, call_id, true, PyBytes::new(py, &payload)).into_pyobject(py)
                    }
                    Woken::Item(None) => (1u8, call_id, true, py.None()).into_pyobject(py),
                    Woken::Failed(e) => failed(py, call_id, &e),
                },
            })
            .collect()
    }
}

/// `(1, call_id, False, (status, message))`: a runner call or stream that failed.
fn failed<'py>(py: Python<'py>, call_id: u64, e: &RunnerError) -> PyResult<Bound<'py, PyTuple>> {
    let status = ApiError::from(e.clone()).status;
    (1u8, call_id, false, (status, e.to_string())).into_pyobject(py)
}

/// Where a Python handler sends its answer.
#[pyclass(frozen, module = "tiffin._native")]
pub struct Reply(Mutex<Option<oneshot::Sender<Answer>>>);

#[pymethods]
impl Reply {
    /// Answers the request with the encoded body, and the status, content
    /// type and headers the handler set (BentoML's `ctx.response`; `None`:
    /// the output descriptor's type). A second answer, or an answer to a
    /// request whose client left, is dropped.
    #[pyo3(signature = (body, status=200, content_type=None, headers=Vec::new()))]
    fn send(
        &self,
        body: &[u8],
        status: u16,
        content_type: Option<String>,
        headers: Vec<(String, String)>,
    ) {
        self.answer(Ok(tiffin_service::Answer {
            body: Bytes::copy_from_slice(body),
            status,
            content_type,
            headers,
        }));
    }

    /// Answers the request with an error: `status` and its message, sent as
    /// `{"error": message}`.
    fn fail(&self, status: u16, message: &str) {
        self.answer(Err(ApiError::new(status, message)));
    }
}

impl Reply {
    fn answer(&self, answer: Answer) {
        if let Some(tx) = self.0.lock().take() {
            let _ = tx.send(answer);
        }
    }
}
