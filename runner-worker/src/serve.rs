//! The worker's main loop: bind the data socket, report ready, answer calls,
//! and on drain finish the calls in flight before saying goodbye.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};

use tiffin_config::BatchingConfig;
use tiffin_ipc::connection::{Connection, ConnectionError, Incoming, Opening};
use tiffin_ipc::proto::{
    DataRequest, DataResponse, FromSupervisor, PROTOCOL_VERSION, Role, ToSupervisor,
};
use tiffin_ipc::runtime;
use tiffin_metrics::{self as metrics, RunnerMetrics};
use tiffin_service::{CallError, MethodKind, Runnable};
use tiffin_telemetry::{Kind, Span, TraceContext, Tracer};

use crate::batch::{BatchLimits, BatchSpans, Call, Dispatcher, Reply};
use crate::in_flight::InFlight;
use crate::{WorkerArgs, WorkerError};
use tiffin_metrics::CountGuard;

/// The worker's end of a data connection.
type DataConn = Connection<DataResponse, DataRequest>;

/// Shared state of one worker process.
struct Worker {
    runnable: Runnable,
    dispatchers: HashMap<String, Dispatcher>,
    metrics: Option<RunnerMetrics>,
    requests: AtomicU64,
    in_flight: Arc<InFlight>,
    draining: AtomicBool,
    /// Open data connections, so a drain can tell every API server at once.
    connections: Mutex<Vec<DataConn>>,
    /// The tracer, when `tracing.exporter_type` is set, and the runner's name
    /// for span names.
    tracer: Option<Tracer>,
    runner: String,
}

/// How long a drained worker waits for its last replies to leave a connection.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

impl Worker {
    /// Loads the runnable and sets up what serving it needs: metrics, the
    /// tracer, and a batch dispatcher per batchable method.
    fn load(args: &WorkerArgs, role: &Role) -> Result<Self, WorkerError> {
        let load_error = |message: String| WorkerError::Load {
            runner: args.runner.clone(),
            message,
        };
        let runner = args
            .service
            .find_runner(&args.runner)
            .ok_or_else(|| WorkerError::UnknownRunner(args.runner.clone()))?;
        let started = Instant::now();
        let runnable = runner.load().map_err(load_error)?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "runnable loaded"
        );

        let cfg = &args.config.runners;
        let batching = cfg.batching_for(&args.runner);
        let metrics = if cfg.metrics.enabled {
            let buckets = cfg
                .metrics
                .duration
                .buckets("runners.metrics")
                .map_err(|e| load_error(e.to_string()))?;
            let batch_buckets = tiffin_config::batch_size_buckets(batching.max_batch_size);
            Some(RunnerMetrics::new(
                metrics::global(),
                &cfg.metrics.namespace,
                &buckets,
                &batch_buckets,
                &args.service.name,
                args.service.version_label(),
                &args.runner,
                args.index,
            )?)
        } else {
            None
        };
        let tracer =
            Tracer::from_config(&args.config.tracing, &args.service.name, &role.to_string())
                .map_err(|e| load_error(e.to_string()))?;

        let dispatchers = dispatchers(
            &runnable,
            &batching,
            metrics.as_ref(),
            tracer.as_ref(),
            &args.runner,
        );

