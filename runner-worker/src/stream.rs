//! Serving one call of a stream method (`Runnable::stream_method`), wherever
//! the runner is hosted: the model's iterator is pulled on the blocking
//! pool, one item at a time and only when the caller has room for it
//! ([`Gate`], the worker's side of `tiffin_ipc::stream`), and each item is
//! handed to an [`ItemSink`] as soon as it exists: an event on the data
//! connection in a worker process (`serve.rs`), a channel in an embedded
//! runner (`embedded.rs`). An embedded runner pulls the items of a method
//! whose items take microseconds in the response body's poll instead
//! (`stream/inline.rs`); the pulls on the pool are what earn it that.
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
use std::time::{Duration, Instant};

use tiffin_ipc::stream::Credits;
use tiffin_metrics::InProgressGuard;
use tiffin_service::{CallError, EncodedItems};
use tiffin_telemetry::Span;

use crate::host::{CallContext, Host, guarded, tag_with_request};
use crate::pace::{DEMOTE, Pace};

/// The status a cancelled stream is recorded with in the runner's metrics.
const CANCELLED_STATUS: u16 = 499;

/// Whether a stream may send its next item: the credits its caller granted,
/// and whether the caller went away. Shared by the thread pulling the
/// model's iterator, which waits here, and whoever hears from the caller.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    /// Wakes a blocking-pool thread waiting in [`Gate::wait_for_room`].
    changed: Condvar,
    /// Wakes a task waiting in [`Gate::room`].
    notify: tokio::sync::Notify,
}

#[derive(Debug)]
struct GateState {
    credits: Credits,
    cancelled: bool,
}

impl GateState {
    /// `Some(false)` once the stream is cancelled, `Some(true)` with a
    /// credit spent, `None` to wait.
    fn admit(&mut self) -> Option<bool> {
        if self.cancelled {
            Some(false)
        } else if self.credits.take() {
            Some(true)
        } else {
            None
        }
    }
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
            notify: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller took `items` more items.
    pub fn grant(&self, items: u32) {
        self.lock().credits.grant(items);
        self.changed.notify_all();
        self.notify.notify_one();
    }

    /// The item of the last credit taken went out, `len` bytes long.
    pub fn sent(&self, len: usize) {
        self.lock().credits.sent(len);
    }

