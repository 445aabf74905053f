//! An API-server process: the HTTP or gRPC front door of a service.
//!
//! It accepts on the listener the supervisor bound and passed down as a file
//! descriptor, routes requests to the service's handlers (`POST /<api>` over
//! HTTP, `bentoml.grpc.v1.BentoService/Call` over gRPC, and `CallStream`
//! for streaming APIs), and lets handlers
//! reach runner workers through [`pool::RunnerPool`]s kept current by the
//! supervisor over the control connection. Over HTTP, `/metrics` asks the
//! supervisor for the aggregate of every process; in gRPC mode the
//! supervisor serves it on its own metrics port.
//!
//! # Where things are
//!
//! - Front doors: `http.rs` (hyper) and `grpc/` (tonic), over the state
//!   both share, `state.rs` (`ServerState`).
//! - A request's way through: `accept.rs` takes the connection from the
//!   shared listener, `connections.rs` bounds and times connections,
//!   `route.rs` resolves the path once, `observation.rs` gives it an id
//!   (`request_id.rs`), a span (`trace.rs`) and an access-log line
//!   (`access_log.rs`), `traffic.rs` bounds API requests, `pool.rs` carries
//!   runner calls to the workers; `auth.rs` decides who may call what
//!   (bearer tokens, `api_server.auth`). `endpoint_label.rs` caps the metrics'
//!   labels for unknown paths; every count of things in flight is held by
//!   `tiffin_metrics::CountGuard` (`metrics/src/count_guard.rs`).
//! - Streaming answers: `stream.rs` (the items of one answer, for both
//!   front doors), `tail.rs` (the request held until the last item).

mod accept;
mod access_log;
mod auth;
mod connections;
mod cors;
mod deadline;
mod embedded;
mod endpoint_label;
pub mod grpc;
mod http;
mod observation;
mod oip;
mod openapi;
pub mod pool;
mod request_id;
mod request_scope;
mod route;
mod state;
mod stream;
mod swagger;
mod tail;
pub mod tls;
mod trace;
mod traffic;

use std::os::fd::RawFd;
use std::path::PathBuf;

use tiffin_config::Config;
use tiffin_service::Service;

/// Protobuf well-known types (`google.protobuf.Value` for JSON content).
pub use prost_types;
/// The tonic version the gRPC server is built with, for clients (tests, benchmarks).
pub use tonic;
/// The standard health service's client and messages.
pub use tonic_health;

pub use tiffin_ipc::proto::Protocol;

/// Runs an API server speaking `args.protocol` until the supervisor asks it
/// to drain or goes away.
pub async fn run(args: ApiServerArgs) -> Result<(), ApiServerError> {
    match args.protocol {
        Protocol::Http => http::run(args).await,
        Protocol::Grpc => grpc::run(args).await,
    }
}

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
    /// HTTP or gRPC.
    pub protocol: Protocol,
    /// The models of the repository the Open Inference Protocol's index
    /// lists beside the served ones (`None`: only those).
    pub model_index: Option<tiffin_oip::metadata::ModelIndex>,
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
    Metrics(#[from] tiffin_metrics::MetricsError),
    /// The control connection failed.
    #[error(transparent)]
    Control(#[from] tiffin_ipc::control::ControlError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The descriptors for gRPC server reflection are unusable.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}
