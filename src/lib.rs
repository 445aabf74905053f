//! tiffin: BentoML-style model serving with first-class Prometheus metrics.
//!
//! A service is a [`Service`]: named [`Runner`]s, each loading a
//! [`Runnable`] (the model, as a table of methods) in its own worker
//! processes, and APIs whose handlers call the runners through typed
//! [`Method`] handles. Hand it to [`main`] and the binary understands
//! `serve-http`, `serve-grpc`, `status`, `scale` and `list`, re-executing
//! itself for every worker process.
//!
//! ```no_run
//! use serde_json::json;
//! use tiffin::metrics::Counter;
//! use tiffin::{Json, Runnable, Runner, Service, Text};
//!
//! static POLARITY: Counter = Counter::lazy("polarity_total", "Analyses by polarity", &["polarity"]);
//!
//! fn service() -> Service {
//!     let model = Runner::new("sentiment", || {
//!         Runnable::new().method("is_positive", |text: String| text.contains("love"))
//!     });
//!     let is_positive = model.method::<String, bool>("is_positive");
//!     Service::new("sentiment_analyzer").runner(&model).api(
//!         "analysis",
//!         Text,
//!         Json,
//!         move |text: String| {
//!             let call = is_positive.call(text);
//!             async move {
//!                 let positive = call.await?;
//!                 POLARITY.with(&[("polarity", if positive { "True" } else { "False" })]).inc();
//!                 Ok(json!({ "is_positive": positive }))
//!             }
//!         },
//!     )
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     tiffin::main(service())
//! }
//! ```
//!
//! `examples/` teaches one idea a file; `docs/bentoml.md` maps each to its
//! BentoML Python. A service crate depends on `tiffin` with
//! `default-features = false`: the default feature `binary` is what the
//! `tiffin` binary itself links (its built-in services and jemalloc).

mod cli;
mod models;
mod python;

#[doc(hidden)]
pub use cli::run_worker;
#[doc(hidden)]
pub use tiffin_ipc::runtime::EFFECTIVE_CONFIG_ENV;
#[doc(hidden)]
pub use tiffin_supervisor::spawn::WorkerCommand;

/// Custom metrics (`static X: Counter = Counter::lazy(..)`, like `bentoml.metrics`).
pub use tiffin_metrics as metrics;
/// serde, for the types a service decodes with [`JsonOf`] (no dependency of its own needed).
pub use tiffin_service::serde;
pub use tiffin_service::{
    ApiError, Binary, Cancellation, Cancelled, File, FileInput, Image, Json, JsonOf, Method,
    NdArray, NumpyNdarray, Runnable, Runner, RunnerError, Service, StreamFormat, Text,
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

/// The Rust snippets of the README and of the docs pages a user copies from,
/// compiled (and, unless marked `no_run`, run) as doctests, so they cannot
/// drift from the API.
#[cfg(doctest)]
pub mod snippets {
    #[doc = include_str!("../README.md")]
    pub struct Readme;
    #[doc = include_str!("../docs/bentoml.md")]
    pub struct BentomlMapping;
    #[doc = include_str!("../docs/metrics.md")]
    pub struct Metrics;
}
