//! Streaming answers over gRPC (issue 25, docs/streaming.md):
//! `bentoml.grpc.v1.BentoService/CallStream`, read by a client that is not
//! ours (grpcio, types discovered through reflection:
//! tests/fixtures/grpc_stream_client.py, venv target/pyvenv as for
//! tests/it/grpc.rs). Each item arrives as its own message before the model
//! could end (it holds its last word until the test releases it), an error
//! after items ends the call with its status, a cancel stops the model,
//! and silence past `api_server.traffic.stream_idle_timeout` ends the call
//! with DEADLINE_EXCEEDED. The service is tests/fixtures/custom_service.rs.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::common::*;
use crate::grpc::python_with_grpcio;

/// The custom service under `serve-grpc` with reflection, its metrics on
/// their own port, SERVING: the server and that port.
fn custom_grpc(options: &str) -> (Server, u16) {
    let mport = free_port();
    let mut launch = launch_grpc(&["--enable-reflection", "--metrics-port", &mport.to_string()])
        .bin(example_bin("custom_service"));
    let mut all = "api_server.grpc.metrics.host=127.0.0.1".to_string();
    if !options.is_empty() {
        all = format!("{all} {options}");
    }
    launch = launch.env("TIFFIN_CONFIG_OPTIONS", &all);
    let server = launch.start();
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
    });
    (server, mport)
}

/// The sum of the samples `name` with `labels` on the metrics port.
fn port_metric(port: u16, name: &str, labels: &[(&str, &str)]) -> f64 {
    let r = http(&format!("127.0.0.1:{port}"), "GET", "/", &[], b"").expect("GET metrics port");
    assert_eq!(r.status, 200, "metrics port: {}", r.text());
    parse_exposition(&r.text()).sum(name, labels)
}

/// Waits (at most [`EVENT_WITHIN`]) until [`port_metric`] equals `want`.
fn wait_port_metric(server: &Server, port: u16, name: &str, labels: &[(&str, &str)], want: f64) {
    let mut last = f64::NAN;
    let ok = eventually(EVENT_WITHIN, || {
        last = port_metric(port, name, labels);
        last == want
    });
    assert!(
        ok,
        "{name}{labels:?} stayed {last}, not {want}; log:\n{}",
        server.log()
    );
}

/// Runs the grpcio client with `args`: each JSON line it prints with the
/// instant it arrived, on a channel that closes when its output ends.
fn client(server: &Server, args: &[&str]) -> mpsc::Receiver<(Instant, Value)> {
    client_as(server, None, args)
}

/// [`client`], its call sending `request_id` as `x-request-id`.
fn client_as(
    server: &Server,
    request_id: Option<&str>,
    args: &[&str],
) -> mpsc::Receiver<(Instant, Value)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc_stream_client.py");
    let mut cmd = Command::new(python_with_grpcio());
    cmd.arg(script).arg(&server.addr).args(args);
    if let Some(id) = request_id {
        cmd.env("REQUEST_ID", id);
    }
    output_lines(&mut cmd, |line| {
        Some(serde_json::from_str(&line).unwrap_or(Value::String(line)))
    })
}

/// Every line the client prints, once it is done.
fn all_lines(server: &Server, args: &[&str]) -> Vec<Value> {
    rest_items(client(server, args))
}

/// Asserts that a stream the client read whole was the words `w0` and `w1`,
/// then the call's end with `status`, whose details contain `detail`.
fn assert_two_words_then(lines: &[Value], status: &str, detail: &str) {
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[..2],
        [json!({ "json": "w0" }), json!({ "json": "w1" })]
    );
    assert_eq!(lines[2]["status"], status, "{lines:?}");
    let details = lines[2]["details"].as_str().unwrap_or_default();
    assert!(details.contains(detail), "{details}");
}

