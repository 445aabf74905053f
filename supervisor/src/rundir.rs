//! The supervisor's private runtime directory: where every Unix socket lives.
//!
//! `$XDG_RUNTIME_DIR/tiffin/<pid>` when that variable is set, else
//! `<tmp>/tiffin-<uid>/<pid>`. The directory is mode 0700 so only the owner
//! can even reach the sockets, and it is removed when the supervisor exits.
//! `tiffin status` and `tiffin scale` find a running supervisor by scanning
//! the parent directory for a pid that is still alive.
//!
//! Another local user can create `<tmp>/tiffin-<uid>` (or a symlink there)
//! before tiffin first runs. So, as tmux and OpenSSH do, both levels are made
//! with `mkdir` (which never follows a symlink) and then, whether they were
//! just made or already there, must pass [`tiffin_ipc::peer::check_dir`]:
//! not a symlink, owned by our effective uid, mode exactly 0700. Anything
//! else is refused with an error that names the path and what is wrong; the
//! CLI checks the same way before it connects.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tiffin_ipc::peer::{self, PeerError};

/// The directory holding one runtime directory per running supervisor.
pub fn base_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("tiffin"),
        _ => std::env::temp_dir().join(format!("tiffin-{}", nix::unistd::getuid())),
    }
}

/// The runtime directory of the supervisor with process id `pid` (not
/// checked: see [`check`]).
pub fn for_pid(pid: u32) -> PathBuf {
    base_dir().join(pid.to_string())
}

/// Succeeds if `dir` is a private directory of ours (see the module doc).
pub fn check(dir: &Path) -> Result<(), PeerError> {
    peer::check_dir(dir)
}

/// Creates this supervisor's runtime directory (and its parent) with mode
/// 0700, refusing a parent that exists but is not private to us. A refusal
/// is an [`io::Error`] of kind `PermissionDenied` whose inner error is the
/// [`PeerError`] (reach it with [`io::Error::get_ref`]).
pub fn create(pid: u32) -> io::Result<PathBuf> {
    let base = base_dir();
    make_private(&base, true)?;
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
    make_private(&dir, false)?;
    Ok(dir)
}

/// `mkdir -m 0700 dir` (its parent too, if `parents` and it is missing);
/// an existing `dir` is kept only if it passes [`check`].
fn make_private(dir: &Path, parents: bool) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    let mkdir = || fs::DirBuilder::new().mode(0o700).create(dir);
    let made = match mkdir() {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound && parents => {
            if let Some(parent) = dir.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(named)?;
            }
            match mkdir() {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(named(e)),
            }
        }
        Err(e) => return Err(named(e)),
    };
    if made {
        // The umask may have cleared owner bits. Set the mode on the
        // directory we opened, never through a symlink swapped in since.
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
            .map_err(named)?;
        opened
            .set_permissions(fs::Permissions::from_mode(0o700))
            .map_err(named)?;
    }
    check(dir).map_err(untrusted)
}

/// A refusal as the [`io::Error`] that [`create`] returns.
fn untrusted(e: PeerError) -> io::Error {
    let kind = match &e {
        PeerError::Stat { error, .. } => error.kind(),
        _ => io::ErrorKind::PermissionDenied,
    };
    io::Error::new(kind, e)
}

/// Pids of supervisors whose runtime directory exists and whose process is
/// alive. No base directory means none; one that is not private to us (a
/// symlink, another owner, group or other bits) is an error.
pub fn running() -> Result<Vec<u32>, PeerError> {
    let base = base_dir();
    match check(&base) {
        Ok(()) => {}
        Err(e) if missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let Ok(entries) = fs::read_dir(&base) else {
        return Ok(Vec::new());
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid) && tiffin_ipc::runtime::control_socket(&for_pid(*pid)).exists())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Whether `e` says the directory does not exist (nothing is running there).
pub fn missing(e: &PeerError) -> bool {
    matches!(e, PeerError::Stat { error, .. } if error.kind() == io::ErrorKind::NotFound)
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
