//! Configuration for tiffin, with BentoML's keys, defaults and rules.
//!
//! # Where a setting comes from
//!
//! A [`Config`] is built from up to three layers, each beating the one before:
//!
//! 1. a YAML file (`--config FILE`, or the path in [`CONFIG_ENV`]); an empty file
//!    means "all defaults";
//! 2. [`OPTIONS_ENV`] (`TIFFIN_CONFIG_OPTIONS`): whitespace-separated
//!    `dotted.key=value` pairs, values written as YAML
//!    (`api_server.http.port=3001 api_server.metrics.duration.buckets=[0.1,0.5,1]`);
//! 3. command-line flags, applied with [`Config::apply_override`] or passed to
//!    [`Config::from_sources`].
//!
//! Overrides are applied to the YAML tree *before* it is turned into typed
//! structs, so a value set by a flag goes through exactly the same checks as one
//! written in the file. A value that a later layer overrides is checked too
//! ([`ConfigError::Overridden`] names where it was set), so a bad value in the
//! file does not lie hidden behind a flag. Every numeric key has a range
//! (in its doc comment; the bounds are constants such as [`MAX_WORKERS`]):
//! a number of seconds is a [`Seconds`], whose type checks its key's range
//! as it is read, and the counts are checked on the typed values by
//! [`Config::validate`]. Every error ([`ConfigError`]) names the dotted key
//! at fault and the value it found:
//!
//! ```
//! use tiffin_config::Config;
//! let err = Config::load(None, Some("api_server.http.prot=3001")).unwrap_err();
//! // ... and the keys that would have been valid there.
//! assert!(err.to_string().starts_with(
//!     "unknown configuration key 'api_server.http.prot' (expected one of host, port, "));
//! let config = Config::load(None, Some("api_server.http.port=3001")).unwrap();
//! assert_eq!(config.api_server.http.port, 3001);
//! ```
//!
//! # Runners
//!
//! As in BentoML, `runners:` holds the settings shared by every runner
//! (`workers`, `batching`, `metrics`, ...) and, under any other key, the
//! settings of one runner by name, whose fields win over the shared ones: one
//! [`RunnerSettings`] per runner (see `runners.rs`):
//!
//! ```
//! use tiffin_config::Config;
//! let config = Config::from_yaml_str(
//!     "runners: { batching: { max_batch_size: 32 }, nltk_sentiment: { workers: 2 } }",
//! ).unwrap();
//! assert_eq!(config.runners.workers_for("nltk_sentiment"), 2);
//! assert_eq!(config.runners.workers_for("other"), 1);
//! assert_eq!(config.runners.batching_for("nltk_sentiment").max_batch_size, 32);
//! config.check_runners(&["nltk_sentiment"]).unwrap();
//! ```
//!
//! # Histogram buckets
//!
//! [`DurationConfig::buckets`] turns `duration: {min, max, factor}` or
//! `duration: {buckets: [...]}` into request-duration buckets (default
//! [`DEFAULT_DURATION_BUCKETS`]); [`batch_size_buckets`] gives the buckets of
//! `bentoml_runner_adaptive_batch_size`. Neither list contains `+Inf`: the
//! metrics layer adds it.

mod auth;
mod autoscaling;
mod buckets;
mod cors;
mod load;
mod logging;
mod runners;
mod seconds;
mod ssl;
mod tracing;
mod validate;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use auth::{AuthConfig, MAX_TOKEN_LEN, MIN_TOKEN_LEN, TokenEntry};
pub use autoscaling::{Autoscaling, AutoscalingConfig, MAX_TARGET_IN_FLIGHT, cpu_count};
pub use buckets::{DEFAULT_DURATION_BUCKETS, MAX_GENERATED_BUCKETS, batch_size_buckets};
pub use cors::{CorsConfig, DEFAULT_CORS_MAX_AGE, MAX_CORS_MAX_AGE, OneOrMany};
pub use load::{CLI_ORIGIN, CONFIG_ENV, OPTIONS_ENV, parse_options};
pub use logging::{
    AccessLogConfig, AccessLogIdFormat, ApiServerLogging, IdFormat, IdRadix, LogFormat,
    LoggingConfig, MAX_ID_WIDTH,
};
pub use runners::{BatchingConfig, RunnerConfig, RunnerSettings, RunnersConfig};
pub use seconds::{
    GracefulTimeout, HttpTimeout, HungWorkerTimeout, LookBack, Lower, MAX_AUTOSCALING_SECONDS,
    MAX_TRACING_TIMEOUT, ScaleDelay, Seconds, SecondsRange, TracingTimeout, TrafficTimeout,
    seconds,
};
pub use ssl::{DEFAULT_CIPHERS, PROTOCOL_TLS, PROTOCOL_TLS_SERVER, SslConfig};
pub use tracing::{DEFAULT_TRACING_TIMEOUT, OtlpConfig, OtlpProtocol, TracingConfig};
pub use validate::{
    DEFAULT_API_MAX_FAILED_STARTS, DEFAULT_RUNNER_MAX_FAILED_STARTS, MAX_BATCH_SIZE,
    MAX_CONCURRENCY, MAX_CONNECTIONS, MAX_FAILED_STARTS, MAX_GRACEFUL_TIMEOUT, MAX_HTTP_TIMEOUT,
    MAX_HUNG_WORKER_TIMEOUT, MAX_LATENCY_MS, MAX_REQUEST_SIZE, MAX_TRAFFIC_TIMEOUT, MAX_WORKERS,
    MIN_HUNG_WORKER_TIMEOUT,
};

