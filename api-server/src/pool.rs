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
//! The pool also feeds the supervisor's autoscaler
//! (`supervisor/src/autoscale_loop.rs`): it counts the calls in flight to
//! its runner, waiting for a worker included, in the gauge
//! [`RUNNER_CALLS_IN_FLIGHT`], and a call that finds no worker tells the
//! supervisor at once ([`ToSupervisor::CallWaiting`]). For a runner that may
//! be autoscaled to zero such a call waits for a worker for as long as its
//! request may still run, instead of `WORKER_WAIT`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UnixStream;

use tiffin_ipc::connection::{Connection, ConnectionError, Incoming, Opening};
use tiffin_ipc::control::ControlClient;
use tiffin_ipc::proto::{
    DataRequest, DataResponse, PROTOCOL_VERSION, RUNNER_CALLS_IN_FLIGHT, ToSupervisor,
    WorkerEndpoint,
};
use tiffin_metrics::GaugeChild;
use tiffin_service::{BoxFuture, CallError, RunnerTransport};

use tiffin_metrics::count_guard::CountGuard;

type Reply = Result<Vec<u8>, CallError>;

/// One multiplexed connection to a runner worker.
struct WorkerConn {
    endpoint: WorkerEndpoint,
    conn: Connection<DataRequest, DataResponse>,
    /// Calls sent and not yet answered, for least-outstanding choice.
    outstanding: AtomicUsize,
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
enum Attempt {
    /// The worker answered (with a result or an error of the call).
    Answered(Reply),
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

    async fn call_once(&self, worker: &WorkerConn, method: &str, payload: Bytes) -> Attempt {
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
        let answer = worker.conn.request(call).await;
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
        // Workers already tried for this call. A draining worker refuses
        // without running the call, so moving on is always safe (scale-down
        // must fail no request); a worker lost mid-call is retried once.
        let mut tried: Vec<Arc<WorkerConn>> = Vec::new();
        let mut lost_retry_left = true;
        loop {
            let worker = self.pick_or_wait(&tried).await?;
            match self.call_once(&worker, &method, payload.clone()).await {
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

/// The [`RunnerTransport`] a `Runner` uses inside this API server.
pub struct PoolTransport(pub Arc<RunnerPool>);

impl RunnerTransport for PoolTransport {
    fn call(&self, method: &str, payload: Vec<u8>) -> BoxFuture<Reply> {
        Box::pin(self.0.clone().route(method.to_string(), payload))
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
    let conn = opening.start(move |msg, _| {
        if let Incoming::Event(DataResponse::Draining) = msg {
            said_draining.store(true, Ordering::SeqCst);
            stop_routing.store(false, Ordering::SeqCst);
        }
    });
    Ok(Arc::new(WorkerConn {
        endpoint,
        conn,
        outstanding: AtomicUsize::new(0),
        routable,
        draining,
    }))
}
