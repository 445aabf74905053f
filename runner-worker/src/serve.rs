//! The worker's main loop: bind the data socket, report ready, answer calls
//! (and streams: `stream.rs`, flow-controlled by the API server's credits),
//! and on drain finish the calls and streams in flight before saying goodbye.
//!
//! The connection's reader never runs a model: unary calls go to the model
//! thread or a batch queue (`host.rs`), so it keeps reading while they run
//! and a cancel (`DataRequest::StreamCancel` with a call's envelope id, for
//! a unary call as for a stream) reaches the call at once. A connection
//! that ends cancels every call and stream still on it: nobody is left to
//! read their answers.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};

use tiffin_ipc::connection::{Connection, ConnectionError, Incoming, Opening};
use tiffin_ipc::proto::{
    DataRequest, DataResponse, FromSupervisor, PROTOCOL_VERSION, Role, ToSupervisor,
};
use tiffin_ipc::runtime;
use tiffin_metrics as metrics;
use tiffin_service::CallError;

use crate::host::{CallContext, Host, PendingCall};
use crate::in_flight::InFlight;
use crate::stream::{Gate, ItemSink, Outcome, PullOn, Stopped};
use crate::ticket::CallTicket;
use crate::{WorkerArgs, WorkerError};
use tiffin_metrics::CountGuard;

/// The worker's end of a data connection.
type DataConn = Connection<DataResponse, DataRequest>;

/// Shared state of one worker process.
struct Worker {
    /// The runnable and what serving it needs (`host.rs`).
    host: Arc<Host>,
    in_flight: Arc<InFlight>,
    draining: AtomicBool,
    /// Open data connections, so a drain can tell every API server at once.
    connections: Mutex<Vec<DataConn>>,
}

/// How long a drained worker waits for its last replies to leave a connection.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

impl Worker {
    /// Loads the runnable and sets up what serving it needs.
    fn load(args: &WorkerArgs, role: &Role) -> Result<Self, WorkerError> {
        let host = Host::load(
            &args.service,
            &args.runner,
            &args.config,
            args.index,
            &role.to_string(),
        )?;
        Ok(Self {
            host: Arc::new(host),
            in_flight: Arc::default(),
            draining: AtomicBool::new(false),
            connections: Mutex::default(),
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
            snap_worker.host.requests.load(Ordering::Relaxed),
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
                    tiffin_telemetry::flush_traces(worker.host.tracer.as_ref()).await;
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
    tiffin_telemetry::flush_traces(worker.host.tracer.as_ref()).await;
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
    // The gates of this connection's streams in flight, and the tickets
    // of its unary calls, by call id.
    let streams = Streams::default();
    let handler_streams = streams.clone();
    let calls = Calls::default();
    let handler_calls = calls.clone();
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
            let envelope = Envelope::new(id, deadline_ns, request_id, trace);
            let call = UnaryCall {
                method,
                payload: payload.into(),
            };
            unary_call(&handler_worker, conn, &handler_calls, call, envelope)
        }
        Incoming::Request {
            id,
            body:
                DataRequest::StreamCall {
                    method,
                    payload,
                    deadline_ns,
                    request_id,
                    trace,
                    window,
                },
        } => {
            let envelope = Envelope::new(id, deadline_ns, request_id, trace);
            let call = StreamCall {
                method,
                payload: payload.into(),
                window,
            };
            stream_call(&handler_worker, conn, &handler_streams, call, envelope)
        }
        Incoming::Event(DataRequest::StreamCredit { call, items }) => {
            if let Some(gate) = lock(&handler_streams).get(&call) {
                gate.grant(items);
            }
        }
        Incoming::Event(DataRequest::StreamCancel { call }) => {
            if let Some(gate) = lock(&handler_streams).get(&call) {
                gate.cancel();
            }
            let pending = lock(&handler_calls).get(&call).cloned();
            if let Some(pending) = pending {
                pending.cancel(&handler_worker.host);
            }
        }
        Incoming::Request { id, body } => {
            tracing::warn!(msg = ?body, "unexpected request on a data connection");
            let err = CallError::Failed("unexpected request".into());
            let _ = conn.reply(id, DataResponse::Result(Err(err)));
        }
        Incoming::Event(_) => {}
    });
    worker.register(&conn);
    // An API server that goes away cancels its streams, even those waiting
    // for a credit that will never come, and its calls.
    conn.closed().await;
    for gate in lock(&streams).values() {
        gate.cancel();
    }
    let pending: Vec<Arc<PendingCall>> = lock(&calls).values().cloned().collect();
    for call in pending {
        call.cancel(&worker.host);
    }
}

