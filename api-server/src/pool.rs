//! Connections from this API server to the workers of one runner, and the
//! choice of worker for each call.
//!
//! Each ready worker gets one multiplexed connection: calls carry an id and
//! replies may come back in any order. A call goes to the live worker with
//! the fewest outstanding calls. When a connection drops, every call waiting
//! on it fails at once (never hangs) and the worker leaves the pool; a call
//! whose worker died before answering is retried once on another live worker
//! (runner methods are treated as idempotent, as in BentoML).
//!
//! A caller that stops waiting (its client hung up, or its gRPC call was
//! cancelled: the handler's future is dropped) cancels its call: the
//! worker is sent `DataRequest::StreamCancel` with the call's envelope id,
//! and takes the call out of its queue or tells the running method.
//!
//! A streamed call (`RunnerTransport::call_stream`, docs/streaming.md) is
//! routed the same way until its first item; then it stays on its worker,
//! its items reach the caller through the connection's item routes, credits
//! go back as the caller takes them, and dropping the stream cancels it.
//!
//! The pool also feeds the supervisor's autoscaler
//! (`supervisor/src/autoscale_loop.rs`): it counts the calls in flight to
//! its runner, waiting for a worker included, in the gauge
//! [`RUNNER_CALLS_IN_FLIGHT`], and a call that finds no worker tells the
//! supervisor at once ([`ToSupervisor::CallWaiting`]). For a runner that may
//! be autoscaled to zero such a call waits for a worker for as long as its
//! request may still run, instead of `WORKER_WAIT`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use tiffin_ipc::connection::{Connection, ConnectionError, Incoming, Opening};
use tiffin_ipc::control::ControlClient;
use tiffin_ipc::proto::{
    DataRequest, DataResponse, PROTOCOL_VERSION, RUNNER_CALLS_IN_FLIGHT, ToSupervisor,
    WorkerEndpoint,
};
use tiffin_ipc::stream::{ReceiverHooks, STREAM_WINDOW, StreamReceiver};
use tiffin_metrics::GaugeChild;
use tiffin_service::{BoxFuture, CallError, EncodedStream, RunnerTransport};

use tiffin_metrics::count_guard::CountGuard;

type Reply = Result<Vec<u8>, CallError>;

/// The item channels of a connection's streams in flight, by call id.
type ItemRoutes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>>>;

/// One multiplexed connection to a runner worker.
struct WorkerConn {
    endpoint: WorkerEndpoint,
    conn: Connection<DataRequest, DataResponse>,
    /// Calls sent and not yet answered (streams not yet ended), for
    /// least-outstanding choice.
    outstanding: Arc<AtomicUsize>,
    /// Where the items of each stream in flight go, by the stream call's
    /// envelope id (filled by [`RunnerPool::stream_once`], read by the
    /// connection's handler).
    streams: ItemRoutes,
    /// Cleared when the worker says it drains or leaves the supervisor's set.
    routable: Arc<AtomicBool>,
    /// Set when the worker said it drains. A draining worker refuses every
    /// new call and exits once no call is in flight, so a call lost on its
    /// connection did not run and may go to another worker. (A worker killed
    /// for overrunning the graceful timeout may have been running it; that
    /// call is re-sent too, as runner methods are treated as idempotent.)
    draining: Arc<AtomicBool>,
}

impl WorkerConn {
    fn accepts_calls(&self) -> bool {
        self.routable.load(Ordering::SeqCst) && self.conn.is_open()
    }
}

/// How one attempt of a call on one worker ended.
enum Attempt<T> {
    /// The worker answered (with a result or an error of the call); for a
    /// stream, it sent its first item or its end.
    Answered(Result<T, CallError>),
    /// The worker refused without running the call: it is draining.
    Draining,
    /// The call was never sent: the connection could no longer write.
    NotSent,
    /// The connection ended before the worker answered.
    Lost(ConnectionError),
}

