//! Starting worker processes: the same binary, a hidden subcommand, and the
//! guarantees that keep children from outliving the supervisor.
//!
//! Each child gets `PR_SET_PDEATHSIG(SIGKILL)` before `exec`, so it dies even
//! if the supervisor is killed with `kill -9`. The signal fires when the
//! *thread* that forked exits, which is why the supervisor runs on a
//! single-threaded runtime: every spawn happens on the main thread. API
//! servers also receive the public listener as fd 3.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::process::Stdio;

use tiffin_shared::proto::Role;
use tokio::process::{Child, Command};

/// The fd number at which API servers find the listener.
pub const LISTEN_FD: RawFd = 3;

/// What the child needs besides its role.
pub struct SpawnSpec<'a> {
    /// The binary to execute (the supervisor's own).
    pub exe: &'a Path,
    /// Service name argument passed through.
    pub service: &'a str,
    /// Runtime directory.
    pub runtime_dir: &'a Path,
    /// The effective configuration as YAML, passed in `TIFFIN_EFFECTIVE_CONFIG`.
    pub config_yaml: &'a str,
    /// Public listener, handed to API servers; taken (closed) at shutdown so
    /// the port stops accepting while the API servers drain.
    pub listener: std::cell::RefCell<Option<std::net::TcpListener>>,
    /// The protocol API servers speak.
    pub protocol: crate::Protocol,
}

/// Starts one worker process for `role`.
pub fn spawn(spec: &SpawnSpec<'_>, role: &Role) -> std::io::Result<Child> {
    let mut cmd = Command::new(spec.exe);
    cmd.arg("__worker");
    match role {
        Role::ApiServer { index } => {
            cmd.args([
                "api-server",
                "--index",
                &index.to_string(),
                "--fd",
                &LISTEN_FD.to_string(),
                "--protocol",
                spec.protocol.as_str(),
            ]);
        }
        Role::Runner { name, index } => {
            cmd.args(["runner", "--runner", name, "--index", &index.to_string()]);
        }
        Role::Cli => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "cannot spawn a CLI role",
            ));
        }
    }
    cmd.arg("--runtime-dir")
        .arg(spec.runtime_dir)
        .arg("--service")
        .arg(spec.service);
    cmd.env("TIFFIN_EFFECTIVE_CONFIG", spec.config_yaml);
    cmd.stdin(Stdio::null()).kill_on_drop(false);
    let pass_listener = matches!(role, Role::ApiServer { .. });
    let listen_fd = match (spec.listener.borrow().as_ref(), pass_listener) {
        (Some(l), _) => l.as_raw_fd(),
        (None, false) => -1,
        (None, true) => {
            return Err(std::io::Error::other(
                "the public listener is closed (shutting down)",
            ));
        }
    };
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (setpgid, prctl, signal, getppid, dup2, fcntl); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Each worker leads its own process group, so the supervisor can
            // take down a worker together with anything it spawned (killpg).
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Ctrl-C reaches the whole foreground process group; only the
            // supervisor should react (by draining its children in order).
            if libc::signal(libc::SIGINT, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor may have died between fork and prctl.
            if libc::getppid() != parent.as_raw() {
                return Err(std::io::Error::other("supervisor exited during spawn"));
            }
            if pass_listener {
                if listen_fd == LISTEN_FD {
                    // dup2 onto itself keeps FD_CLOEXEC, so clear it by hand.
                    if libc::fcntl(LISTEN_FD, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(listen_fd, LISTEN_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}
