//! Custom metrics, as in BentoML's metrics guide: a histogram observed in the
//! runner and a counter incremented in the API (`docs/bentoml.md` shows the
//! Python beside it).
//!
//! ```sh
//! cargo run --example custom_metrics -- serve-http --port 3000
//! curl -d 'I love this product!' localhost:3000/analysis
//! curl -s localhost:3000/metrics | grep -E '^(polarity_total|inference_duration)'
//! ```
//!
//! Metrics are plain statics, defined in each process's registry at first
//! use. Every process keeps its own values; one scrape of `/metrics` merges
//! them all, as BentoML's multiprocess mode does.

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use tiffin::metrics::{Counter, DEFAULT_DURATION_BUCKETS, Histogram};
use tiffin::{Json, Runnable, Runner, Service, Text};

static INFERENCE_DURATION: Histogram = Histogram::lazy(
    "inference_duration",
    "Duration of inference",
    &["nltk_version", "sentiment_cls"],
    &DEFAULT_DURATION_BUCKETS,
);

static POLARITY: Counter = Counter::lazy(
    "polarity_total",
    "Count total number of analysis by polarity scores",
    &["polarity"],
);

/// A stand-in for NLTK's VADER: positive when it says something nice.
fn is_positive(text: &str) -> bool {
    let text = text.to_lowercase();
    ["love", "great", "good"].iter().any(|w| text.contains(w))
}

fn load() -> Runnable {
    Runnable::new().method("is_positive", |text: String| {
        let start = Instant::now();
        let positive = is_positive(&text);
        // Observed in the runner worker: labels by name, as prometheus_client's.
        INFERENCE_DURATION
            .with(&[("nltk_version", "3.8"), ("sentiment_cls", "Keywords")])
            .observe(start.elapsed().as_secs_f64());
        positive
    })
}

fn service() -> Service {
    let nltk = Runner::new("nltk_sentiment", load);
    let is_positive = nltk.method::<String, bool>("is_positive");
    Service::new("sentiment_analyzer").runner(&nltk).api(
        "analysis",
        Text,
        Json,
        move |text: String| {
            let call = is_positive.call(text);
            async move {
                let positive = call.await?;
                // `try_with` fails the request (500) if the metric is misdefined;
                // `with` would record nothing and log once instead.
                POLARITY
                    .try_with(&[("polarity", if positive { "True" } else { "False" })])?
                    .inc();
                Ok(json!({ "is_positive": positive }))
            }
        },
    )
}

fn main() -> ExitCode {
    tiffin::main(service())
}