/// Waits (at most [`EVENT_WITHIN`]) until the `lm` model counted one call
/// cancelled while it ran.
fn wait_model_cancelled(server: &Server, mport: u16) {
    let cancelled = [("runner_name", "lm"), ("stage", "running")];
    let name = "tiffin_runner_calls_cancelled_total";
    wait_port_metric(server, mport, name, &cancelled, 1.0);
}

/// Waits (at most [`EVENT_WITHIN`]) until `endpoint` counted one request
/// answered with `code`.
fn wait_one_request(server: &Server, mport: u16, endpoint: &str, code: &str) {
    let labels = [("endpoint", endpoint), ("http_response_code", code)];
    let name = "bentoml_api_server_request_total";
    wait_port_metric(server, mport, name, &labels, 1.0);
}

#[test]
fn reflection_lists_call_stream_and_call_points_a_streaming_api_at_it() {
    let (server, _) = custom_grpc("");
    let lines = all_lines(&server, &["describe"]);
    assert_eq!(
        lines.first(),
        Some(&json!({
            "method": "bentoml.grpc.v1.BentoService.CallStream",
            "server_streaming": true,
            "client_streaming": false,
            "input": "bentoml.grpc.v1.Request",
            "output": "bentoml.grpc.v1.Response",
        })),
        "{lines:?}"
    );
    let call = &lines[1];
    assert_eq!(call["call"], "UNIMPLEMENTED", "{lines:?}");
    let details = call["details"].as_str().unwrap_or_default();
    assert!(details.contains("CallStream"), "{details}");
}

