//! Adaptive batching: callers send one input each; the runner's method gets
//! many at once, as BentoML's `@bentoml.Runnable.method(batchable=True)`.
//!
//! ```sh
//! TIFFIN_CONFIG_OPTIONS="runners.batching.max_batch_size=32 runners.batching.max_latency_ms=20" \
//!     cargo run --example batching -- serve-http --port 3000
//! curl -H 'content-type: application/json' -d '[1.0, 2.0, 3.0]' localhost:3000/norm
//! curl -s localhost:3000/metrics | grep bentoml_runner_adaptive_batch_size
//! ```
//!
//! The worker's dispatcher groups concurrent calls into one call of the
//! method, within `max_batch_size` and the `max_latency_ms` budget; a call
//! that cannot meet the budget is refused with 503 rather than queued
//! forever. Each batch's size is observed in
//! `bentoml_runner_adaptive_batch_size`.

use std::process::ExitCode;

use serde_json::json;
use tiffin::{ApiError, Json, Runnable, Runner, Service};

/// One vector's Euclidean norm.
fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn load() -> Runnable {
    // The batch is a `Vec` of the callers' inputs (batch dimension 0); the
    // answer must hold one output per input, in order. A real model would
    // stack them into one matrix and run it once.
    Runnable::new().batch_method("norm", |vectors: Vec<Vec<f64>>| {
        vectors.iter().map(|v| norm(v)).collect::<Vec<f64>>()
    })
}

fn service() -> Service {
    let linalg = Runner::new("linalg", load);
    let norm = linalg.method::<Vec<f64>, f64>("norm");
    Service::new("batching").runner(&linalg).api(
        "norm",
        Json,
        Json,
        move |body: serde_json::Value| {
            let call = serde_json::from_value::<Vec<f64>>(body)
                .map_err(|e| ApiError::bad_request(format!("expected a list of numbers: {e}")))
                .map(|v| norm.call(v));
            async move { Ok(json!({ "norm": call?.await? })) }
        },
    )
}

fn main() -> ExitCode {
    tiffin::main(service())
}
