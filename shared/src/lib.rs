//! Shared building blocks of tiffin: IPC frames and messages, the metrics
//! layer, and the service model.
//!
//! Nothing here knows about processes; the supervisor, API server and runner
//! worker crates build on these pieces.

#![warn(missing_docs)]

pub mod call;
pub mod control;
pub mod frame;
pub mod metrics;
pub mod proto;
pub mod service;

pub use service::{ApiError, Binary, Json, Runnable, Runner, RunnerError, Service, Text};
