//! Streaming answers (issue 25, docs/streaming.md): a runner's stream method
//! reaches HTTP clients that are not ours item by item, as newline-delimited
//! JSON (`curl -N`) and as Server-Sent Events (Python's httpx with
//! httpx-sse, from the venv scripts/setup/25-stream makes); a stream that
//! fails after items says so in its last event; and a client that hangs up
//! stops the model, seen in `tiffin_runner_calls_cancelled_total` and the
//! worker's log line. The service is tests/fixtures/custom_service.rs
//! (`streams`): its `words` model can hold its last word until the test
//! releases it, so "the first items arrived before the end" is an order of
//! events, not a guess about timing.

use std::io::Read;
use std::net::TcpStream;
use std::time::Instant;

use crate::common::*;

#[test]
fn curl_reads_each_json_line_before_the_stream_ends() {
    let server = custom_service("");
    let release = scratch_path("stream", "curl");
    let body = serde_json::json!({ "words": 3, "pace_ms": 20, "hold_last": release }).to_string();
    let lines = curl_lines(&server, "/generate_lines", &body, Blank::Keep);
    let (first_at, first) = next_item(&server, &lines, "first line");
    let (second_at, second) = next_item(&server, &lines, "second line");
    // The model holds its last word until now: the lines above came first.
    let released_at = Instant::now();
    std::fs::write(&release, b"go").unwrap();
    let (last_at, last) = next_item(&server, &lines, "last line");
    assert!(
        lines.recv_timeout(EVENT_WITHIN).is_err(),
        "nothing after the last word"
    );
    let end_at = Instant::now();
    for (at, line) in [(first_at, &first), (second_at, &second), (last_at, &last)] {
        eprintln!(
            "{:>8.3} s before the end: {line}",
            (end_at - at).as_secs_f64()
        );
    }
    assert_eq!([first, second, last], ["\"w0\"", "\"w1\"", "\"w2\""]);
    assert!(first_at <= second_at && second_at < released_at && released_at < last_at);
    wait_items_sent(&server, "/generate_lines", 3.0);
    let labels = [("endpoint", "/generate_lines")];
    wait_metric(
        &server,
        "tiffin_api_server_time_to_first_item_seconds_count",
        &labels,
        1.0,
        "streams that sent a first item",
    );
    let runner = [
        ("runner_name", "lm"),
        ("endpoint", "/words"),
        ("http_response_code", "200"),
    ];
    wait_metric(
        &server,
        "bentoml_runner_request_total",
        &runner,
        1.0,
        "one finished stream",
    );
}

#[test]
fn curl_sees_a_stream_that_fails_after_items_end_with_an_error_line() {
    let server = custom_service("");
    let body = r#"{"words": 5, "fail_at": 2}"#;
    let lines: Vec<String> = rest_items(curl_lines(&server, "/generate_lines", body, Blank::Keep));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[..2], ["\"w0\"", "\"w1\""]);
    let error: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    let message = error["error"].as_str().unwrap_or_default();
    assert!(message.contains("the model failed at word 2"), "{message}");
    // Before any item, the error is the request's status.
    let r = server.post(
        "/generate_lines",
        "application/json",
        br#"{"words": 5, "fail_at": 0}"#,
    );
    assert_eq!(r.status, 500, "{}", r.text());
}

