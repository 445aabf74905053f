//! The dispatcher: one tokio task per batchable method that drives the pure
//! [`Batcher`] with the runtime's clock and runs the method on the batches
//! it decides.
//!
//! Connections hand calls over with [`Dispatcher::submit`] (a channel send,
//! no task per call); the task admits them, sleeps while waiting for company
//! pays, rejects calls that cannot meet their deadline, and runs a batch: on
//! the blocking pool when it is expected to take long (calls keep being
//! admitted meanwhile), inline when it is shorter than the hand-off. It feeds
//! each batch's measured duration back into the latency model. The clock is
//! tokio's ([`tokio::time::Instant`]), which is the system's monotonic clock
//! in a running worker and a clock the tests pause and advance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};

use tiffin_service::CallError;
use tiffin_telemetry::{Kind, Span, TraceContext, Tracer};

use super::latency::LatencyModel;
use super::policy::{BatchLimits, Batcher, Decision};
use crate::ticket::{CallTicket, cancelled_error};

/// A batch implementation: many JSON inputs in, as many outputs out.
pub type BatchFn = Arc<dyn Fn(&[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> + Send + Sync>;

/// Called with each dispatched batch size.
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

/// Resolution of tokio's timers: a sleep ends at the next tick of this size.
const TIMER_GRAIN: Duration = Duration::from_millis(1);

/// Batches estimated to run shorter than this run on the worker's own thread.
const INLINE_BELOW: Duration = Duration::from_micros(500);

/// The dispatcher's clock: tokio's, so that tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Where the result of one call goes: a callback run exactly once, on the
/// dispatcher's task. The connection hands one in with each call, so a call
/// costs no task and no channel of its own; a reply dropped unsent (the
/// dispatcher gone) still answers, with an error.
pub struct Reply(Option<Deliver>);

type Deliver = Box<dyn FnOnce(Result<Vec<u8>, CallError>) + Send>;

impl Reply {
    /// Wraps the callback that delivers a call's result.
    pub fn new(deliver: impl FnOnce(Result<Vec<u8>, CallError>) + Send + 'static) -> Self {
        Self(Some(Box::new(deliver)))
    }

    /// Delivers the result.
    pub fn send(mut self, result: Result<Vec<u8>, CallError>) {
        if let Some(deliver) = self.0.take() {
            deliver(result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(deliver) = self.0.take() {
            deliver(Err(CallError::Failed("batch dropped".to_string())));
        }
    }
}

/// One call handed to a dispatcher.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The call's encoded input.
    pub payload: Vec<u8>,
    /// The request's deadline: a call still queued when it passes is
    /// answered with [`CallError::DeadlineExceeded`] and never runs.
    pub expires: Option<Instant>,
    /// The call's span, when traced: the batch it runs in is linked to it.
    pub trace: Option<TraceContext>,
    /// The call's ticket, when its caller may cancel it: a call cancelled
    /// while queued is taken out of the queue at once (answered with the
    /// cancelled error, never in a batch); one cancelled once its batch
    /// started runs to the batch's end.
    pub ticket: Option<Arc<CallTicket>>,
}

impl Call {
    /// A call with no deadline and no span.
    pub fn new(payload: Vec<u8>) -> Self {
        Self {
            payload,
            ..Self::default()
        }
    }
}

/// A call in the dispatcher's queue.
struct Item {
    call: Call,
    enqueued: Instant,
    reply: Reply,
}

/// A span per batch: named `batch <name>`, with the attribute `batch.size`,
/// child of the first traced call in it and linked to every traced call.
#[derive(Clone)]
pub struct BatchSpans {
    /// Where the spans go.
    pub tracer: Tracer,
    /// The method's name in span names (`<runner>.<method>`).
    pub name: String,
}

impl BatchSpans {
    /// The span of one batch, when any of its calls is traced.
    fn start(&self, items: &[Item]) -> Option<Span> {
        let traced: Vec<TraceContext> = items.iter().filter_map(|i| i.call.trace).collect();
        let parent = traced.first()?;
        let mut span = self.tracer.start_linked(
            format!("batch {}", self.name),
            Kind::Internal,
            Some(parent),
            &traced,
        );
        span.set_i64("batch.size", items.len() as i64);
        Some(span)
    }
}

/// Handle to a running dispatcher; clone it into every connection.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Item>,
    /// Woken by a queued call's cancel (`CallTicket::queued_in`).
    cancelled: Arc<Notify>,
}

impl Dispatcher {
    /// Starts the dispatcher task for one method (inside a tokio runtime).
    /// `observe` gets every dispatched batch's size; with `spans`, every
    /// batch holding a traced call gets a span.
    pub fn spawn(
        method: BatchFn,
        limits: BatchLimits,
        observe: BatchObserver,
        spans: Option<BatchSpans>,
    ) -> Self {
        Self::start(method, limits, LatencyModel::new(), observe, spans)
    }

    /// As [`Dispatcher::spawn`], from a given latency model.
    fn start(
        method: BatchFn,
        limits: BatchLimits,
        model: LatencyModel,
        observe: BatchObserver,
        spans: Option<BatchSpans>,
    ) -> Self {
        // The channel only hands calls over to the task; the queue bound is
        // enforced by the batcher. The channel's own bound covers calls that
        // arrive while the task is busy replying.
        let (tx, rx) = mpsc::channel(limits.queue_capacity.max(1).saturating_mul(2));
        let cancelled = Arc::new(Notify::new());
        let driver = Driver {
            rx,
            cancelled: Arc::clone(&cancelled),
            open: true,
            batcher: Batcher::with_model(limits, model),
            method,
            observe,
            spans,
        };
        tokio::spawn(driver.run());
        Self { tx, cancelled }
    }

    /// Queues one call; `reply` gets its result (or the reason it was
    /// refused).
    pub fn submit(&self, call: Call, reply: Reply) {
        if let Some(ticket) = &call.ticket {
            ticket.queued_in(&self.cancelled);
        }
        let item = Item {
            call,
            enqueued: now(),
            reply,
        };
        if let Err(e) = self.tx.try_send(item) {
            let (item, err) = match e {
                mpsc::error::TrySendError::Full(item) => (
                    item,
                    CallError::Overloaded("batch queue is full".to_string()),
                ),
                mpsc::error::TrySendError::Closed(item) => (
                    item,
                    CallError::Unavailable("batch dispatcher stopped".to_string()),
                ),
            };
            item.reply.send(Err(err));
        }
    }

    /// Queues one call and waits for its result.
    pub async fn call(&self, call: Call) -> Result<Vec<u8>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            call,
            Reply::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx.await
            .unwrap_or_else(|_| Err(CallError::Failed("batch dropped".to_string())))
    }
}

/// The dispatcher task: the calls' channel, the policy, and what a batch needs.
struct Driver {
    rx: mpsc::Receiver<Item>,
    /// Woken when a queued call is cancelled.
    cancelled: Arc<Notify>,
    /// Whether `rx` may still yield calls (some [`Dispatcher`] is alive).
    open: bool,
    batcher: Batcher<Item>,
    method: BatchFn,
    observe: BatchObserver,
    spans: Option<BatchSpans>,
}

/// What running a batch gave: the method's result, and the payloads back
/// (for a retry of each call alone) unless the blocking pool dropped them.
type Ran = (Result<Vec<Vec<u8>>, CallError>, Option<Vec<Vec<u8>>>);

impl Driver {
    /// Serves calls until every [`Dispatcher`] is dropped and the queue is empty.
    async fn run(mut self) {
        loop {
            self.admit_handed_over();
            self.remove_cancelled();
            match self.batcher.decide(now()) {
                Decision::Idle if !self.open => return,
                Decision::Idle => self.receive().await,
                Decision::Reject(n) => {
                    let err = self.batcher.late_error();
                    for item in self.batcher.take(n) {
                        item.reply.send(Err(err.clone()));
                    }
                }
                Decision::WaitUntil(t) => self.wait_until(t).await,
                Decision::Dispatch(n) => self.run_batch(n).await,
            }
        }
    }

    /// Admits one call, or answers it with the reason it was refused.
    fn admit(&mut self, item: Item) {
        // Cancelled on its way in: its queue's wake may have come and gone.
        if item.call.ticket.as_ref().is_some_and(|t| t.is_cancelled()) {
            item.reply.send(Err(cancelled_error()));
            return;
        }
        let at = item.enqueued;
        if let Err((item, err)) = self.batcher.push(at, item) {
            item.reply.send(Err(err));
        }
    }

    /// Admits every call already in the channel.
    fn admit_handed_over(&mut self) {
        while let Ok(item) = self.rx.try_recv() {
            self.admit(item);
        }
    }

    /// Takes the calls whose callers went away off the queue and answers
    /// them.
    fn remove_cancelled(&mut self) {
        let gone = |item: &Item| item.call.ticket.as_ref().is_some_and(|t| t.is_cancelled());
        for item in self.batcher.remove_where(gone) {
            item.reply.send(Err(cancelled_error()));
        }
    }

    /// Waits for the next call and admits it, or for a queued call's
    /// cancel and removes it (cancel-safe: a call received is admitted in
    /// the same poll, and a cancel's wake is stored until taken).
    async fn receive(&mut self) {
        let cancelled = Arc::clone(&self.cancelled);
        tokio::select! {
            item = self.rx.recv() => match item {
                Some(item) => self.admit(item),
                None => self.open = false,
            },
            () = cancelled.notified() => self.remove_cancelled(),
        }
    }

    /// Waits for company until `t`, or until a call arrives.
    async fn wait_until(&mut self, t: Instant) {
        if !self.open {
            // No more calls can come: waiting cannot grow the batch.
            return self.run_batch(self.batcher.len()).await;
        }
        if t.saturating_duration_since(now()) < TIMER_GRAIN {
            // A timer this short would fire at the next millisecond
            // tick instead. Let the connections hand over the calls
            // they have already read, and go if none came.
            tokio::task::yield_now().await;
            let queued = self.batcher.len();
            self.admit_handed_over();
            if self.batcher.len() == queued {
                self.run_batch(queued).await;
            }
            return;
        }
        tokio::select! {
            () = self.receive() => {}
            () = tokio::time::sleep_until(t.into()) => {}
        }
    }

    /// Runs the method on the `n` oldest calls and answers them.
    async fn run_batch(&mut self, n: usize) {
        let at = now();
        let items: Vec<Item> = self
            .batcher
            .take(n)
            .into_iter()
            .filter_map(|item| match item.call.expires {
                Some(t) if at >= t => {
                    item.reply.send(Err(CallError::DeadlineExceeded));
                    None
                }
                // Cancelled since the queue was last cleared: not in the batch.
                _ if item.call.ticket.as_ref().is_some_and(|t| !t.start()) => {
                    item.reply.send(Err(cancelled_error()));
                    None
                }
                _ => Some(item),
            })
            .collect();
        let n = items.len();
        if n == 0 {
            return;
        }
        (self.observe)(n);
        // Ends when this function returns, after every reply is sent.
        let _span = self.spans.as_ref().and_then(|s| s.start(&items));
        let (payloads, replies): (Vec<Vec<u8>>, Vec<Reply>) =
            items.into_iter().map(|i| (i.call.payload, i.reply)).unzip();
        let started = now();
        self.batcher.started(started, n);
        let ran = if self.batcher.model().estimate(n) < INLINE_BELOW {
            // A batch this short costs less than the hand-off to the blocking
            // pool; running it here only delays admission by that long.
            (run_guarded(&self.method, &payloads), Some(payloads))
        } else {
            let run = run_blocking(self.method.clone(), payloads);
            tokio::pin!(run);
            // Keep admitting (and fast-rejecting) calls while the batch runs.
            loop {
                tokio::select! {
                    ran = &mut run => break ran,
                    () = self.receive(), if self.open => {}
                }
            }
        };
        self.batcher
            .finished(n, now().saturating_duration_since(started));
        answer(&self.method, ran, replies).await;
    }
}

/// Hands a batch's outputs to its calls; when the batch failed as a whole,
/// runs each call alone so that errors land on their causes.
async fn answer(method: &BatchFn, ran: Ran, replies: Vec<Reply>) {
    let n = replies.len();
    match ran {
        (Ok(outputs), _) if outputs.len() == n => {
            for (reply, out) in replies.into_iter().zip(outputs) {
                reply.send(Ok(out));
            }
        }
        (Ok(outputs), _) => {
            let err = CallError::Failed(format!(
                "batch method returned {} outputs for {n} inputs",
                outputs.len()
            ));
            for reply in replies {
                reply.send(Err(err.clone()));
            }
        }
        (Err(_), Some(payloads)) if n > 1 => {
            for (payload, reply) in payloads.into_iter().zip(replies) {
                let (result, _) = run_blocking(method.clone(), vec![payload]).await;
                reply.send(result.and_then(|mut out| {
                    out.pop()
                        .ok_or_else(|| CallError::Failed("empty batch output".into()))
                }));
            }
        }
        (Err(err), _) => {
            for reply in replies {
                reply.send(Err(err.clone()));
            }
        }
    }
}

/// Runs the method on this thread; a panic becomes a failure.
fn run_guarded(method: &BatchFn, payloads: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CallError> {
    let inputs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| method(&inputs))).unwrap_or_else(|p| {
        Err(CallError::Failed(format!(
            "batch method panicked: {}",
            panic_message(&*p)
        )))
    })
}

/// The message of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Runs the method on the blocking pool and hands the payloads back.
async fn run_blocking(method: BatchFn, payloads: Vec<Vec<u8>>) -> Ran {
    match tokio::task::spawn_blocking(move || {
        let result = run_guarded(&method, &payloads);
        (result, payloads)
    })
    .await
    {
        Ok((result, payloads)) => (result, Some(payloads)),
        Err(e) => (
            Err(CallError::Failed(format!(
                "batch method did not finish: {e}"
            ))),
            None,
        ),
    }
}

#[cfg(test)]
mod tests;
