//! tiffin: BentoML-style model serving with first-class Prometheus metrics.
//!
//! Write a [`Service`] (runners + APIs) and hand it to [`main`]; the binary
//! then understands `serve-http`, `serve-grpc`, `status`, `scale` and `list`, and re-executes itself
//! for every worker process. See `examples/` for a complete service.

mod cli;
mod models;
pub mod services;

/// Custom metrics (`tiffin::metrics::Counter::new(..)`, like `bentoml.metrics`).
pub use tiffin_metrics as metrics;
/// serde, for the types a service decodes with [`JsonOf`] (no dependency of its own needed).
pub use tiffin_service::serde;
pub use tiffin_service::{
    ApiError, Binary, Json, JsonOf, Runnable, Runner, RunnerError, Service, Text,
};

use std::process::ExitCode;

/// Runs the tiffin command line for one user-defined service.
pub fn main(service: Service) -> ExitCode {
    cli::main(vec![service])
}

/// Runs the tiffin command line offering several services, the first being the default.
pub fn main_with(services: Vec<Service>) -> ExitCode {
    cli::main(services)
}
