//! Starting worker processes: the same binary, a hidden subcommand, and the
//! guarantees that keep children from outliving the supervisor.
//!
//! Each child gets `PR_SET_PDEATHSIG(SIGKILL)` before `exec`, so it dies even
//! if the supervisor is killed with `kill -9`. The signal fires when the
//! *thread* that forked exits, which is why the supervisor runs on a
//! single-threaded runtime: every spawn happens on the main thread. API
//! servers also receive the public listener as fd 3.
//!
//! Everything a child must know travels in two typed channels: its command
//! line ([`WorkerCommand`]: role, runtime directory, service, and the model
//! file of a `--model` service) and the effective configuration
//! ([`EFFECTIVE_CONFIG_ENV`]). Nothing reaches a child through the
//! supervisor's own environment.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tiffin_ipc::proto::{Protocol, Role};
use tiffin_ipc::runtime::{EFFECTIVE_CONFIG_ENV, LISTEN_FD};
use tokio::process::{Child, Command};

/// The hidden subcommand with which the supervisor starts a worker
/// (`tiffin __worker api-server ...` / `tiffin __worker runner ...`): built
/// here by [`WorkerCommand::to_args`], parsed by the binary's command line
/// with the same type, so the two sides cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum WorkerCommand {
    /// An API-server process.
    ApiServer {
        /// 0-based index among API servers.
        #[arg(long)]
        index: usize,
        /// The descriptor of the inherited public listener.
        #[arg(long)]
        fd: RawFd,
        /// `http` or `grpc`.
        #[arg(long)]
        protocol: Protocol,
        /// Runtime directory and service.
        #[command(flatten)]
        common: WorkerCommon,
    },
    /// A runner worker process.
    Runner {
        /// Name of the runner to serve.
        #[arg(long)]
        runner: String,
        /// 1-based worker index.
        #[arg(long)]
        index: usize,
        /// Runtime directory and service.
        #[command(flatten)]
        common: WorkerCommon,
    },
}

/// What every worker is told besides its role.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WorkerCommon {
    /// The supervisor's runtime directory.
    #[arg(long)]
    pub runtime_dir: PathBuf,
    /// The service to serve.
    #[arg(long)]
    pub service: String,
    /// The model file of a `serve-http --model` service, resolved once by
    /// the supervisor: the worker builds its service (named `service`) from
    /// this file instead of looking the name up among the binary's own.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The locator of a Python service (`service.py:svc`, `module:svc`):
    /// the worker is a Python process that imports it and builds its
    /// service from what it finds (`python/tiffin/_worker.py`).
    #[arg(long)]
    pub python: Option<String>,
}

impl WorkerCommand {
    /// The command for `role` (`None` for the CLI role, which is never spawned).
    pub fn for_role(role: &Role, protocol: Protocol, common: &WorkerCommon) -> Option<Self> {
        let common = common.clone();
        match role {
            Role::ApiServer { index } => Some(WorkerCommand::ApiServer {
                index: *index,
                fd: LISTEN_FD,
                protocol,
                common,
            }),
            Role::Runner { name, index } => Some(WorkerCommand::Runner {
                runner: name.clone(),
                index: *index,
                common,
            }),
            Role::Cli => None,
        }
    }

    /// The role this command starts.
    pub fn role(&self) -> Role {
        match self {
            WorkerCommand::ApiServer { index, .. } => Role::ApiServer { index: *index },
            WorkerCommand::Runner { runner, index, .. } => Role::Runner {
                name: runner.clone(),
                index: *index,
            },
        }
    }

    /// The runtime directory and service, whatever the role.
    pub fn common(&self) -> &WorkerCommon {
        match self {
            WorkerCommand::ApiServer { common, .. } | WorkerCommand::Runner { common, .. } => {
                common
            }
        }
    }

    /// The arguments after `__worker`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        match self {
            WorkerCommand::ApiServer {
                index,
                fd,
                protocol,
                ..
            } => {
                args.extend(["api-server", "--index"].map(OsString::from));
                args.push(index.to_string().into());
                args.push("--fd".into());
                args.push(fd.to_string().into());
                args.push("--protocol".into());
                args.push(protocol.as_str().into());
            }
            WorkerCommand::Runner { runner, index, .. } => {
                args.extend(["runner", "--runner"].map(OsString::from));
                args.push(runner.into());
                args.push("--index".into());
                args.push(index.to_string().into());
            }
        }
        let common = self.common();
        args.push("--runtime-dir".into());
        args.push(common.runtime_dir.clone().into_os_string());
        args.push("--service".into());
        args.push(common.service.clone().into());
        if let Some(model) = &common.model {
            args.push("--model".into());
            args.push(model.clone().into_os_string());
        }
        if let Some(python) = &common.python {
            args.push("--python".into());
            args.push(python.into());
        }
        args
    }
}

/// The name of the hidden subcommand.
pub const WORKER_SUBCOMMAND: &str = "__worker";

/// What the child needs besides its role.
pub struct SpawnSpec<'a> {
    /// The program to execute (the supervisor's own binary, or Python).
    pub exe: &'a Path,
    /// Its arguments before [`WORKER_SUBCOMMAND`] (`-m tiffin` for Python).
    pub exe_args: &'a [OsString],
    /// What every worker's command line carries besides its role.
    pub common: WorkerCommon,
    /// The effective configuration as YAML, passed in [`EFFECTIVE_CONFIG_ENV`].
    pub config_yaml: &'a str,
    /// Public listener, handed to API servers; taken (closed) at shutdown so
    /// the port stops accepting while the API servers drain.
    pub listener: std::cell::RefCell<Option<std::net::TcpListener>>,
    /// The protocol API servers speak.
    pub protocol: Protocol,
}

/// Starts one worker process for `role`.
pub fn spawn(spec: &SpawnSpec<'_>, role: &Role) -> std::io::Result<Child> {
    let command = WorkerCommand::for_role(role, spec.protocol, &spec.common).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "cannot spawn a CLI role")
    })?;
    let mut cmd = Command::new(spec.exe);
    cmd.args(spec.exe_args)
        .arg(WORKER_SUBCOMMAND)
        .args(command.to_args());
    cmd.env(EFFECTIVE_CONFIG_ENV, spec.config_yaml);
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        worker: WorkerCommand,
    }

    #[test]
    fn the_worker_command_line_parses_back_into_the_same_command() {
        let plain = WorkerCommon {
            runtime_dir: "/run/tiffin/42".into(),
            service: "svc".into(),
            model: None,
            python: None,
        };
        let model = WorkerCommon {
            model: Some("/models/my model/model.onnx".into()),
            ..plain.clone()
        };
        let python = WorkerCommon {
            python: Some("my dir/service.py:svc".into()),
            ..plain.clone()
        };
        for common in [&plain, &model, &python] {
            for role in [
                Role::ApiServer { index: 1 },
                Role::Runner {
                    name: "nltk_sentiment".into(),
                    index: 3,
                },
            ] {
                let built = WorkerCommand::for_role(&role, Protocol::Grpc, common).unwrap();
                let argv = std::iter::once(OsString::from("tiffin")).chain(built.to_args());
                let parsed = Cli::try_parse_from(argv).unwrap().worker;
                assert_eq!(parsed, built);
                assert_eq!(parsed.role(), role);
                assert_eq!(parsed.common(), common);
            }
        }
        assert!(WorkerCommand::for_role(&Role::Cli, Protocol::Http, &plain).is_none());
    }
}
