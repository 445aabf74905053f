//! Serving one call of a stream method (`Runnable::stream_method`), wherever
//! the runner is hosted: the model's iterator is pulled on the blocking
//! pool, one item at a time and only when the caller has room for it
//! ([`Gate`], the worker's side of `tiffin_ipc::stream`), and each item is
//! handed to an [`ItemSink`] as soon as it exists: an event on the data
//! connection in a worker process (`serve.rs`), a channel in an embedded
//! runner (`embedded.rs`).
//!
//! A stream is one call to the runner's metrics: `request_in_progress` is
//! held from its start to its end, and its duration is the time to its last
//! item (BentoML records a streaming runner call the same way). A caller
//! that goes away cancels it: the iterator is not pulled again (the model's
//! work for the next item never starts), the iterator is dropped, the call
//! is counted in [`CANCELLED`](crate::host::CANCELLED) with `stage="running"` and finishes with
//! status 499 (nginx's "client closed request"; BentoML has none), and a
//! log line names its request id.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tiffin_ipc::stream::Credits;
use tiffin_service::CallError;
use tiffin_telemetry::Span;

use crate::host::{CallContext, Host, guarded, tag_with_request};

/// The status a cancelled stream is recorded with in the runner's metrics.
const CANCELLED_STATUS: u16 = 499;

/// Whether a stream may send its next item: the credits its caller granted,
/// and whether the caller went away. Shared by the thread pulling the
/// model's iterator, which waits here, and whoever hears from the caller.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug)]
struct GateState {
    credits: Credits,
    cancelled: bool,
}

impl Gate {
    /// The gate of a stream whose caller opened it with `window` credits.
    pub fn new(window: u32) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(GateState {
                credits: Credits::new(window),
                cancelled: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller took `items` more items.
    pub fn grant(&self, items: u32) {
        self.lock().credits.grant(items);
        self.changed.notify_all();
    }

    /// The item of the last credit taken went out, `len` bytes long.
    pub fn sent(&self, len: usize) {
        self.lock().credits.sent(len);
    }

    /// The caller went away: the stream stops before its next item.
    pub fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_all();
    }

    /// Waits (blocking the thread) until a credit is left and spends it;
    /// `false` once the stream is cancelled.
    pub fn wait_for_room(&self) -> bool {
        let mut state = self.lock();
        loop {
            if state.cancelled {
                return false;
            }
            if state.credits.take() {
                return true;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Why a stream stopped before its iterator ended.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// The caller went away.
    Cancelled,
    /// The item could not be delivered (e.g. too large to frame).
    Failed(CallError),
}

/// Where a stream's items go.
pub(crate) trait ItemSink: Send + 'static {
    /// Waits until the caller has room for one more item; `false` once
    /// it went away.
    fn room(&mut self) -> bool;
    /// Hands one item over.
    fn send(&mut self, item: Vec<u8>) -> Result<(), Stopped>;
}

/// How a stream ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The iterator ended; this many items were sent.
    Finished(u64),
    /// The call or an item failed, after this many items were sent.
    Failed(CallError, u64),
    /// The caller went away after this many items were sent.
    Cancelled(u64),
}

impl Outcome {
    /// The end of the stream as the wire says it (a cancelled stream's
    /// end is never read: its caller is gone).
    pub fn into_result(self) -> Result<u64, CallError> {
        match self {
            Outcome::Finished(n) => Ok(n),
            Outcome::Failed(e, _) => Err(e),
            Outcome::Cancelled(_) => Err(CallError::Failed("cancelled by the caller".into())),
        }
    }
}

impl Host {
    /// Runs one call of the stream method `method` on the blocking pool:
    /// its items go to `sink` as the caller makes room, and `end` gets the
    /// outcome once the sink is dropped (so every item was handed over
    /// first). A call whose deadline has passed is refused without running.
    pub fn call_stream(
        self: &Arc<Self>,
        method: String,
        payload: Vec<u8>,
        cx: CallContext,
        sink: impl ItemSink,
        end: impl FnOnce(Outcome) + Send + 'static,
    ) {
        if cx.expires.is_some_and(|t| Instant::now() >= t) {
            drop(sink);
            end(Outcome::Failed(CallError::DeadlineExceeded, 0));
            return;
        }
        let span = self.span(&method, cx.trace.as_ref());
        let started = Instant::now();
        let in_progress = self.metrics.as_ref().map(|m| m.start(&method));
        let host = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let outcome = host.pull(&method, &payload, sink);
            let outcome = host.record_stream(&method, started, outcome, &cx.request_id, span);
            drop(in_progress);
            end(outcome);
        });
    }

    /// Pulls the stream's items into `sink` (dropped before returning); a
    /// panic in the model is the stream's error, as a unary call's is.
    fn pull(&self, method: &str, payload: &[u8], mut sink: impl ItemSink) -> Outcome {
        let mut items = match guarded(|| self.runnable.call_stream(method, payload)) {
            Ok(items) => items,
            Err(e) => return Outcome::Failed(e, 0),
        };
        let mut sent = 0;
        loop {
            // Room first: the model computes the next item only for a
            // caller that can take it.
            if !sink.room() {
                return Outcome::Cancelled(sent);
            }
            match guarded(|| items.next().transpose()) {
                Ok(None) => return Outcome::Finished(sent),
                Err(e) => return Outcome::Failed(e, sent),
                Ok(Some(item)) => match sink.send(item) {
                    Ok(()) => sent += 1,
                    Err(Stopped::Cancelled) => return Outcome::Cancelled(sent),
                    Err(Stopped::Failed(e)) => return Outcome::Failed(e, sent),
                },
            }
        }
    }

    /// Records a finished stream (metrics, span, and a log line when it
    /// failed or was cancelled) and returns its outcome, a model error
    /// tagged with the request id as a unary call's is.
    fn record_stream(
        &self,
        method: &str,
        started: Instant,
        outcome: Outcome,
        request_id: &str,
        span: Option<Span>,
    ) -> Outcome {
        let status = match &outcome {
            Outcome::Finished(_) => 200,
            Outcome::Failed(e, sent) => {
                tracing::warn!(request_id = %request_id, method, items = sent, error = %e, "stream failed");
                if let Some(mut span) = span {
                    span.set_error(e.to_string());
                }
                e.http_status()
            }
            Outcome::Cancelled(sent) => {
                tracing::info!(request_id = %request_id, method, items = sent, "stream cancelled by its caller; stopped pulling its items");
                self.cancelled.inc();
                CANCELLED_STATUS
            }
        };
        if let Some(m) = &self.metrics {
            m.finish(method, status, started.elapsed().as_secs_f64());
        }
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match outcome {
            Outcome::Failed(e, sent) => Outcome::Failed(tag_with_request(e, request_id), sent),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