/// The set of live workers of one runner, as seen by this API server.
pub struct RunnerPool {
    runner: String,
    workers: RwLock<Vec<Arc<WorkerConn>>>,
    rotate: AtomicUsize,
    /// Woken whenever a worker connection joins the pool.
    changed: tokio::sync::Notify,
    /// The supervisor's latest worker set.
    wanted: Mutex<Vec<WorkerEndpoint>>,
    /// Endpoints with a handshake under way.
    connecting: Mutex<HashSet<WorkerEndpoint>>,
    /// Calls in flight to this runner, waiting for a worker included.
    in_flight: GaugeChild,
    /// The supervisor, told when a call finds no worker; set once connected.
    supervisor: OnceLock<ControlClient>,
    /// The runner may be autoscaled to zero workers on purpose.
    scales_to_zero: AtomicBool,
}

/// How long a call waits for a live worker before answering "unavailable".
const WORKER_WAIT: Duration = Duration::from_secs(1);

/// How long a call to a runner that scales to zero waits for a worker when
/// it runs outside any request deadline (inside one, the deadline bounds it).
const COLD_START_WAIT: Duration = Duration::from_secs(30);

impl RunnerPool {
    /// An empty pool for `runner`; workers arrive through [`RunnerPool::update`].
    pub fn new(runner: &str) -> Arc<Self> {
        let in_flight = match tiffin_metrics::global().gauge(
            RUNNER_CALLS_IN_FLIGHT,
            "Runner calls this API server has sent and not had answered, or that wait for a worker",
            &["runner_name"],
        ) {
            Ok(gauge) => gauge.labels(&[runner]),
            Err(e) => {
                tracing::error!(error = %e, "cannot define the runner calls gauge; the autoscaler will not see this API server's load");
                GaugeChild::default()
            }
        };
        Arc::new(Self {
            in_flight,
            supervisor: OnceLock::new(),
            scales_to_zero: AtomicBool::new(false),
            runner: runner.to_string(),
            workers: RwLock::default(),
            rotate: AtomicUsize::new(0),
            changed: tokio::sync::Notify::new(),
            wanted: Mutex::default(),
            connecting: Mutex::default(),
        })
    }

    /// Tells this pool how to reach the supervisor, and whether its runner
    /// may be autoscaled to zero (then a call waits for a worker up to its
    /// deadline, and no worker is no reason to be unready).
    pub fn connect_supervisor(&self, control: ControlClient, scales_to_zero: bool) {
        let _ = self.supervisor.set(control);
        self.scales_to_zero.store(scales_to_zero, Ordering::Relaxed);
    }

    /// Whether this runner can serve: a live worker, or a runner that may
    /// be at zero on purpose (its next call starts one).
    pub fn ready(&self) -> bool {
        self.scales_to_zero.load(Ordering::Relaxed) || self.live() > 0
    }

    /// Whether a handshake with a worker of the supervisor's latest set is
    /// still under way (one that failed or finished is not).
    pub fn connecting(&self) -> bool {
        !self.connecting.lock().is_empty()
    }

    /// Number of workers currently accepting calls.
    pub fn live(&self) -> usize {
        self.workers
            .read()
            .iter()
            .filter(|w| w.accepts_calls())
            .count()
    }

