//! A runner worker process: loads one [`Runnable`] and answers calls from API
//! servers on its own Unix socket.
//!
//! The worker runs a single-threaded tokio runtime. Non-batchable methods run
//! on one model thread, one call at a time, like a BentoML runner that does
//! not support CPU multi-threading; batchable methods go through the
//! [`batch`] dispatcher, which groups concurrent calls. A call whose caller
//! went away is taken out of either queue, or told while it runs
//! ([`ticket`]). The supervisor reaches the worker over the
//! control connection (metric snapshots, drain).

pub mod batch;
mod embedded;
mod host;
mod in_flight;
mod liveness;
mod pace;
mod serial;
mod serve;
mod stream;
pub mod ticket;

use std::path::PathBuf;

use tiffin_config::Config;
use tiffin_service::Service;

pub use embedded::Embedded;
pub use host::CallContext;
pub use serve::run;

/// Everything a runner worker needs to know, from its command line.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Name of the runner to serve.
    pub runner: String,
    /// 1-based worker index.
    pub index: usize,
    /// The supervisor's private runtime directory (sockets live here).
    pub runtime_dir: PathBuf,
    /// The effective configuration.
    pub config: Config,
    /// Service being served (for labels).
    pub service: Service,
}

/// Why a runner worker could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The service has no runner of that name.
    #[error("service has no runner named '{0}'")]
    UnknownRunner(String),
    /// The runnable failed to load.
    #[error("runner '{runner}' failed to load: {message}")]
    Load {
        /// Runner name.
        runner: String,
        /// Loader's message.
        message: String,
    },
    /// Socket setup failed.
    #[error("cannot bind {path}: {source}")]
    Bind {
        /// Socket path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] tiffin_metrics::MetricsError),
    /// The control connection failed.
    #[error(transparent)]
    Control(#[from] tiffin_ipc::control::ControlError),
}
