//! The client side of a control connection to the supervisor, used by every
//! API server and runner worker, and by `tiffin status` / `tiffin scale`.
//!
//! Snapshot requests are answered right on the connection's reader task,
//! without involving the process's main loop, so a scrape does not queue
//! behind the process's requests. (A runner worker runs on one thread and a
//! plain method runs inline there, so a slow method delays the answer; the
//! supervisor then serves that worker's cached snapshot.) Everything else
//! the supervisor says (worker sets, drain) is handed to the process as
//! [`FromSupervisor`] events.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::mpsc;

use tiffin_metrics::Snapshot;

use crate::connection::{Connection, ConnectionError, Incoming, Opening};
use crate::peer::{self, PeerError};
use crate::proto::{FromSupervisor, Hello, PROTOCOL_VERSION, Role, ToSupervisor};
use crate::runtime;

/// Produces this process's current metrics and its served-request count.
pub type SnapshotFn = Arc<dyn Fn() -> (Snapshot, u64) + Send + Sync>;

/// How long [`ControlClient::finish`] waits for the final messages to leave.
const FINISH_LIMIT: Duration = Duration::from_secs(5);

/// Why the control connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Connecting to the socket failed.
    #[error("cannot connect to the supervisor at {path}: {source}")]
    Connect {
        /// Socket path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The runtime directory is not a private directory of ours, or the
    /// process listening on the socket runs as another user: nothing was sent.
    #[error(transparent)]
    Untrusted(#[from] PeerError),
    /// The supervisor refused us.
    #[error("supervisor refused the connection: {0}")]
    Refused(String),
    /// The supervisor answered with a message that does not fit the request.
    #[error("unexpected answer from the supervisor: {0}")]
    Unexpected(String),
    /// The connection failed or is gone.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

/// A handle for talking to the supervisor; cheap to clone.
#[derive(Clone, Debug)]
pub struct ControlClient {
    conn: Connection<ToSupervisor, FromSupervisor>,
}

impl ControlClient {
    /// Connects to the supervisor whose runtime directory is `dir`, says
    /// hello as `role`, and waits for the welcome. Before anything is sent,
    /// `dir` must pass [`peer::check_dir`] (a directory of ours, mode 0700,
    /// not a symlink) and the listening process must run as our uid
    /// ([`peer::check_peer`]); otherwise [`ControlError::Untrusted`]. With
    /// `snapshot`, snapshot requests are answered from it in the background.
    /// Other supervisor messages arrive on the returned receiver, which ends
    /// when the supervisor goes away.
    pub async fn connect(
        dir: &Path,
        role: Role,
        snapshot: Option<SnapshotFn>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<FromSupervisor>), ControlError> {
        peer::check_dir(dir)?;
        let path = runtime::control_socket(dir);
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|source| ControlError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        peer::check_peer(&stream)?;
        let mut opening = Opening::new(stream, "supervisor");
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role,
            pid: std::process::id(),
        };
        match opening.hello(ToSupervisor::Hello(hello)).await? {
            FromSupervisor::Welcome { .. } => {}
            FromSupervisor::Refused { reason } => return Err(ControlError::Refused(reason)),
            other => return Err(ControlError::Unexpected(format!("{other:?}"))),
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let conn = opening.start(move |msg, conn| match msg {
            Incoming::Request {
                id,
                body: FromSupervisor::SnapshotRequest,
            } => {
                let Some(snapshot) = &snapshot else { return };
                let (snapshot, requests) = snapshot();
                if let Err(e) = conn.reply(id, ToSupervisor::Snapshot { snapshot, requests }) {
                    tracing::error!(error = %e, "cannot send a metrics snapshot to the supervisor");
                }
            }
            Incoming::Request { body, .. } => {
                tracing::warn!(msg = ?body, "ignoring an unexpected request from the supervisor");
            }
            Incoming::Event(event) => {
                let _ = events_tx.send(event);
            }
        });
        Ok((Self { conn }, events_rx))
    }

    /// Sends a message that expects no answer.
    pub fn send(&self, msg: ToSupervisor) -> Result<(), ControlError> {
        Ok(self.conn.send(msg)?)
    }

    /// Sends a request and waits for its answer (callers bound the wait).
    pub async fn request(&self, msg: ToSupervisor) -> Result<FromSupervisor, ControlError> {
        Ok(self.conn.request(msg).await?)
    }

    /// Delivers everything sent so far, then closes the connection: the last
    /// thing a draining process does before it exits.
    pub async fn finish(&self) {
        self.conn.finish(FINISH_LIMIT).await;
    }
}
