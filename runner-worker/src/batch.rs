//! Adaptive batching: the dispatcher of a batchable method groups concurrent
//! calls into batches, like BentoML's `CorkDispatcher`.
//!
//! The pure decision logic lives in [`Batcher`]: a FIFO of queued calls with
//! their arrival times, a [`LatencyModel`] and the limits. It never reads the
//! clock; every method takes `now`, so it is tested with a fake clock. The
//! tokio task started by [`Dispatcher::spawn`] drives it with real time: it
//! admits calls, asks [`Batcher::decide`] what to do, sleeps, rejects, or runs
//! the method on a batch and feeds the measured duration back into the
//! model. A batch expected to take long runs on the blocking pool, so calls
//! keep arriving and are timed and admitted meanwhile; one expected to take
//! under `INLINE_BELOW` runs inline, where the hand-off would cost more than
//! the batch.
//!
//! Rules, with `L = max_latency`, a call's deadline `arrival + L`, and
//! `est(n) = a + b·n` the learnt time of a batch of `n`:
//!
//! - **Admission** (fast rejection): a call is refused with
//!   [`CallError::Overloaded`] when the queue holds `queue_capacity` calls, or
//!   when draining the calls ahead of it plus itself (in batches of at most
//!   `max_batch_size`, after the batch now running) is estimated to take
//!   longer than `L`.
//! - **Expiry**: a queued call that can no longer finish by its deadline even
//!   in a batch of its own (`now + est(1) > deadline`) is rejected, except the
//!   last queued call, which is served unless its deadline has passed.
//! - **Size**: a batch takes the oldest calls, at most `max_batch_size`, and
//!   no more than the oldest call's deadline allows (`now + est(k) ≤ deadline`).
//! - **Waiting**: with fewer than `max_batch_size` calls queued, the
//!   dispatcher waits for more only while the oldest call can still meet its
//!   deadline in a bigger batch (`now + est(n+1) ≤ deadline`), and only when
//!   it pays: the next call is expected (the smoothed gap between arrivals is
//!   below `a`, the fixed cost a separate batch would add) and the oldest call
//!   has waited less than `a`. So a lone call under light load is dispatched at
//!   once, and no call is ever delayed by more than one batch's fixed cost.
//!   Under load, calls that arrive while a batch runs form the next batch.
//!
//! If a batch fails as a whole, each of its calls is retried alone so that
//! errors land on the calls that caused them (one malformed input does not
//! fail its neighbours); a panicking method fails the calls of that batch
//! with its message instead of taking the dispatcher down.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use tiffin_service::CallError;
use tiffin_telemetry::{Kind, Span, TraceContext, Tracer};