    /// Applies the supervisor's current worker set: connects to new workers,
    /// stops routing to workers no longer listed.
    pub fn update(self: &Arc<Self>, endpoints: Vec<WorkerEndpoint>) {
        let mut current = self.workers.write();
        current.retain(|w| {
            let keep = endpoints.contains(&w.endpoint);
            if !keep {
                // In-flight calls still get their replies; no new calls are routed here.
                w.routable.store(false, Ordering::SeqCst);
            }
            keep
        });
        let known: Vec<WorkerEndpoint> = current.iter().map(|w| w.endpoint.clone()).collect();
        drop(current);
        let mut wanted = self.wanted.lock();
        *wanted = endpoints.clone();
        drop(wanted);
        for ep in endpoints.into_iter().filter(|e| !known.contains(e)) {
            // Several updates can arrive while a handshake is under way: one
            // connection per worker, or a dead worker would be retried on its twin.
            if !self.connecting.lock().insert(ep.clone()) {
                continue;
            }
            let pool = self.clone();
            tokio::spawn(async move {
                let result = connect(ep.clone()).await;
                pool.connecting.lock().remove(&ep);
                match result {
                    Ok(conn) => {
                        let still_wanted = pool.wanted.lock().contains(&ep);
                        let mut workers = pool.workers.write();
                        if !still_wanted || workers.iter().any(|w| w.endpoint == ep) {
                            conn.routable.store(false, Ordering::SeqCst);
                            return;
                        }
                        workers.push(conn.clone());
                        drop(workers);
                        tracing::info!(runner = %pool.runner, worker = ep.index, "connected to runner worker");
                        pool.changed.notify_waiters();
                        // A worker whose connection ends leaves the pool at once.
                        let pool = pool.clone();
                        tokio::spawn(async move {
                            conn.conn.closed().await;
                            pool.workers.write().retain(|w| !Arc::ptr_eq(w, &conn));
                        });
                    }
                    Err(e) => {
                        tracing::warn!(runner = %pool.runner, worker = ep.index, error = %e, "cannot connect to runner worker")
                    }
                }
            });
        }
    }

    fn pick(&self, avoid: &[Arc<WorkerConn>]) -> Option<Arc<WorkerConn>> {
        let workers = self.workers.read();
        let n = workers.len();
        if n == 0 {
            return None;
        }
        let start = self.rotate.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<&Arc<WorkerConn>> = None;
        for i in 0..n {
            let w = &workers[(start + i) % n];
            if !w.accepts_calls() || avoid.iter().any(|a| a.endpoint == w.endpoint) {
                continue;
            }
            if best.is_none_or(|b| {
                w.outstanding.load(Ordering::Relaxed) < b.outstanding.load(Ordering::Relaxed)
            }) {
                best = Some(w);
            }
        }
        best.cloned()
    }

