//! The supervisor's control socket: every worker process and the CLI connect here.
//!
//! A connection starts with a hello naming its role. Workers are matched to
//! their slot by role *and* pid, so a late connection from a replaced process
//! is refused. Each accepted connection is a [`Connection`](tiffin_ipc::Connection)
//! whose handler runs on its reader task; anything that must wait (a scrape,
//! a status with fresh snapshots, a scale decision of the main loop) is
//! answered from a task of its own, so one slow request never holds up the
//! messages behind it.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use tiffin_ipc::connection::{ConnectionError, Incoming, Opening};
use tiffin_ipc::proto::{
    FromSupervisor, PROTOCOL_VERSION, Role, ToSupervisor, WorkerEndpoint, WorkerState,
};

use crate::lifecycle::Event;
use crate::own_metrics::SupervisorMetrics;
use crate::state::{Shared, WorkerConn, lock};

/// What every control connection needs.
#[derive(Clone)]
pub(crate) struct Context {
    pub shared: Shared,
    pub metrics: Arc<SupervisorMetrics>,
    pub events: mpsc::UnboundedSender<Event>,
}

/// Accepts control connections until the supervisor exits.
pub(crate) fn serve(listener: UnixListener, ctx: Context) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, ctx.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

async fn connection(stream: UnixStream, ctx: Context) {
    // The directory is private already; a peer of another uid is refused
    // all the same, before a byte of it is read.
    if let Err(e) = tiffin_ipc::peer::check_peer(&stream) {
        tracing::error!(error = %e, "control connection refused");
        return;
    }
    let mut opening = Opening::<FromSupervisor, ToSupervisor>::new(stream, "control client");
    let (id, hello) = match opening.accept().await {
        Ok((id, ToSupervisor::Hello(hello))) => (id, hello),
        Ok((_, other)) => {
            tracing::warn!(msg = ?other, "control connection did not start with hello; closing");
            return;
        }
        Err(ConnectionError::Frame(e)) => {
            tracing::error!(error = %e, "malformed frame on control socket; closing");
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, "control connection ended during the hello");
            return;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let reason = format!("protocol version {} != {}", hello.version, PROTOCOL_VERSION);
        tracing::error!(pid = hello.pid, %reason, "refusing control connection");
        let _ = opening.reply(id, FromSupervisor::Refused { reason }).await;
        return;
    }
    let known = match &hello.role {
        Role::Cli => None,
        role => Some(lock(&ctx.shared).generation_of(role, hello.pid)),
    };
    let generation = match known {
        None => None,
        Some(Some(generation)) => Some(generation),
        Some(None) => {
            let role = &hello.role;
            {
                tracing::warn!(worker = %role, pid = hello.pid, "control connection from an unknown process; refusing");
                let reason = "no such worker".to_string();
                let _ = opening.reply(id, FromSupervisor::Refused { reason }).await;
                return;
            }
        }
    };
    let welcome = FromSupervisor::Welcome {
        version: PROTOCOL_VERSION,
    };
    if opening.reply(id, welcome).await.is_err() {
        return;
    }
    let role = hello.role;
    let Some(generation) = generation else {
        opening.start(move |msg, conn| cli_message(&ctx, msg, conn));
        return;
    };
    let handler_ctx = ctx.clone();
    let handler_role = role.clone();
    let conn = opening
        .start(move |msg, conn| worker_message(&handler_ctx, &handler_role, generation, msg, conn));
    if let Some(slot) = lock(&ctx.shared).current(&role, generation) {
        slot.conn.get_or_insert_with(|| conn.clone());
    }
    conn.closed().await;
    if let Some(slot) = lock(&ctx.shared).current(&role, generation) {
        slot.conn = None;
    }
    tracing::debug!(worker = %role, "control connection closed");
}

