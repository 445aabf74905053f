//! The supervisor's control socket: every worker process and the CLI connect here.
//!
//! A connection starts with a hello naming its role. Workers are matched to
//! their slot by role *and* pid, so a late connection from a replaced process
//! is refused. Each connection has its own reader task; writes go through an
//! unbounded channel so the supervisor never blocks on a slow peer.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use tiffin_shared::frame::FrameCodec;
use tiffin_shared::proto::{
    FromSupervisor, PROTOCOL_VERSION, Role, ToSupervisor, WorkerEndpoint, WorkerState,
};

use crate::state::{Event, Shared, lock};

type Conn = Framed<UnixStream, FrameCodec<ToSupervisor, FromSupervisor>>;

/// Accepts control connections forever.
pub(crate) fn serve(listener: UnixListener, shared: Shared, events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, shared.clone(), events.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

async fn connection(stream: UnixStream, shared: Shared, events: mpsc::UnboundedSender<Event>) {
    let mut framed: Conn = Framed::new(stream, FrameCodec::default());
    let hello = match tokio::time::timeout(Duration::from_secs(5), framed.next()).await {
        Ok(Some(Ok(ToSupervisor::Hello(h)))) => h,
        Ok(Some(Err(e))) => {
            tracing::error!(error = %e, "malformed frame on control socket; closing");
            return;
        }
        _ => return,
    };
    if hello.version != PROTOCOL_VERSION {
        let reason = format!("protocol version {} != {}", hello.version, PROTOCOL_VERSION);
        tracing::error!(pid = hello.pid, %reason, "refusing control connection");
        let _ = framed.send(FromSupervisor::Refused { reason }).await;
        return;
    }
    if hello.role == Role::Cli {
        if framed
            .send(FromSupervisor::Welcome {
                version: PROTOCOL_VERSION,
            })
            .await
            .is_ok()
        {
            cli(framed, shared, events).await;
        }
        return;
    }
    worker(framed, hello.role, hello.pid, shared).await;
}

async fn worker(mut framed: Conn, role: Role, pid: u32, shared: Shared) {
    let (tx, mut rx) = mpsc::unbounded_channel::<FromSupervisor>();
    let generation = {
        let mut st = lock(&shared);
        match st.slots.get_mut(&role) {
            Some(slot) if slot.pid == Some(pid) => {
                slot.conn = Some(tx.clone());
                Some(slot.generation)
            }
            _ => None,
        }
    };
    let Some(generation) = generation else {
        tracing::warn!(worker = %role, pid, "control connection from an unknown process; refusing");
        let _ = framed
            .send(FromSupervisor::Refused {
                reason: "no such worker".into(),
            })
            .await;
        return;
    };
    if framed
        .send(FromSupervisor::Welcome {
            version: PROTOCOL_VERSION,
        })
        .await
        .is_err()
    {
        return;
    }
    let (mut sink, mut stream) = framed.split();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = stream.next().await {
        let msg = match frame {
            Ok(m) => m,
            Err(tiffin_shared::frame::FrameError::Io(e)) => {
                tracing::debug!(worker = %role, error = %e, "control connection closed");
                break;
            }
            Err(e) => {
                tracing::error!(worker = %role, error = %e, "malformed frame on control connection; closing");
                break;
            }
        };
        let mut st = lock(&shared);
        let current = st
            .slots
            .get(&role)
            .is_some_and(|s| s.generation == generation);
        match msg {
            ToSupervisor::Ready { socket } if current => {
                if let Some(slot) = st.slots.get_mut(&role) {
                    slot.state = WorkerState::Ready;
                    slot.endpoint = socket.map(|socket| WorkerEndpoint {
                        index: match &role {
                            Role::Runner { index, .. } => *index,
                            _ => 0,
                        },
                        socket,
                        generation,
                    });
                }
                tracing::info!(worker = %role, pid, "worker ready");
                match &role {
                    Role::Runner { name, .. } => st.broadcast_workers(name),
                    Role::ApiServer { .. } => {
                        for runner in st.runners.clone() {
                            let endpoints = st.endpoints(&runner);
                            let _ = tx.send(FromSupervisor::Workers { runner, endpoints });
                        }
                    }
                    Role::Cli => {}
                }
            }
            ToSupervisor::Snapshot {
                id,
                snapshot,
                requests,
            } => {
                if let Some(waiter) = st.snapshot_waiters.remove(&id) {
                    let _ = waiter.send((snapshot, requests));
                }
            }
            ToSupervisor::Drained { snapshot } if current => {
                if let Some(slot) = st.slots.get_mut(&role) {
                    slot.last = Some(snapshot);
                }
            }
            ToSupervisor::Scrape { id, openmetrics } => {
                drop(st);
                let shared = shared.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (content_type, body) = crate::scrape::aggregate(&shared, openmetrics).await;
                    let _ = tx.send(FromSupervisor::Scraped {
                        id,
                        content_type: content_type.to_string(),
                        body,
                    });
                });
            }
            other => {
                tracing::debug!(worker = %role, msg = ?other, "ignoring control message");
            }
        }
    }
    let mut st = lock(&shared);
    if let Some(slot) = st.slots.get_mut(&role)
        && slot.generation == generation
    {
        slot.conn = None;
        // Dropping the waiters ends the scrapes waiting on this process now.
        let pending = std::mem::take(&mut slot.pending_snapshots);
        for id in pending {
            st.snapshot_waiters.remove(&id);
        }
    }
}

async fn cli(mut framed: Conn, shared: Shared, events: mpsc::UnboundedSender<Event>) {
    while let Some(Ok(msg)) = framed.next().await {
        let reply = match msg {
            ToSupervisor::Status { id } => {
                // Fresh per-worker request counts come with fresh snapshots.
                crate::scrape::collect(&shared).await;
                let report = { lock(&shared).report() };
                FromSupervisor::Status { id, report }
            }
            ToSupervisor::Scale {
                id,
                target,
                workers,
            } => {
                let (reply, rx) = oneshot::channel();
                let result = if events
                    .send(Event::Scale {
                        target,
                        workers,
                        reply,
                    })
                    .is_ok()
                {
                    rx.await
                        .unwrap_or_else(|_| Err("supervisor is stopping".into()))
                } else {
                    Err("supervisor is stopping".into())
                };
                FromSupervisor::Scaled { id, result }
            }
            ToSupervisor::Scrape { id, openmetrics } => {
                let (content_type, body) = crate::scrape::aggregate(&shared, openmetrics).await;
                FromSupervisor::Scraped {
                    id,
                    content_type: content_type.to_string(),
                    body,
                }
            }
            _ => continue,
        };
        if framed.send(reply).await.is_err() {
            return;
        }
    }
}