    /// Like [`RunnerPool::pick`], but when no worker is live waits up to
    /// [`WORKER_WAIT`] for one to connect: a worker restarting after a crash,
    /// or the pool filling right after this API server started, should delay
    /// a request, not fail it. A runner that scales to zero is waited for
    /// until the request's deadline, and a wait that ends there is the
    /// deadline's (504), not the runner's (503): no worker could start in time.
    async fn pick_or_wait(&self, avoid: &[Arc<WorkerConn>]) -> Result<Arc<WorkerConn>, CallError> {
        let request_deadline = crate::deadline::remaining();
        let (wait, at_deadline) = match (
            self.scales_to_zero.load(Ordering::Relaxed),
            request_deadline,
        ) {
            (true, Some(left)) => (left, true),
            (true, None) => (COLD_START_WAIT, false),
            (false, _) => (WORKER_WAIT, false),
        };
        let none_live = || {
            if at_deadline {
                CallError::DeadlineExceeded
            } else {
                CallError::Unavailable(format!("no live worker of runner '{}'", self.runner))
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut told = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before checking, so a connection made in between is not missed.
            changed.as_mut().enable();
            if let Some(w) = self.pick(avoid) {
                return Ok(w);
            }
            if !told && let Some(supervisor) = self.supervisor.get() {
                told = true;
                let runner = self.runner.clone();
                let _ = supervisor.send(ToSupervisor::CallWaiting { runner });
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.pick(avoid).ok_or_else(none_live);
            }
        }
    }

    async fn call_once(
        &self,
        worker: &WorkerConn,
        method: &str,
        payload: Bytes,
    ) -> Attempt<Vec<u8>> {
        let deadline_ns = match crate::deadline::remaining() {
            Some(left) if left.is_zero() => {
                return Attempt::Answered(Err(CallError::DeadlineExceeded));
            }
            Some(left) => Some(tiffin_ipc::clock::deadline_after(left)),
            None => None,
        };
        // The request's id and, when traced, this call's span go with it.
        let request_id = crate::request_scope::current(|r| r.id.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let mut span = crate::trace::start_runner_call(&self.runner, method);
        let call = DataRequest::Call {
            method: method.to_string(),
            payload,
            deadline_ns,
            request_id,
            trace: span.as_ref().map(tiffin_telemetry::Span::context),
        };
        // Counted down on drop too: a caller that gives up (client gone,
        // deadline) must not leave the worker looking busy forever.
        let _outstanding = CountGuard::enter(&worker.outstanding);
        let answer = match worker.conn.send_request(|_| call) {
            Ok(pending) => {
                // Dropped with this future before the answer came: the
                // worker is told to cancel the call.
                let mut cancel = CancelOnDrop {
                    conn: &worker.conn,
                    call: Some(pending.id()),
                };
                let answer = pending.await;
                cancel.call = None;
                answer
            }
            Err(e) => Err(e),
        };
        if let (Some(span), Ok(DataResponse::Result(Err(e)))) = (&mut span, &answer) {
            span.set_error(e.to_string());
        }
        match answer {
            Ok(DataResponse::Result(Err(CallError::Draining))) => Attempt::Draining,
            // A decoded reply owns its buffer alone: into a Vec without a copy.
            Ok(DataResponse::Result(result)) => Attempt::Answered(result.map(Vec::from)),
            Ok(other) => Attempt::Answered(Err(CallError::Failed(format!(
                "unexpected answer from the runner worker: {other:?}"
            )))),
            Err(ConnectionError::Closed { .. }) => Attempt::NotSent,
            Err(e @ ConnectionError::Lost { .. }) => Attempt::Lost(e),
            // This call alone could not be framed (e.g. larger than the frame limit).
            Err(e) => Attempt::Answered(Err(CallError::BadInput(e.to_string()))),
        }
    }

    async fn route(self: Arc<Self>, method: String, payload: Vec<u8>) -> Reply {
        // Shared by every attempt: a retry sends the same bytes, uncopied.
        let payload = Bytes::from(payload);
        let _in_flight = CountGuard::enter(&self.in_flight);
        let (pool, method) = (&self, &method);
        self.route_with(|worker| {
            let payload = payload.clone();
            async move { pool.call_once(&worker, method, payload).await }
        })
        .await
    }

    /// Sends one call by `attempt`, worker after worker, until one answers.
    /// A draining worker refuses without running the call, so moving on is
    /// always safe (scale-down must fail no request); a worker lost
    /// mid-call is retried once.
    async fn route_with<T, F, Fut>(&self, attempt: F) -> Result<T, CallError>
    where
        F: Fn(Arc<WorkerConn>) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        // Workers already tried for this call.
        let mut tried: Vec<Arc<WorkerConn>> = Vec::new();
        let mut lost_retry_left = true;
        loop {
            let worker = self.pick_or_wait(&tried).await?;
            match attempt(Arc::clone(&worker)).await {
                Attempt::Answered(reply) => return reply,
                Attempt::Draining => {
                    worker.draining.store(true, Ordering::SeqCst);
                    worker.routable.store(false, Ordering::SeqCst);
                    tried.push(worker);
                }
                // Neither ran the call: another worker may always take it.
                Attempt::NotSent => tried.push(worker),
                Attempt::Lost(_) if worker.draining.load(Ordering::SeqCst) => tried.push(worker),
                Attempt::Lost(_) if lost_retry_left => {
                    lost_retry_left = false;
                    tried.push(worker);
                }
                Attempt::Lost(e) => return Err(CallError::Unavailable(e.to_string())),
            }
        }
    }
}

/// What a streamed call takes from its request, when the stream is made:
/// the stream is read after the request's scope, as the response's body.
struct StreamScope {
    /// When the request's time to its first item runs out.
    deadline: Option<tokio::time::Instant>,
    /// The client request's id (`X-Request-ID`).
    request_id: String,
    /// The W3C context of this call's span.
    trace: Option<tiffin_ipc::proto::TraceContext>,
}

impl RunnerPool {
    /// Starts a streamed call: before its first item it is routed as any
    /// call is ([`RunnerPool::route_with`]: another worker if one drains or
    /// dies first); once items flowed it stays on its worker, and a worker
    /// lost mid-stream ends it with an error. The calls-in-flight gauge,
    /// the worker's outstanding count and the span are held until the
    /// stream ends or is dropped; dropping it early cancels the call.
    fn stream(self: Arc<Self>, method: String, payload: Vec<u8>) -> EncodedStream {
        let request_id = crate::request_scope::current(|r| r.id.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let span = crate::trace::start_runner_call(&self.runner, &method);
        let scope = StreamScope {
            deadline: crate::deadline::remaining().map(|left| tokio::time::Instant::now() + left),
            request_id,
            trace: span.as_ref().map(tiffin_telemetry::Span::context),
        };
        let opened = async move {
            let in_flight = CountGuard::enter(self.in_flight.clone());
            let payload = Bytes::from(payload);
            let (pool, method, scope) = (&self, &method, &scope);
            let started = self
                .route_with(|worker| pool.stream_once(worker, method, payload.clone(), scope))
                .await;
            match started {
                // The guards go with the stream, and end with it.
                Ok(items) => items
                    .map(move |item| {
                        let _held = (&in_flight, &span);
                        item
                    })
                    .boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        };
        futures::stream::once(opened).flatten().boxed()
    }

    /// One attempt of a streamed call on `worker`, until its first item or
    /// its end: a started stream is answered, and so is an error the
    /// worker sent; a refusal or a lost connection is for `route_with`.
    async fn stream_once(
        &self,
        worker: Arc<WorkerConn>,
        method: &str,
        payload: Bytes,
        scope: &StreamScope,
    ) -> Attempt<EncodedStream> {
        let deadline_ns = match scope.deadline {
            Some(at) => {
                let left = at.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Attempt::Answered(Err(CallError::DeadlineExceeded));
                }
                Some(tiffin_ipc::clock::deadline_after(left))
            }
            None => None,
        };
        let (items_tx, mut items) = mpsc::unbounded_channel();
        let mut call = None;
        let sent = worker.conn.send_request(|id| {
            call = Some(id);
            worker.streams.lock().insert(id, items_tx);
            DataRequest::StreamCall {
                method: method.to_string(),
                payload,
                deadline_ns,
                request_id: scope.request_id.clone(),
                trace: scope.trace,
                window: STREAM_WINDOW,
            }
        });
        // Removes the item route however this attempt ends.
        let route = call.map(|id| StreamRoute {
            worker: Arc::clone(&worker),
            id,
        });
        let (mut end, route) = match (sent, route) {
            (Ok(pending), Some(route)) => (pending, route),
            (Err(ConnectionError::Closed { .. }), _) => return Attempt::NotSent,
            (Err(e), _) => return Attempt::Answered(Err(CallError::BadInput(e.to_string()))),
            (Ok(_), None) => {
                return Attempt::Answered(Err(CallError::Failed(
                    "the stream call was sent without an id".into(),
                )));
            }
        };
        let outstanding = CountGuard::enter(Arc::clone(&worker.outstanding));
        let (first, ended) = tokio::select! {
            biased;
            item = items.recv() => (item, None),
            answer = &mut end => (items.try_recv().ok(), Some(answer)),
        };
        let ended = match ended {
            None => None,
            Some(Ok(DataResponse::StreamEnd(Err(CallError::Draining)))) => {
                return Attempt::Draining;
            }
            Some(Ok(DataResponse::StreamEnd(result))) => Some(result),
            Some(Ok(other)) => Some(Err(CallError::Failed(format!(
                "unexpected answer from the runner worker: {other:?}"
            )))),
            Some(Err(ConnectionError::Lost { peer })) if first.is_none() => {
                return Attempt::Lost(ConnectionError::Lost { peer });
            }
            Some(Err(e)) => Some(Err(CallError::Unavailable(format!(
                "the stream was cut: {e}"
            )))),
        };
        if let (None, Some(Err(e))) = (&first, &ended) {
            return Attempt::Answered(Err(e.clone()));
        }
        let end: BoxFuture<Result<u64, CallError>> = match ended {
            Some(result) => Box::pin(std::future::ready(result)),
            None => Box::pin(end.map(|answer| match answer {
                Ok(DataResponse::StreamEnd(result)) => result,
                Ok(other) => Err(CallError::Failed(format!(
                    "unexpected answer from the runner worker: {other:?}"
                ))),
                // Items flowed: the call is not sent elsewhere.
                Err(e) => Err(CallError::Unavailable(format!(
                    "the runner worker was lost mid-stream: {e}"
                ))),
            })),
        };
        let conn = worker.conn.clone();
        let call = route.id;
        let hooks = ReceiverHooks {
            credit: Box::new(move |items| {
                let _ = conn.send(DataRequest::StreamCredit { call, items });
            }),
            dropped: Box::new(move |ended| {
                if !ended {
                    let _ = route.worker.conn.send(DataRequest::StreamCancel { call });
                }
                drop((route, outstanding));
            }),
        };
        let receiver = StreamReceiver::new(STREAM_WINDOW, first, items, end, hooks);
        Attempt::Answered(Ok(receiver.boxed()))
    }
}

/// Sends a cancel for `call` when dropped still armed: the caller of a
/// unary call went away before its answer came.
struct CancelOnDrop<'a> {
    conn: &'a Connection<DataRequest, DataResponse>,
    /// The call's envelope id; `None` once answered.
    call: Option<u64>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call {
            // A connection already gone cancels every call on it anyway.
            let _ = self.conn.send(DataRequest::StreamCancel { call });
        }
    }
}