/// The gates of a connection's streams in flight, by the call's envelope id.
type Streams = Arc<Mutex<HashMap<u64, Arc<Gate>>>>;

/// A connection's unary calls not yet answered, by the call's envelope id.
type Calls = Arc<Mutex<HashMap<u64, Arc<PendingCall>>>>;

/// A unary call, besides its envelope.
struct UnaryCall {
    method: String,
    payload: Vec<u8>,
}

/// A stream call, besides its envelope.
struct StreamCall {
    method: String,
    payload: Vec<u8>,
    /// Items it may send before its first credit.
    window: u32,
}

/// Runs one stream call through the host on the blocking pool: items go out
/// as events as the API server grants credits, and the end is the reply.
/// A draining worker refuses it without running it.
fn stream_call(
    worker: &Arc<Worker>,
    conn: &DataConn,
    streams: &Streams,
    call: StreamCall,
    envelope: Envelope,
) {
    let Envelope { id, cx } = envelope;
    if worker.draining.load(Ordering::SeqCst) {
        let _ = conn.reply(id, DataResponse::StreamEnd(Err(CallError::Draining)));
        return;
    }
    let counted = CountGuard::enter(Arc::clone(&worker.in_flight));
    let gate = Gate::new(call.window);
    lock(streams).insert(id, Arc::clone(&gate));
    let sink = WireSink {
        conn: conn.clone(),
        call: id,
        gate,
    };
    let (conn, streams) = (conn.clone(), Arc::clone(streams));
    let end = move |outcome: Outcome| {
        lock(&streams).remove(&id);
        let _ = conn.reply(id, DataResponse::StreamEnd(outcome.into_result()));
        drop(counted);
    };
    // A method whose items take microseconds is pulled by a task on this
    // thread, without a blocking-pool thread to wake per grant (`stream.rs`).
    let pull_on = PullOn::CallerIfCheap;
    (worker.host).call_stream(call.method, call.payload, cx, pull_on, sink, end);
}

/// A stream's items as events on its data connection.
struct WireSink {
    conn: DataConn,
    /// The stream call's envelope id.
    call: u64,
    gate: Arc<Gate>,
}

impl ItemSink for WireSink {
    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn hand_over(&mut self, item: Vec<u8>) -> Result<(), Stopped> {
        let event = DataResponse::StreamItem {
            call: self.call,
            item: item.into(),
        };
        match self.conn.send(event) {
            Ok(()) => Ok(()),
            Err(ConnectionError::Frame(e)) => Err(Stopped::Failed(CallError::Failed(format!(
                "a stream item cannot be sent: {e}"
            )))),
            Err(_) => Err(Stopped::Cancelled),
        }
    }
}

/// Everything about one call besides its method and input.
struct Envelope {
    /// The envelope's request id (for the reply).
    id: u64,
    /// The rest, as the host needs it.
    cx: CallContext,
}

impl Envelope {
    /// A call's envelope from what its request carries: the deadline, in
    /// [`tiffin_ipc::clock`] nanoseconds, becomes an instant here.
    fn new(
        id: u64,
        deadline_ns: Option<u64>,
        request_id: String,
        trace: Option<tiffin_ipc::proto::TraceContext>,
    ) -> Self {
        let expires = deadline_ns.map(|ns| Instant::now() + tiffin_ipc::clock::until(ns));
        Envelope {
            id,
            cx: CallContext {
                expires,
                request_id,
                trace,
            },
        }
    }
}

/// Runs one call through the host (on the model thread for plain methods,
/// through the dispatcher for batchable ones), cancellable until answered;
/// a draining worker refuses without running it.
fn unary_call(
    worker: &Arc<Worker>,
    conn: &DataConn,
    calls: &Calls,
    call: UnaryCall,
    envelope: Envelope,
) {
    let Envelope { id, cx } = envelope;
    if worker.draining.load(Ordering::SeqCst) {
        answer(conn, id, Err(CallError::Draining));
        return;
    }
    // Held until the call is answered, so a drain waits for it (and a
    // panic cannot leave it counted).
    let counted = CountGuard::enter(Arc::clone(&worker.in_flight));
    let ticket = CallTicket::new();
    let pending = PendingCall {
        ticket: Arc::clone(&ticket),
        method: call.method.clone(),
        request_id: cx.request_id.clone(),
    };
    lock(calls).insert(id, Arc::new(pending));
    let (conn, calls) = (conn.clone(), Arc::clone(calls));
    let deliver = move |result| {
        lock(&calls).remove(&id);
        answer(&conn, id, result);
        drop(counted);
    };
    worker
        .host
        .call_with(call.method, call.payload, cx, ticket, deliver);
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
