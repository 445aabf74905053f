//! The aggregated metrics on a port of their own (`--metrics-port`, and the
//! only way to scrape a gRPC service), at `/` and `/metrics`.
//!
//! With Prometheus's web configuration file (`--web.config.file`,
//! `tiffin_tls::web_config`), the port serves TLS from its
//! `tls_server_config` (reloaded when the files change or on SIGHUP, as the
//! API port's are) and asks for its `basic_auth_users`: a Prometheus
//! `scrape_config` with `scheme: https`, `tls_config` and `basic_auth`
//! works unchanged.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use tiffin_metrics::Format;
use tiffin_tls::reload::Reload;
use tiffin_tls::{BasicAuth, Reloading, TlsConn, WebConfig};
use tokio_util::either::Either;

use crate::SupervisorError;
use crate::own_metrics::SupervisorMetrics;
use crate::state::Shared;

/// Binds `host:port` and serves the aggregate there until the supervisor
/// exits, with the TLS and users of `web` (the web configuration file).
pub(crate) async fn serve(
    host: &str,
    port: u16,
    shared: Shared,
    own: Arc<SupervisorMetrics>,
    web: WebConfig,
) -> Result<(), SupervisorError> {
    let tls = match web.tls {
        Some(files) => {
            let reloading = Arc::new(Reloading::load(files)?);
            // Lives as long as the supervisor, as the port does.
            let _watch = reloading
                .watch(|outcome| match outcome {
                    Reload::Unchanged => {}
                    Reload::Loaded(_) => tracing::info!("metrics port: reloaded the TLS certificate"),
                    Reload::Failed(e) => tracing::warn!(error = %e, "metrics port: the new TLS files cannot be used; still serving the previous certificate"),
                })
                .map_err(SupervisorError::io("cannot watch SIGHUP"))?;
            Some(reloading)
        }
        None => None,
    };
    let users = web.basic_auth;
    let addr = format!("{host}:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(SupervisorError::bind(
            &addr,
            " (the metrics port is already in use)",
        ))?;
    tracing::info!(%addr, "serving aggregated metrics");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            let own = own.clone();
            let users = users.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                let own = own.clone();
                let users = users.clone();
                async move {
                    if !allowed(users, &req).await {
                        return Ok::<_, Infallible>(unauthorized());
                    }
                    Ok::<_, Infallible>(respond(&shared, &own, &req).await)
                }
            });
            let stream = match &tls {
                Some(tls) => Either::Right(TlsConn::new(stream, tls.current())),
                None => Either::Left(stream),
            };
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

/// Whether `req` may scrape: always without users, else when its basic
/// auth names one (bcrypt runs off the supervisor's only thread).
async fn allowed(users: Option<Arc<BasicAuth>>, req: &Request<hyper::body::Incoming>) -> bool {
    let Some(users) = users else {
        return true;
    };
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    users.allows_off_thread(header).await
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(
        b"{\"error\":\"unauthorized: this metrics endpoint asks for a user of its web configuration file\"}",
    )));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(tiffin_tls::web_config::BASIC_CHALLENGE),
    );
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn respond(
    shared: &Shared,
    own: &Arc<SupervisorMetrics>,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/" && req.uri().path() != "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"{\"error\":\"not found; metrics are at /\"}",
        )));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    let body = crate::scrape::aggregate(shared, own, format).await;
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}
