//! Who may be trusted on the other end of a socket, and where sockets may live.
//!
//! The runtime directory holds every socket of a supervisor. A directory
//! (or symlink) that another local user created at that path before tiffin
//! started would let that user swap in sockets of their own. So, as tmux and
//! OpenSSH do, a directory is used only if [`check_dir`] finds, without
//! following symlinks, a real directory owned by this process's effective uid
//! with mode exactly 0700; and before speaking on a connected socket,
//! [`check_peer`] reads the peer's credentials (`SO_PEERCRED`) and requires
//! the same uid. Root talks only to root's supervisor; a supervisor run by
//! user A is talked to only by A's processes.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

/// Why a directory or a peer is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The path could not be examined (it does not exist, or is unreadable).
    #[error("cannot examine {}: {error}", path.display())]
    Stat {
        /// The directory.
        path: PathBuf,
        /// Cause (shown in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The path exists but is not a private directory of ours.
    #[error("refusing to use {}: {problem}; {}", path.display(), problem.advice(path))]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: DirProblem,
    },
    /// The peer's credentials could not be read.
    #[error("cannot read the credentials of the peer on {}: {error}", show(socket))]
    PeerCred {
        /// The socket's path, when it has one.
        socket: Option<PathBuf>,
        /// Cause (shown in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The process on the other end runs as another user.
    #[error(
        "refusing to talk over {}: the process at the other end{} runs as uid {uid}, \
         not as uid {expected} like this one (another user's socket?)",
        show(socket),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Peer {
        /// The socket's path, when it has one.
        socket: Option<PathBuf>,
        /// The peer's uid.
        uid: u32,
        /// The peer's pid, when the kernel reports it.
        pid: Option<i32>,
        /// Our effective uid.
        expected: u32,
    },
}

/// What is wrong with a directory that [`check_dir`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirProblem {
    /// It is a symbolic link (to `target`, when it can be read).
    Symlink {
        /// Where the link points.
        target: Option<PathBuf>,
    },
    /// It is something other than a directory (a file, a socket…).
    NotADirectory {
        /// What it is.
        kind: &'static str,
    },
    /// It belongs to another user.
    Owner {
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// Our effective uid.
        expected: u32,
    },
    /// It is ours but others may enter or write it.
    Mode {
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for DirProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Symlink {
                target: Some(target),
            } => write!(
                f,
                "it is a symlink (to {}), not a directory",
                target.display()
            ),
            Self::Symlink { target: None } => write!(f, "it is a symlink, not a directory"),
            Self::NotADirectory { kind } => write!(f, "it is a {kind}, not a directory"),
            Self::Owner {
                owner,
                mode,
                expected,
            } => write!(
                f,
                "it is owned by uid {owner} (mode {mode:04o}), not by uid {expected} who runs this"
            ),
            Self::Mode { mode } => write!(
                f,
                "its mode is {mode:04o}, not 0700 (group or others may use it)"
            ),
        }
    }
}

impl DirProblem {
    /// What the user should do about it.
    fn advice(&self, path: &Path) -> String {
        match self {
            Self::Symlink { .. } | Self::Owner { .. } => format!(
                "another user may have planted it to intercept tiffin's sockets: check who \
                 made it, remove it (`rm -r {}`), and start again, or set XDG_RUNTIME_DIR \
                 to a directory only you can write",
                path.display()
            ),
            Self::NotADirectory { .. } => format!(
                "remove it (`rm {}`) and start again, or set XDG_RUNTIME_DIR to a directory \
                 only you can write",
                path.display()
            ),
            Self::Mode { .. } => format!(
                "if nobody else has used it, make it private (`chmod 700 {}`) and start \
                 again",
                path.display()
            ),
        }
    }
}

fn show(socket: &Option<PathBuf>) -> String {
    match socket {
        Some(p) => p.display().to_string(),
        None => "an unnamed socket".to_string(),
    }
}

/// This process's effective uid: the owner of what it creates.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Succeeds if `path` itself (not what a symlink there points to) is a
/// directory owned by our effective uid with permission bits exactly 0700.
pub fn check_dir(path: &Path) -> Result<(), PeerError> {
    let meta = std::fs::symlink_metadata(path).map_err(|error| PeerError::Stat {
        path: path.to_path_buf(),
        error,
    })?;
    let kind = meta.file_type();
    let mode = meta.mode() & 0o777;
    let expected = euid();
    let problem = if kind.is_symlink() {
        DirProblem::Symlink {
            target: std::fs::read_link(path).ok(),
        }
    } else if !kind.is_dir() {
        let kind = if kind.is_file() {
            "regular file"
        } else if kind.is_socket() {
            "socket"
        } else if kind.is_fifo() {
            "fifo"
        } else {
            "device"
        };
        DirProblem::NotADirectory { kind }
    } else if meta.uid() != expected {
        DirProblem::Owner {
            owner: meta.uid(),
            mode,
            expected,
        }
    } else if mode != 0o700 {
        DirProblem::Mode { mode }
    } else {
        return Ok(());
    };
    Err(PeerError::UnsafeDir {
        path: path.to_path_buf(),
        problem,
    })
}

/// Succeeds if the process on the other end of `stream` (the one that
/// connected, or the one that listened) runs as our effective uid, read from
/// the kernel with `SO_PEERCRED`.
pub fn check_peer(stream: &UnixStream) -> Result<(), PeerError> {
    let socket = || {
        [stream.peer_addr(), stream.local_addr()]
            .into_iter()
            .flatten()
            .find_map(|a| a.as_pathname().map(Path::to_path_buf))
    };
    let cred = stream.peer_cred().map_err(|error| PeerError::PeerCred {
        socket: socket(),
        error,
    })?;
    let expected = euid();
    if cred.uid() == expected {
        return Ok(());
    }
    Err(PeerError::Peer {
        socket: socket(),
        uid: cred.uid(),
        pid: cred.pid(),
        expected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tiffin-peer-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn a_private_directory_of_ours_passes() {
        let dir = scratch("ok");
        check_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn group_or_other_bits_are_refused_with_advice() {
        let dir = scratch("mode");
        for mode in [0o755, 0o777, 0o710, 0o701] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = check_dir(&dir).unwrap_err();
            assert!(
                matches!(&err, PeerError::UnsafeDir { problem: DirProblem::Mode { mode: m }, .. } if *m == mode),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(msg.contains("chmod 700"), "{msg}");
            assert!(msg.contains(&dir.display().to_string()), "{msg}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_and_files_are_refused() {
        let dir = scratch("link");
        let target = dir.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.join("link");
        symlink(&target, &link).unwrap();
        let err = check_dir(&link).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        let err = check_dir(&file).unwrap_err();
        assert!(err.to_string().contains("regular file"), "{err}");
        let err = check_dir(&dir.join("missing")).unwrap_err();
        assert!(matches!(err, PeerError::Stat { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_peer_of_our_own_uid_passes() {
        let (a, b) = UnixStream::pair().unwrap();
        check_peer(&a).unwrap();
        check_peer(&b).unwrap();
    }
}
