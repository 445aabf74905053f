//! A streaming HTTP request is one request until its last item (issue 25,
//! docs/streaming.md): `bentoml_api_server_request_in_progress` holds and
//! `request_duration_seconds` runs until then, a stream that fails after
//! items counts as failed, `api_server.traffic.max_concurrency` counts it
//! until its end, silence past `api_server.traffic.stream_idle_timeout`
//! ends it with its error event and stops the model (and silence past the
//! keep-alive timeout does not close its connection), and a stream that
//! began before SIGTERM is drained whole. Read with `curl -N`; the service
//! is tests/fixtures/custom_service.rs, whose `words` model holds its last
//! word until the test releases it, so "before the end" is an order of
//! events, not a guess about timing.

use std::time::Instant;

use crate::common::*;

const LINES: &str = "/generate_lines";

fn requests(server: &Server, endpoint: &str, code: &str) -> f64 {
    let labels = [("endpoint", endpoint), ("http_response_code", code)];
    metric(server, "bentoml_api_server_request_total", &labels)
}

#[test]
fn an_http_stream_is_in_progress_until_its_last_item_and_its_duration_ends_there() {
    let server = custom_service("");
    let release = scratch_path("stream-metrics", "in-progress");
    let body = serde_json::json!({ "words": 3, "hold_last": release }).to_string();
    let lines = curl_lines(&server, LINES, &body, Blank::Skip);
    let (first_at, _) = next_item(&server, &lines, "the first line");
    next_item(&server, &lines, "the second line");
    // Items flowed, the model holds its last word: the request goes on.
    let endpoint = [("endpoint", LINES)];
    let in_progress = "bentoml_api_server_request_in_progress";
    wait_metric(
        &server,
        in_progress,
        &endpoint,
        1.0,
        "the stream, in progress",
    );
    assert_eq!(requests(&server, LINES, "200"), 0.0, "not finished yet");
    let released_at = Instant::now();
    std::fs::write(&release, b"go").unwrap();
    assert_eq!(rest_items(lines), ["\"w2\""]);
    let finished = [("endpoint", LINES), ("http_response_code", "200")];
    let total = "bentoml_api_server_request_total";
    wait_metric(&server, total, &finished, 1.0, "the finished stream");
    wait_metric(&server, in_progress, &endpoint, 0.0, "nothing in progress");
    // Its duration covers at least the wait for the release, which came
    // after its first item: it ended at the last item, not at the head.
    let duration = metric(
        &server,
        "bentoml_api_server_request_duration_seconds_sum",
        &endpoint,
    );
    let held = (released_at - first_at).as_secs_f64();
    assert!(duration >= held, "duration {duration} s < held {held} s");
}

#[test]
fn an_http_stream_that_fails_after_items_is_counted_as_failed() {
    let server = custom_service("");
    let lines = rest_items(curl_lines(
        &server,
        LINES,
        r#"{"words": 5, "fail_at": 2}"#,
        Blank::Skip,
    ));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[2].contains("the model failed at word 2"), "{lines:?}");
    let failed = [("endpoint", LINES), ("http_response_code", "500")];
    let total = "bentoml_api_server_request_total";
    wait_metric(&server, total, &failed, 1.0, "the failed stream");
    assert_eq!(requests(&server, LINES, "200"), 0.0);
}

#[test]
fn max_concurrency_counts_a_stream_until_its_last_item() {
    let server = custom_service("api_server.workers=1 api_server.traffic.max_concurrency=1");
    let release = scratch_path("stream-metrics", "concurrency");
    let body = serde_json::json!({ "words": 2, "hold_last": release }).to_string();
    let lines = curl_lines(&server, LINES, &body, Blank::Skip);
    next_item(&server, &lines, "the first line");
    // The stream's head went out; it still holds the only slot.
    let r = server.post("/double", "application/json", b"21");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("max_concurrency"), "{}", r.text());
    std::fs::write(&release, b"go").unwrap();
    assert_eq!(rest_items(lines), ["\"w1\""]);
    let total = "bentoml_api_server_request_total";
    let finished = [("endpoint", LINES), ("http_response_code", "200")];
    wait_metric(&server, total, &finished, 1.0, "the finished stream");
    let r = server.post("/double", "application/json", b"21");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_silent_http_stream_ends_with_an_error_event_and_stops_the_model() {
    // Silence longer than the keep-alive timeout is not an idle connection:
    // the error event comes, not a cut.
    let server = custom_service(
        "api_server.traffic.stream_idle_timeout=1 api_server.http.keepalive_timeout=0.25",
    );
    let release = scratch_path("stream-metrics", "idle");
    // Endless after the held word: once released, the model can only stop
    // by the cancel (it soon waits for credits nobody grants), never by
    // ending first. With the last word held, a cancel that reached a loaded
    // worker after the release let the stream finish (issue 29's loop, run 3
    // of e069ded).
    let body =
        serde_json::json!({ "words": 1_000_000, "hold_at": 2, "hold_last": release }).to_string();
    let lines = rest_items(curl_lines(&server, "/generate", &body, Blank::Skip));
    assert_eq!(lines[..2], ["data: w0", "data: w1"], "{lines:?}");
    assert_eq!(lines[2], "event: error", "{lines:?}");
    assert!(
        lines[3].contains("api_server.traffic.stream_idle_timeout"),
        "{lines:?}"
    );
    // The model, stuck in word 2, stops once it returns from it.
    std::fs::write(&release, b"go").unwrap();
    wait_cancelled_calls(&server, "lm", 1.0, "the silent stream, cancelled");
    let timed_out = [("endpoint", "/generate"), ("http_response_code", "504")];
    let total = "bentoml_api_server_request_total";
    wait_metric(
        &server,
        total,
        &timed_out,
        1.0,
        "the silent stream's request",
    );
}

#[test]
fn a_stream_started_before_sigterm_receives_all_its_items_and_its_end_event() {
    let server = custom_service("api_server.workers=1");
    let release = scratch_path("stream-metrics", "drain");
    let body = serde_json::json!({ "words": 3, "hold_last": release }).to_string();
    let lines = curl_lines(&server, "/generate", &body, Blank::Skip);
    next_item(&server, &lines, "the first event");
    next_item(&server, &lines, "the second event");
    send_signal(server.pid(), libc::SIGTERM);
    wait_log_line(&server, &["api_server", "draining: no longer accepting"]);
    std::fs::write(&release, b"go").unwrap();
    assert_eq!(rest_items(lines), ["data: w2", "event: end", "data: "]);
    wait_log_line(&server, &["api_server", "drained; exiting"]);
}
