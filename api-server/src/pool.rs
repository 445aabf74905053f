//! Connections from this API server to the workers of one runner, and the
//! choice of worker for each call.
//!
//! Each ready worker gets one multiplexed connection: calls carry an id and
//! replies may come back in any order. A call goes to the live worker with
//! the fewest outstanding calls. When a connection drops, every call waiting
//! on it fails at once (never hangs) and the worker leaves the pool; a call
//! whose worker died before answering is retried once on another live worker
//! (runner methods are treated as idempotent, as in BentoML).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use tiffin_shared::call::CallError;
use tiffin_shared::frame::{FrameCodec, FrameError};
use tiffin_shared::proto::{DataRequest, DataResponse, PROTOCOL_VERSION, WorkerEndpoint};
use tiffin_shared::service::{BoxFuture, RunnerTransport};

type Reply = Result<Vec<u8>, CallError>;

/// Marks an `Unavailable` error caused by a lost connection, which is safe to retry.
const CONNECTION_LOST: &str = "worker connection lost before it answered";

/// One multiplexed connection to a runner worker.
struct WorkerConn {
    endpoint: WorkerEndpoint,
    tx: mpsc::UnboundedSender<DataRequest>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    outstanding: AtomicUsize,
    alive: AtomicBool,
    next_id: AtomicU64,
}

impl WorkerConn {
    fn fail_all(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let waiters: Vec<_> = lock(&self.pending).drain().collect();
        for (_, w) in waiters {
            let _ = w.send(Err(CallError::Unavailable(CONNECTION_LOST.to_string())));
        }
    }

    async fn call(&self, method: &str, payload: Vec<u8>) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        // Re-check after inserting: the reader may have failed everything in between.
        if !self.alive.load(Ordering::SeqCst)
            || self
                .tx
                .send(DataRequest::Call {
                    id,
                    method: method.to_string(),
                    payload,
                })
                .is_err()
        {
            lock(&self.pending).remove(&id);
            return Err(CallError::Unavailable(CONNECTION_LOST.to_string()));
        }
        rx.await
            .unwrap_or_else(|_| Err(CallError::Unavailable(CONNECTION_LOST.to_string())))
    }
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
    connecting: Mutex<std::collections::HashSet<WorkerEndpoint>>,
}

