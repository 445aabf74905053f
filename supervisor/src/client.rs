//! The CLI side of the control socket: `tiffin status` and `tiffin scale`.
//!
//! Before connecting, the runtime directory (and, when it is found by pid or
//! by scanning, its parent) must be a private directory of ours
//! ([`rundir::check`]); [`ControlClient::connect`] checks it again and
//! requires the supervisor's process to run as our uid (`SO_PEERCRED`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tiffin_ipc::control::{ControlClient, ControlError};
use tiffin_ipc::peer::PeerError;
use tiffin_ipc::proto::{FromSupervisor, Role, StatusReport, ToSupervisor};
use tiffin_ipc::runtime;

use crate::rundir;

/// Why a CLI command could not talk to a supervisor.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No running supervisor was found.
    #[error("no running tiffin found under {0} (start one with `tiffin serve-http`)")]
    NoneRunning(String),
    /// Several are running and none was chosen.
    #[error(
        "several tiffin supervisors are running (pids {0}); pick one with --pid or --runtime-dir"
    )]
    Ambiguous(String),
    /// The runtime directory is not private to us (a symlink, another
    /// owner, group or other bits), or the supervisor runs as another user.
    #[error(transparent)]
    Untrusted(#[from] PeerError),
    /// Socket or protocol failure.
    #[error("cannot talk to the supervisor at {path}: {message}")]
    Talk {
        /// Control socket path.
        path: String,
        /// What failed.
        message: String,
    },
    /// The supervisor refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Finds the runtime directory to talk to: explicit dir, explicit pid, or
/// the only running one; the directory found must pass [`rundir::check`].
pub fn locate(runtime_dir: Option<&Path>, pid: Option<u32>) -> Result<PathBuf, ClientError> {
    let dir = if let Some(dir) = runtime_dir {
        dir.to_path_buf()
    } else if let Some(pid) = pid {
        let base = rundir::base_dir();
        match rundir::check(&base) {
            Err(e) if rundir::missing(&e) => {
                return Err(ClientError::NoneRunning(base.display().to_string()));
            }
            checked => checked?,
        }
        rundir::for_pid(pid)
    } else {
        let running = rundir::running()?;
        match running.as_slice() {
            [] => {
                return Err(ClientError::NoneRunning(
                    rundir::base_dir().display().to_string(),
                ));
            }
            [one] => rundir::for_pid(*one),
            many => {
                return Err(ClientError::Ambiguous(
                    many.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
        }
    };
    rundir::check(&dir)?;
    Ok(dir)
}

/// How long a CLI command waits for the supervisor's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

async fn exchange(dir: &Path, request: ToSupervisor) -> Result<FromSupervisor, ClientError> {
    let talk = |message: String| ClientError::Talk {
        path: runtime::control_socket(dir).display().to_string(),
        message,
    };
    let (client, _events) = match ControlClient::connect(dir, Role::Cli, None).await {
        Ok(connected) => connected,
        Err(ControlError::Refused(reason)) => return Err(ClientError::Refused(reason)),
        Err(ControlError::Untrusted(e)) => return Err(ClientError::Untrusted(e)),
        Err(e) => return Err(talk(e.to_string())),
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, client.request(request)).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(talk(e.to_string())),
        Err(_) => Err(talk(format!("no answer within {ANSWER_TIMEOUT:?}"))),
    }
}

/// Asks for the status report.
pub async fn status(dir: &Path) -> Result<StatusReport, ClientError> {
    match exchange(dir, ToSupervisor::Status).await? {
        FromSupervisor::Status { report } => Ok(report),
        other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
    }
}

/// Asks to hand autoscaled runner `target` back to its autoscaler after a
/// [`scale`] pinned it.
pub async fn autoscale(dir: &Path, target: &str) -> Result<String, ClientError> {
    let req = ToSupervisor::Autoscale {
        target: target.to_string(),
    };
    match exchange(dir, req).await? {
        FromSupervisor::Scaled { result } => result.map_err(ClientError::Refused),
        other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
    }
}

/// Asks to scale `target` to `workers`.
pub async fn scale(dir: &Path, target: &str, workers: usize) -> Result<String, ClientError> {
    let req = ToSupervisor::Scale {
        target: target.to_string(),
        workers,
    };
    match exchange(dir, req).await? {
        FromSupervisor::Scaled { result } => result.map_err(ClientError::Refused),
        other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
    }
}