/// A batch implementation: many JSON inputs in, as many outputs out.
pub type BatchFn = Arc<dyn Fn(&[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> + Send + Sync>;

/// Called with each dispatched batch size.
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

/// Limits of one dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Largest batch handed to the method.
    pub max_batch_size: usize,
    /// Latency budget of a call, from its arrival to its batch's end.
    pub max_latency: Duration,
    /// Most calls allowed to wait.
    pub queue_capacity: usize,
}

impl BatchLimits {
    /// Fewest calls the queue holds, whatever `max_batch_size` is.
    pub const MIN_QUEUE: usize = 1024;

    /// The limits with the default queue bound: four full batches, but at
    /// least [`Self::MIN_QUEUE`] calls. What keeps waits short is admission by
    /// the latency estimate; the count bound only caps memory if the estimate
    /// is wrong. Four batches alone would refuse calls that easily meet the
    /// budget: with `max_batch_size=2`, 16 concurrent callers of a fast model
    /// would get 503s.
    pub fn new(max_batch_size: usize, max_latency: Duration) -> Self {
        let max_batch_size = max_batch_size.max(1);
        Self {
            max_batch_size,
            max_latency,
            queue_capacity: max_batch_size.saturating_mul(4).max(Self::MIN_QUEUE),
        }
    }
}

// ---------------------------------------------------------------- latency model

/// Online linear fit of batch duration against batch size, `t(n) = a + b·n`.
///
/// Exponentially weighted least squares: every observation multiplies the
/// old sums by `DECAY`, so the fit follows a model whose speed changes. The
/// slope is shrunk toward the prior slope by a small ridge term, so that
/// while only one batch size has been seen (e.g. every batch of 1 under light
/// load) the fit stays defined: the intercept then takes the measured time.
#[derive(Debug, Clone)]
pub struct LatencyModel {
    w: f64,
    sn: f64,
    st: f64,
    snn: f64,
    snt: f64,
    prior_b: f64,
    a: f64,
    b: f64,
}

impl LatencyModel {
    /// Weight kept by past observations at each new one (half-life ≈ 14 batches).
    pub const DECAY: f64 = 0.95;
    /// Ridge strength pulling the slope toward the prior slope.
    const RIDGE: f64 = 1e-3;
    /// Prior intercept: a small, optimistic guess, so that nothing is rejected
    /// and nobody waits long before the first measurements arrive.
    pub const PRIOR_A: Duration = Duration::from_micros(100);
    /// Prior cost per item.
    pub const PRIOR_B: Duration = Duration::from_micros(10);

    /// A model starting from the priors.
    pub fn new() -> Self {
        Self::with_prior(Self::PRIOR_A, Self::PRIOR_B)
    }

    /// A model starting from `a + b·n`.
    pub fn with_prior(a: Duration, b: Duration) -> Self {
        Self {
            w: 0.0,
            sn: 0.0,
            st: 0.0,
            snn: 0.0,
            snt: 0.0,
            prior_b: b.as_secs_f64(),
            a: a.as_secs_f64(),
            b: b.as_secs_f64(),
        }
    }

    /// Records that a batch of `n` took `took`, and refits.
    pub fn observe(&mut self, n: usize, took: Duration) {
        let (n, t) = (n as f64, took.as_secs_f64());
        let d = Self::DECAY;
        self.w = self.w * d + 1.0;
        self.sn = self.sn * d + n;
        self.st = self.st * d + t;
        self.snn = self.snn * d + n * n;
        self.snt = self.snt * d + n * t;
        let (mean_n, mean_t) = (self.sn / self.w, self.st / self.w);
        let var = self.snn - self.w * mean_n * mean_n;
        let cov = self.snt - self.w * mean_n * mean_t;
        let b = ((cov + Self::RIDGE * self.prior_b) / (var.max(0.0) + Self::RIDGE)).max(0.0);
        self.b = b;
        self.a = (mean_t - b * mean_n).max(0.0);
    }

    /// Fixed cost of a batch.
    pub fn intercept(&self) -> Duration {
        nanos(self.a)
    }

    /// Cost of each item of a batch.
    pub fn slope(&self) -> Duration {
        nanos(self.b)
    }

    /// Estimated duration of a batch of `n`.
    pub fn estimate(&self, n: usize) -> Duration {
        nanos(self.a + self.b * n as f64)
    }
}

/// Seconds to a duration, rounded to the nanosecond (so that exact inputs give exact estimates).
fn nanos(secs: f64) -> Duration {
    Duration::from_nanos((secs.max(0.0) * 1e9).round() as u64)
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- decisions

/// What the dispatcher should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is queued: wait for a call.
    Idle,
    /// Run the method on the `n` oldest calls now.
    Dispatch(usize),
    /// Wait for more calls, but no later than this instant.
    WaitUntil(Instant),
    /// The `n` oldest calls cannot meet their deadline: reject them.
    Reject(usize),
}

/// The pure batching logic: queue, latency model, arrival rate. Never reads the clock.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    model: LatencyModel,
    queue: VecDeque<(Instant, T)>,
    last_arrival: Option<Instant>,
    /// Smoothed gap between arrivals, seconds.
    gap: Option<f64>,
    /// Estimated end of the batch now running.
    busy_until: Option<Instant>,
}

impl<T> Batcher<T> {
    /// Weight of the newest gap in the smoothed arrival gap.
    const GAP_WEIGHT: f64 = 0.2;

    /// An empty batcher with the default latency model.
    pub fn new(limits: BatchLimits) -> Self {
        Self::with_model(limits, LatencyModel::new())
    }

    /// An empty batcher with a given latency model.
    pub fn with_model(limits: BatchLimits, model: LatencyModel) -> Self {
        let limits = BatchLimits {
            max_batch_size: limits.max_batch_size.max(1),
            queue_capacity: limits.queue_capacity.max(1),
            ..limits
        };
        Self {
            limits,
            model,
            queue: VecDeque::new(),
            last_arrival: None,
            gap: None,
            busy_until: None,
        }
    }

    /// The latency model.
    pub fn model(&self) -> &LatencyModel {
        &self.model
    }

    /// Number of queued calls.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no call is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Estimated time of one batch of a single call, as used for deadlines.
    /// A method slower than the whole budget would reject every call forever
    /// (and never be measured again); then only calls already past their
    /// deadline are rejected.
    fn single_cost(&self) -> Duration {
        let one = self.model.estimate(1);
        if one >= self.limits.max_latency {
            Duration::ZERO
        } else {
            one
        }
    }

    /// Estimated time to run `n` queued calls in full batches.
    fn drain_time(&self, n: usize) -> Duration {
        let max = self.limits.max_batch_size;
        let full = n / max;
        let rest = n % max;
        let mut t = self.model.estimate(max) * full as u32;
        if rest > 0 {
            t += self.model.estimate(rest);
        }
        t
    }

