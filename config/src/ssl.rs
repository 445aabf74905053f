//! TLS for the API servers (`api_server.ssl.*`), with BentoML 1.2's keys
//! and defaults (`bentoml/_internal/configuration/v1/default_configuration.yaml`):
//! off, `version: 17` (`ssl.PROTOCOL_TLS_SERVER`), `cert_reqs: 0`
//! (`ssl.CERT_NONE`), `ciphers: TLSv1`.
//!
//! BentoML hands these to uvicorn, i.e. to Python's `ssl` module; tiffin
//! serves with rustls (the `tiffin-tls` crate), which offers TLS 1.2 and 1.3
//! and its own cipher suites. So `version` and `ciphers` are accepted only
//! with values that mean "the library's modern default" and anything else is
//! refused naming the key, rather than silently serving something else. As
//! in BentoML, setting any `api_server.ssl.*` key from the environment or the
//! command line turns `enabled` on (`load.rs`).
//!
//! Only the settings are checked here; whether the files exist and hold a
//! certificate and its key is checked when the supervisor starts, by
//! loading them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Python's `ssl.PROTOCOL_TLS_SERVER`, BentoML's default `version`.
pub const PROTOCOL_TLS_SERVER: i64 = 17;

/// Python's `ssl.PROTOCOL_TLS` (negotiate the highest both sides offer).
pub const PROTOCOL_TLS: i64 = 2;

/// BentoML's default `ciphers` value.
pub const DEFAULT_CIPHERS: &str = "TLSv1";

/// `api_server.ssl.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SslConfig {
    /// Serve TLS (default false).
    pub enabled: bool,
    /// PEM certificate chain, server certificate first.
    pub certfile: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, RSA or EC; PKCS#8 may be encrypted).
    pub keyfile: Option<PathBuf>,
    /// Password of an encrypted `keyfile`.
    pub keyfile_password: Option<String>,
    /// PEM CA certificates that client certificates must chain to.
    pub ca_certs: Option<PathBuf>,
    /// Python's `ssl` protocol constant: 17 (`PROTOCOL_TLS_SERVER`, default)
    /// or 2 (`PROTOCOL_TLS`); both mean TLS 1.2 and 1.3 here.
    pub version: i64,
    /// Python's `ssl.CERT_*`: 0 none (default), 1 optional, 2 required.
    pub cert_reqs: i64,
    /// OpenSSL cipher string: only BentoML's default `TLSv1` is accepted.
    pub ciphers: Option<String>,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            enabled: false,
            certfile: None,
            keyfile: None,
            keyfile_password: None,
            ca_certs: None,
            version: PROTOCOL_TLS_SERVER,
            cert_reqs: 0,
            ciphers: Some(DEFAULT_CIPHERS.to_owned()),
        }
    }
}

impl SslConfig {
    /// Checks the settings (not the files), naming the key at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("api_server.ssl.{k}");
        if ![PROTOCOL_TLS_SERVER, PROTOCOL_TLS].contains(&self.version) {
            return Err(ConfigError::invalid(
                key("version"),
                format!(
                    "{} is not supported: tiffin always offers TLS 1.2 and 1.3; use 17 \
                     (ssl.PROTOCOL_TLS_SERVER) or 2 (ssl.PROTOCOL_TLS)",
                    self.version
                ),
            ));
        }
        if !(0..=2).contains(&self.cert_reqs) {
            return Err(ConfigError::invalid(
                key("cert_reqs"),
                format!(
                    "expected 0 (CERT_NONE), 1 (CERT_OPTIONAL) or 2 (CERT_REQUIRED), got {}",
                    self.cert_reqs
                ),
            ));
        }
        if let Some(ciphers) = &self.ciphers
            && ciphers != DEFAULT_CIPHERS
        {
            return Err(ConfigError::invalid(
                key("ciphers"),
                format!(
                    "'{ciphers}' is not supported: rustls offers only its own modern cipher \
                     suites; leave it unset or '{DEFAULT_CIPHERS}'"
                ),
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        for (name, value) in [("certfile", &self.certfile), ("keyfile", &self.keyfile)] {
            if value.as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
                return Err(ConfigError::invalid(
                    key(name),
                    "must be set when api_server.ssl.enabled is true (--ssl-certfile and --ssl-keyfile)",
                ));
            }
        }
        if self.cert_reqs > 0 && self.ca_certs.is_none() {
            return Err(ConfigError::invalid(
                key("ca_certs"),
                "must be set when api_server.ssl.cert_reqs asks for client certificates (1 or 2)",
            ));
        }
        Ok(())
    }
}
