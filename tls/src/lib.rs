//! TLS for tiffin's front doors: the API servers (HTTP and gRPC) and the
//! supervisor's metrics port.
//!
//! # What this crate owns
//!
//! - [`load`]: reading a certificate chain, its private key (PKCS#8, PKCS#1,
//!   SEC1, or PKCS#8 encrypted with a password) and the CA bundle that client
//!   certificates are checked against, from PEM files; every error names the
//!   setting and the file ([`Named`]), and a certificate outside its validity
//!   dates is reported ([`Validity`]) but not refused, as BentoML (Python's
//!   `ssl`) does not refuse it either.
//! - [`server`]: the rustls `ServerConfig` built from those files: TLS 1.2
//!   and 1.3 only, ALPN for the protocol the door speaks, client
//!   certificates none, optional or required ([`ClientAuth`]).
//! - [`reload`]: a [`Reloading`] config that every new connection reads, and
//!   that re-reads its files when they change on disk or when asked (SIGHUP),
//!   keeping the old config when a new file is bad. Connections already open
//!   keep the config they began with.
//! - [`conn`]: [`TlsConn`], one accepted connection whose handshake runs
//!   inside its first read or write (so the accept loop never waits on a
//!   client), bounded by a deadline, and that answers a plaintext HTTP
//!   request with a 400 naming TLS instead of hanging.
//! - [`web_config`]: Prometheus's web configuration file (the
//!   exporter-toolkit's format) for scrape endpoints: TLS settings and
//!   `basic_auth_users` with bcrypt hashes ([`WebConfig`]).
//!
//! The crate knows nothing of tiffin's configuration keys: callers pass the
//! dotted key with every path so that errors can name it.

pub mod conn;
pub mod load;
pub mod reload;
pub mod server;
pub mod web_config;

use std::path::PathBuf;

pub use conn::{HANDSHAKE_TIMEOUT, TlsConn};
pub use load::{Identity, Validity};
pub use reload::Reloading;
pub use server::{Alpn, ClientAuth, TlsFiles};
pub use web_config::{BasicAuth, WebConfig};

/// A file, with the setting that named it (e.g. `api_server.ssl.certfile`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// The setting that gave the path, as errors print it.
    pub key: String,
    /// The file.
    pub path: PathBuf,
}

impl Named {
    /// `path` as given by the setting `key`.
    pub fn new(key: impl Into<String>, path: impl Into<PathBuf>) -> Named {
        Named {
            key: key.into(),
            path: path.into(),
        }
    }
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.key, self.path.display())
    }
}

/// Why TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{file}: cannot read the file: {cause}")]
    Read {
        /// The file and its setting.
        file: Named,
        /// What the system said (in the message: a CLI prints only the top error).
        cause: std::io::Error,
    },
    /// A file was read but does not hold what the setting needs.
    #[error("{file}: {reason}")]
    Content {
        /// The file and its setting.
        file: Named,
        /// What is wrong with it.
        reason: String,
    },
    /// Settings that do not go together.
    #[error("{0}")]
    Settings(String),
    /// rustls refused the certificate, key or CA bundle.
    #[error("{context}: {cause}")]
    Rustls {
        /// What was being built.
        context: String,
        /// rustls's reason.
        cause: rustls::Error,
    },
}

/// The crypto provider every config here uses: ring, named once so that
/// no process-wide default has to be installed.
///
/// rustls 0.23.48 deprecates ring's provider because it lacks post-quantum
/// key exchange; the alternative, aws-lc-rs, builds a C library with cmake
/// at compile time. Classical X25519/P-256 key exchange is what Python's
/// `ssl` (BentoML) offers too.
#[allow(deprecated)]
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