        Ok(Self {
            runnable,
            dispatchers,
            metrics,
            requests: AtomicU64::new(0),
            in_flight: Arc::default(),
            draining: AtomicBool::new(false),
            connections: Mutex::default(),
            tracer,
            runner: args.runner.clone(),
        })
    }

    /// Adds a started data connection; one that opens during a drain is
    /// told at once.
    fn register(&self, conn: &DataConn) {
        let mut conns = lock(&self.connections);
        conns.retain(DataConn::is_open);
        conns.push(conn.clone());
        drop(conns);
        if self.draining.load(Ordering::SeqCst) {
            let _ = conn.send(DataResponse::Draining);
        }
    }

    /// Refuses new calls from now on and tells every API server, so that a
    /// call they send after this is refused (never run) or, once the worker
    /// has exited, known to be safe to send elsewhere.
    fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for conn in lock(&self.connections).iter() {
            let _ = conn.send(DataResponse::Draining);
        }
    }

    /// Delivers every reply and refusal already sent, then closes the data
    /// connections.
    async fn close_connections(&self) {
        let conns: Vec<DataConn> = lock(&self.connections).drain(..).collect();
        futures::future::join_all(conns.iter().map(|c| c.finish(FLUSH_LIMIT))).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A dispatcher for each batchable method, when batching is enabled: a batch
/// size histogram per method and, when tracing, a span per batch.
fn dispatchers(
    runnable: &Runnable,
    batching: &BatchingConfig,
    metrics: Option<&RunnerMetrics>,
    tracer: Option<&Tracer>,
    runner: &str,
) -> HashMap<String, Dispatcher> {
    let mut dispatchers = HashMap::new();
    if !batching.enabled {
        return dispatchers;
    }
    // Queue bound: see `BatchLimits::new`.
    let limits = BatchLimits::new(
        batching.max_batch_size,
        Duration::from_millis(batching.max_latency_ms),
    );
    for (name, method) in runnable.methods() {
        // The one place a method's kind decides how it is served:
        // batchable ones through a dispatcher, the rest inline.
        let batch = match method {
            MethodKind::Batch(f) => f.clone(),
            MethodKind::Single(_) => continue,
        };
        let observer_metrics = metrics.cloned();
        let method_name = name.to_string();
        let observe = Arc::new(move |n: usize| {
            if let Some(m) = &observer_metrics {
                m.observe_batch(&method_name, n);
            }
        });
        let spans = tracer.map(|tracer| BatchSpans {
            tracer: tracer.clone(),
            name: format!("{runner}.{name}"),
        });
        let dispatcher = Dispatcher::spawn(batch, limits, observe, spans);
        dispatchers.insert(name.to_string(), dispatcher);
    }
    dispatchers
}

/// Binds the worker's data socket (mode 0600), only in a private directory
/// of ours (not a symlink, our uid, mode 0700): the control connection
/// checks it too, but after the bind.
fn bind(runtime_dir: &Path, socket: &Path) -> Result<UnixListener, WorkerError> {
    let bind_error = |source| WorkerError::Bind {
        path: socket.display().to_string(),
        source,
    };
    tiffin_ipc::peer::check_dir(runtime_dir)
        .map_err(|e| bind_error(std::io::Error::new(std::io::ErrorKind::PermissionDenied, e)))?;
    // A previous worker of this slot may have died and left its socket behind.
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(bind_error)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Runs a runner worker until the supervisor asks it to drain or goes away.
pub async fn run(args: WorkerArgs) -> Result<(), WorkerError> {
    let role = Role::Runner {
        name: args.runner.clone(),
        index: args.index,
    };
    let worker = Arc::new(Worker::load(&args, &role)?);
    let socket = runtime::runner_socket(&args.runtime_dir, &args.runner, args.index);
    let listener = bind(&args.runtime_dir, &socket)?;

    let snap_worker = worker.clone();
    let snapshot: tiffin_ipc::control::SnapshotFn = Arc::new(move || {
        (
            metrics::global().snapshot(),
            snap_worker.requests.load(Ordering::Relaxed),
        )
    });
    let (control, mut events) = crate::liveness::connect(&args.runtime_dir, role, snapshot).await?;
    control.send(ToSupervisor::Ready {
        socket: Some(socket.display().to_string()),
    })?;
    tracing::info!(socket = %socket.display(), "ready");

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match tiffin_ipc::peer::check_peer(&stream) {
                    Ok(()) => {
                        tokio::spawn(serve_connection(stream, worker.clone()));
                    }
                    Err(e) => tracing::error!(error = %e, "data connection refused"),
                },
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            event = events.recv() => match event {
                Some(FromSupervisor::Drain) => break,
                Some(_) => {}
                None => {
                    tracing::info!("supervisor went away; exiting");
                    let _ = std::fs::remove_file(&socket);
                    tiffin_telemetry::flush_traces(worker.tracer.as_ref()).await;
                    return Ok(());
                }
            },
        }
    }

    tracing::info!("draining");
    worker.start_draining();
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    // The supervisor kills a worker that overruns the graceful timeout, so
    // this wait is bounded from outside.
    worker.in_flight.zero().await;
    worker.close_connections().await;
    control.send(ToSupervisor::Drained {
        snapshot: metrics::global().snapshot(),
    })?;
    control.finish().await;
    tiffin_telemetry::flush_traces(worker.tracer.as_ref()).await;
    tracing::info!("drained; exiting");
    Ok(())
}

async fn serve_connection(stream: UnixStream, worker: Arc<Worker>) {
    let mut opening = Opening::<DataResponse, DataRequest>::new(stream, "api server");
    match opening.accept().await {
        Ok((id, DataRequest::Hello { version })) if version == PROTOCOL_VERSION => {
            let hello = DataResponse::Hello {
                version: PROTOCOL_VERSION,
            };
            if opening.reply(id, hello).await.is_err() {
                return;
            }
        }
        Ok((_, DataRequest::Hello { version })) => {
            tracing::error!(version, "peer speaks another protocol version; closing");
            return;
        }
        Ok(_) => {
            tracing::error!("data connection did not start with hello; closing");
            return;
        }
        Err(ConnectionError::Frame(e)) => {
            tracing::error!(error = %e, "malformed frame on data connection; closing");
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, "data connection ended during the hello");
            return;
        }
    }
    let handler_worker = worker.clone();
    let conn = opening.start(move |msg, conn| match msg {
        Incoming::Request {
            id,
            body:
                DataRequest::Call {
                    method,
                    payload,
                    deadline_ns,
                    request_id,
                    trace,
                },
        } => {
            let expires = deadline_ns.map(|ns| Instant::now() + tiffin_ipc::clock::until(ns));
            let context = CallContext {
                id,
                expires,
                request_id,
                trace,
            };
            call(&handler_worker, conn, method, payload.into(), context)
        }
        Incoming::Request { id, body } => {
            tracing::warn!(msg = ?body, "unexpected request on a data connection");
            let err = CallError::Failed("unexpected request".into());
            let _ = conn.reply(id, DataResponse::Result(Err(err)));
        }
        Incoming::Event(_) => {}
    });
    worker.register(&conn);
}

