//! A user-defined service in its own binary: the whole of what a user writes.
//!
//! Run it with `cargo run --example custom_service -- serve-http --port 3000`,
//! then `curl -d '21' -H 'content-type: application/json' localhost:3000/double`.
//! The `fail` API shows how a model error becomes HTTP 500, and `broken`
//! uses a runner whose model cannot load when `CUSTOM_BROKEN_RUNNER=1` is set
//! (the API then answers 503 while the supervisor keeps retrying the load).
//! `CUSTOM_SERIES=N` makes every `calc` worker hold N extra counter series.

use std::process::ExitCode;

use serde_json::{Value, json};
use tiffin::{ApiError, Json, Runnable, Runner, Service, Text};

fn service() -> Service {
    let calc = Runner::new("calc", || {
        // `scripts/bench` asks for many custom series per worker to time scrapes.
        let series: usize = std::env::var("CUSTOM_SERIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if series > 0
            && let Ok(counter) = tiffin::metrics::Counter::new(
                "custom_series_total",
                "Synthetic series for scrape benchmarks",
                &["series"],
            )
        {
            for i in 0..series {
                counter.labels(&[&i.to_string()]).inc();
            }
        }
        Runnable::new()
            .method("double", |x: f64| Ok::<_, String>(x * 2.0))
            .method("fail", |_: String| Err::<bool, _>("model exploded"))
            // A slow model, for drain and graceful-shutdown tests.
            .method("sleep_ms", |ms: u64| {
                std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
                Ok::<_, String>(ms)
            })
    });
    let flaky = Runner::try_new("flaky", || {
        if std::env::var("CUSTOM_BROKEN_RUNNER").is_ok_and(|v| v == "1") {
            return Err("weights file is corrupt".to_string());
        }
        Ok(Runnable::new().method("ping", |s: String| Ok::<_, String>(s)))
    });
    let (c1, c2, c3, f) = (calc.clone(), calc.clone(), calc.clone(), flaky.clone());
    Service::new("custom")
        .runner(&calc)
        .runner(&flaky)
        .api("double", Json, Json, move |v: Value| {
            let calc = c1.clone();
            async move {
                let x = v
                    .as_f64()
                    .ok_or_else(|| ApiError::bad_request("expected a JSON number"))?;
                let y: f64 = calc.call("double", x).await?;
                Ok(json!({ "result": y }))
            }
        })
        .api("fail", Text, Json, move |s: String| {
            let calc = c2.clone();
            async move { Ok(json!(calc.call::<_, bool>("fail", s).await?)) }
        })
        .api("slow", Json, Json, move |v: Value| {
            let calc = c3.clone();
            async move {
                let ms = v
                    .as_u64()
                    .ok_or_else(|| ApiError::bad_request("expected milliseconds"))?;
                Ok(json!({ "slept_ms": calc.call::<_, u64>("sleep_ms", ms).await? }))
            }
        })
        .api("broken", Text, Text, move |s: String| {
            let flaky = f.clone();
            async move { Ok(flaky.call::<_, String>("ping", s).await?) }
        })
}

fn main() -> ExitCode {
    tiffin::main(service())
}
