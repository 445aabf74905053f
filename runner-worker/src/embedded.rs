//! A runner embedded in an API-server process (`runners.<name>.embedded`,
//! BentoML's word): its runnable is loaded in every API server, and a call
//! is a function call, with no socket, frame or second process.
//!
//! Everything else about the runner holds, because the call runs through
//! the same [`Host`] as in a worker process: the `bentoml_runner_*`
//! families with the same labels (the worker index is the API server's
//! index), the runnable's custom metrics, adaptive batching (a dispatcher
//! per API server), deadlines, spans, and the request id on a model's
//! error. A panic in the model is that call's error, and the process lives
//! on.
//!
//! ## The model thread
//!
//! A non-batchable method runs on a thread of its own per runner and API
//! server ([`ModelThread`]), fed by a bounded queue, one call at a time as
//! in a worker process. The API server's I/O threads only queue the call
//! and await its answer, so they keep answering other requests, `/livez`
//! and `/metrics` while a model computes or hangs, and the request's own
//! timer still fires: a hung model costs its callers a 504 at
//! `api_server.traffic.timeout`, never the process. Under load the thread
//! drains its queue without sleeping, so a call costs a queue push and a
//! wake-up, where the blocking pool it replaced cost two thread switches
//! (in one `scripts/bench` run that made an embedded `echo` slower than the
//! hop to a worker process). A queued call whose caller went away (the
//! client hung up, or its timeout answered first) is dropped without
//! running. Running the call inline on the I/O thread was tried and
//! refused: a running model then holds the request's own timer (no 504)
//! and its API server's snapshot (scrapes see it stale).
//!
//! A stream method streams here too ([`Embedded::call_stream`]): its
//! iterator is pulled on the blocking pool under the same credit window as
//! over a socket, so a slow client slows the model, and dropping the stream
//! stops it. What does not apply is
//! refused where it is asked for: a supervisor starts no worker for an
//! embedded runner, `tiffin scale` refuses it, and its configuration
//! cannot autoscale it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tiffin_config::Config;
use tiffin_ipc::stream::{ReceiverHooks, STREAM_WINDOW, StreamReceiver};
use tiffin_service::{CallError, EncodedStream, Service};

use crate::WorkerError;
use crate::host::{CallContext, Host, Single};
use crate::stream::{Gate, ItemSink, Stopped};

/// An embedded runner, loaded in this process.
#[derive(Clone)]
pub struct Embedded {
    host: Arc<Host>,
    model: ModelThread,
}

/// Calls that may wait for the model thread at once, beyond which a call
/// is refused as overloaded (503): the queue holds each waiting call's
/// input, so it must not grow without bound behind a hung model. Callers
/// give up at their deadline, so with a hung model the queue holds at most
/// what arrives within `api_server.traffic.timeout`, up to this bound.
const QUEUE_BOUND: usize = 4096;

/// One call waiting for the model thread.
struct Job {
    method: String,
    payload: Vec<u8>,
    cx: CallContext,
    answer: tokio::sync::oneshot::Sender<Result<Vec<u8>, CallError>>,
}

/// The thread that runs an embedded runner's non-batchable calls, one at a
/// time, in the order they came (see the module docs).
#[derive(Clone)]
struct ModelThread {
    queue: SyncSender<Job>,
}

impl ModelThread {
    /// Starts the thread of `host`; it ends when every [`Embedded`] handle
    /// is dropped (the queue's last sender).
    fn start(host: Arc<Host>) -> Result<ModelThread, WorkerError> {
        let (queue, jobs) = sync_channel(QUEUE_BOUND);
        let runner = host.runner.clone();
        // The model thread sees the API server's runtime, as the blocking
        // pool's threads did, for a model that reaches for it.
        let runtime = tokio::runtime::Handle::try_current().ok();
        std::thread::Builder::new()
            .name(format!("model-{}", host.runner))
            .spawn(move || {
                let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                run_jobs(&host, &jobs);
            })
            .map_err(|e| WorkerError::Load {
                runner,
                message: format!("cannot start the embedded runner's model thread: {e}"),
            })?;
        Ok(ModelThread { queue })
    }
}

