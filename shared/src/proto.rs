//! The messages exchanged over tiffin's Unix sockets.
//!
//! Two kinds of connection exist:
//! - **data**: an API server calls a runner worker (`DataRequest` /
//!   `DataResponse`); many calls share one connection, told apart by `id`.
//! - **control**: every worker process, and the `tiffin status`/`scale` CLI,
//!   talks to the supervisor (`ToSupervisor` / `FromSupervisor`).
//!
//! Each connection starts with a hello carrying [`PROTOCOL_VERSION`]; a peer
//! speaking another version is refused, so a stale binary can never
//! misinterpret frames.

use serde::{Deserialize, Serialize};

pub use crate::call::CallError;
use crate::metrics::Snapshot;

/// The wire protocol API servers speak to clients (`serve-http` or `serve-grpc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2 (`serve-http`).
    #[default]
    Http,
    /// gRPC, BentoML's v1 service (`serve-grpc`).
    Grpc,
}

impl Protocol {
    /// The name used on the command line (`http` or `grpc`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// A `--protocol` value that is neither `http` nor `grpc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol '{0}'; expected 'http' or 'grpc'")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(Protocol::Http),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(UnknownProtocol(other.to_string())),
        }
    }
}

/// Version of the wire protocol; bumped on any incompatible message change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Who a control connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// An API-server process with its 0-based index.
    ApiServer {
        /// Index among API servers, 0-based.
        index: usize,
    },
    /// A runner worker process: runner name and 1-based worker index.
    Runner {
        /// Name of the runner it serves.
        name: String,
        /// Worker index, 1-based like BentoML's `worker_index` label.
        index: usize,
    },
    /// A command-line client (`tiffin status`, `tiffin scale`).
    Cli,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::ApiServer { index } => write!(f, "api_server:{index}"),
            Role::Runner { name, index } => write!(f, "runner:{name}:{index}"),
            Role::Cli => f.write_str("cli"),
        }
    }
}

/// First message on a control connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What the connecting process is.
    pub role: Role,
    /// Its process id.
    pub pid: u32,
}

/// A runner worker as API servers see it: where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerEndpoint {
    /// 1-based worker index.
    pub index: usize,
    /// Path of its data socket.
    pub socket: String,
    /// Generation number, so a restarted worker at the same index is a new endpoint.
    pub generation: u64,
}

/// Lifecycle state of a worker as reported by `tiffin status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    /// Spawned, not yet ready.
    Starting,
    /// Serving.
    Ready,
    /// Finishing in-flight work before exiting.
    Draining,
    /// Waiting out a restart backoff.
    Backoff,
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Backoff => "backoff",
        })
    }
}

/// One row of `tiffin status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Role and index.
    pub role: Role,
    /// Process id (0 while in backoff).
    pub pid: u32,
    /// Lifecycle state.
    pub state: WorkerState,
    /// Seconds since this process started.
    pub uptime_secs: f64,
    /// How many times this slot was restarted after a crash.
    pub restarts: u64,
    /// Requests this process has served, as of its last report.
    pub requests: u64,
}

/// The supervisor's answer to a status request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Name of the service being served.
    pub service: String,
    /// Supervisor process id.
    pub pid: u32,
    /// Address of the public listener.
    pub listen: String,
    /// Seconds since the supervisor started.
    pub uptime_secs: f64,
    /// Every worker slot.
    pub workers: Vec<WorkerStatus>,
}

/// Messages a process sends to the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToSupervisor {
    /// Opens the connection.
    Hello(Hello),
    /// The process is ready to serve; runner workers give their data socket.
    Ready {
        /// Data socket of a runner worker; `None` for API servers.
        socket: Option<String>,
    },
    /// Answer to [`FromSupervisor::SnapshotRequest`].
    Snapshot {
        /// The request's id.
        id: u64,
        /// Every metric of this process.
        snapshot: Snapshot,
        /// Requests served so far, for `tiffin status`.
        requests: u64,
    },
    /// An API server asks for the aggregated exposition (a `/metrics` scrape).
    Scrape {
        /// Correlates the answer.
        id: u64,
        /// OpenMetrics instead of Prometheus text 0.0.4.
        openmetrics: bool,
    },
    /// CLI: describe every worker.
    Status {
        /// Correlates the answer.
        id: u64,
    },
    /// CLI: set the number of workers of a runner (or `api-server`).
    Scale {
        /// Correlates the answer.
        id: u64,
        /// Runner name, or `api-server`.
        target: String,
        /// Desired number of workers.
        workers: usize,
    },
    /// A draining process has finished its in-flight work and is exiting;
    /// the snapshot is its final one.
    Drained {
        /// Final metrics.
        snapshot: Snapshot,
    },
}

/// Messages the supervisor sends to a process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromSupervisor {
    /// Accepts the hello.
    Welcome {
        /// The supervisor's protocol version.
        version: u32,
    },
    /// Refuses the connection (version mismatch, unknown role...).
    Refused {
        /// Why.
        reason: String,
    },
    /// Asks for a metrics snapshot.
    SnapshotRequest {
        /// Echoed in the answer.
        id: u64,
    },
    /// The current set of ready workers of a runner (sent to API servers).
    Workers {
        /// Runner name.
        runner: String,
        /// Every ready worker.
        endpoints: Vec<WorkerEndpoint>,
    },
    /// Aggregated metrics for a scrape.
    Scraped {
        /// Correlates with the request.
        id: u64,
        /// Content type of `body`.
        content_type: String,
        /// The rendered exposition.
        body: String,
    },
    /// Answer to a status request.
    Status {
        /// Correlates with the request.
        id: u64,
        /// The report.
        report: StatusReport,
    },
    /// Answer to a scale request.
    Scaled {
        /// Correlates with the request.
        id: u64,
        /// Ok with a human description, or the error message.
        result: Result<String, String>,
    },
    /// Stop taking new work, finish in-flight work, report `Drained`, exit.
    Drain,
}

/// Messages from an API server to a runner worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DataRequest {
    /// Opens the connection.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Calls a method with a JSON-encoded input.
    Call {
        /// Correlates the reply.
        id: u64,
        /// Method name.
        method: String,
        /// JSON-encoded argument.
        payload: Vec<u8>,
    },
}

/// Messages from a runner worker to an API server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DataResponse {
    /// Accepts the hello.
    Hello {
        /// The worker's protocol version.
        version: u32,
    },
    /// Result of a call.
    Reply {
        /// The call's id.
        id: u64,
        /// JSON-encoded result, or the error.
        result: Result<Vec<u8>, CallError>,
    },
    /// The worker is draining: send no new calls on this connection.
    Draining,
}
