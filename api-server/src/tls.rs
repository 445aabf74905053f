//! TLS on the API port (`api_server.ssl.*`): the files the configuration
//! names, served by every connection the front doors accept, and reloaded
//! when they change.
//!
//! The supervisor has already loaded the same files once before spawning
//! (so a bad file stops `serve-http` with a message naming its key); each
//! API server loads them again for itself, and then follows them with
//! [`tiffin_tls::Reloading::watch`]: a changed file or SIGHUP (the
//! supervisor forwards its own) rebuilds the config for new connections.
//! Each reload is counted in `tiffin_api_server_tls_reloads_total`, each
//! rejected one in `tiffin_api_server_tls_reload_errors_total`, and logged.

use std::sync::Arc;

use tiffin_config::{Config, SslConfig};
use tiffin_tls::reload::Reload;
use tiffin_tls::{Alpn, ClientAuth, Named, Reloading, TlsConn, TlsFiles};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use crate::ApiServerError;

/// A connection on the API port: plain TCP, or TLS when `api_server.ssl` is on.
pub(crate) type Stream = Either<TcpStream, TlsConn>;

/// The TLS files of `ssl`, for a door speaking `alpn`; `None` when TLS is off.
pub fn files(ssl: &SslConfig, alpn: Alpn) -> Option<TlsFiles> {
    if !ssl.enabled {
        return None;
    }
    let named = |key: &str, p: &std::path::Path| Named::new(format!("api_server.ssl.{key}"), p);
    Some(TlsFiles {
        cert: named(
            "certfile",
            ssl.certfile.as_deref().unwrap_or_else(|| "".as_ref()),
        ),
        key: named(
            "keyfile",
            ssl.keyfile.as_deref().unwrap_or_else(|| "".as_ref()),
        ),
        password: ssl.keyfile_password.clone(),
        ca: ssl.ca_certs.as_deref().map(|p| named("ca_certs", p)),
        client_auth: match ssl.cert_reqs {
            0 => ClientAuth::None,
            1 => ClientAuth::Optional,
            _ => ClientAuth::Required,
        },
        alpn,
        only_tls13: false,
    })
}

/// The API port's TLS, loaded and watched; `None` when TLS is off.
pub(crate) struct DoorTls {
    reloading: Arc<Reloading>,
    _watch: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl DoorTls {
    /// Loads the configured files for a door speaking `alpn` and starts
    /// following them.
    pub fn start(config: &Config, alpn: Alpn) -> Result<Option<DoorTls>, ApiServerError> {
        let Some(files) = files(&config.api_server.ssl, alpn) else {
            return Ok(None);
        };
        let reloading =
            Arc::new(Reloading::load(files).map_err(|e| ApiServerError::Config(e.to_string()))?);
        let counter = |name: &str, help: &str| {
            config
                .api_server
                .metrics
                .enabled
                .then(|| tiffin_metrics::global().counter(name, help, &[]))
                .transpose()
        };
        let reloads = counter(
            "tiffin_api_server_tls_reloads_total",
            "Times the API port's TLS certificate files were reloaded after a change or SIGHUP",
        )?;
        let errors = counter(
            "tiffin_api_server_tls_reload_errors_total",
            "Reloads of the API port's TLS files that failed; the previous certificate stays in use",
        )?;
        // Touch both so that they are exported (as 0) before the first reload.
        for c in [&reloads, &errors].into_iter().flatten() {
            c.labels(&[]).inc_by(0.0);
        }
        let watch = reloading
            .watch(move |outcome| match outcome {
                Reload::Unchanged => {}
                Reload::Loaded(validity) => {
                    tracing::info!(not_after = validity.not_after, "reloaded the TLS certificate");
                    if let Some(c) = &reloads {
                        c.labels(&[]).inc();
                    }
                }
                Reload::Failed(e) => {
                    tracing::warn!(error = %e, "the new TLS files cannot be used; still serving the previous certificate");
                    if let Some(c) = &errors {
                        c.labels(&[]).inc();
                    }
                }
            })
            .map_err(|e| ApiServerError::Config(format!("cannot watch for SIGHUP: {e}")))?;
        Ok(Some(DoorTls {
            reloading,
            _watch: AbortOnDrop(watch),
        }))
    }

    /// Wraps an accepted connection: its handshake runs on first use.
    pub fn wrap(&self, stream: TcpStream) -> Stream {
        Either::Right(TlsConn::new(stream, self.reloading.current()))
    }
}

/// `stream` as the door serves it: wrapped in TLS when `tls` is on.
pub(crate) fn wrap(tls: Option<&DoorTls>, stream: TcpStream) -> Stream {
    match tls {
        Some(tls) => tls.wrap(stream),
        None => Either::Left(stream),
    }
}
