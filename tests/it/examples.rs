//! The teaching examples (`examples/`) run as their comments say: each is
//! launched as a real binary, called over HTTP, and its metrics read from
//! the aggregated `/metrics`, so a page of `docs/bentoml.md` cannot show a
//! program that does not work.

use std::time::Duration;

use crate::common;

use common::*;

fn serve(example: &str) -> Server {
    Launch::http(&[]).bin(example_bin(example)).start()
}

/// Waits until the scrape's `name` samples with `labels` sum to `want`.
fn metric_reaches(server: &Server, name: &str, labels: &[(&str, &str)], want: f64) -> f64 {
    let mut got = f64::NAN;
    eventually(Duration::from_secs(15), || {
        got = parse_exposition(&server.metrics()).sum(name, labels);
        got == want
    });
    got
}

#[test]
fn first_service_answers_through_its_runner() {
    let server = serve("first_service");
    let r = server.post_text("/shout", "hello");
    assert_eq!((r.status, r.text()), (200, "HELLO!".to_string()));
    let served = metric_reaches(
        &server,
        "bentoml_runner_request_total",
        &[("runner_name", "shouter"), ("http_response_code", "200")],
        1.0,
    );
    assert_eq!(served, 1.0);
}

#[test]
fn custom_metrics_are_recorded_in_the_runner_and_the_api_server() {
    let server = serve("custom_metrics");
    for (text, positive) in [
        ("I love this product!", true),
        ("It broke.", false),
        ("Great value", true),
    ] {
        let r = server.post_text("/analysis", text);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["is_positive"], positive, "{text}");
    }
    // Counted in the API server, by name, as BentoML's guide does.
    assert_eq!(
        metric_reaches(&server, "polarity_total", &[("polarity", "True")], 2.0),
        2.0
    );
    assert_eq!(
        metric_reaches(&server, "polarity_total", &[("polarity", "False")], 1.0),
        1.0
    );
    // Observed in the runner worker, with both named labels.
    assert_eq!(
        metric_reaches(
            &server,
            "inference_duration_count",
            &[("nltk_version", "3.8"), ("sentiment_cls", "Keywords")],
            3.0
        ),
        3.0
    );
}

#[test]
fn batching_answers_every_caller_and_counts_every_input_in_a_batch() {
    let server = serve("batching");
    let addr = server.addr.clone();
    let answers: Vec<(usize, Response)> = std::thread::scope(|s| {
        let calls: Vec<_> = (1..=24usize)
            .map(|n| {
                let addr = addr.clone();
                s.spawn(move || {
                    let body = serde_json::to_vec(&vec![n as f64; 4]).unwrap_or_default();
                    let r = http(
                        &addr,
                        "POST",
                        "/norm",
                        &[("content-type", "application/json")],
                        &body,
                    );
                    (n, r.expect("the example answers"))
                })
            })
            .collect();
        calls.into_iter().filter_map(|c| c.join().ok()).collect()
    });
    assert_eq!(answers.len(), 24);
    for (n, r) in answers {
        assert_eq!(r.status, 200, "{}", r.text());
        // |(n, n, n, n)| = 2n exactly in floating point.
        assert_eq!(r.json()["norm"], serde_json::json!(2.0 * n as f64));
    }
    let bad = server.post("/norm", "application/json", b"[1, \"x\"]");
    assert_eq!(bad.status, 400, "{}", bad.text());
    // Every input went through the batched method once, whatever the batches were.
    assert_eq!(
        metric_reaches(
            &server,
            "bentoml_runner_adaptive_batch_size_sum",
            &[("runner_name", "linalg"), ("method_name", "norm")],
            24.0
        ),
        24.0
    );
}

#[test]
fn multi_runner_chains_two_runners_and_a_model_error_is_a_500() {
    let server = serve("multi_runner");
    let r = server.post_text("/score", "The quick brown fox");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({ "tokens": 4, "mean_token_length": 4.0 })
    );
    let empty = server.post_text("/score", "   ");
    assert_eq!(empty.status, 500, "{}", empty.text());
    assert!(
        empty.text().contains("nothing to score"),
        "{}",
        empty.text()
    );
    for runner in ["tokenizer", "scorer"] {
        let calls = metric_reaches(
            &server,
            "bentoml_runner_request_total",
            &[("runner_name", runner)],
            2.0,
        );
        assert_eq!(calls, 2.0, "{runner}");
    }
}
