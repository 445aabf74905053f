//! Signalling worker processes and describing how they ended.
//!
//! Each worker leads its own process group (see `spawn.rs`), so the group id
//! is its pid and one `killpg` reaches the worker together with anything it
//! spawned.

use nix::sys::signal::Signal;

/// Sends `sig` to the worker `pid` and its process group.
pub(crate) fn kill(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let pid = nix::unistd::Pid::from_raw(raw);
        if nix::sys::signal::killpg(pid, sig).is_err() {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

/// `exit code 1`, `killed by SIGKILL`: an exit status for the log.
pub(crate) fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => "unknown status".into(),
    }
}
