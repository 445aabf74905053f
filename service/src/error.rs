//! Errors of the service model: what a runner call can fail with
//! ([`CallError`], carried over IPC), what an API handler sees when it calls
//! a runner ([`RunnerError`]), and what the client gets ([`ApiError`]).
//!
//! [`CallError::http_status`] is the one place a call error becomes an HTTP
//! status: the runner worker's `http_response_code` label and the API
//! server's answer both use it.

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
    /// The request's deadline (`api_server.traffic.timeout`) passed before
    /// the call could run; it was not run.
    #[error("the request's deadline passed before the runner call ran")]
    DeadlineExceeded,
}

impl CallError {
    /// The HTTP status this error stands for: 400 for bad input, 503 when the
    /// runner cannot take the call now (overloaded, unavailable, draining),
    /// 504 when the request's deadline passed first,
    /// and 500 when the method failed or does not exist (an unknown runner
    /// method is a bug in the service, not in the client's request).
    pub fn http_status(&self) -> u16 {
        match self {
            CallError::BadInput(_) => 400,
            CallError::Overloaded(_) | CallError::Unavailable(_) | CallError::Draining => 503,
            CallError::DeadlineExceeded => 504,
            CallError::Failed(_) | CallError::UnknownMethod(_) => 500,
        }
    }
}

/// An error an API handler returns: becomes an HTTP status with a JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Human-readable message, sent as `{"error": message}`.
    pub message: String,
}

impl ApiError {
    /// An error with any status. Prefer the named constructors below; this
    /// one is for statuses computed elsewhere (a runner error's status).
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400: the request body is not acceptable input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    /// 401: the request carries no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }
    /// 403: the credentials are valid but not for this API.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    /// 404: no such resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    /// 408: the client did not send its request in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(408, message)
    }
    /// 413: the request body is larger than the server accepts.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(413, message)
    }
    /// 415: the request's content type is not the API's input type.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, message)
    }
    /// 422: the body is well formed but its values cannot be processed.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, message)
    }
    /// 429: too many requests at once (`api_server.traffic.max_concurrency`).
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, message)
    }
    /// 500: the handler or the model failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// 503: the service cannot take the request now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
    /// 504: the request's deadline (`api_server.traffic.timeout`) passed.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, message)
    }
}

/// A misdefined custom metric used with `?` in a handler (`try_with`,
/// `try_labels`) fails the request with 500: it is a bug in the service,
/// not in the client's request.
impl From<tiffin_metrics::MetricsError> for ApiError {
    fn from(e: tiffin_metrics::MetricsError) -> Self {
        ApiError::internal(format!("custom metric: {e}"))
    }
}

/// Why a runner call from an API handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    /// The call reached a worker and failed there (or could not be delivered).
    #[error(transparent)]
    Call(#[from] CallError),
    /// This process has no connection to the runner (e.g. called inside a runner worker).
    #[error("runner '{0}' is not reachable from this process")]
    NotConnected(String),
    /// The input could not be encoded or the output decoded.
    #[error("runner value conversion failed: {0}")]
    Codec(String),
}

impl From<RunnerError> for ApiError {
    fn from(e: RunnerError) -> Self {
        let status = match &e {
            RunnerError::Call(call) => call.http_status(),
            RunnerError::NotConnected(_) => 503,
            RunnerError::Codec(_) => 500,
        };
        ApiError::new(status, e.to_string())
    }
}