/// The whole tiffin configuration: API-server and runner settings.
///
/// Built by [`Config::load`] and its kin; it also deserializes from any
/// serde format through the same steps (merge, checks), and serializes to
/// the YAML it was read from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Config {
    /// Settings of the API-server processes (`api_server.*`).
    pub api_server: ApiServerConfig,
    /// Settings shared by all runners, and per runner (`runners.*`).
    pub runners: RunnersConfig,
    /// What the supervisor itself watches (`supervisor.*`; tiffin's own keys,
    /// BentoML has none for this).
    pub supervisor: SupervisorConfig,
    /// Line format of every process's log (`logging.*`; tiffin's own key).
    pub logging: LoggingConfig,
    /// OpenTelemetry tracing (`tracing.*`, BentoML's keys).
    pub tracing: TracingConfig,
}

/// The supervisor's own settings (`supervisor.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Seconds a process may leave the supervisor's once-a-second liveness
    /// request unanswered before it counts as hung: it is taken out of
    /// routing, killed and replaced (`supervisor.hung_worker_timeout`,
    /// default 10; [`MIN_HUNG_WORKER_TIMEOUT`] to [`MAX_HUNG_WORKER_TIMEOUT`]).
    /// The answer never waits for the model, so a slow inference is not
    /// silence; a larger value only delays the recovery of a stopped process.
    pub hung_worker_timeout: Seconds<HungWorkerTimeout>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            hung_worker_timeout: Seconds::trusted(10.0),
        }
    }
}

/// BentoML's default API-server count: one per CPU.
pub fn default_api_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Settings of the API-server processes (`api_server.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiServerConfig {
    /// Number of API-server processes (`api_server.workers`; default: the
    /// number of CPUs, as in BentoML; 1 to [`MAX_WORKERS`]).
    pub workers: usize,
    /// Seconds given to in-flight requests on shutdown
    /// (`api_server.graceful_timeout`, default 30; 0 to
    /// [`MAX_GRACEFUL_TIMEOUT`]).
    pub graceful_timeout: Seconds<GracefulTimeout>,
    /// Exits in a row of an API-server slot's process before it ever became
    /// ready after which the supervisor stops restarting it and shuts the
    /// service down with an error (`api_server.max_failed_starts`, default
    /// [`DEFAULT_API_MAX_FAILED_STARTS`]; 0 to [`MAX_FAILED_STARTS`], 0 =
    /// never give up).
    pub max_failed_starts: u32,
    /// The HTTP front door (`api_server.http.*`).
    pub http: HttpConfig,
    /// The gRPC front door (`api_server.grpc.*`).
    pub grpc: GrpcConfig,
    /// Limits every API request runs within (`api_server.traffic.*`).
    pub traffic: TrafficConfig,
    /// The API server's default metrics (`api_server.metrics.*`, namespace `bentoml_api_server`).
    pub metrics: MetricsConfig,
    /// The access log (`api_server.logging.*`).
    pub logging: ApiServerLogging,
    /// TLS on the API port (`api_server.ssl.*`, BentoML's keys; docs/security.md).
    pub ssl: SslConfig,
    /// Prometheus's web configuration file for the scrape endpoints
    /// (`api_server.web_config_file`, `--web.config.file`; docs/security.md).
    pub web_config_file: Option<std::path::PathBuf>,
    /// Bearer tokens on the APIs (`api_server.auth.*`, tiffin's own; off by default).
    pub auth: AuthConfig,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            workers: default_api_workers(),
            graceful_timeout: Seconds::trusted(30.0),
            max_failed_starts: DEFAULT_API_MAX_FAILED_STARTS,
            http: HttpConfig::default(),
            grpc: GrpcConfig::default(),
            traffic: TrafficConfig::default(),
            metrics: MetricsConfig::with_namespace("bentoml_api_server"),
            logging: ApiServerLogging::default(),
            ssl: SslConfig::default(),
            web_config_file: None,
            auth: AuthConfig::default(),
        }
    }
}

/// The HTTP listener (`api_server.http.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to bind (default `0.0.0.0`).
    pub host: String,
    /// TCP port to bind, 0 to 65535; 0 picks a free port (default 3000).
    pub port: u16,
    /// Largest accepted request body in bytes (default 20 MiB; 1 to
    /// [`MAX_REQUEST_SIZE`], 64 MiB).
    pub max_request_size: u64,
    /// Seconds a connection may take to send the headers of a request,
    /// counted from its first byte (`api_server.http.header_read_timeout`,
    /// default 10; more than 0, at most [`MAX_HTTP_TIMEOUT`]).
    pub header_read_timeout: Seconds<HttpTimeout>,
    /// Seconds the body of a request may take to arrive once its headers
    /// have (`api_server.http.body_read_timeout`, default 60; more than 0,
    /// at most [`MAX_HTTP_TIMEOUT`]).
    pub body_read_timeout: Seconds<HttpTimeout>,
    /// Seconds an idle keep-alive connection is kept open waiting for its
    /// next request (`api_server.http.keepalive_timeout`, default 5, as
    /// uvicorn's `timeout_keep_alive` that BentoML serves with; more than 0,
    /// at most [`MAX_HTTP_TIMEOUT`]).
    pub keepalive_timeout: Seconds<HttpTimeout>,
    /// Open connections one API-server process accepts at a time
    /// (`api_server.http.max_connections`, default 10000; 1 to
    /// [`MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Cross-origin resource sharing (`api_server.http.cors.*`, off by default).
    pub cors: CorsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            host: "0.0.0.0".to_owned(),
            port: 3000,
            max_request_size: 20 * 1024 * 1024,
            header_read_timeout: Seconds::trusted(10.0),
            body_read_timeout: Seconds::trusted(60.0),
            keepalive_timeout: Seconds::trusted(5.0),
            max_connections: 10_000,
            cors: CorsConfig::default(),
        }
    }
}

