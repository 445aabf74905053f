//! The CLI side of the control socket: `tiffin status` and `tiffin scale`.

use std::path::{Path, PathBuf};

use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

use tiffin_shared::frame::FrameCodec;
use tiffin_shared::proto::{
    FromSupervisor, Hello, PROTOCOL_VERSION, Role, StatusReport, ToSupervisor,
};

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

/// Finds the runtime directory to talk to: explicit dir, explicit pid, or the only running one.
pub fn locate(runtime_dir: Option<&Path>, pid: Option<u32>) -> Result<PathBuf, ClientError> {
    if let Some(dir) = runtime_dir {
        return Ok(dir.to_path_buf());
    }
    if let Some(pid) = pid {
        return Ok(rundir::for_pid(pid));
    }
    let running = rundir::running();
    match running.as_slice() {
        [] => Err(ClientError::NoneRunning(
            rundir::base_dir().display().to_string(),
        )),
        [one] => Ok(rundir::for_pid(*one)),
        many => Err(ClientError::Ambiguous(
            many.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

async fn exchange(dir: &Path, request: ToSupervisor) -> Result<FromSupervisor, ClientError> {
    let path = dir.join(rundir::CONTROL_SOCKET);
    let talk = |message: String| ClientError::Talk {
        path: path.display().to_string(),
        message,
    };
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|e| talk(e.to_string()))?;
    let mut framed = Framed::new(
        stream,
        FrameCodec::<FromSupervisor, ToSupervisor>::default(),
    );
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Cli,
        pid: std::process::id(),
    };
    framed
        .send(ToSupervisor::Hello(hello))
        .await
        .map_err(|e| talk(e.to_string()))?;
    match framed.next().await {
        Some(Ok(FromSupervisor::Welcome { .. })) => {}
        Some(Ok(FromSupervisor::Refused { reason })) => return Err(ClientError::Refused(reason)),
        other => return Err(talk(format!("unexpected handshake reply {other:?}"))),
    }
    framed
        .send(request)
        .await
        .map_err(|e| talk(e.to_string()))?;
    match framed.next().await {
        Some(Ok(reply)) => Ok(reply),
        Some(Err(e)) => Err(talk(e.to_string())),
        None => Err(talk("connection closed".into())),
    }
}

/// Asks for the status report.
pub async fn status(dir: &Path) -> Result<StatusReport, ClientError> {
    match exchange(dir, ToSupervisor::Status { id: 1 }).await? {
        FromSupervisor::Status { report, .. } => Ok(report),
        other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
    }
}

/// Asks to scale `target` to `workers`.
pub async fn scale(dir: &Path, target: &str, workers: usize) -> Result<String, ClientError> {
    let req = ToSupervisor::Scale {
        id: 1,
        target: target.to_string(),
        workers,
    };
    match exchange(dir, req).await? {
        FromSupervisor::Scaled { result, .. } => result.map_err(ClientError::Refused),
        other => Err(ClientError::Refused(format!("unexpected reply {other:?}"))),
    }
}