    /// Admits a call that arrived at `now`, or hands it back with the reason.
    pub fn push(&mut self, now: Instant, item: T) -> Result<(), (T, CallError)> {
        if let Some(last) = self.last_arrival {
            let g = now.saturating_duration_since(last).as_secs_f64();
            self.gap = Some(match self.gap {
                Some(old) => old + Self::GAP_WEIGHT * (g - old),
                None => g,
            });
        }
        self.last_arrival = Some(now);
        let waiting = self.queue.len();
        if waiting >= self.limits.queue_capacity {
            return Err((
                item,
                CallError::Overloaded(format!(
                    "batch queue is full ({waiting} calls waiting, max_batch_size={})",
                    self.limits.max_batch_size
                )),
            ));
        }
        // The rest of the running batch, then (unless the method is slower
        // than the whole budget, see `single_cost`) the queue ahead and itself.
        let running = self
            .busy_until
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default();
        let ahead = if self.single_cost() > Duration::ZERO {
            self.drain_time(waiting + 1)
        } else {
            Duration::ZERO
        };
        let expected = running + ahead;
        if expected > self.limits.max_latency {
            return Err((
                item,
                CallError::Overloaded(format!(
                    "{waiting} calls are waiting; this one would finish in about {} ms, \
                     over max_latency_ms={}",
                    expected.as_millis(),
                    self.limits.max_latency.as_millis()
                )),
            ));
        }
        self.queue.push_back((now, item));
        Ok(())
    }

    /// What to do at `now` (the method is not running).
    pub fn decide(&self, now: Instant) -> Decision {
        let Some(&(oldest, _)) = self.queue.front() else {
            return Decision::Idle;
        };
        let budget = self.limits.max_latency;
        let one = self.single_cost();
        let mut late = self
            .queue
            .iter()
            .take_while(|(at, _)| now + one > *at + budget)
            .count();
        // Like BentoML, the last queued call is only refused once its deadline
        // has actually passed: it has nobody to make room for, and serving it
        // keeps the model learning (an estimate that drifted too high would
        // otherwise refuse every call forever).
        if late == self.queue.len() && self.queue.back().is_some_and(|(at, _)| now <= *at + budget)
        {
            late -= 1;
        }
        if late > 0 {
            return Decision::Reject(late);
        }
        let deadline = oldest + budget;
        let n = self.queue.len();
        let max = self.limits.max_batch_size;
        // Largest batch the oldest call's deadline allows (at least 1: it fits alone).
        let mut k = n.min(max);
        while k > 1 && now + self.model.estimate(k) > deadline {
            k -= 1;
        }
        if k < n.min(max) || n >= max {
            return Decision::Dispatch(k);
        }
        // n < max and all n fit: wait for one more if it pays and the budget allows.
        let fixed = self.model.intercept();
        let arrivals_expected = self.gap.is_some_and(|g| g < fixed.as_secs_f64());
        let wait_end = (oldest + fixed).min(
            deadline
                .checked_sub(self.model.estimate(n + 1))
                .unwrap_or(oldest),
        );
        if arrivals_expected && wait_end > now {
            Decision::WaitUntil(wait_end)
        } else {
            Decision::Dispatch(n)
        }
    }

    /// Takes the `n` oldest calls off the queue.
    pub fn take(&mut self, n: usize) -> Vec<T> {
        let n = n.min(self.queue.len());
        self.queue.drain(..n).map(|(_, item)| item).collect()
    }

    /// Notes that a batch of `n` started at `now` (for admission estimates).
    pub fn started(&mut self, now: Instant, n: usize) {
        self.busy_until = Some(now + self.model.estimate(n));
    }

    /// Records that a batch of `n` took `took`: ends the running batch and refits the model.
    pub fn finished(&mut self, n: usize, took: Duration) {
        self.busy_until = None;
        self.model.observe(n, took);
    }

    /// The error given to a call rejected by [`Decision::Reject`].
    pub fn late_error(&self) -> CallError {
        CallError::Overloaded(format!(
            "call cannot be served within max_latency_ms={} (a batch takes about {} ms)",
            self.limits.max_latency.as_millis(),
            self.model.estimate(1).as_millis()
        ))
    }
}

// ---------------------------------------------------------------- the task

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

struct Item {
    payload: Vec<u8>,
    enqueued: Instant,
    /// The request's deadline: past it, the call is answered without running.
    expires: Option<Instant>,
    /// The call's span, when traced: the batch it runs in is linked to it.
    trace: Option<TraceContext>,
    reply: Reply,
}

/// Handle to a running dispatcher; clone it into every connection.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Item>,
}

/// What a batch's span needs: the tracer, and the method's name.
#[derive(Clone)]
struct BatchTracing {
    tracer: Tracer,
    name: String,
}

impl Dispatcher {
    /// Starts the dispatcher task for one method (inside a tokio runtime).
    pub fn spawn(method: BatchFn, limits: BatchLimits, observe: BatchObserver) -> Self {
        Self::spawn_traced(method, limits, observe, None)
    }

