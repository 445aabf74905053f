//! Launching `tiffin serve-grpc` and talking to it with tonic (used by
//! tests/it/grpc.rs, tracing.rs and prometheus_e2e.rs): a gRPC server has no
//! `/readyz` (wait on its health service), and its metrics are served on a
//! port of their own, which must not clash between tests running in
//! parallel.

use std::time::{Duration, Instant};

use tiffin_api_server::grpc::proto::{Request, request};
use tiffin_api_server::prost_types::{self, value::Kind};
use tiffin_api_server::tonic::{self, transport::Channel};
use tiffin_api_server::tonic_health::pb::health_check_response::ServingStatus;
use tiffin_api_server::tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::host::free_port;
use super::server::{Launch, Server};

/// `tiffin serve-grpc <args>` on a free port (the harness appends `--host
/// 127.0.0.1 --port 0`) with colourless logs, and `--metrics-port` on a free
/// port unless `args` name one (the default, 3001, would clash between tests
/// running in parallel). It does not wait for readiness: a gRPC port has no
/// `/readyz`; wait on the gRPC health service instead.
pub fn launch_grpc(args: &[&str]) -> Launch {
    let mut launch = launch_grpc_bare(args);
    if !args.contains(&"--metrics-port") {
        launch.args.push("--metrics-port".to_string());
        launch.args.push(free_port().to_string());
    }
    launch
}

/// [`launch_grpc`] without the free `--metrics-port`: the metrics port then
/// comes from the configuration (`api_server.grpc.metrics.port`).
pub fn launch_grpc_bare(args: &[&str]) -> Launch {
    Launch::subcommand("serve-grpc", args).no_wait()
}

/// A runtime for a test's tonic client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A channel to `addr`, every wait bounded.
pub async fn channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// The health status of `service` (`""`: the whole server).
pub async fn health(ch: &Channel, service: &str) -> Result<i32, tonic::Status> {
    HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// Waits until the health service reports SERVING for the whole server.
pub async fn wait_serving(server: &Server, ch: &Channel) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if health(ch, "").await.ok() == Some(ServingStatus::Serving as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never SERVING; log:\n{}", server.log());
}

/// A `Call` of `api` with text content.
pub fn text_request(api: &str, text: &str) -> Request {
    Request {
        api_name: api.to_string(),
        content: Some(request::Content::Text(text.to_string())),
    }
}

/// A `Call` of `api` with JSON content.
pub fn json_request(api: &str, kind: Kind) -> Request {
    Request {
        api_name: api.to_string(),
        content: Some(request::Content::Json(prost_types::Value {
            kind: Some(kind),
        })),
    }
}

/// `req` as a tonic request, for adding metadata.
pub fn tonic_request(req: Request) -> tonic::Request<Request> {
    tonic::Request::new(req)
}
