//! What the processes of one supervisor agree on to find each other: the
//! names of the sockets in its runtime directory, the descriptor number at
//! which an API server finds the public listener, and the environment
//! variable that carries the effective configuration to every child.
//!
//! The supervisor creates the directory (mode 0700) and the control socket;
//! each runner worker binds its own data socket there; API servers connect
//! to both. Spelling these once keeps the three sides from drifting apart.
//! Every side uses the directory only if [`crate::peer::check_dir`] passes
//! (ours, mode 0700, not a symlink), and a client speaks on a socket only to
//! a process of its own uid ([`crate::peer::check_peer`]).

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

/// File name of the supervisor's control socket inside the runtime directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// The descriptor number at which an API server finds the public listener.
pub const LISTEN_FD: RawFd = 3;

/// Environment variable carrying the effective configuration (YAML) from the
/// supervisor to its children, so every process serves the same settings
/// whatever the files and variables of its environment say.
pub const EFFECTIVE_CONFIG_ENV: &str = "TIFFIN_EFFECTIVE_CONFIG";

/// The control socket of the supervisor whose runtime directory is `dir`.
pub fn control_socket(dir: &Path) -> PathBuf {
    dir.join(CONTROL_SOCKET)
}

/// The data socket of worker `index` (1-based) of runner `runner`.
///
/// ```
/// use std::path::Path;
/// let p = tiffin_ipc::runtime::runner_socket(Path::new("/run/t"), "clf", 2);
/// assert_eq!(p, Path::new("/run/t/runner-clf-2.sock"));
/// ```
pub fn runner_socket(dir: &Path, runner: &str, index: usize) -> PathBuf {
    dir.join(format!("runner-{runner}-{index}.sock"))
}