fn worker_message(
    ctx: &Context,
    role: &Role,
    generation: u64,
    msg: Incoming<ToSupervisor>,
    conn: &WorkerConn,
) {
    match msg {
        Incoming::Event(ToSupervisor::Ready { socket }) => {
            let mut st = lock(&ctx.shared);
            let Some(slot) = st.current(role, generation) else {
                return;
            };
            // Stored here too, under the lock that broadcasts take, so no
            // worker set sent after this point can miss this process.
            slot.conn.get_or_insert_with(|| conn.clone());
            slot.state = WorkerState::Ready;
            slot.endpoint = socket.map(|socket| WorkerEndpoint {
                index: role.index(),
                socket,
                generation,
            });
            tracing::info!(worker = %role, "worker ready");
            match role {
                Role::Runner { name, .. } => st.broadcast_workers(name),
                Role::ApiServer { .. } => {
                    for runner in &st.runners {
                        let endpoints = st.endpoints(runner);
                        let runner = runner.clone();
                        let _ = conn.send(FromSupervisor::Workers { runner, endpoints });
                    }
                }
                Role::Cli => {}
            }
        }
        Incoming::Event(ToSupervisor::Drained { snapshot }) => {
            lock(&ctx.shared).record_final_snapshot(role, generation, snapshot);
        }
        Incoming::Event(ToSupervisor::CallWaiting { runner }) => {
            let _ = ctx.events.send(Event::CallWaiting { runner });
        }
        Incoming::Request {
            id,
            body: ToSupervisor::Scrape { format },
        } => answer_scrape(ctx, id, format, conn),
        other => {
            tracing::debug!(worker = %role, msg = ?other, "ignoring control message");
        }
    }
}

fn cli_message(ctx: &Context, msg: Incoming<ToSupervisor>, conn: &WorkerConn) {
    let Incoming::Request { id, body } = msg else {
        return;
    };
    let (ctx, conn) = (ctx.clone(), conn.clone());
    match body {
        ToSupervisor::Status => {
            tokio::spawn(async move {
                // Fresh per-worker request counts come with fresh snapshots.
                crate::scrape::collect(&ctx.shared).await;
                let report = lock(&ctx.shared).report();
                reply(&conn, id, FromSupervisor::Status { report });
            });
        }
        ToSupervisor::Scale { target, workers } => {
            tokio::spawn(async move {
                let (tx, rx) = oneshot::channel();
                let asked = Event::Scale {
                    target,
                    workers,
                    reply: tx,
                };
                let stopping = || Err("supervisor is stopping".to_string());
                let result = match ctx.events.send(asked) {
                    Ok(()) => rx.await.unwrap_or_else(|_| stopping()),
                    Err(_) => stopping(),
                };
                reply(&conn, id, FromSupervisor::Scaled { result });
            });
        }
        ToSupervisor::Autoscale { target } => {
            tokio::spawn(async move {
                let (tx, rx) = oneshot::channel();
                let stopping = || Err("supervisor is stopping".to_string());
                let result = match ctx.events.send(Event::Autoscale { target, reply: tx }) {
                    Ok(()) => rx.await.unwrap_or_else(|_| stopping()),
                    Err(_) => stopping(),
                };
                reply(&conn, id, FromSupervisor::Scaled { result });
            });
        }
        ToSupervisor::Scrape { format } => answer_scrape(&ctx, id, format, &conn),
        other => tracing::debug!(msg = ?other, "ignoring CLI message"),
    }
}

fn answer_scrape(ctx: &Context, id: u64, format: tiffin_metrics::Format, conn: &WorkerConn) {
    let (ctx, conn) = (ctx.clone(), conn.clone());
    tokio::spawn(async move {
        let body = crate::scrape::aggregate(&ctx.shared, &ctx.metrics, format).await;
        reply(&conn, id, FromSupervisor::Scraped { body });
    });
}

/// Sends an answer. One that cannot be framed becomes a [`FromSupervisor::Failed`]
/// answer to that one request, so the asker never waits for nothing.
fn reply(conn: &WorkerConn, id: u64, msg: FromSupervisor) {
    match conn.reply(id, msg) {
        Ok(()) => {}
        Err(ConnectionError::Frame(e)) => {
            tracing::error!(peer = conn.peer(), error = %e, "cannot send the answer to a control request; answering with an error");
            let reason = format!("the answer could not be sent: {e}");
            let _ = conn.reply(id, FromSupervisor::Failed { reason });
        }
        Err(e) => {
            tracing::debug!(peer = conn.peer(), error = %e, "cannot answer a control request")
        }
    }
}
