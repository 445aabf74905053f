//! The aggregated metrics on a port of their own (`--metrics-port`, and the
//! only way to scrape a gRPC service), at `/` and `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use tiffin_metrics::Format;

use crate::SupervisorError;
use crate::own_metrics::SupervisorMetrics;
use crate::state::Shared;

/// Binds `host:port` and serves the aggregate there until the supervisor exits.
pub(crate) async fn serve(
    host: &str,
    port: u16,
    shared: Shared,
    own: Arc<SupervisorMetrics>,
) -> Result<(), SupervisorError> {
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
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                let own = own.clone();
                async move { Ok::<_, Infallible>(respond(&shared, &own, &req).await) }
            });
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
