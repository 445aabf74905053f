//! The worker's control connection runs on a thread of its own.
//!
//! A runner worker runs plain methods inline on its one runtime thread, so a
//! 30-second inference would keep that thread from answering the
//! supervisor's snapshot requests, and the supervisor takes a process that
//! stops answering for hung (and replaces it). On a thread of its own, the
//! control connection answers however long the model runs; only a process
//! that is really stuck (stopped, or deadlocked in a way that stops every
//! thread) stops answering.

use std::path::Path;

use tokio::sync::{mpsc, oneshot};

use tiffin_ipc::control::{ControlClient, ControlError, SnapshotFn};
use tiffin_ipc::proto::{FromSupervisor, Role};

type Connected = Result<(ControlClient, mpsc::UnboundedReceiver<FromSupervisor>), ControlError>;

/// Connects to the supervisor from a dedicated thread and runtime; the
/// handle and the event stream work from any runtime.
pub(crate) async fn connect(dir: &Path, role: Role, snapshot: SnapshotFn) -> Connected {
    let (tx, rx) = oneshot::channel::<Connected>();
    let dir = dir.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(ControlError::Connect {
                        path: dir.display().to_string(),
                        source: e,
                    }));
                    return;
                }
            };
            rt.block_on(async move {
                let connected = ControlClient::connect(&dir, role, Some(snapshot)).await;
                let ok = connected.is_ok();
                let _ = tx.send(connected);
                if ok {
                    // Serve the connection's tasks for the life of the process.
                    std::future::pending::<()>().await;
                }
            });
        });
    if let Err(e) = spawned {
        return Err(ControlError::Connect {
            path: "control thread".into(),
            source: e,
        });
    }
    rx.await.unwrap_or_else(|_| {
        Err(ControlError::Unexpected(
            "the control thread ended before connecting".into(),
        ))
    })
}
