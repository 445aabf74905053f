//! The range of every numeric key, and the checks that types alone cannot do.
//!
//! Each bound is a public constant, so the code that consumes a value (the
//! supervisor's `tiffin scale`, say) can apply the same one, and each is
//! chosen to stop a value that would otherwise pass validation and break
//! later: `runners.workers: 100000` forked until the process limit, and a
//! `max_batch_size` near `usize::MAX` overflowed the runner's semaphore.
//! Types already bound ports (`u16`, 0 to 65535, 0 = pick a free port) and
//! rule out negative counts.

use crate::{Config, ConfigError, MetricsConfig};
use tiffin_metrics::names::{METRIC_NAME_PATTERN, is_metric_name};

/// Most processes of one kind: `api_server.workers`, `runners.workers`,
/// `runners.<name>.workers` (and `tiffin scale`).
///
/// Every worker is a process with its own runtime and sockets; far beyond a
/// few per CPU nothing is gained, and a typo such as `100000` used to fork
/// until the machine's process limit.
pub const MAX_WORKERS: usize = 256;

/// Largest `max_batch_size`: a batch is one call of the model over that many
/// inputs, held in memory at once; the runner's queue holds a few batches.
pub const MAX_BATCH_SIZE: usize = 100_000;

/// Largest `max_latency_ms`: one hour, far past any request's patience.
pub const MAX_LATENCY_MS: u64 = 3_600_000;

/// Largest `api_server.graceful_timeout`, in seconds: one day.
pub const MAX_GRACEFUL_TIMEOUT: f64 = 86_400.0;

/// Largest `api_server.http.max_request_size`, in bytes: 64 MiB.
///
/// This is the frame limit of the worker sockets
/// (`tiffin_ipc::frame::DEFAULT_MAX_FRAME`, stated here because this crate
/// does not depend on tiffin-ipc): a body accepted above it could never be
/// forwarded to a runner in one frame, so the limit would only be a promise
/// broken later.
pub const MAX_REQUEST_SIZE: u64 = 64 * 1024 * 1024;

/// Largest of the `api_server.http.*_timeout` keys, in seconds: one hour.
pub const MAX_HTTP_TIMEOUT: f64 = 3_600.0;

/// Largest `api_server.http.max_connections` (each open connection holds a
/// file descriptor and buffers).
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// Largest `api_server.traffic.timeout`, in seconds: one day.
pub const MAX_TRAFFIC_TIMEOUT: f64 = 86_400.0;

/// Largest `api_server.traffic.max_concurrency` when it is set.
pub const MAX_CONCURRENCY: usize = 1_000_000;

/// Largest `max_failed_starts` (API servers, runners, one runner).
pub const MAX_FAILED_STARTS: u32 = 1_000;

/// Default `api_server.max_failed_starts`: an API server that cannot start
/// five times in a row will not start on the sixth, and without one the
/// service serves nothing.
pub const DEFAULT_API_MAX_FAILED_STARTS: u32 = 5;

/// Default `runners.max_failed_starts`: as for API servers, five failed
/// starts in a row end the service with the worker's error, as BentoML's
/// `serve` fails when a runner cannot load. A runner whose model may come
/// up later can say 0 (never give up) and keep the other APIs serving.
pub const DEFAULT_RUNNER_MAX_FAILED_STARTS: u32 = 5;

/// Smallest `supervisor.hung_worker_timeout`, in seconds: two liveness
/// requests (one a second, each with a 1 s deadline), so one request lost
/// to a busy moment never kills a process.
pub const MIN_HUNG_WORKER_TIMEOUT: f64 = 2.0;

/// Largest `supervisor.hung_worker_timeout`, in seconds: one hour.
pub const MAX_HUNG_WORKER_TIMEOUT: f64 = 3_600.0;

impl Config {
    /// Checks every rule that types alone do not: each count within its
    /// range (the constants of this crate), names, bucket settings. (The
    /// seconds keys are [`crate::Seconds`], checked as they are read.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let api = &self.api_server;
        int_range(
            "api_server.workers",
            api.workers as u64,
            1,
            MAX_WORKERS as u64,
        )?;
        int_range(
            "api_server.max_failed_starts",
            api.max_failed_starts.into(),
            0,
            MAX_FAILED_STARTS.into(),
        )?;
        non_empty("api_server.http.host", &api.http.host)?;
        let size = api.http.max_request_size;
        if size > MAX_REQUEST_SIZE {
            return Err(ConfigError::invalid(
                "api_server.http.max_request_size",
                format!(
                    "must be at most {MAX_REQUEST_SIZE} (64 MiB, the largest frame a worker \
                     socket carries), got {size}"
                ),
            ));
        }
        int_range(
            "api_server.http.max_request_size",
            size,
            1,
            MAX_REQUEST_SIZE,
        )?;
        int_range(
            "api_server.http.max_connections",
            api.http.max_connections as u64,
            1,
            MAX_CONNECTIONS as u64,
        )?;
        api.http.cors.validate("api_server.http.cors")?;
        if let Some(max) = api.traffic.max_concurrency {
            int_range(
                "api_server.traffic.max_concurrency",
                max as u64,
                1,
                MAX_CONCURRENCY as u64,
            )?;
        }
        non_empty("api_server.grpc.host", &api.grpc.host)?;
        non_empty("api_server.grpc.metrics.host", &api.grpc.metrics.host)?;
        validate_metrics("api_server.metrics", &api.metrics)?;
        api.logging.validate()?;
        api.ssl.validate()?;
        api.auth.validate()?;
        self.tracing.validate()?;
        validate_metrics("runners.metrics", &self.runners.metrics)?;
        self.runners.validate()
    }

    /// Fails on a `runners.<name>` section whose name is not one of the service's runners.
    pub fn check_runners(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self
            .runners
            .per_runner
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            Some(name) => Err(ConfigError::UnknownRunner {
                name: name.clone(),
                known: known.iter().map(|k| (*k).to_owned()).collect(),
            }),
            None => Ok(()),
        }
    }
}

/// `min <= value <= max`. Every count is at most `u64` wide (`usize` is 64
/// bits on every target tiffin builds for), so the caller's cast is exact.
pub(crate) fn int_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min {
        Err(ConfigError::invalid(
            key,
            format!("must be at least {min}, got {value}"),
        ))
    } else if value > max {
        Err(ConfigError::invalid(
            key,
            format!("must be at most {max}, got {value}"),
        ))
    } else {
        Ok(())
    }
}

fn non_empty(key: &str, value: &str) -> Result<(), ConfigError> {
    match value.trim() {
        "" => Err(ConfigError::invalid(
            key,
            format!("must not be empty, got {value:?}"),
        )),
        _ => Ok(()),
    }
}

/// The namespace starts every default metric's name, so it must itself be a
/// valid metric name (the metrics crate's rule); the duration buckets must build.
fn validate_metrics(prefix: &str, metrics: &MetricsConfig) -> Result<(), ConfigError> {
    let ns = &metrics.namespace;
    if !is_metric_name(ns) {
        return Err(ConfigError::invalid(
            format!("{prefix}.namespace"),
            format!(
                "must be a Prometheus metric name prefix matching {METRIC_NAME_PATTERN}, got {ns:?}"
            ),
        ));
    }
    metrics.duration.buckets(prefix).map(drop)
}
