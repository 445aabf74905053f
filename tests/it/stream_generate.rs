//! The built-in `text_generator` (builtins/src/generate.rs): `tiffin list`
//! offers it, `tiffin serve-http text_generator` answers `POST /generate`
//! with Server-Sent Events whose tokens are exactly what the training
//! script's own sampler drew for the same prompt and seed
//! (models/generate/samples.json, written by models/train_generate.py), a
//! paced stream reaches `curl -N` token by token while the model is still
//! producing (its `generated_tokens_total` counter says how far it is), and
//! a bad request is a 400 before any token.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// `tiffin serve-http text_generator` on a free port, one API server.
pub fn text_generator() -> Server {
    Launch::http(&["text_generator", "--api-workers", "1"]).start()
}

/// The data of each `data:` event of an SSE body, and whether the body
/// ended with `event: end`.
pub fn sse_tokens(body: &str) -> (Vec<String>, bool) {
    let mut tokens = Vec::new();
    let mut ended = false;
    for event in body.split("\n\n").filter(|e| !e.is_empty()) {
        if event.starts_with("event: end\n") {
            ended = true;
        } else if let Some(data) = event.strip_prefix("data: ") {
            assert!(!ended, "an item after the end: {body}");
            tokens.push(data.to_string());
        } else {
            panic!("an event that is neither a token nor the end: {event:?}");
        }
    }
    (tokens, ended)
}

#[test]
fn stream_generate_is_a_builtin_service_tiffin_lists() {
    let f = run_with_timeout(
        Command::new(tiffin_bin()).arg("list"),
        Duration::from_secs(10),
    );
    assert!(f.status.is_some_and(|s| s.success()), "{f:?}");
    assert!(f.stdout.lines().any(|l| l == "text_generator"), "{f:?}");
}

#[test]
fn stream_generate_answers_the_training_scripts_own_tokens_for_each_seed() {
    let server = text_generator();
    let samples: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/generate/samples.json"),
        )
        .expect("samples.json"),
    )
    .expect("samples.json is JSON");
    assert!(samples.len() >= 5);
    let mut total = 0;
    for sample in &samples {
        let body = serde_json::json!({
            "prompt": sample["prompt"],
            "max_tokens": sample["max_tokens"],
            "seed": sample["seed"],
        });
        let r = server.post("/generate", "application/json", body.to_string().as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        let (tokens, ended) = sse_tokens(&r.text());
        let expected: Vec<String> = serde_json::from_value(sample["tokens"].clone()).unwrap();
        assert_eq!(tokens, expected, "{sample}");
        assert!(ended, "no end event: {}", r.text());
        total += tokens.len();
    }
    // Each token was produced by the runner and written by the API server once.
    wait_metric(
        &server,
        "generated_tokens_total",
        &[],
        total as f64,
        "tokens the model produced",
    );
    wait_metric(
        &server,
        "tiffin_api_server_stream_items_total",
        &[("endpoint", "/generate")],
        total as f64,
        "tokens written to clients",
    );
}

#[test]
fn stream_generate_refuses_a_bad_request_before_any_token() {
    let server = text_generator();
    for (body, needle) in [
        (r#"{"max_tokens": 10000001}"#, "max_tokens is at most"),
        (r#"{"pace_ms": 10001}"#, "pace_ms is at most"),
        (r#"{"temperature": 1}"#, "unknown field"),
    ] {
        let r = server.post("/generate", "application/json", body.as_bytes());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let message = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // No body at all: every field has its default (50 tokens from a sentence start).
    let r = server.post("/generate", "application/json", b"{}");
    let (tokens, ended) = sse_tokens(&r.text());
    assert_eq!((tokens.len(), ended), (50, true));
    assert_eq!(metric(&server, "generated_tokens_total", &[]), 50.0);
}

#[test]
fn stream_generate_reaches_curl_token_by_token_while_the_model_produces() {
    let server = text_generator();
    // Three tokens, each after 1.5 s: when curl has the first, the model
    // has drawn one token and is waiting to draw the second.
    let body = r#"{"prompt": "An exception", "max_tokens": 3, "pace_ms": 1500, "seed": 7}"#;
    let lines = curl_lines(&server, "/generate", body, Blank::Keep);
    let (_, first) = next_item(&server, &lines, "first token");
    let produced_at_first = metric(&server, "generated_tokens_total", &[]);
    let rest: Vec<String> = rest_items(lines)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    // samples.json: "An exception", seed 7 starts "type ( usually".
    assert_eq!(first, "data: type");
    assert_eq!(rest, ["data: (", "data: usually", "event: end", "data: "]);
    assert_eq!(
        produced_at_first, 1.0,
        "the first token reached curl before the model drew the second"
    );
    assert_eq!(metric(&server, "generated_tokens_total", &[]), 3.0);
}