/// The model thread's loop: each call in turn, skipping those whose caller
/// is gone.
fn run_jobs(host: &Arc<Host>, jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        if job.answer.is_closed() {
            tracing::debug!(
                runner = %host.runner,
                request_id = %job.cx.request_id,
                "a queued embedded call's caller went away; not run"
            );
            continue;
        }
        let answer = job.answer;
        host.call(job.method, job.payload, job.cx, Single::Inline, move |r| {
            let _ = answer.send(r);
        });
    }
}

impl Embedded {
    /// Loads `runner` of `service` in API server `index`.
    pub fn load(
        service: &Service,
        runner: &str,
        config: &Config,
        index: usize,
    ) -> Result<Embedded, WorkerError> {
        let role = format!("api_server:{index}:{runner}");
        let host = Arc::new(Host::load(service, runner, config, index, &role)?);
        let model = ModelThread::start(Arc::clone(&host))?;
        Ok(Embedded { host, model })
    }

    /// The runner's name.
    pub fn name(&self) -> &str {
        &self.host.runner
    }

    /// Runs one call of `method`, refused if `cx.expires` has passed, and
    /// waits for its result.
    pub async fn call(
        &self,
        method: String,
        payload: Vec<u8>,
        cx: CallContext,
    ) -> Result<Vec<u8>, CallError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.host.batches(&method) {
            // The dispatcher only queues the call: no thread to hop to.
            self.host
                .call(method, payload, cx, Single::Inline, move |result| {
                    let _ = tx.send(result);
                });
        } else {
            let job = Job {
                method,
                payload,
                cx,
                answer: tx,
            };
            match self.model.queue.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    return Err(CallError::Overloaded(format!(
                        "{QUEUE_BOUND} calls already wait for the embedded runner '{}'",
                        self.host.runner
                    )));
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(CallError::Unavailable(format!(
                        "the embedded runner '{}' has stopped",
                        self.host.runner
                    )));
                }
            }
        }
        rx.await.unwrap_or_else(|_| {
            Err(CallError::Failed(
                "the embedded runner dropped the call".into(),
            ))
        })
    }
}

impl Embedded {
    /// Starts one call of the stream method `method` (refused if
    /// `cx.expires` has passed): its items as the model yields them, at
    /// most [`STREAM_WINDOW`] ahead of what was taken; dropping the stream
    /// cancels the call before its next item.
    pub fn call_stream(&self, method: String, payload: Vec<u8>, cx: CallContext) -> EncodedStream {
        let gate = Gate::new(STREAM_WINDOW);
        let (items_tx, items) = tokio::sync::mpsc::unbounded_channel();
        let (end_tx, end) = tokio::sync::oneshot::channel();
        let sink = ChannelSink {
            items: items_tx,
            gate: gate.clone(),
        };
        self.host
            .call_stream(method, payload, cx, sink, move |outcome| {
                let _ = end_tx.send(outcome.into_result());
            });
        let end = Box::pin(async move {
            end.await.unwrap_or_else(|_| {
                Err(CallError::Failed(
                    "the embedded runner dropped the stream".into(),
                ))
            })
        });
        let (granted, cancelled) = (gate.clone(), gate);
        let hooks = ReceiverHooks {
            credit: Box::new(move |n| granted.grant(n)),
            dropped: Box::new(move |ended| {
                if !ended {
                    cancelled.cancel();
                }
            }),
        };
        Box::pin(StreamReceiver::new(STREAM_WINDOW, None, items, end, hooks))
    }
}

/// A stream's items, handed to the API handler in this process.
struct ChannelSink {
    items: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    gate: std::sync::Arc<Gate>,
}

impl ItemSink for ChannelSink {
    fn room(&mut self) -> bool {
        self.gate.wait_for_room()
    }

    fn send(&mut self, item: Vec<u8>) -> Result<(), Stopped> {
        self.items.send(item).map_err(|_| Stopped::Cancelled)
    }
}