/// How long a call waits for a live worker before answering "unavailable".
const WORKER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl RunnerPool {
    /// An empty pool for `runner`; workers arrive through [`RunnerPool::update`].
    pub fn new(runner: &str) -> Arc<Self> {
        Arc::new(Self {
            runner: runner.to_string(),
            workers: RwLock::default(),
            rotate: AtomicUsize::new(0),
            changed: tokio::sync::Notify::new(),
            wanted: Mutex::default(),
            connecting: Mutex::default(),
        })
    }

    /// Number of workers currently accepting calls.
    pub fn live(&self) -> usize {
        read(&self.workers)
            .iter()
            .filter(|w| w.alive.load(Ordering::SeqCst))
            .count()
    }

    /// Applies the supervisor's current worker set: connects to new workers,
    /// stops routing to workers no longer listed.
    pub fn update(self: &Arc<Self>, endpoints: Vec<WorkerEndpoint>) {
        let mut current = write(&self.workers);
        current.retain(|w| {
            let keep = endpoints.contains(&w.endpoint);
            if !keep {
                // In-flight calls still get their replies; no new calls are routed here.
                w.alive.store(false, Ordering::SeqCst);
            }
            keep
        });
        let known: Vec<WorkerEndpoint> = current.iter().map(|w| w.endpoint.clone()).collect();
        drop(current);
        let mut wanted = lock(&self.wanted);
        *wanted = endpoints.clone();
        drop(wanted);
        for ep in endpoints.into_iter().filter(|e| !known.contains(e)) {
            // Several updates can arrive while a handshake is under way: one
            // connection per worker, or a dead worker would be retried on its twin.
            if !lock(&self.connecting).insert(ep.clone()) {
                continue;
            }
            let pool = self.clone();
            tokio::spawn(async move {
                let result = connect(ep.clone()).await;
                lock(&pool.connecting).remove(&ep);
                match result {
                    Ok(conn) => {
                        let still_wanted = lock(&pool.wanted).contains(&ep);
                        let mut workers = write(&pool.workers);
                        if !still_wanted || workers.iter().any(|w| w.endpoint == ep) {
                            conn.alive.store(false, Ordering::SeqCst);
                            return;
                        }
                        workers.push(conn);
                        drop(workers);
                        tracing::info!(runner = %pool.runner, worker = ep.index, "connected to runner worker");
                        pool.changed.notify_waiters();
                    }
                    Err(e) => {
                        tracing::warn!(runner = %pool.runner, worker = ep.index, error = %e, "cannot connect to runner worker")
                    }
                }
            });
        }
    }

    fn pick(&self, avoid: &[Arc<WorkerConn>]) -> Option<Arc<WorkerConn>> {
        let workers = read(&self.workers);
        let n = workers.len();
        if n == 0 {
            return None;
        }
        let start = self.rotate.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<&Arc<WorkerConn>> = None;
        for i in 0..n {
            let w = &workers[(start + i) % n];
            if !w.alive.load(Ordering::SeqCst) || avoid.iter().any(|a| a.endpoint == w.endpoint) {
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
    /// a request, not fail it.
    async fn pick_or_wait(&self, avoid: &[Arc<WorkerConn>]) -> Option<Arc<WorkerConn>> {
        let deadline = tokio::time::Instant::now() + WORKER_WAIT;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before checking, so a connection made in between is not missed.
            changed.as_mut().enable();
            if let Some(w) = self.pick(avoid) {
                return Some(w);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.pick(avoid);
            }
        }
    }

    async fn call_once(&self, worker: &Arc<WorkerConn>, method: &str, payload: Vec<u8>) -> Reply {
        worker.outstanding.fetch_add(1, Ordering::Relaxed);
        let result = worker.call(method, payload).await;
        worker.outstanding.fetch_sub(1, Ordering::Relaxed);
        if matches!(&result, Err(CallError::Unavailable(m)) if m == CONNECTION_LOST) {
            worker.fail_all();
            write(&self.workers).retain(|w| !Arc::ptr_eq(w, worker));
        }
        result
    }

    async fn route(self: Arc<Self>, method: String, payload: Vec<u8>) -> Reply {
        let unavailable =
            || CallError::Unavailable(format!("no live worker of runner '{}'", self.runner));
        // Workers already tried for this call. A draining worker refuses
        // without running the call, so moving on is always safe (scale-down
        // must fail no request); a worker lost mid-call is retried once.
        let mut tried: Vec<Arc<WorkerConn>> = Vec::new();
        let mut lost_retry_left = true;
        loop {
            let worker = self.pick_or_wait(&tried).await.ok_or_else(unavailable)?;
            match self.call_once(&worker, &method, payload.clone()).await {
                Err(CallError::Draining) => {
                    worker.alive.store(false, Ordering::SeqCst);
                    tried.push(worker);
                }
                Err(CallError::Unavailable(_)) if lost_retry_left => {
                    lost_retry_left = false;
                    tried.push(worker);
                }
                other => return other,
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

async fn connect(endpoint: WorkerEndpoint) -> Result<Arc<WorkerConn>, std::io::Error> {
    let stream = UnixStream::connect(&endpoint.socket).await?;
    let mut framed = Framed::new(stream, FrameCodec::<DataResponse, DataRequest>::default());
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    framed
        .send(DataRequest::Hello {
            version: PROTOCOL_VERSION,
        })
        .await
        .map_err(|e| bad(e.to_string()))?;
    match framed.next().await {
        Some(Ok(DataResponse::Hello { version })) if version == PROTOCOL_VERSION => {}
        other => return Err(bad(format!("unexpected handshake reply: {other:?}"))),
    }
    let (mut sink, mut stream) = framed.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<DataRequest>();
    let conn = Arc::new(WorkerConn {
        endpoint,
        tx,
        pending: Mutex::default(),
        outstanding: AtomicUsize::new(0),
        alive: AtomicBool::new(true),
        next_id: AtomicU64::new(1),
    });
    let writer_conn = Arc::downgrade(&conn);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut ok = sink.feed(msg).await.is_ok();
            while ok && let Ok(more) = rx.try_recv() {
                ok = sink.feed(more).await.is_ok();
            }
            if !ok || sink.flush().await.is_err() {
                if let Some(c) = writer_conn.upgrade() {
                    c.fail_all();
                }
                return;
            }
        }
    });
    let reader_conn = conn.clone();
    tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(DataResponse::Reply { id, result }) => {
                    let waiter = lock(&reader_conn.pending).remove(&id);
                    if let Some(w) = waiter {
                        let _ = w.send(result);
                    }
                }
                Ok(DataResponse::Draining) => reader_conn.alive.store(false, Ordering::SeqCst),
                Ok(DataResponse::Hello { .. }) => {}
                Err(FrameError::Io(e)) => {
                    tracing::debug!(worker = reader_conn.endpoint.index, error = %e, "runner worker connection closed");
                    break;
                }
                Err(e) => {
                    tracing::error!(worker = reader_conn.endpoint.index, error = %e, "malformed frame from runner worker; closing");
                    break;
                }
            }
        }
        reader_conn.fail_all();
    });
    Ok(conn)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}
