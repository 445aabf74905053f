//! The benchmark's limit for TLS: bare hyper (scripts/bench.d/bin/bare_hyper.rs)
//! behind tokio-rustls, with the rustls version, crypto provider (ring) and
//! protocol versions (TLS 1.2 and 1.3) tiffin-tls uses. `scripts/bench`
//! section `tls` reports tiffin's HTTPS throughput and handshakes per second
//! against this, as bare_hyper is the limit for plain HTTP.
//! Built as the root package's example `bare_tls` (Cargo.toml).
//!
//! Usage: `bare_tls ADDR CERT_PEM KEY_PEM` (the key in PKCS#8, PKCS#1 or SEC1 PEM).

mod body;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// rustls's ring provider, as tiffin-tls builds it (`tiffin_tls::provider`).
/// rustls 0.23.48 deprecated it for lacking post-quantum key exchange, which
/// only its aws-lc-rs provider offers; the bench measures what tiffin ships.
#[allow(deprecated)]
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration: TLS 1.2 and 1.3 on ring, no client
/// certificates, ALPN `http/1.1` (this server speaks HTTP/1.1 only, as
/// bare_hyper does, and wrk offers no ALPN).
fn server_config(cert: &str, key: &str) -> Result<rustls::ServerConfig, BoxError> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(cert), Some(key)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: bare_tls ADDR CERT_PEM KEY_PEM".into());
    };
    let acceptor = TlsAcceptor::from(Arc::new(server_config(&cert, &key)?));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare tls listening on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A failed handshake costs only its own connection.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                Ok::<_, Infallible>(Response::new(Full::new(body::or_hello(req).await)))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
