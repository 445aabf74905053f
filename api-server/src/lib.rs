//! An API-server process: the HTTP front door of a service.
//!
//! It accepts on the listener the supervisor bound and passed down as a file
//! descriptor, routes `/<api>` requests to the service's handlers, and lets
//! handlers reach runner workers through [`pool::RunnerPool`]s kept current
//! by the supervisor over the control connection. `/metrics` asks the
//! supervisor for the aggregate of every process.

mod http;
pub mod pool;

use std::os::fd::RawFd;
use std::path::PathBuf;

use tiffin_config::Config;
use tiffin_shared::Service;

pub use http::run;

/// Everything an API server needs, from its command line.
#[derive(Debug, Clone)]
pub struct ApiServerArgs {
    /// 0-based index among API servers.
    pub index: usize,
    /// Inherited listening TCP socket.
    pub listen_fd: RawFd,
    /// The supervisor's runtime directory.
    pub runtime_dir: PathBuf,
    /// Effective configuration.
    pub config: Config,
    /// The service to serve.
    pub service: Service,
}

/// Why an API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// The inherited listener is unusable.
    #[error("inherited listener fd {fd} is unusable: {source}")]
    Listener {
        /// The fd number.
        fd: RawFd,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad configuration reached the API server.
    #[error("configuration: {0}")]
    Config(String),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] tiffin_shared::metrics::MetricsError),
    /// The control connection failed.
    #[error(transparent)]
    Control(#[from] tiffin_shared::control::ControlError),
}