/// A stream's entry in its connection's item routes, removed when dropped.
struct StreamRoute {
    worker: Arc<WorkerConn>,
    id: u64,
}

impl Drop for StreamRoute {
    fn drop(&mut self) {
        self.worker.streams.lock().remove(&self.id);
    }
}

/// The [`RunnerTransport`] a `Runner` uses inside this API server.
pub struct PoolTransport(pub Arc<RunnerPool>);

impl RunnerTransport for PoolTransport {
    fn call(&self, method: &str, payload: Vec<u8>) -> BoxFuture<Reply> {
        Box::pin(self.0.clone().route(method.to_string(), payload))
    }

    fn call_stream(&self, method: &str, payload: Vec<u8>) -> EncodedStream {
        self.0.clone().stream(method.to_string(), payload)
    }
}

async fn connect(endpoint: WorkerEndpoint) -> Result<Arc<WorkerConn>, ConnectionError> {
    let peer = format!("runner worker {}", endpoint.index);
    let stream = UnixStream::connect(&endpoint.socket)
        .await
        .map_err(|_| ConnectionError::Closed { peer: peer.clone() })?;
    // Only a worker of our own user may get our calls (and their inputs).
    tiffin_ipc::peer::check_peer(&stream).map_err(|e| ConnectionError::Handshake {
        peer: peer.clone(),
        what: e.to_string(),
    })?;
    let mut opening = Opening::new(stream, peer.clone());
    let hello = DataRequest::Hello {
        version: PROTOCOL_VERSION,
    };
    match opening.hello(hello).await? {
        DataResponse::Hello { version } if version == PROTOCOL_VERSION => {}
        other => {
            return Err(ConnectionError::Handshake {
                peer,
                what: format!("{other:?}"),
            });
        }
    }
    let routable = Arc::new(AtomicBool::new(true));
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_routing, said_draining) = (routable.clone(), draining.clone());
    let streams = ItemRoutes::default();
    let item_routes = streams.clone();
    let conn = opening.start(move |msg, _| match msg {
        Incoming::Event(DataResponse::Draining) => {
            said_draining.store(true, Ordering::SeqCst);
            stop_routing.store(false, Ordering::SeqCst);
        }
        // A decoded item owns its buffer alone: into a Vec without a copy.
        // An item of a stream no longer wanted (cancelled) is dropped.
        Incoming::Event(DataResponse::StreamItem { call, item }) => {
            if let Some(items) = item_routes.lock().get(&call) {
                let _ = items.send(Vec::from(item));
            }
        }
        _ => {}
    });
    Ok(Arc::new(WorkerConn {
        endpoint,
        conn,
        outstanding: Arc::default(),
        streams,
        routable,
        draining,
    }))
}