/// Everything about one call besides its method and input.
struct CallContext {
    /// The envelope's request id (for the reply).
    id: u64,
    /// The request's deadline.
    expires: Option<Instant>,
    /// The client request's id (`X-Request-ID`), for log lines and errors.
    request_id: String,
    /// The API server's span for this call, when traced.
    trace: Option<TraceContext>,
}

/// Runs one call: inline for plain methods, through the dispatcher for
/// batchable ones (which drops it if `expires` passes while it is queued);
/// a draining worker refuses without running it.
fn call(worker: &Arc<Worker>, conn: &DataConn, method: String, payload: Vec<u8>, cx: CallContext) {
    let CallContext {
        id,
        expires,
        request_id,
        trace,
    } = cx;
    if worker.draining.load(Ordering::SeqCst) {
        answer(conn, id, Err(CallError::Draining));
        return;
    }
    if expires.is_some_and(|t| Instant::now() >= t) {
        answer(conn, id, Err(CallError::DeadlineExceeded));
        return;
    }
    // Held until the call is answered, so a drain waits for it (and a
    // panic cannot leave it counted).
    let counted = CountGuard::enter(Arc::clone(&worker.in_flight));
    // The worker's span: a child of the API server's, in this process.
    let span = match (&worker.tracer, &trace) {
        (Some(tracer), Some(parent)) => Some(tracer.start(
            format!("{}.{method}", worker.runner),
            Kind::Server,
            Some(parent),
        )),
        _ => None,
    };
    // RunnerMetrics labels `method` as the endpoint `/<method>` itself.
    let started = Instant::now();
    let guard = worker.metrics.as_ref().map(|m| m.start(&method));
    if let Some(dispatcher) = worker.dispatchers.get(&method) {
        let worker = worker.clone();
        let conn = conn.clone();
        let trace = span.as_ref().map(Span::context);
        let call = Call {
            payload,
            expires,
            trace,
        };
        dispatcher.submit(
            call,
            Reply::new(move |result| {
                let result = finish(&worker, &method, started, result, &request_id, span);
                drop(guard);
                answer(&conn, id, result);
                drop(counted);
            }),
        );
    } else {
        let result = worker.runnable.call(&method, &payload);
        let result = finish(worker, &method, started, result, &request_id, span);
        drop(guard);
        answer(conn, id, result);
        drop(counted);
    }
}

/// Sends a call's result; a result that cannot be framed (larger than the
/// frame limit) becomes an error for that one call instead.
fn answer(conn: &DataConn, id: u64, result: Result<Vec<u8>, CallError>) {
    match conn.reply(id, DataResponse::Result(result.map(Into::into))) {
        Ok(()) => {}
        Err(ConnectionError::Frame(e)) => {
            tracing::error!(error = %e, "cannot send a call's result; answering with an error");
            let err = CallError::Failed(format!("the result cannot be sent: {e}"));
            let _ = conn.reply(id, DataResponse::Result(Err(err)));
        }
        Err(e) => tracing::debug!(error = %e, "cannot answer a call: the API server is gone"),
    }
}

/// Records a finished call (metrics, span, a log line naming the request
/// if it failed) and returns its result, a model error tagged with the
/// request id so the client's error body names it too.
fn finish(
    worker: &Worker,
    endpoint: &str,
    started: Instant,
    result: Result<Vec<u8>, CallError>,
    request_id: &str,
    span: Option<Span>,
) -> Result<Vec<u8>, CallError> {
    let status = match &result {
        Ok(_) => 200,
        Err(e) => e.http_status(),
    };
    let result = result.map_err(|e| {
        tracing::warn!(request_id = %request_id, method = endpoint, error = %e, "call failed");
        tag_with_request(e, request_id)
    });
    if let (Some(mut span), Err(e)) = (span, &result) {
        span.set_error(e.to_string());
    }
    if let Some(m) = &worker.metrics {
        m.finish(endpoint, status, started.elapsed().as_secs_f64());
    }
    worker.requests.fetch_add(1, Ordering::Relaxed);
    result
}

/// A model's error (failed or bad input) with ` (request id: …)` appended;
/// others are the worker's own and pass unchanged.
fn tag_with_request(e: CallError, request_id: &str) -> CallError {
    if request_id.is_empty() {
        return e;
    }
    match e {
        CallError::Failed(m) => CallError::Failed(format!("{m} (request id: {request_id})")),
        CallError::BadInput(m) => CallError::BadInput(format!("{m} (request id: {request_id})")),
        other => other,
    }
}
