//! A runner embedded in an API-server process (`runners.<name>.embedded`,
//! BentoML's word): its runnable is loaded in every API server, and a call
//! is a function call, with no socket, frame or second process.
//!
//! Everything else about the runner holds, because the call runs through
//! the same [`Host`] as in a worker process: the `bentoml_runner_*`
//! families with the same labels (the worker index is the API server's
//! index), the runnable's custom metrics, adaptive batching (a dispatcher
//! per API server), deadlines, spans, cancellation, and the request id on
//! a model's error. A panic in the model is that call's error, and the
//! process lives on.
//!
//! A non-batchable method runs on the host's model thread (`serial.rs`),
//! one call at a time as in a worker process: the API server's I/O threads
//! only queue the call and await its answer, so they keep answering other
//! requests, `/livez` and `/metrics` while a model computes or hangs, and
//! the request's own timer still fires (a hung model costs its callers a
//! 504 at `api_server.traffic.timeout`, never the process). A caller that
//! goes away (its client hung up, or its timeout answered first) cancels
//! its call as over a socket: a queued call is taken out without running, a
//! running cancellable method is told. A method whose calls take
//! microseconds runs on the I/O thread instead, where the hop would cost
//! as much as the call (`pace.rs` says when, and what that costs).
//!
//! The blocking pool, which ran these calls first, cost two thread
//! switches per call with nothing to show for them: in one `scripts/bench`
//! run an embedded `echo` was slower than the hop to a worker process.
//! Running every call inline on the I/O thread was tried and refused: a
//! running model then holds the request's own timer (no 504) and its API
//! server's snapshot (scrapes see it stale).
//!
//! A stream method streams here too ([`Embedded::call_stream`]): its
//! iterator is pulled on the blocking pool under the same credit window as
//! over a socket, so a slow client slows the model, and dropping the stream
//! stops it; a method whose items take microseconds is pulled by the
//! response body's poll itself (`stream/inline.rs`). What does not apply is
//! refused where it is asked for: a supervisor starts no worker for an
//! embedded runner, `tiffin scale` refuses it, and its configuration
//! cannot autoscale it.

use std::sync::Arc;

use tiffin_config::Config;
use tiffin_ipc::stream::{ReceiverHooks, STREAM_WINDOW, StreamReceiver};
use tiffin_service::{CallError, EncodedItems, EncodedStream, Service};

use crate::WorkerError;
use crate::host::{CallContext, Host, PendingCall};
use crate::stream::inline::InlineStream;
use crate::stream::{Gate, ItemSink, Outcome, PullOn, Stopped, Streamed};
use crate::ticket::CallTicket;

/// An embedded runner, loaded in this process.
#[derive(Clone)]
pub struct Embedded {
    pub(crate) host: Arc<Host>,
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
        Ok(Embedded {
            host: Arc::new(Host::load(service, runner, config, index, &role)?),
        })
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
        let ticket = CallTicket::new();
        // Dropped before the answer (the caller went away), it cancels the
        // call; `Host::cancel` does nothing for a call already answered.
        let _cancel = CancelOnDrop {
            host: Arc::clone(&self.host),
            call: PendingCall {
                ticket: Arc::clone(&ticket),
                method: method.clone(),
                request_id: cx.request_id.clone(),
            },
        };
        self.host
            .call_with(method, payload, cx, ticket, move |result| {
                let _ = tx.send(result);
            });
        rx.await.unwrap_or_else(|_| {
            Err(CallError::Failed(
                "the embedded runner dropped the call".into(),
            ))
        })
    }
}

/// Cancels an embedded call whose caller stopped waiting for it.
struct CancelOnDrop {
    host: Arc<Host>,
    call: PendingCall,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.call.cancel(&self.host);
    }
}

impl Embedded {
    /// Starts one call of the stream method `method` (refused if
    /// `cx.expires` has passed): its items as the model yields them, at
    /// most [`STREAM_WINDOW`] ahead of what was taken; dropping the stream
    /// cancels the call before its next item. A method whose items take
    /// microseconds is pulled by the stream's poller instead, one item per
    /// poll (`stream/inline.rs`).
    pub fn call_stream(&self, method: String, payload: Vec<u8>, cx: CallContext) -> EncodedStream {
        if self.host.stream_is_cheap(&method) {
            return Box::pin(InlineStream::start(
                &self.host, method, &payload, cx, resume,
            ));
        }
        let host = Arc::clone(&self.host);
        pooled(0, move |sink, end| {
            host.call_stream(method, payload, cx, PullOn::Pool, sink, end);
        })
    }
}

/// The rest of an inline stream whose `sent` items were taken already, on
/// the blocking pool ([`crate::stream::inline::Resume`]).
fn resume(host: &Arc<Host>, streamed: Streamed, items: EncodedItems, sent: u64) -> EncodedStream {
    let host = Arc::clone(host);
    pooled(sent, move |sink, end| {
        host.resume_stream(streamed, items, sent, sink, end);
    })
}

/// A stream whose items a blocking-pool thread pulls into a channel under
/// the credit window: `start` is given the sink and what the end goes to,
/// and starts that thread. `before` items were taken elsewhere already:
/// the end counts them, the channel does not.
fn pooled(
    before: u64,
    start: impl FnOnce(ChannelSink, Box<dyn FnOnce(Outcome) + Send>),
) -> EncodedStream {
    let gate = Gate::new(STREAM_WINDOW);
    let (items_tx, items) = tokio::sync::mpsc::unbounded_channel();
    let (end_tx, end) = tokio::sync::oneshot::channel();
    let sink = ChannelSink {
        items: items_tx,
        gate: gate.clone(),
    };
    start(
        sink,
        Box::new(move |outcome: Outcome| {
            let _ = end_tx.send(outcome.into_result().map(|n| n.saturating_sub(before)));
        }),
    );
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

/// A stream's items, handed to the API handler in this process.
struct ChannelSink {
    items: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    gate: std::sync::Arc<Gate>,
}

impl ItemSink for ChannelSink {
    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn hand_over(&mut self, item: Vec<u8>) -> Result<(), Stopped> {
        self.items.send(item).map_err(|_| Stopped::Cancelled)
    }
}
