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

/// Raises this process's soft limit of open files to its hard limit, as
/// servers commonly do: the default soft limit (often 1,024) is far below
/// what a front door with many idle clients needs, and every worker inherits
/// the raised limit. Returns the (old, new) soft limits.
pub(crate) fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the
        // hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((old, limit.rlim_cur))
}
