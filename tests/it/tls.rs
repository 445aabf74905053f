//! Issue 27's TLS, shown with clients that are not ours: `curl` (HTTPS,
//! HTTP/2 by ALPN, mutual TLS, a wrong CA, an expired certificate, plaintext
//! to a TLS port), `openssl s_client` (the protocol versions offered), wrk
//! driving HTTPS load while the certificate rotates, Python's grpcio over
//! TLS, BentoML's own Python client over HTTPS, and a real Prometheus
//! scraping `--metrics-port` through a `--web.config.file` with
//! `tls_server_config` and `basic_auth_users`.
//!
//! The interface is the one /work/tls-spec.md fixed for issue 27 (BentoML's
//! `--ssl-*` flags and `api_server.ssl.*` keys; the exporter-toolkit's web
//! configuration file). Every certificate is made in the test by
//! tests/fixtures/tls/make_certs.sh with the `openssl` command.
//!
//! The harness's `Launch::start` waits for readiness over plain HTTP, which
//! a TLS port refuses; TLS servers start with `no_wait` and `door` waits
//! over HTTPS with curl.

mod door;
mod https;
mod pki;
mod python;
mod rotation;
mod scrape;
mod startup;
mod tools;
