//! OpenTelemetry tracing (`tracing.*`), with BentoML 1.2's keys.
//!
//! BentoML (`bentoml/_internal/configuration/v1/__init__.py`, `TRACING_CFG`)
//! has `tracing.exporter_type` (zipkin, jaeger, otlp, ...), `sample_rate`
//! (0 to 1, default unset = 0: nothing is sampled), `timeout` (seconds) and
//! per exporter an `otlp: {protocol, endpoint, compression, ...}` section. It
//! samples with `ParentBased(TraceIdRatioBased(sample_rate))`, so a request
//! whose `traceparent` says "sampled" is traced whatever the rate.
//!
//! tiffin exports with OTLP only; another `exporter_type` is refused at
//! start with a message saying so. Tracing is off unless `exporter_type` is
//! `otlp`: then no tracer exists at all and a request pays one branch.
//! `tracing.otlp.timeout` is accepted as well as BentoML's `tracing.timeout`
//! and wins when both are set. `compression` accepts only `none`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::seconds::{Seconds, TracingTimeout, seconds};

/// Export timeout when none is configured, in seconds (the OTLP default).
pub const DEFAULT_TRACING_TIMEOUT: f64 = 10.0;

/// `tracing.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// `otlp` turns tracing on; unset (the default) leaves it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exporter_type: Option<String>,
    /// Fraction of new traces sampled, 0 to 1 (default unset: 0, as in
    /// BentoML; a sampled incoming `traceparent` is followed anyway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// Seconds one export may take (BentoML's key; default
    /// [`DEFAULT_TRACING_TIMEOUT`]; above 0 to
    /// [`MAX_TRACING_TIMEOUT`](crate::MAX_TRACING_TIMEOUT)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds<TracingTimeout>>,
    /// The OTLP exporter (`tracing.otlp.*`).
    pub otlp: OtlpConfig,
}

/// `tracing.otlp.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// `http` (protobuf over HTTP, the default) or `grpc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// Where spans go: the full URL for `http`
    /// (default `http://localhost:4318/v1/traces`), the collector for `grpc`
    /// (default `http://localhost:4317`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Seconds one export may take; wins over `tracing.timeout` (same range).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds<TracingTimeout>>,
    /// Only `none` (tiffin does not compress exports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
}

/// `tracing.otlp.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// OTLP/gRPC.
    Grpc,
}

impl TracingConfig {
    /// Whether spans are made and exported at all.
    pub fn enabled(&self) -> bool {
        self.exporter_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("otlp"))
    }

    /// The sampling ratio for new traces.
    pub fn sample_rate(&self) -> f64 {
        self.sample_rate.unwrap_or(0.0)
    }

    /// The protocol the exporter speaks.
    pub fn protocol(&self) -> OtlpProtocol {
        self.otlp.protocol.unwrap_or(OtlpProtocol::Http)
    }

    /// The exporter's endpoint, configured or the protocol's default.
    pub fn endpoint(&self) -> String {
        match (&self.otlp.endpoint, self.protocol()) {
            (Some(e), _) => e.clone(),
            (None, OtlpProtocol::Http) => "http://localhost:4318/v1/traces".to_owned(),
            (None, OtlpProtocol::Grpc) => "http://localhost:4317".to_owned(),
        }
    }

    /// The export timeout.
    pub fn timeout(&self) -> Duration {
        self.otlp
            .timeout
            .or(self.timeout)
            .map_or(seconds(DEFAULT_TRACING_TIMEOUT), Seconds::duration)
    }

    /// Checks the keys: a supported exporter, the rate, the URL (the
    /// timeouts were checked as they were read).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.exporter_type
            && !t.eq_ignore_ascii_case("otlp")
        {
            return Err(ConfigError::invalid(
                "tracing.exporter_type",
                format!("'{t}' is not supported; tiffin exports traces with 'otlp'"),
            ));
        }
        if let Some(rate) = self.sample_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(ConfigError::invalid(
                "tracing.sample_rate",
                format!("must be a number from 0 to 1, got {rate}"),
            ));
        }
        if let Some(c) = &self.otlp.compression
            && !c.eq_ignore_ascii_case("none")
        {
            return Err(ConfigError::invalid(
                "tracing.otlp.compression",
                format!("'{c}' is not supported; only 'none'"),
            ));
        }
        if let Some(e) = &self.otlp.endpoint
            && !e.starts_with("http://")
        {
            return Err(ConfigError::invalid(
                "tracing.otlp.endpoint",
                format!("must be an http:// URL (tiffin's exporter has no TLS), got '{e}'"),
            ));
        }
        Ok(())
    }
}