#[test]
fn httpx_sse_reads_each_word_as_an_event_then_an_end_or_error_event() {
    let server = custom_service("");
    let events = sse_events(&server, "/generate", r#"{"words": 3}"#);
    let expected: Vec<serde_json::Value> = vec![
        serde_json::json!({ "event": "message", "data": "w0" }),
        serde_json::json!({ "event": "message", "data": "w1" }),
        serde_json::json!({ "event": "message", "data": "w2" }),
        serde_json::json!({ "event": "end", "data": "" }),
        serde_json::json!({ "closed": true }),
    ];
    assert_eq!(events, expected);
    let events = sse_events(&server, "/generate", r#"{"words": 5, "fail_at": 1}"#);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0]["data"], "w0");
    assert_eq!(events[1]["event"], "error");
    let message = events[1]["data"].as_str().unwrap_or_default();
    assert!(message.contains("the model failed at word 1"), "{message}");
}

/// Posts an endless stream of events on a raw connection and reads until
/// `items` words arrived: the connection, and what it read.
fn endless_after(server: &Server, items: usize, request_id: &str) -> (TcpStream, String) {
    let body = r#"{"words": 1000000, "pace_ms": 2}"#;
    let mut conn = post_raw(server, "/generate", &[("x-request-id", request_id)], body);
    let seen = read_items(&mut conn, &["data: w"], items);
    (conn, seen)
}

/// Reads an endless stream until `items` words arrived, and hangs up.
fn hang_up_after(server: &Server, items: usize, request_id: &str) {
    let (conn, _) = endless_after(server, items, request_id);
    drop(conn);
}

/// Waits until the stream of `request_id` was cancelled (counted once, its
/// log line written, nothing left running) and returns the log line.
fn wait_stopped(server: &Server, request_id: &str) -> String {
    wait_cancelled_calls(server, "lm", 1.0, "the cancelled stream");
    let line = wait_log_line(server, &["stream cancelled by its caller", request_id]);
    let in_progress = [("runner_name", "lm")];
    let what = "no stream left running";
    wait_metric(
        server,
        "bentoml_runner_request_in_progress",
        &in_progress,
        0.0,
        what,
    );
    line
}

#[test]
fn a_client_that_hangs_up_mid_stream_stops_the_model() {
    let server = custom_service("");
    let (conn, _) = endless_after(&server, 3, "stream-hang-up-1");
    // The request goes on in its body: its access-log line waits for its end.
    assert_no_access_line_yet(&server, "stream-hang-up-1");
    drop(conn);
    let line = wait_stopped(&server, "stream-hang-up-1");
    assert!(line.contains("runner:lm"), "{line}");
    let access = access_line(&server, "stream-hang-up-1");
    assert!(access.contains(",path=/generate,"), "{access}");
    assert!(
        access.contains("(status=499,"),
        "nginx's client closed request: {access}"
    );
}

#[test]
fn a_streams_access_line_is_written_at_its_end_with_its_status() {
    let server = custom_service("");
    let release = scratch_path("stream", "access-line");
    let body = serde_json::json!({ "words": 3, "hold_last": release }).to_string();
    let headers = [("x-request-id", "stream-line"), ("connection", "close")];
    let mut conn = post_raw(&server, "/generate", &headers, &body);
    let mut seen = String::new();
    read_until(&mut conn, &mut seen, "two words", |s| {
        s.matches("data: w").count() >= 2
    });
    assert_no_access_line_yet(&server, "stream-line");
    std::fs::write(&release, b"go").unwrap();
    let mut rest = String::new();
    conn.read_to_string(&mut rest).expect("the stream's end");
    assert!(rest.contains("data: w2"), "{seen}{rest}");
    let line = access_line(&server, "stream-line");
    assert!(
        line.contains("(scheme=http,method=POST,path=/generate,"),
        "{line}"
    );
    assert!(
        line.contains("(status=200,type=text/event-stream"),
        "{line}"
    );
}

#[test]
fn an_embedded_runner_streams_and_stops_when_the_client_hangs_up() {
    let server = custom_service("runners.lm.embedded=true");
    let lines: Vec<String> = rest_items(curl_lines(
        &server,
        "/generate_lines",
        r#"{"words": 4}"#,
        Blank::Keep,
    ));
    assert_eq!(lines, ["\"w0\"", "\"w1\"", "\"w2\"", "\"w3\""]);
    hang_up_after(&server, 3, "stream-hang-up-2");
    let line = wait_stopped(&server, "stream-hang-up-2");
    assert!(line.contains("api_server"), "{line}");
}

#[test]
fn a_worker_killed_mid_stream_ends_it_with_an_error_event_and_the_service_recovers() {
    let server = custom_service("");
    let (mut conn, mut seen) = endless_after(&server, 3, "stream-killed");
    let status = status_json(&server);
    let workers = status["workers"].as_array().expect("workers list").clone();
    let pid = workers
        .iter()
        .find(|w| worker_role(w).1.as_deref() == Some("lm"))
        .and_then(|w| w["pid"].as_u64())
        .expect("the lm worker's pid");
    // SAFETY: a plain kill(2) of a process this test's server started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    read_until(&mut conn, &mut seen, "error event", |s| {
        s.contains("event: error")
    });
    let error = &seen[seen.find("event: error").unwrap_or(0)..];
    assert!(error.contains("lost mid-stream"), "{error}");
    // Not retried elsewhere once items flowed; the supervisor restarts the
    // worker, and the next stream is whole.
    let mut lines = Vec::new();
    let recovered = eventually(EVENT_WITHIN, || {
        let body = r#"{"words": 2}"#;
        lines = rest_items(curl_lines(&server, "/generate_lines", body, Blank::Keep));
        lines == ["\"w0\"", "\"w1\""]
    });
    assert!(recovered, "after the kill: {lines:?}\n{}", server.log());
}
