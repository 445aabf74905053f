//! The integration tests: every file in this directory is one area, and each
//! of its tests launches the real binary (`CARGO_BIN_EXE_tiffin`) or the
//! real tools beside it (Prometheus, grpcio, BentoML's client, chromium,
//! podman). `common/` is the harness they share: processes with bounded
//! waits, free ports, HTTP, load and a Prometheus launcher.
//!
//! They are one test binary, not one per file: each binary links the whole
//! workspace (tract, OpenTelemetry, tonic, image), so thirty of them spent
//! most of CI's time in the linker. Run one area with
//! `cargo nextest run --test it grpc::` (or `cargo test --test it grpc::`).

mod common;

mod access_log;
mod auth;
mod autoscaling;
mod balance;
mod batching;
mod bentoml_client;
mod browser;
mod cancel;
mod chaos;
mod config_bounds;
mod container;
mod dashboard;
mod deploy;
mod digits;
mod docs;
mod drain_counts;
mod embedded;
mod examples;
mod foundation;
mod grpc;
mod hardening;
mod ipc;
mod kubernetes;
mod lifecycle;
mod memory;
mod metrics;
mod model_store;
mod oip;
mod onnx;
mod openapi;
mod prometheus_e2e;
mod python;
mod python_abi;
mod python_example;
mod python_package;
mod python_stream;
mod restart_backoff;
mod runtime_dir;
mod snapshots;
mod soak;
mod stream;
mod stream_backpressure;
mod stream_browser;
mod stream_generate;
mod stream_grpc;
mod stream_metrics;
mod tls;
mod tracing;
mod vader;
