//! Adaptive batching end to end, with the built-in `iris_classifier`: the
//! real binary, real HTTP clients, the aggregated `/metrics`.

use crate::common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use serde_json::{Value, json};
use tiffin_builtins::iris::{self, IrisModel};

const SERVICE: (&str, &str) = ("service_name", "iris_classifier");

fn classify(server: &Server, body: &Value) -> Response {
    server.post("/classify", "application/json", body.to_string().as_bytes())
}

/// `/classify` calls that the API server answered with `code`, per `expo`.
fn classify_calls(expo: &Exposition, code: &str) -> f64 {
    expo.sum(
        "bentoml_api_server_request_total",
        &[
            SERVICE,
            ("endpoint", "/classify"),
            ("http_response_code", code),
        ],
    )
}

/// The built-in `iris_classifier` with `TIFFIN_CONFIG_OPTIONS=options`.
fn iris_with(options: &str) -> Server {
    Launch::http(&["iris_classifier"])
        .env("TIFFIN_CONFIG_OPTIONS", options)
        .start()
}

#[test]
fn iris_classifier_is_accurate_over_http_and_rejects_bad_shapes() {
    let server = Launch::http(&["iris_classifier"]).start();

    let r = classify(&server, &json!([5.1, 3.5, 1.4, 0.2]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!(["setosa"]));

    // Every shipped row in one request: one answer per row, in order.
    let (rows, labels) = iris::dataset().unwrap();
    let r = classify(&server, &json!(rows));
    assert_eq!(r.status, 200, "{}", r.text());
    let got: Vec<String> = serde_json::from_value(r.json()).unwrap();
    assert_eq!(got.len(), 150);
    let correct = got
        .iter()
        .zip(&labels)
        .filter(|(g, l)| g.as_str() == iris::CLASSES[**l])
        .count();
    assert!(correct as f64 / 150.0 >= 0.95, "{correct}/150 correct");

    let bad = |body: &str, needles: &[&str]| {
        let r = server.post("/classify", "application/json", body.as_bytes());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        for n in needles {
            assert!(msg.contains(n), "{body}: {msg:?} lacks {n:?}");
        }
    };
    bad(
        "[[5.1,3.5,1.4,0.2],[6.0,2.2,5.0]]",
        &["row 1", "expected 4 features", "got 3"],
    );
    bad(
        r#"[[5.1,3.5,1.4,0.2],[6.0,"wide",5.0,1.5]]"#,
        &[
            "row 1, feature 1 (sepal_width)",
            "expected a number",
            "string",
        ],
    );
    bad("[5.1,3.5,1.4]", &["expected 4 features", "got 3"]);
    bad(
        r#"{"rows": 1}"#,
        &["expected a row of 4 numbers or a list of rows"],
    );
    bad("[]", &["empty"]);
    bad("[[5.1,3.5", &["not valid JSON"]);

    let text = server.metrics();
    let bad_requests = classify_calls(&parse_exposition(&text), "400");
    assert_eq!(bad_requests, 6.0, "{text}");
}

/// `clients` threads each send `requests` requests of 1 to 3 rows, different
/// for every client and request, and check every answer against the model.
fn classify_concurrently(server: &Server, clients: usize, requests: usize) {
    let (rows, _) = iris::dataset().unwrap();
    let model = IrisModel::from_shipped_data().unwrap();
    concurrent_clients(clients, requests, |c, i| {
        let n = 1 + (c + i) % 3;
        let mine: Vec<iris::Row> = (0..n)
            .map(|k| rows[(c * 37 + i * 11 + k * 53) % rows.len()])
            .collect();
        let want: Vec<&str> = mine
            .iter()
            .map(|r| iris::CLASSES[model.predict_one(r)])
            .collect();
        let r = classify(server, &json!(mine));
        assert_eq!(r.status, 200, "client {c} request {i}: {}", r.text());
        assert_eq!(r.json(), json!(want), "client {c} request {i}");
    });
}

#[test]
fn thirty_two_concurrent_clients_are_batched_and_answered_correctly() {
    let server = Launch::http(&["iris_classifier"]).start();
    const CLIENTS: usize = 32;
    const REQUESTS: usize = 40;
    let started = Instant::now();
    classify_concurrently(&server, CLIENTS, REQUESTS);
    let elapsed = started.elapsed();

    let text = server.metrics();
    let expo = parse_exposition(&text);
    let labels = [
        SERVICE,
        ("runner_name", "iris_clf"),
        ("method_name", "predict"),
    ];
    let sum = expo.sum("bentoml_runner_adaptive_batch_size_sum", &labels);
    let count = expo.sum("bentoml_runner_adaptive_batch_size_count", &labels);
    let calls = (CLIENTS * REQUESTS) as f64;
    eprintln!(
        "{calls} calls in {elapsed:?}: {count} batches, mean batch size {:.2}",
        sum / count
    );
    // Every call went through exactly one dispatched batch.
    assert_eq!(sum, calls, "{text}");
    assert!(count > 0.0 && count < calls, "{text}");
    assert!(sum / count > 1.5, "mean batch size {} <= 1.5", sum / count);
    let ok = classify_calls(&expo, "200");
    assert_eq!(ok, calls);
}

#[test]
fn calls_that_cannot_meet_max_latency_get_a_fast_503() {
    // A 1 ms budget, and a client sending huge requests (a batch of them takes
    // far longer than 1 ms) while small ones keep coming: the small calls
    // queued behind a huge batch cannot meet the budget and are refused.
    let server = Arc::new(iris_with("runners.batching.max_latency_ms=1"));
    let (rows, _) = iris::dataset().unwrap();
    let huge: Vec<iris::Row> = rows.iter().cycle().take(150 * 400).copied().collect();
    let huge = json!(huge).to_string();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let big = {
        let (server, done) = (server.clone(), done.clone());
        std::thread::spawn(move || {
            for _ in 0..4 {
                let r = server.post("/classify", "application/json", huge.as_bytes());
                assert!(matches!(r.status, 200 | 503), "{}", r.text());
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let small: Vec<_> = (0..8)
        .map(|_| {
            let (server, done) = (server.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rejected = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = classify(&server, &json!([6.3, 3.3, 6.0, 2.5]));
                    match r.status {
                        200 => assert_eq!(r.json(), json!(["virginica"])),
                        503 => rejected.push(r.json()["error"].as_str().unwrap().to_string()),
                        s => panic!("{s}: {}", r.text()),
                    }
                }
                rejected
            })
        })
        .collect();
    big.join().expect("big client");
    let rejected: Vec<String> = small
        .into_iter()
        .flat_map(|t| t.join().expect("small client"))
        .collect();
    eprintln!("{} small calls refused with 503", rejected.len());
    assert!(!rejected.is_empty(), "no call was refused");
    assert!(
        rejected
            .iter()
            .all(|m| m.contains("overloaded") && m.contains("max_latency_ms=1")),
        "{rejected:?}"
    );

    // The server answers again once the load is gone (a lone call is only
    // refused if it has already waited past the 1 ms budget in the worker, so
    // allow a few tries on a busy test machine).
    let recovered = (0..50).any(|_| {
        let r = classify(&server, &json!([5.1, 3.5, 1.4, 0.2]));
        assert!(matches!(r.status, 200 | 503), "{}", r.text());
        r.status == 200
    });
    assert!(recovered, "still refusing calls after the load stopped");

    let refused = classify_calls(&parse_exposition(&server.metrics()), "503");
    assert!(
        refused >= rejected.len() as f64,
        "{refused} vs {}",
        rejected.len()
    );
}

#[test]
fn a_dense_model_is_batched_into_matrix_products_with_every_answer_unchanged() {
    // tests/fixtures/embedding_service.rs: batches of 6 or more rows take the
    // blocked matrix product, smaller ones the row loop. Answers computed one
    // request at a time (batches of 1) are the reference for the batched run.
    let server = Launch::http(&[])
        .bin(example_bin("embedding_service"))
        .start();
    const CLIENTS: usize = 32;
    const REQUESTS: usize = 3;
    let text = |c: usize, i: usize| format!("client {c} asks question {i} about {}", c * 31 + i);
    let embed = |server: &Server, body: &str| -> Vec<f64> {
        let r = server.post_text("/embed", body);
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        serde_json::from_value(r.json()["embedding"].clone()).expect("an embedding")
    };
    let alone: Vec<Vec<Vec<f64>>> = (0..CLIENTS)
        .map(|c| (0..REQUESTS).map(|i| embed(&server, &text(c, i))).collect())
        .collect();
    let before = server.metrics();
    let labels = [
        ("service_name", "text_embedder"),
        ("runner_name", "embedder"),
        ("method_name", "embed"),
    ];
    let lone_batches =
        parse_exposition(&before).sum("bentoml_runner_adaptive_batch_size_count", &labels);
    assert_eq!(lone_batches, (CLIENTS * REQUESTS) as f64, "{before}");

    concurrent_clients(CLIENTS, REQUESTS, |c, i| {
        let got = embed(&server, &text(c, i));
        let want = &alone[c][i];
        assert_eq!(got.len(), want.len());
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-5, "client {c} request {i}: off by {diff}");
    });

    let after = server.metrics();
    let (then, now) = (parse_exposition(&before), parse_exposition(&after));
    let delta = |name: &str, extra: &[(&str, &str)]| {
        let l: Vec<(&str, &str)> = labels.iter().chain(extra).copied().collect();
        now.sum(name, &l) - then.sum(name, &l)
    };
    let sum = delta("bentoml_runner_adaptive_batch_size_sum", &[]);
    let count = delta("bentoml_runner_adaptive_batch_size_count", &[]);
    let up_to_4 = delta(
        "bentoml_runner_adaptive_batch_size_bucket",
        &[("le", "4.0")],
    );
    eprintln!(
        "{sum} concurrent calls in {count} batches (mean {:.2}), {} of them of 5 or more",
        sum / count,
        count - up_to_4
    );
    assert_eq!(sum, (CLIENTS * REQUESTS) as f64, "{after}");
    assert!(sum / count > 1.5, "mean batch size {}", sum / count);
    // Batches of 6+ went through the matrix product at least once (>4 is
    // the closest bucket bound).
    assert!(count - up_to_4 >= 1.0, "no batch above 4: {after}");
}

#[test]
fn per_runner_batching_settings_override_the_shared_ones() {
    let labels = [
        SERVICE,
        ("runner_name", "iris_clf"),
        ("method_name", "predict"),
    ];
    // Batching off for iris_clf alone: every call runs on its own, no batch is observed.
    let server =
        iris_with("runners.batching.max_batch_size=50 runners.iris_clf.batching.enabled=false");
    classify_concurrently(&server, 16, 20);
    let text = server.metrics();
    let expo = parse_exposition(&text);
    let batches = expo.sum("bentoml_runner_adaptive_batch_size_count", &labels);
    assert_eq!(batches, 0.0, "{text}");
    let calls = expo.sum(
        "bentoml_runner_request_total",
        &[
            SERVICE,
            ("runner_name", "iris_clf"),
            ("http_response_code", "200"),
        ],
    );
    assert_eq!(calls, 320.0, "{text}");

    // A smaller max_batch_size for iris_clf caps every batch, and the
    // histogram's buckets end at that size.
    let server =
        iris_with("runners.batching.max_batch_size=50 runners.iris_clf.batching.max_batch_size=2");
    classify_concurrently(&server, 16, 20);
    let text = server.metrics();
    let expo = parse_exposition(&text);
    let count = expo.sum("bentoml_runner_adaptive_batch_size_count", &labels);
    let sum = expo.sum("bentoml_runner_adaptive_batch_size_sum", &labels);
    let le = |bound: &str| {
        let l: Vec<(&str, &str)> = labels.iter().copied().chain([("le", bound)]).collect();
        expo.sum("bentoml_runner_adaptive_batch_size_bucket", &l)
    };
    assert_eq!(sum, 320.0, "{text}");
    assert_eq!(le("2.0"), count, "a batch above 2: {text}");
    assert!(le("1.0") < count, "no batch of 2: {text}");
}
