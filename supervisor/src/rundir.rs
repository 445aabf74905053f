//! The supervisor's private runtime directory: where every Unix socket lives.
//!
//! `$XDG_RUNTIME_DIR/tiffin/<pid>` when that variable is set, else
//! `<tmp>/tiffin-<uid>/<pid>`. The directory is mode 0700 so only the owner
//! can even reach the sockets, and it is removed when the supervisor exits.
//! `tiffin status` and `tiffin scale` find a running supervisor by scanning
//! the parent directory for a pid that is still alive.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directory holding one runtime directory per running supervisor.
pub fn base_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("tiffin"),
        _ => std::env::temp_dir().join(format!("tiffin-{}", nix::unistd::getuid())),
    }
}

/// The runtime directory of the supervisor with process id `pid`.
pub fn for_pid(pid: u32) -> PathBuf {
    base_dir().join(pid.to_string())
}

/// Creates this supervisor's runtime directory (and its parent) with mode 0700.
pub fn create(pid: u32) -> std::io::Result<PathBuf> {
    let base = base_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)?;
    // Directories of supervisors that died without cleaning up (kill -9) are
    // stale, including one whose pid has been recycled into ours.
    if let Ok(entries) = fs::read_dir(&base) {
        for entry in entries.flatten() {
            let stale = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|other| other == pid || !alive(other));
            if stale {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(pid.to_string());
    fs::DirBuilder::new().mode(0o700).create(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Pids of supervisors whose runtime directory exists and whose process is alive.
pub fn running() -> Vec<u32> {
    let Ok(entries) = fs::read_dir(base_dir()) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid) && tiffin_ipc::runtime::control_socket(&for_pid(*pid)).exists())
        .collect();
    pids.sort_unstable();
    pids
}

fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // EPERM means the process exists but belongs to someone else.
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    )
}

/// Removes the runtime directory; errors are logged, not fatal, at exit.
pub fn remove(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove runtime dir");
    }
}
