//! The error of a runner call, shared by the IPC messages and the service model.

use serde::{Deserialize, Serialize};

/// What went wrong with a runner call, as carried back to the API server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CallError {
    /// The method raised an error.
    #[error("runner method failed: {0}")]
    Failed(String),
    /// The worker cannot take the call within its latency budget.
    #[error("runner overloaded: {0}")]
    Overloaded(String),
    /// The runner has no such method.
    #[error("unknown runner method '{0}'")]
    UnknownMethod(String),
    /// The input could not be decoded for the method.
    #[error("bad input for runner method: {0}")]
    BadInput(String),
    /// No worker of the runner is available (none ready, or the chosen one died).
    #[error("runner unavailable: {0}")]
    Unavailable(String),
    /// The worker is draining and refused the call without running it, so
    /// the caller may always send it to another worker.
    #[error("runner worker is draining")]
    Draining,
}
