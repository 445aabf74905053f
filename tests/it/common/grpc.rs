//! Launching `tiffin serve-grpc` (used by tests/it/grpc.rs and
//! tests/prometheus_e2e.rs): a gRPC server has no `/readyz`, and its metrics
//! are served on a port of their own, which must not clash between tests
//! running in parallel.

use super::host::free_port;
use super::server::Launch;

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