/// Limits every API request runs within (`api_server.traffic.*`), with
/// BentoML's keys and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficConfig {
    /// Seconds an API request may take, from its arrival to its answer
    /// (`api_server.traffic.timeout`, default 60 as in BentoML; more than 0,
    /// at most [`MAX_TRAFFIC_TIMEOUT`]).
    pub timeout: Seconds<TrafficTimeout>,
    /// Requests one API-server process handles at once; beyond it requests
    /// are refused (`api_server.traffic.max_concurrency`, default none:
    /// unlimited, as in BentoML; when set 1 to [`MAX_CONCURRENCY`]). Written
    /// out as `null` when unset, so the effective configuration shows the key.
    pub max_concurrency: Option<usize>,
    /// Seconds a streaming answer may go without an item once its first
    /// item was sent (`api_server.traffic.stream_idle_timeout`, default 60;
    /// more than 0, at most [`MAX_TRAFFIC_TIMEOUT`]): past it the stream
    /// ends with its error ending and the runner's call is cancelled.
    /// `timeout` bounds the time to the first item. Not a BentoML key.
    pub stream_idle_timeout: Seconds<TrafficTimeout>,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            timeout: Seconds::trusted(60.0),
            max_concurrency: None,
            stream_idle_timeout: Seconds::trusted(60.0),
        }
    }
}

/// The gRPC listener (`api_server.grpc.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address to bind (default `0.0.0.0`).
    pub host: String,
    /// TCP port to bind, 0 to 65535; 0 picks a free port (default 3000).
    pub port: u16,
    /// gRPC server reflection (`api_server.grpc.reflection.*`).
    pub reflection: ReflectionConfig,
    /// Where the metrics endpoint listens in gRPC mode (`api_server.grpc.metrics.*`).
    pub metrics: GrpcMetricsConfig,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            host: "0.0.0.0".to_owned(),
            port: 3000,
            reflection: ReflectionConfig::default(),
            metrics: GrpcMetricsConfig::default(),
        }
    }
}

/// gRPC server reflection switch (`api_server.grpc.reflection.*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReflectionConfig {
    /// Whether reflection is served (default false).
    pub enabled: bool,
}

/// The metrics listener used in gRPC mode (`api_server.grpc.metrics.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcMetricsConfig {
    /// Address to bind (default `0.0.0.0`).
    pub host: String,
    /// TCP port to bind, 0 to 65535; 0 picks a free port (default 3001).
    pub port: u16,
}

impl Default for GrpcMetricsConfig {
    fn default() -> Self {
        GrpcMetricsConfig {
            host: "0.0.0.0".to_owned(),
            port: 3001,
        }
    }
}

