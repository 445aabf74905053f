//! The worker side of a control connection to the supervisor.
//!
//! Every API server and runner worker opens one control connection at start.
//! Snapshot requests are answered right here, from the reader task, without
//! involving the process's main loop: scrapes therefore never wait behind
//! request handling. Everything else the supervisor says (worker sets, drain)
//! is handed to the process as [`FromSupervisor`] events.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use crate::frame::{FrameCodec, FrameError};
use crate::metrics::Snapshot;
use crate::proto::{FromSupervisor, Hello, PROTOCOL_VERSION, Role, ToSupervisor};

/// Produces this process's current metrics and its served-request count.
pub type SnapshotFn = Arc<dyn Fn() -> (Snapshot, u64) + Send + Sync>;

/// Why the control connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Framing or socket failure.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Connecting to the socket failed.
    #[error("cannot connect to the supervisor at {path}: {source}")]
    Connect {
        /// Socket path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The supervisor refused us or closed the connection.
    #[error("supervisor refused the connection: {0}")]
    Refused(String),
    /// The connection is gone.
    #[error("control connection closed")]
    Closed,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<FromSupervisor>>>>;

/// A handle for sending to the supervisor; cheap to clone.
#[derive(Clone)]
pub struct ControlClient {
    tx: mpsc::UnboundedSender<ToSupervisor>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

impl ControlClient {
    /// Connects, says hello, waits for the welcome, then serves snapshot
    /// requests in the background. Other supervisor messages arrive on the
    /// returned receiver, which ends when the supervisor goes away.
    pub async fn connect(
        path: &Path,
        role: Role,
        snapshot: SnapshotFn,
    ) -> Result<(Self, mpsc::UnboundedReceiver<FromSupervisor>), ControlError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ControlError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let mut framed = Framed::new(
            stream,
            FrameCodec::<FromSupervisor, ToSupervisor>::default(),
        );
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role,
            pid: std::process::id(),
        };
        framed.send(ToSupervisor::Hello(hello)).await?;
        match framed.next().await {
            Some(Ok(FromSupervisor::Welcome { .. })) => {}
            Some(Ok(FromSupervisor::Refused { reason })) => {
                return Err(ControlError::Refused(reason));
            }
            Some(Ok(other)) => return Err(ControlError::Refused(format!("unexpected {other:?}"))),
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ControlError::Closed),
        }
        let (mut sink, mut stream) = framed.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<ToSupervisor>();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();

        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if let Err(e) = sink.send(msg).await {
                    tracing::warn!(error = %e, "control connection write failed");
                    break;
                }
            }
        });

        let reply_tx = tx.clone();
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                let msg = match frame {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(error = %e, "malformed frame on control connection; closing it");
                        break;
                    }
                };
                match msg {
                    FromSupervisor::SnapshotRequest { id } => {
                        let (snapshot, requests) = snapshot();
                        let _ = reply_tx.send(ToSupervisor::Snapshot {
                            id,
                            snapshot,
                            requests,
                        });
                    }
                    FromSupervisor::Scraped { id, .. }
                    | FromSupervisor::Status { id, .. }
                    | FromSupervisor::Scaled { id, .. } => {
                        let waiter = lock(&reader_pending).remove(&id);
                        if let Some(w) = waiter {
                            let _ = w.send(msg);
                        }
                    }
                    other => {
                        if events_tx.send(other).is_err() {
                            break;
                        }
                    }
                }
            }
            // Fail every waiter so no caller hangs on a dead supervisor.
            lock(&reader_pending).clear();
        });
        Ok((
            Self {
                tx,
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
            },
            events_rx,
        ))
    }

    /// Sends a message that expects no answer.
    pub fn send(&self, msg: ToSupervisor) -> Result<(), ControlError> {
        self.tx.send(msg).map_err(|_| ControlError::Closed)
    }

    /// Sends a request built from a fresh id and waits for the answer with that id.
    pub async fn request(
        &self,
        build: impl FnOnce(u64) -> ToSupervisor,
    ) -> Result<FromSupervisor, ControlError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        self.send(build(id))?;
        rx.await.map_err(|_| ControlError::Closed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
