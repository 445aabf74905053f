//! The rustls server configuration a front door serves with.
//!
//! Only TLS 1.2 and 1.3 are offered (rustls implements nothing older).
//! ALPN says which protocol the door speaks: an HTTP door offers `h2` and
//! `http/1.1` (hyper then serves whichever the client speaks), a gRPC door
//! only `h2`, so that a client that cannot speak HTTP/2 fails at the
//! handshake with a clear alert rather than later.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::load::{Identity, roots};
use crate::{Named, TlsError};

const TLS12_AND_13: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS12, &rustls::version::TLS13];
const ONLY_TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Whether clients must show a certificate (Python's `ssl.CERT_*`, which
/// BentoML's `cert_reqs` holds as 0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (`CERT_NONE`, 0).
    None,
    /// One is asked for and checked if given (`CERT_OPTIONAL`, 1).
    Optional,
    /// A connection without a valid one fails its handshake (`CERT_REQUIRED`, 2).
    Required,
}

/// The application protocols a door offers by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 and HTTP/1.1.
    Http,
    /// HTTP/2 only (gRPC).
    Grpc,
    /// HTTP/1.1 only (a web configuration file with `http2: false`).
    Http1,
}

/// Everything a TLS front door is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (server certificate first).
    pub cert: Named,
    /// Its private key.
    pub key: Named,
    /// The password of an encrypted key.
    pub password: Option<String>,
    /// CA certificates that client certificates are checked against.
    pub ca: Option<Named>,
    /// Whether client certificates are asked for.
    pub client_auth: ClientAuth,
    /// What the door speaks.
    pub alpn: Alpn,
    /// Offer TLS 1.3 only (a web configuration file's `min_version: TLS13`).
    pub only_tls13: bool,
}

impl TlsFiles {
    /// The files this configuration reads, to watch for changes.
    pub fn paths(&self) -> Vec<&std::path::Path> {
        let mut paths = vec![self.cert.path.as_path(), self.key.path.as_path()];
        if let Some(ca) = &self.ca {
            paths.push(ca.path.as_path());
        }
        paths
    }

    /// Reads the files and builds the server config, with the identity it
    /// serves (for its validity dates).
    pub fn build(&self) -> Result<(Arc<ServerConfig>, Identity), TlsError> {
        let identity = Identity::load(&self.cert, &self.key, self.password.as_deref())?;
        let builder = ServerConfig::builder_with_provider(crate::provider())
            .with_protocol_versions(if self.only_tls13 {
                ONLY_TLS13
            } else {
                TLS12_AND_13
            })
            .map_err(|cause| TlsError::Rustls {
                context: "TLS protocol versions".into(),
                cause,
            })?;
        let builder = match (self.client_auth, &self.ca) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(TlsError::Settings(
                    "client certificates are asked for (cert_reqs 1 or 2) but no CA bundle \
                     (ca_certs) says which to trust"
                        .into(),
                ));
            }
            (auth, Some(ca)) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)?),
                    crate::provider(),
                );
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|e| TlsError::Content {
                    file: ca.clone(),
                    reason: format!("cannot verify client certificates with it ({e})"),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(Fixed(Arc::clone(&identity.certified))));
        config.alpn_protocols = match self.alpn {
            Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Grpc => vec![b"h2".to_vec()],
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
        };
        Ok((Arc::new(config), identity))
    }
}

/// Serves one identity to every client, whatever name it asks for (as
/// Python's `ssl` does with one certfile).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