/// Default-metrics settings of one process kind (`api_server.metrics.*` or `runners.metrics.*`).
///
/// `Default` gives the API server's namespace; the runners' default is
/// `MetricsConfig::with_namespace("bentoml_runner")`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether the default metrics are recorded (default true).
    pub enabled: bool,
    /// Prefix of the metric names, e.g. `bentoml_api_server`.
    pub namespace: String,
    /// Buckets of the `<namespace>_request_duration_seconds` histogram.
    pub duration: DurationConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig::with_namespace("bentoml_api_server")
    }
}

impl MetricsConfig {
    /// Enabled metrics with the given namespace and default duration buckets.
    pub fn with_namespace(namespace: &str) -> Self {
        MetricsConfig {
            enabled: true,
            namespace: namespace.to_owned(),
            duration: DurationConfig::default(),
        }
    }

    /// Duration buckets (without `+Inf`) for a configuration that passed [`Config::validate`].
    ///
    /// Every [`Config`] built by this crate is validated, so this cannot fail for
    /// it; a hand-built invalid `duration` falls back to [`DEFAULT_DURATION_BUCKETS`]
    /// (call [`DurationConfig::buckets`] to see the error instead).
    pub fn duration_buckets(&self) -> Vec<f64> {
        self.duration
            .buckets("metrics")
            .unwrap_or_else(|_| DEFAULT_DURATION_BUCKETS.to_vec())
    }
}

/// How request-duration buckets are chosen (`*.metrics.duration.*`): nothing, `{min, max, factor}`, or `{buckets}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DurationConfig {
    /// Smallest generated bucket, in seconds (finite, > 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest bucket below `+Inf`, in seconds (finite, > min).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Ratio between consecutive generated buckets (finite, > 1, and
    /// generating at most [`MAX_GENERATED_BUCKETS`] buckets from min to max).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Explicit, strictly increasing bucket bounds (instead of
    /// min/max/factor): 1 to [`MAX_GENERATED_BUCKETS`] finite bounds, a
    /// trailing `+Inf` allowed and dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<f64>>,
}

/// Why a configuration could not be loaded or is not valid; the message names the key and value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file does not exist.
    #[error("configuration file '{path}' not found")]
    FileNotFound {
        /// The path that was given.
        path: String,
    },
    /// The configuration file exists but could not be read.
    #[error("cannot read configuration file '{path}': {source}")]
    Read {
        /// The path that was given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML text is malformed, or its top level is not a mapping.
    #[error("invalid YAML in {origin}: {message}")]
    Syntax {
        /// Where the text came from, e.g. `configuration file 'tiffin.yaml'`.
        origin: String,
        /// What is wrong, with line and column when known.
        message: String,
    },
    /// An override is not of the form `dotted.key=value`, or its value is not YAML.
    #[error("invalid override '{entry}' in {origin}: {reason}")]
    InvalidOverride {
        /// Where the override came from: [`OPTIONS_ENV`] or [`CLI_ORIGIN`].
        origin: String,
        /// The override as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key that tiffin does not know.
    #[error("unknown configuration key '{key}'{hint}")]
    UnknownKey {
        /// Full dotted key, e.g. `api_server.http.prot`.
        key: String,
        /// Either empty or ` (expected one of ...)`.
        hint: String,
    },
    /// A value of the wrong type or out of range.
    #[error("invalid value for '{key}': {reason}")]
    InvalidValue {
        /// Full dotted key, e.g. `api_server.http.port`.
        key: String,
        /// What was expected and what was found.
        reason: String,
    },
    /// A value that a later source overrides is itself invalid: every source
    /// is checked, not only the one that wins.
    #[error("{error} (in {origin}, overridden by {overridden_by})")]
    Overridden {
        /// Where the bad value was set: the configuration file, or an
        /// override (its origin and `key=value`).
        origin: String,
        /// The override that replaces it (origin and `key=value`).
        overridden_by: String,
        /// What is wrong with the value, naming its key.
        error: Box<ConfigError>,
    },
    /// A `runners.<name>` section for a runner that the service does not have.
    #[error(
        "unknown configuration key 'runners.{name}': '{name}' is not a runner of this service ({})",
        describe_runners(known)
    )]
    UnknownRunner {
        /// The runner name as written.
        name: String,
        /// The service's runners.
        known: Vec<String>,
    },
}

fn describe_runners(known: &[String]) -> String {
    if known.is_empty() {
        "it has no runners".to_owned()
    } else {
        format!("its runners: {}", known.join(", "))
    }
}

impl ConfigError {
    /// Shorthand for [`ConfigError::InvalidValue`].
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::InvalidValue {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