#[test]
fn grpcio_receives_each_item_as_a_message_before_the_stream_ends() {
    let (server, mport) = custom_grpc("");
    let release = scratch_path("stream-grpc", "items");
    let body = json!({ "words": 3, "pace_ms": 20, "hold_last": release }).to_string();
    let id = Some("grpc-stream-line");
    let lines = client_as(&server, id, &["stream", "generate_lines", &body]);
    let (first_at, first) = next_item(&server, &lines, "first message");
    let (second_at, second) = next_item(&server, &lines, "second message");
    // The call goes on in its stream: its access-log line waits for its end.
    assert_no_access_line_yet(&server, "grpc-stream-line");
    // The model holds its last word until now: the messages above came first.
    let released_at = Instant::now();
    std::fs::write(&release, b"go").unwrap();
    let (last_at, last) = next_item(&server, &lines, "last message");
    let (_, status) = next_item(&server, &lines, "status");
    assert_eq!(
        [first, second, last, status],
        [
            json!({ "json": "w0" }),
            json!({ "json": "w1" }),
            json!({ "json": "w2" }),
            json!({ "status": "OK" }),
        ]
    );
    assert!(first_at <= second_at && second_at < released_at && released_at < last_at);
    let line = access_line(&server, "grpc-stream-line");
    let path = "path=/bentoml.grpc.v1.BentoService/CallStream,";
    assert!(
        line.contains(&format!("(scheme=grpc,method=POST,{path}")),
        "{line}"
    );
    assert!(line.contains("(status=200,grpc_status=0,"), "{line}");

    // An event-stream API's items are text messages (the events' data).
    let lines = all_lines(&server, &["stream", "generate", r#"{"words": 2}"#]);
    assert_eq!(
        lines,
        [
            json!({ "text": "w0" }),
            json!({ "text": "w1" }),
            json!({ "status": "OK" })
        ]
    );

    // The same metrics as HTTP streams, under the API's endpoint.
    let endpoint = [("endpoint", "/generate_lines")];
    wait_port_metric(
        &server,
        mport,
        "tiffin_api_server_stream_items_total",
        &endpoint,
        3.0,
    );
    wait_port_metric(
        &server,
        mport,
        "tiffin_api_server_time_to_first_item_seconds_count",
        &endpoint,
        1.0,
    );
    wait_one_request(&server, mport, "/generate_lines", "200");
}

#[test]
fn a_grpc_stream_that_fails_after_items_ends_with_its_status_and_counts_as_failed() {
    let (server, mport) = custom_grpc("");
    let lines = all_lines(
        &server,
        &["stream", "generate_lines", r#"{"words": 5, "fail_at": 2}"#],
    );
    assert_two_words_then(&lines, "INTERNAL", "the model failed at word 2");
    wait_one_request(&server, mport, "/generate_lines", "500");
    let ok = [
        ("endpoint", "/generate_lines"),
        ("http_response_code", "200"),
    ];
    assert_eq!(
        port_metric(mport, "bentoml_api_server_request_total", &ok),
        0.0
    );

    // Before any item, the error is the call's status, with no message.
    let lines = all_lines(
        &server,
        &["stream", "generate_lines", r#"{"words": 5, "fail_at": 0}"#],
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], "INTERNAL", "{lines:?}");
}

#[test]
fn a_grpcio_cancel_stops_the_model_and_ends_the_request() {
    let (server, mport) = custom_grpc("");
    let body = r#"{"words": 1000000, "pace_ms": 2}"#;
    let id = Some("grpc-stream-cancel");
    let lines = rest_items(client_as(&server, id, &["stream", "generate", body, "3"]));
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[3], json!({ "cancelled": true }));
    wait_model_cancelled(&server, mport);
    wait_port_metric(
        &server,
        mport,
        "bentoml_runner_request_in_progress",
        &[("runner_name", "lm")],
        0.0,
    );
    // The request ended when its client left: not in progress, not a 200.
    let endpoint = [("endpoint", "/generate")];
    wait_port_metric(
        &server,
        mport,
        "bentoml_api_server_request_in_progress",
        &endpoint,
        0.0,
    );
    wait_one_request(&server, mport, "/generate", "499");
    // Its access-log line too: nginx's 499 and gRPC's CANCELLED.
    let line = access_line(&server, "grpc-stream-cancel");
    assert!(line.contains("(status=499,grpc_status=1,"), "{line}");
}

#[test]
fn a_silent_grpc_stream_ends_with_deadline_exceeded_and_stops_the_model() {
    let (server, mport) = custom_grpc("api_server.traffic.stream_idle_timeout=0.5");
    let release = scratch_path("stream-grpc", "idle");
    // Word 2 is held until the test releases it: silence after w1. Endless
    // after it, so the released model can only stop by the cancel, never by
    // ending before the cancel reached a loaded worker (see
    // stream_metrics.rs's HTTP twin).
    let body = json!({ "words": 1_000_000, "hold_at": 2, "hold_last": release }).to_string();
    let lines = all_lines(&server, &["stream", "generate_lines", &body]);
    let idle = "api_server.traffic.stream_idle_timeout";
    assert_two_words_then(&lines, "DEADLINE_EXCEEDED", idle);
    // The model, stuck in word 2, stops once it returns from it.
    std::fs::write(&release, b"go").unwrap();
    wait_model_cancelled(&server, mport);
    wait_one_request(&server, mport, "/generate_lines", "504");
}

#[test]
fn a_grpc_stream_started_before_sigterm_receives_all_its_items_and_ok() {
    let (server, _) = custom_grpc("api_server.workers=1");
    let release = scratch_path("stream-grpc", "drain");
    let body = json!({ "words": 3, "hold_last": release }).to_string();
    let lines = client(&server, &["stream", "generate_lines", &body]);
    next_item(&server, &lines, "first message");
    next_item(&server, &lines, "second message");
    send_signal(server.pid(), libc::SIGTERM);
    wait_log_line(&server, &["api_server", "draining: no longer accepting"]);
    std::fs::write(&release, b"go").unwrap();
    let rest = rest_items(lines);
    assert_eq!(
        rest,
        [json!({ "json": "w2" }), json!({ "status": "OK" })],
        "log:\n{}",
        server.log()
    );
    wait_log_line(&server, &["api_server", "drained; exiting"]);
}