    /// The caller went away: the stream stops before its next item.
    pub fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_all();
        self.notify.notify_one();
    }

    /// [`Gate::wait_for_room`] for a task: waits without a thread.
    pub async fn room(&self) -> bool {
        loop {
            // Registered before the look, so a grant between the two wakes it.
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(admitted) = self.lock().admit() {
                return admitted;
            }
            notified.await;
        }
    }

    /// Waits (blocking the thread) until a credit is left and spends it;
    /// `false` once the stream is cancelled.
    pub fn wait_for_room(&self) -> bool {
        let mut state = self.lock();
        loop {
            if let Some(admitted) = state.admit() {
                return admitted;
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

/// Where a stream's items go, under the caller's credit window.
pub(crate) trait ItemSink: Send + 'static {
    /// The stream's gate: the credits its caller granted, and whether it
    /// went away (a wait for room is a wait here).
    fn gate(&self) -> &Gate;
    /// Hands one item over (its credit spent and its bytes counted: see
    /// [`deliver`]).
    fn hand_over(&mut self, item: Vec<u8>) -> Result<(), Stopped>;
}

/// Where [`Host::call_stream`] pulls a stream's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullOn {
    /// A blocking-pool thread of the stream's own.
    Pool,
    /// A task on the caller's runtime when the method is cheap
    /// ([`Host::stream_is_cheap`]; a worker process), else the pool.
    CallerIfCheap,
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

/// A stream call from its start to its end: what recording it needs.
pub(crate) struct Streamed {
    method: String,
    started: Instant,
    /// `request_in_progress`, held to the stream's end.
    in_progress: Option<InProgressGuard>,
    request_id: String,
    span: Option<Span>,
}

impl Host {
    /// Starts recording a stream call of `method` (its span and
    /// `request_in_progress`); [`Host::end_stream`] records its end.
    pub(crate) fn begin_stream(&self, method: String, cx: CallContext) -> Streamed {
        Streamed {
            span: self.span(&method, cx.trace.as_ref()),
            started: Instant::now(),
            in_progress: self.metrics.as_ref().map(|m| m.start(&method)),
            request_id: cx.request_id,
            method,
        }
    }

    /// The model's iterator of one call of the stream method `method`; a
    /// panic in the model is the stream's error, as a unary call's is.
    pub(crate) fn open_stream(
        &self,
        method: &str,
        payload: &[u8],
    ) -> Result<EncodedItems, CallError> {
        guarded(|| self.runnable.call_stream(method, payload))
    }

    /// Runs one call of the stream method `method`: its items go to `sink`
    /// as the caller makes room, and `end` gets the outcome once the sink is
    /// dropped (so every item was handed over first). A call whose deadline
    /// has passed is refused without running.
    ///
    /// The items are pulled on the blocking pool; or, for a cheap method
    /// ([`Host::stream_is_cheap`]) with [`PullOn::CallerIfCheap`] (a worker
    /// process), by a task on the caller's runtime that waits for credits
    /// on the sink's gate without a thread of its own. A pull over
    /// [`DEMOTE`] there demotes the method and hands the rest of the stream
    /// to the pool (`stream/inline.rs` says why).
    pub fn call_stream(
        self: &Arc<Self>,
        method: String,
        payload: Vec<u8>,
        cx: CallContext,
        pull_on: PullOn,
        mut sink: impl ItemSink,
        end: impl FnOnce(Outcome) + Send + 'static,
    ) {
        if cx.expires.is_some_and(|t| Instant::now() >= t) {
            drop(sink);
            end(Outcome::Failed(CallError::DeadlineExceeded, 0));
            return;
        }
        let here = pull_on == PullOn::CallerIfCheap && self.stream_is_cheap(&method);
        let streamed = self.begin_stream(method, cx);
        let host = Arc::clone(self);
        if !here {
            tokio::task::spawn_blocking(move || {
                let outcome = match host.open_stream(&streamed.method, &payload) {
                    Ok(items) => host.pull(&streamed.method, items, 0, sink),
                    Err(e) => {
                        drop(sink);
                        Outcome::Failed(e, 0)
                    }
                };
                end(host.end_stream(streamed, outcome));
            });
            return;
        }
        tokio::spawn(async move {
            let outcome = match host.open_stream(&streamed.method, &payload) {
                Ok(items) => match host.pull_here(&streamed.method, items, &mut sink).await {
                    Ok(outcome) => outcome,
                    Err((items, sent)) => {
                        host.resume_stream(streamed, items, sent, sink, end);
                        return;
                    }
                },
                Err(e) => Outcome::Failed(e, 0),
            };
            drop(sink);
            end(host.end_stream(streamed, outcome));
        });
    }

    /// Whether `method` is a stream method whose items take microseconds
    /// (`pace.rs`): its streams are pulled on the caller's thread.
    pub(crate) fn stream_is_cheap(&self, method: &str) -> bool {
        self.stream_paces.get(method).is_some_and(Pace::earned)
    }

    /// Pulls `items` into `sink` on this task, waiting for credits on its
    /// gate: how the stream ended, or, after a slow pull, what is left of
    /// it (the iterator and the items sent) for the pool.
    async fn pull_here(
        &self,
        method: &str,
        mut items: EncodedItems,
        sink: &mut impl ItemSink,
    ) -> Result<Outcome, (EncodedItems, u64)> {
        let mut sent = 0;
        loop {
            if !sink.gate().room().await {
                return Ok(Outcome::Cancelled(sent));
            }
            let pulled = Instant::now();
            let next = guarded(|| items.next().transpose());
            let slow = self.slow_pull(method, pulled.elapsed());
            if let Some(outcome) = deliver(next, sink, &mut sent) {
                return Ok(outcome);
            }
            if slow {
                return Err((items, sent));
            }
        }
    }

    /// Whether a pull of `method` on the caller's thread that took `took`
    /// was slow: if so, the method is demoted (`pace.rs`) and it says so.
    pub(crate) fn slow_pull(&self, method: &str, took: Duration) -> bool {
        if took <= DEMOTE {
            return false;
        }
        if let Some(pace) = self.stream_paces.get(method) {
            pace.demote();
        }
        tracing::warn!(
            runner = %self.runner,
            method,
            took_ms = took.as_millis() as u64,
            "a stream item pulled on the caller's thread was slow; the method's streams are pulled on the blocking pool until it is cheap again"
        );
        true
    }

    /// Goes on with a stream whose first `sent` items were pulled elsewhere
    /// (an embedded runner's inline stream, `stream/inline.rs`, or a worker's
    /// task, [`Host::call_stream`]): the rest of `items` is pulled on the blocking
    /// pool as [`Host::call_stream`] pulls a stream, and `end` gets the
    /// outcome counting every item.
    pub(crate) fn resume_stream(
        self: &Arc<Self>,
        streamed: Streamed,
        items: EncodedItems,
        sent: u64,
        sink: impl ItemSink,
        end: impl FnOnce(Outcome) + Send + 'static,
    ) {
        let host = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let outcome = host.pull(&streamed.method, items, sent, sink);
            end(host.end_stream(streamed, outcome));
        });
    }

    /// Pulls `items` into `sink` (dropped before returning), counting from
    /// `sent`. Each pull's time goes to the method's pace (`pace.rs`): a
    /// method whose items take microseconds is pulled on the caller's
    /// thread in an embedded runner (`stream/inline.rs`).
    fn pull(
        &self,
        method: &str,
        mut items: EncodedItems,
        mut sent: u64,
        mut sink: impl ItemSink,
    ) -> Outcome {
        let pace = self.stream_paces.get(method);
        loop {
            // Room first: the model computes the next item only for a
            // caller that can take it.
            if !sink.gate().wait_for_room() {
                return Outcome::Cancelled(sent);
            }
            let pulled = Instant::now();
            let next = guarded(|| items.next().transpose());
            if let Some(pace) = pace
                && pace.ran_queued(pulled.elapsed())
            {
                tracing::info!(
                    runner = %self.runner,
                    method,
                    "a cheap stream method: its items are pulled on the caller's thread from now on"
                );
            }
            if let Some(outcome) = deliver(next, &mut sink, &mut sent) {
                return outcome;
            }
        }
    }

    /// Records the end of `streamed` (see [`Host::record_stream`]) and
    /// releases its `request_in_progress`.
    pub(crate) fn end_stream(&self, streamed: Streamed, outcome: Outcome) -> Outcome {
        let Streamed {
            method,
            started,
            in_progress,
            request_id,
            span,
        } = streamed;
        let outcome = self.record_stream(&method, started, outcome, &request_id, span);
        drop(in_progress);
        outcome
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

/// Hands one pull's result to `sink`, counting its bytes on the gate (the
/// window's byte bound): `None` to go on (the item counted in `sent`), or
/// how the stream ended.
fn deliver(
    next: Result<Option<Vec<u8>>, CallError>,
    sink: &mut impl ItemSink,
    sent: &mut u64,
) -> Option<Outcome> {
    match next {
        Ok(None) => Some(Outcome::Finished(*sent)),
        Err(e) => Some(Outcome::Failed(e, *sent)),
        Ok(Some(item)) => {
            sink.gate().sent(item.len());
            match sink.hand_over(item) {
                Ok(()) => {
                    *sent += 1;
                    None
                }
                Err(Stopped::Cancelled) => Some(Outcome::Cancelled(*sent)),
                Err(Stopped::Failed(e)) => Some(Outcome::Failed(e, *sent)),
            }
        }
    }
}

pub(crate) mod inline;

#[cfg(test)]
mod tests;