    /// As [`Dispatcher::spawn`], with a span per batch when `tracer` is
    /// given: named `batch <name>`, with the attribute `batch.size`, child of
    /// the first traced call in it and linked to every traced call.
    pub fn spawn_traced(
        method: BatchFn,
        limits: BatchLimits,
        observe: BatchObserver,
        tracer: Option<(Tracer, String)>,
    ) -> Self {
        // The channel only hands calls over to the task; the queue bound is
        // enforced by the batcher. The channel's own bound covers calls that
        // arrive while the task is busy replying.
        let (tx, rx) = mpsc::channel(limits.queue_capacity.max(1).saturating_mul(2));
        let tracing = tracer.map(|(tracer, name)| BatchTracing { tracer, name });
        tokio::spawn(drive(rx, method, Batcher::new(limits), observe, tracing));
        Self { tx }
    }

    /// Queues one call; `reply` gets its result (or the reason it was
    /// refused). A call still queued when `expires` passes is answered with
    /// [`CallError::DeadlineExceeded`] and never runs.
    pub fn submit(&self, payload: Vec<u8>, expires: Option<Instant>, reply: Reply) {
        self.submit_traced(payload, expires, None, reply);
    }

    /// As [`Dispatcher::submit`], for a call whose span is `trace`.
    pub fn submit_traced(
        &self,
        payload: Vec<u8>,
        expires: Option<Instant>,
        trace: Option<TraceContext>,
        reply: Reply,
    ) {
        let item = Item {
            payload,
            enqueued: Instant::now(),
            expires,
            trace,
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
    pub async fn call(&self, payload: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            payload,
            None,
            Reply::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx.await
            .unwrap_or_else(|_| Err(CallError::Failed("batch dropped".to_string())))
    }
}

fn admit(batcher: &mut Batcher<Item>, item: Item) {
    let at = item.enqueued;
    if let Err((item, err)) = batcher.push(at, item) {
        item.reply.send(Err(err));
    }
}

/// Resolution of tokio's timers: a sleep ends at the next tick of this size.
const TIMER_GRAIN: Duration = Duration::from_millis(1);

/// Batches estimated to run shorter than this run on the worker's own thread.
const INLINE_BELOW: Duration = Duration::from_micros(500);

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

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Runs the method on the blocking pool and hands the payloads back (for a
/// retry of each call alone); `None` if the pool dropped the job.
async fn run_blocking(
    method: &BatchFn,
    payloads: Vec<Vec<u8>>,
) -> (Result<Vec<Vec<u8>>, CallError>, Option<Vec<Vec<u8>>>) {
    let method = method.clone();
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

async fn drive(
    mut rx: mpsc::Receiver<Item>,
    method: BatchFn,
    mut batcher: Batcher<Item>,
    observe: BatchObserver,
    tracing: Option<BatchTracing>,
) {
    let tracing = tracing.as_ref();
    let mut open = true;
    loop {
        while let Ok(item) = rx.try_recv() {
            admit(&mut batcher, item);
        }
        match batcher.decide(Instant::now()) {
            Decision::Idle => {
                if !open {
                    return;
                }
                match rx.recv().await {
                    Some(item) => admit(&mut batcher, item),
                    None => open = false,
                }
            }
            Decision::Reject(n) => {
                let err = batcher.late_error();
                for item in batcher.take(n) {
                    item.reply.send(Err(err.clone()));
                }
            }
            Decision::WaitUntil(t) => {
                if !open {
                    // No more calls can come: waiting cannot grow the batch.
                    let n = batcher.len();
                    run_batch(
                        &mut rx,
                        &method,
                        &mut batcher,
                        &observe,
                        tracing,
                        n,
                        &mut open,
                    )
                    .await;
                    continue;
                }
                if t.saturating_duration_since(Instant::now()) < TIMER_GRAIN {
                    // A timer this short would fire at the next millisecond
                    // tick instead. Let the connections hand over the calls
                    // they have already read, and go if none came.
                    tokio::task::yield_now().await;
                    let queued = batcher.len();
                    while let Ok(item) = rx.try_recv() {
                        admit(&mut batcher, item);
                    }
                    if batcher.len() == queued {
                        run_batch(
                            &mut rx,
                            &method,
                            &mut batcher,
                            &observe,
                            tracing,
                            queued,
                            &mut open,
                        )
                        .await;
                    }
                    continue;
                }
                tokio::select! {
                    item = rx.recv() => match item {
                        Some(item) => admit(&mut batcher, item),
                        None => open = false,
                    },
                    _ = tokio::time::sleep_until(t.into()) => {}
                }
            }
            Decision::Dispatch(n) => {
                run_batch(
                    &mut rx,
                    &method,
                    &mut batcher,
                    &observe,
                    tracing,
                    n,
                    &mut open,
                )
                .await;
            }
        }
    }
}

/// The span of one batch, when any of its calls is traced.
fn batch_span(tracing: &BatchTracing, items: &[Item]) -> Option<Span> {
    let traced: Vec<TraceContext> = items.iter().filter_map(|i| i.trace).collect();
    let parent = traced.first()?;
    let mut span = tracing.tracer.start_linked(
        format!("batch {}", tracing.name),
        Kind::Internal,
        Some(parent),
        &traced,
    );
    span.set_i64("batch.size", items.len() as i64);
    Some(span)
}

async fn run_batch(
    rx: &mut mpsc::Receiver<Item>,
    method: &BatchFn,
    batcher: &mut Batcher<Item>,
    observe: &BatchObserver,
    tracing: Option<&BatchTracing>,
    n: usize,
    open: &mut bool,
) {
    let now = Instant::now();
    let items: Vec<Item> = batcher
        .take(n)
        .into_iter()
        .filter_map(|item| match item.expires {
            Some(t) if now >= t => {
                item.reply.send(Err(CallError::DeadlineExceeded));
                None
            }
            _ => Some(item),
        })
        .collect();
    let n = items.len();
    if n == 0 {
        return;
    }
    observe(n);
    // Ends when this function returns, after every reply is sent.
    let _span = tracing.and_then(|t| batch_span(t, &items));
    let (payloads, replies): (Vec<Vec<u8>>, Vec<_>) =
        items.into_iter().map(|i| (i.payload, i.reply)).unzip();
    let started = Instant::now();
    batcher.started(started, n);
    let (result, payloads) = if batcher.model().estimate(n) < INLINE_BELOW {
        // A batch this short costs less than the hand-off to the blocking
        // pool; running it here only delays admission by that long.
        (run_guarded(method, &payloads), Some(payloads))
    } else {
        let run = run_blocking(method, payloads);
        tokio::pin!(run);
        // Keep admitting (and fast-rejecting) calls while the batch runs.
        loop {
            tokio::select! {
                result = &mut run => break result,
                item = rx.recv(), if *open => match item {
                    Some(item) => admit(batcher, item),
                    None => *open = false,
                },
            }
        }
    };
    batcher.finished(n, started.elapsed());
    match (result, payloads) {
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
            // Find out which calls fail: each one alone.
            for (payload, reply) in payloads.into_iter().zip(replies) {
                let (result, _) = run_blocking(method, vec![payload]).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const MS: Duration = Duration::from_millis(1);

    fn lim(max: usize, latency_ms: u64, capacity: usize) -> BatchLimits {
        BatchLimits {
            max_batch_size: max,
            max_latency: MS * latency_ms as u32,
            queue_capacity: capacity,
        }
    }

    /// A batcher whose model says a batch of n takes `a + b·n` milliseconds.
    fn batcher(limits: BatchLimits, a_ms: u64, b_ms: u64) -> Batcher<u32> {
        let model = LatencyModel::with_prior(MS * a_ms as u32, MS * b_ms as u32);
        Batcher::with_model(limits, model)
    }

    fn close(d: Duration, want_ms: f64) -> bool {
        (d.as_secs_f64() * 1e3 - want_ms).abs() < 0.01
    }

    // ------------------------------------------------ latency model

    #[test]
    fn the_model_learns_a_linear_batch_cost() {
        let mut m = LatencyModel::new();
        for i in 0..200usize {
            let n = 1 + i % 16;
            m.observe(n, Duration::from_micros(2000 + 300 * n as u64));
        }
        assert!(close(m.intercept(), 2.0), "{m:?}");
        assert!(close(m.slope(), 0.3), "{m:?}");
        assert!(close(m.estimate(10), 5.0), "{m:?}");
    }

    #[test]
    fn the_model_follows_a_change_and_survives_a_single_size() {
        let mut m = LatencyModel::new();
        for _ in 0..100 {
            m.observe(1, 10 * MS);
        }
        // Only size 1 seen: the slope stays at the prior, the total is measured.
        assert!(close(m.estimate(1), 10.0), "{m:?}");
        assert!(
            close(m.slope(), LatencyModel::PRIOR_B.as_secs_f64() * 1e3),
            "{m:?}"
        );
        for i in 0..300usize {
            let n = 1 + i % 8;
            m.observe(n, MS * (1 + n as u32));
        }
        assert!(close(m.intercept(), 1.0) && close(m.slope(), 1.0), "{m:?}");
    }

    // ------------------------------------------------ decisions (fake clock)

    #[test]
    fn batches_never_exceed_max_batch_size_and_keep_order() {
        let t0 = Instant::now();
        let mut b = batcher(lim(4, 1000, 100), 1, 0);
        for i in 0..10 {
            b.push(t0, i).unwrap();
        }
        let mut now = t0;
        let mut seen = Vec::new();
        while !b.is_empty() {
            match b.decide(now) {
                Decision::Dispatch(n) => {
                    assert!((1..=4).contains(&n), "{n}");
                    let batch = b.take(n);
                    b.started(now, n);
                    now += MS;
                    b.finished(n, MS);
                    seen.push(batch);
                }
                d => panic!("unexpected {d:?}"),
            }
        }
        assert_eq!(seen, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    }

    #[test]
    fn a_lone_call_under_light_load_is_dispatched_at_once() {
        let t0 = Instant::now();
        let mut b = batcher(lim(8, 1000, 100), 5, 1);
        b.push(t0, 1).unwrap();
        assert_eq!(b.decide(t0), Decision::Dispatch(1));
        // Calls 100 ms apart: no point waiting 5 ms for the next one.
        b.take(1);
        b.push(t0 + 100 * MS, 2).unwrap();
        assert_eq!(b.decide(t0 + 100 * MS), Decision::Dispatch(1));
    }

    #[test]
    fn waits_for_more_only_within_the_fixed_cost_and_the_budget() {
        let t0 = Instant::now();
        // A batch costs 5 ms + 1 ms per call; calls arrive every 0.5 ms.
        let mut b = batcher(lim(8, 1000, 100), 5, 1);
        let step = Duration::from_micros(500);
        b.push(t0, 0).unwrap();
        b.take(1);
        b.push(t0 + step, 1).unwrap();
        let first = t0 + step;
        // Waiting pays: wait, but at most the fixed cost after the oldest arrival.
        assert_eq!(b.decide(first), Decision::WaitUntil(first + 5 * MS));
        let mut now = first;
        for i in 2..8 {
            now += step;
            b.push(now, i).unwrap();
            assert_eq!(b.decide(now), Decision::WaitUntil(first + 5 * MS));
        }
        // Full: go now.
        b.push(now + step, 8).unwrap();
        assert_eq!(b.decide(now + step), Decision::Dispatch(8));
        // Not full, but the window is over: go.
        let mut b = batcher(lim(8, 1000, 100), 5, 1);
        b.push(t0, 0).unwrap();
        b.take(1);
        b.push(first, 1).unwrap();
        assert_eq!(b.decide(first + 5 * MS), Decision::Dispatch(1));

        // A tight budget shortens the wait: the oldest must still finish a
        // batch of n+1 (5 + 2 = 7 ms) by its deadline (first + 10 ms).
        let mut b = batcher(lim(8, 10, 100), 5, 1);
        b.push(t0, 0).unwrap();
        b.take(1);
        b.push(first, 1).unwrap();
        assert_eq!(b.decide(first), Decision::WaitUntil(first + 3 * MS));
        assert_eq!(b.decide(first + 3 * MS), Decision::Dispatch(1));
    }

    #[test]
    fn the_latency_budget_caps_the_batch_size() {
        let t0 = Instant::now();
        // 2 ms + 1 ms per call, budget 20 ms.
        let mut b = batcher(lim(16, 20, 100), 2, 1);
        for i in 0..16 {
            b.push(t0, i).unwrap_or_else(|_| panic!("admit {i}"));
        }
        // 8 ms later the oldest has 12 ms left: a batch of k takes 2 + k ms, so k ≤ 10.
        assert_eq!(b.decide(t0 + 8 * MS), Decision::Dispatch(10));
        assert_eq!(b.decide(t0 + 9 * MS), Decision::Dispatch(9));
        assert_eq!(b.decide(t0 + 16 * MS), Decision::Dispatch(2));
    }

    #[test]
    fn every_dispatched_batch_meets_the_oldest_deadline() {
        // Simulate a steady overload with the fake clock and check the invariant.
        let t0 = Instant::now();
        let (a, per) = (3u64, 1u64);
        let limits = lim(8, 25, 32);
        let mut b = batcher(limits, a, per);
        let mut now = t0;
        let mut arrivals: VecDeque<Instant> = VecDeque::new();
        let (mut served, mut rejected, mut next) = (0, 0, 0u32);
        let mut sizes = Vec::new();
        for tick in 0..2000u32 {
            // A call every 0.4 ms: more than the method can serve.
            let at = t0 + Duration::from_micros(400) * tick;
            while now < at {
                match b.decide(now) {
                    Decision::Idle => break,
                    Decision::WaitUntil(t) => {
                        assert!(t > now);
                        now = t.min(at);
                    }
                    Decision::Reject(n) => {
                        for _ in 0..n {
                            let arrived = arrivals.pop_front().unwrap();
                            // Rejected only when it could not finish alone in time.
                            assert!(now + MS * (a + per) as u32 > arrived + limits.max_latency);
                        }
                        b.take(n);
                        rejected += n;
                    }
                    Decision::Dispatch(n) => {
                        assert!(n <= 8);
                        let took = MS * (a + per * n as u64) as u32;
                        let oldest = arrivals[0];
                        // The only exception: a lone call not yet past its deadline.
                        let lone = b.len() == 1 && now <= oldest + limits.max_latency;
                        assert!(
                            lone || now + took <= oldest + limits.max_latency,
                            "batch of {n} at {:?} misses the deadline",
                            now - t0
                        );
                        b.take(n);
                        arrivals.drain(..n);
                        b.started(now, n);
                        now += took;
                        b.finished(n, took);
                        served += n;
                        sizes.push(n);
                    }
                }
            }
            now = now.max(at);
            match b.push(now, next) {
                Ok(()) => arrivals.push_back(now),
                Err((_, e)) => {
                    assert!(matches!(e, CallError::Overloaded(_)), "{e:?}");
                    rejected += 1;
                }
            }
            next += 1;
            assert!(b.len() <= 32);
        }
        assert!(
            served > 0 && rejected > 0,
            "served {served}, rejected {rejected}"
        );
        assert!(sizes.iter().any(|&n| n > 1), "{sizes:?}");
    }

    #[test]
    fn calls_that_cannot_meet_the_deadline_are_rejected() {
        let t0 = Instant::now();
        let mut b = batcher(lim(4, 10, 100), 3, 1);
        b.push(t0, 0).unwrap();
        b.push(t0 + 2 * MS, 1).unwrap();
        b.push(t0 + 9 * MS, 2).unwrap();
        // At t0 + 9 ms a batch of one takes 4 ms: the first two calls (deadlines
        // 10 and 12 ms) cannot make it, the third (19 ms) can.
        assert_eq!(b.decide(t0 + 9 * MS), Decision::Reject(2));
        assert_eq!(b.take(2), vec![0, 1]);
        assert!(
            matches!(b.late_error(), CallError::Overloaded(m) if m.contains("max_latency_ms=10"))
        );
        assert_eq!(b.decide(t0 + 9 * MS), Decision::Dispatch(1));
    }

    #[test]
    fn the_last_queued_call_is_refused_only_past_its_deadline() {
        let t0 = Instant::now();
        // The model says 9 ms of a 10 ms budget: a call decided 2 ms after its
        // arrival would miss, but it is alone, so it is served (and measured).
        let mut b = batcher(lim(4, 10, 100), 9, 0);
        b.push(t0, 0).unwrap();
        assert_eq!(b.decide(t0 + 2 * MS), Decision::Dispatch(1));
        assert_eq!(b.decide(t0 + 11 * MS), Decision::Reject(1));
        // With a second call behind it, the first one makes room.
        let mut b = batcher(lim(4, 20, 100), 9, 0);
        b.push(t0, 0).unwrap();
        b.push(t0 + 5 * MS, 1).unwrap();
        assert_eq!(b.decide(t0 + 12 * MS), Decision::Reject(1));
        assert_eq!(b.take(1), vec![0]);
        // The second one may still wait a fixed cost (9 ms) for company.
        assert_eq!(b.decide(t0 + 12 * MS), Decision::WaitUntil(t0 + 14 * MS));
        assert_eq!(b.decide(t0 + 14 * MS), Decision::Dispatch(1));
    }

    #[test]
    fn admission_rejects_fast_when_the_queue_cannot_drain_in_time() {
        let t0 = Instant::now();
        // 2 ms + 1 ms per call, batches of 4 (6 ms each), budget 20 ms: three
        // full batches (18 ms) fit, a thirteenth call would need a fourth.
        let mut b = batcher(lim(4, 20, 100), 2, 1);
        for i in 0..12 {
            b.push(t0, i).unwrap();
        }
        let Err((13, CallError::Overloaded(msg))) = b.push(t0, 13) else {
            panic!("13th call admitted");
        };
        assert!(msg.contains("max_latency_ms=20"), "{msg}");
        // While a batch runs, its remaining time counts too.
        let mut b = batcher(lim(4, 20, 100), 2, 1);
        b.started(t0, 4);
        for i in 0..8 {
            b.push(t0, i).unwrap();
        }
        assert!(b.push(t0, 8).is_err());
    }

    #[test]
    fn the_queue_has_a_bound() {
        let t0 = Instant::now();
        let mut b = Batcher::new(lim(2, 10_000, 3));
        for i in 0..3 {
            b.push(t0, i).unwrap();
        }
        let Err((3, CallError::Overloaded(msg))) = b.push(t0, 3) else {
            panic!("admitted past the bound");
        };
        assert!(msg.contains("queue is full"), "{msg}");
        assert_eq!(BatchLimits::new(2, MS).queue_capacity, 1024);
        assert_eq!(BatchLimits::new(1000, MS).queue_capacity, 4000);
    }

    #[test]
    fn a_method_slower_than_the_budget_still_serves_fresh_calls() {
        let t0 = Instant::now();
        let mut b = batcher(lim(4, 10, 100), 50, 0);
        b.push(t0, 0).unwrap();
        assert_eq!(b.decide(t0), Decision::Dispatch(1));
        assert_eq!(b.decide(t0 + 11 * MS), Decision::Reject(1));
        // While such a batch runs, a new call is refused at once.
        b.take(1);
        b.started(t0 + 11 * MS, 1);
        assert!(matches!(
            b.push(t0 + 12 * MS, 1),
            Err((1, CallError::Overloaded(_)))
        ));
        b.finished(1, 50 * MS);
        assert!(b.push(t0 + 70 * MS, 2).is_ok());
    }

    // ------------------------------------------------ the task, real time

    fn echo_bang() -> BatchFn {
        Arc::new(|xs: &[&[u8]]| Ok(xs.iter().map(|x| [x, &b"!"[..]].concat()).collect()))
    }

    /// Where a test's replies land.
    type Delivered = Arc<Mutex<Vec<Result<Vec<u8>, CallError>>>>;

    #[test]
    fn a_reply_delivers_once_and_a_dropped_one_still_answers() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = |got: &Delivered| {
            let got = got.clone();
            Reply::new(move |r| got.lock().unwrap().push(r))
        };
        sink(&got).send(Ok(vec![7]));
        // The connection counts a call as finished only when its reply runs:
        // a reply lost with the dispatcher must still run.
        drop(sink(&got));
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], Ok(vec![7]));
        assert!(matches!(&got[1], Err(CallError::Failed(m)) if m.contains("dropped")));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_calls_form_bounded_batches_in_order() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let d = Dispatcher::spawn(
            echo_bang(),
            BatchLimits::new(4, Duration::from_secs(10)),
            Arc::new(move |n| seen.lock().unwrap().push(n)),
        );
        let calls: Vec<_> = (0..10u8)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move { d.call(vec![i]).await })
            })
            .collect();
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap(), vec![i as u8, b'!']);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
        assert!(sizes.iter().any(|&n| n > 1), "{sizes:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn errors_land_on_the_calls_that_caused_them() {
        // Odd inputs fail; a batch with one fails as a whole, then each call is retried alone.
        let method: BatchFn = Arc::new(|xs: &[&[u8]]| {
            if xs.iter().any(|x| x[0] % 2 == 1) {
                Err(CallError::BadInput("odd".into()))
            } else {
                Ok(xs.iter().map(|x| x.to_vec()).collect())
            }
        });
        let d = Dispatcher::spawn(
            method,
            BatchLimits::new(8, Duration::from_secs(10)),
            Arc::new(|_| {}),
        );
        let calls: Vec<_> = (0..6u8)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move { d.call(vec![i]).await })
            })
            .collect();
        for (i, c) in calls.into_iter().enumerate() {
            let got = c.await.unwrap();
            if i % 2 == 1 {
                assert_eq!(got, Err(CallError::BadInput("odd".into())));
            } else {
                assert_eq!(got, Ok(vec![i as u8]));
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn method_error_reaches_every_caller_and_a_panic_is_contained() {
        let method: BatchFn = Arc::new(|_| Err(CallError::Failed("boom".into())));
        let d = Dispatcher::spawn(
            method,
            BatchLimits::new(8, Duration::from_secs(10)),
            Arc::new(|_| {}),
        );
        let (a, b) = tokio::join!(d.call(vec![1]), d.call(vec![2]));
        assert_eq!(a, Err(CallError::Failed("boom".into())));
        assert_eq!(b, Err(CallError::Failed("boom".into())));

        let method: BatchFn = Arc::new(|xs: &[&[u8]]| {
            if xs[0][0] == 0 {
                panic!("bad model");
            }
            Ok(xs.iter().map(|x| x.to_vec()).collect())
        });
        let d = Dispatcher::spawn(
            method,
            BatchLimits::new(8, Duration::from_secs(10)),
            Arc::new(|_| {}),
        );
        let r = d.call(vec![0]).await;
        assert!(
            matches!(&r, Err(CallError::Failed(m)) if m.contains("bad model")),
            "{r:?}"
        );
        // The dispatcher is still there.
        assert_eq!(d.call(vec![1]).await, Ok(vec![1]));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn overload_is_rejected_fast_not_queued_forever() {
        // A method that takes 20 ms per batch with a 50 ms budget and batches of 1.
        let method: BatchFn = Arc::new(|xs: &[&[u8]]| {
            std::thread::sleep(Duration::from_millis(20));
            Ok(xs.iter().map(|x| x.to_vec()).collect())
        });
        let d = Dispatcher::spawn(
            method,
            BatchLimits::new(1, Duration::from_millis(50)),
            Arc::new(|_| {}),
        );
        // Teach the model.
        for _ in 0..3 {
            d.call(vec![0]).await.unwrap();
        }
        let started = Instant::now();
        let calls: Vec<_> = (0..20u8)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move { (d.call(vec![i]).await, Instant::now()) })
            })
            .collect();
        let (mut ok, mut overloaded) = (0, 0);
        for c in calls {
            let (r, at) = c.await.unwrap();
            match r {
                Ok(_) => {
                    ok += 1;
                    // Served calls met (roughly) the budget.
                    assert!(
                        at - started < Duration::from_millis(50 + 40),
                        "{:?}",
                        at - started
                    );
                }
                Err(CallError::Overloaded(_)) => overloaded += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(
            ok >= 1 && overloaded >= 10,
            "ok {ok}, overloaded {overloaded}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
