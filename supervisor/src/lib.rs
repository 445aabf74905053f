//! The supervisor: starts, watches, restarts, scales and stops every worker
//! process of a service, and aggregates their metrics into one endpoint.
//!
//! It runs in the foreground of `tiffin serve-http` (or `serve-grpc`) on a single-threaded
//! runtime (see [`spawn`] for why). It is never on the request path: API
//! servers talk to runner workers directly; the supervisor only hands out the
//! set of ready workers, answers scrapes, and serves `tiffin status`/`scale`.
//!
//! Files, from the entry point down: `run.rs` (start, main loop) and
//! `shutdown.rs` (drain phases); `control.rs` (the control socket);
//! `lifecycle.rs` (start / exit / restart / scale / retire policy);
//! `autoscale.rs` (the autoscaling decision, pure) and `autoscale_loop.rs`
//! (sampling and carrying decisions out);
//! `scrape.rs` (collect and merge), `metrics_port.rs`, `own_metrics.rs`;
//! `spawn.rs` (the worker command line and process guarantees),
//! `process.rs` (signals); `state.rs` (the state, a leaf); `rundir.rs` and
//! `client.rs` (finding and talking to a running supervisor from the CLI).

mod autoscale;
mod autoscale_loop;
pub mod client;
mod control;
mod lifecycle;
mod liveness;
mod metrics_port;
mod own_metrics;
mod process;
mod run;
pub mod rundir;
mod scrape;
mod shutdown;
pub mod spawn;
mod state;

use std::path::PathBuf;

use tiffin_config::Config;
use tiffin_service::Service;

pub use run::run;

/// How the supervisor was asked to run.
#[derive(Debug, Clone)]
pub struct SuperviseArgs {
    /// The service (used for runner names and labels).
    pub service: Service,
    /// Effective configuration (file < env < CLI already applied).
    pub config: Config,
    /// Host to bind.
    pub host: String,
    /// Port to bind (0 picks a free one; the chosen port is logged).
    pub port: u16,
    /// Optional separate port serving the aggregated metrics.
    pub metrics_port: Option<u16>,
    /// Host the metrics port binds (default: `host`).
    pub metrics_host: Option<String>,
    /// The protocol API servers speak.
    pub protocol: Protocol,
    /// Program to execute for workers: the supervisor's own binary, or the
    /// Python interpreter of a Python service.
    pub exe: PathBuf,
    /// Arguments before the worker subcommand (`-m tiffin` for Python).
    pub exe_args: Vec<std::ffi::OsString>,
    /// The effective configuration as YAML, handed to every child.
    pub config_yaml: String,
    /// The model file of a `serve-http --model` service, handed to every
    /// child on its command line ([`spawn::WorkerCommon::model`]), from
    /// which each one builds `service` again.
    pub model: Option<PathBuf>,
    /// The locator (`service.py:svc`) of a Python service, handed to every
    /// child on its command line ([`spawn::WorkerCommon::python`]).
    pub python: Option<String>,
}

pub use tiffin_ipc::proto::Protocol;

/// Why the supervisor could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The public port could not be bound.
    #[error("cannot listen on {addr}{hint}")]
    Bind {
        /// The address.
        addr: String,
        /// Cause.
        source: std::io::Error,
        /// Extra advice (e.g. port in use).
        hint: &'static str,
    },
    /// Filesystem or socket setup failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Metrics setup failed.
    #[error(transparent)]
    Metrics(#[from] tiffin_metrics::MetricsError),
    /// TLS files or the web configuration file cannot be used.
    #[error(transparent)]
    Tls(#[from] tiffin_tls::TlsError),
    /// A worker slot's processes kept exiting before they became ready, as
    /// many times in a row as its `max_failed_starts` allows; the supervisor
    /// stopped restarting it and shut the service down.
    #[error(
        "worker {worker} exited before becoming ready {count} times in a row (last: {status}); \
         the service was shut down (the limit is {limit_key}={count}; 0 retries forever)"
    )]
    CrashLoop {
        /// The slot, e.g. `runner:flaky:1`.
        worker: String,
        /// How its last process ended, e.g. `exit code 1`.
        status: String,
        /// Failed starts in a row.
        count: u32,
        /// The configuration key that set the limit.
        limit_key: String,
    },
}

impl SupervisorError {
    /// Maps a bind failure on `addr`, adding `in_use_hint` when the address is taken.
    fn bind(addr: &str, in_use_hint: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        let addr = addr.to_string();
        move |source| SupervisorError::Bind {
            hint: if source.kind() == std::io::ErrorKind::AddrInUse {
                in_use_hint
            } else {
                ""
            },
            addr,
            source,
        }
    }

    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| SupervisorError::Io { what, source }
    }
}
