//! Cancellation of unary calls (issue 25, docs/streaming.md): a client that
//! hangs up cancels its runner call end to end. The API server tells the
//! worker; a call still queued there is taken out and never runs, and the
//! running one stops at its next step through its `tiffin::Cancellation`.
//! Each one is counted once in `tiffin_runner_calls_cancelled_total` by the
//! stage it was in, recorded with status 499 and logged with its request id.
//!
//! The service is tests/fixtures/custom_service.rs (`cancellation`): the
//! `busy` runner's `work` method does 10 ms steps and counts each one it
//! finished (`custom_work_steps_total`, and `work_done`'s answer), so "the
//! runner did no work for them" is a count, not a timing.

use std::io::Write;
use std::net::TcpStream;

use crate::common::*;

/// Clients that each send a 2-second call and hang up.
const CLIENTS: usize = 64;
/// Steps (10 ms each) of one 2-second call.
const STEPS_PER_CALL: f64 = 200.0;

fn busy_server() -> Server {
    Launch::http(&[])
        .bin(example_bin("custom_service"))
        .env("TIFFIN_CONFIG_OPTIONS", "runners.busy.workers=1")
        .start()
}

/// Posts `{"ms": ms}` to `/work` on a connection of its own, left open
/// and never read: the call waits until the connection is dropped.
fn send_and_wait(server: &Server, ms: u64, request_id: &str) -> TcpStream {
    send_to_and_wait(server, "/work", &format!(r#"{{"ms": {ms}}}"#), request_id)
}

/// Posts the JSON `body` to `path` as [`send_and_wait`] does.
fn send_to_and_wait(server: &Server, path: &str, body: &str, request_id: &str) -> TcpStream {
    let mut conn = TcpStream::connect(&server.addr).expect("connects");
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\nx-request-id: {request_id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is sent");
    conn
}

/// The calls the API server has sent to the `busy` runner and not had
/// answered, waiting for a worker included.
fn calls_in_flight(server: &Server, want: f64, what: &str) {
    let labels = [("runner_name", "busy")];
    wait_metric(
        server,
        "tiffin_api_server_runner_calls_in_flight",
        &labels,
        want,
        what,
    );
}

/// Steps of work the runner did, from its `work_done` method: a call that
/// queues behind whatever the worker still has to do.
fn work_done(server: &Server) -> f64 {
    let r = server.post("/work_done", "application/json", b"null");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["steps"].as_f64().expect("a count of steps")
}

#[test]
fn sixty_four_clients_that_hang_up_cost_the_runner_almost_no_work_and_others_are_served() {
    let server = busy_server();
    // 64 clients each send a 2-second call: one runs, 63 queue behind it
    // in the worker (one worker, one call at a time).
    let hanging: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| send_and_wait(&server, 2000, &format!("cancel-{i}")))
        .collect();
    calls_in_flight(&server, CLIENTS as f64, "the 64 calls sent");
    std::thread::scope(|s| {
        // Another client's call queues behind all 64: without cancellation
        // it would be answered after 64 × 200 steps of work.
        let other = s.spawn(|| work_done(&server));
        calls_in_flight(&server, CLIENTS as f64 + 1.0, "the other client's call");
        // The 64 clients hang up.
        drop(hanging);
        let steps_before_answer = other.join().expect("the other client");
        eprintln!(
            "the other client was answered after {steps_before_answer} steps of work; \
             a server that ran the abandoned calls would have done {} first",
            CLIENTS as f64 * STEPS_PER_CALL
        );
        assert!(
            steps_before_answer < 2.0 * STEPS_PER_CALL,
            "the worker ran the calls of clients that left: {steps_before_answer} steps"
        );
    });
    // Each of the 64 is counted once, in the stage it was in: the cancels
    // arrive one by one as the API server notices each hang-up, so a few
    // queued calls may start between two of them (and stop at their first
    // step: the work below stays under two calls' worth).
    let cancelled = "tiffin_runner_calls_cancelled_total";
    let all = [("runner_name", "busy")];
    wait_metric(
        &server,
        cancelled,
        &all,
        CLIENTS as f64,
        "64 cancelled calls",
    );
    let running = metric(
        &server,
        cancelled,
        &[("runner_name", "busy"), ("stage", "running")],
    );
    let queued = metric(
        &server,
        cancelled,
        &[("runner_name", "busy"), ("stage", "queued")],
    );
    eprintln!("cancelled: {running} running, {queued} queued");
    assert_eq!(running + queued, CLIENTS as f64);
    // BentoML's runner metrics record them with status 499.
    let cancelled_calls = [
        ("runner_name", "busy"),
        ("endpoint", "/work"),
        ("http_response_code", "499"),
    ];
    wait_metric(
        &server,
        "bentoml_runner_request_total",
        &cancelled_calls,
        CLIENTS as f64,
        "64 calls recorded as cancelled",
    );
    // Other clients are served as usual afterwards, and the work done for
    // the 64 stays under two calls' worth (the one that had started).
    let r = server.post("/work", "application/json", br#"{"ms": 30}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["steps"], 3);
    let steps = metric(&server, "custom_work_steps_total", &[]);
    assert!(
        steps < 2.0 * STEPS_PER_CALL + 3.0,
        "work done for clients that left: {steps} steps"
    );
    assert_eq!(work_done(&server), steps, "the metric counts every step");
    let line = wait_log_line(&server, &["call cancelled by its caller", "cancel-63"]);
    assert!(
        line.contains("queued") || line.contains("running"),
        "{line}"
    );
    calls_in_flight(&server, 0.0, "nothing left in flight");
}

#[test]
fn a_running_call_whose_client_hangs_up_stops_at_its_next_step() {
    let server = busy_server();
    // A 60-second call, cancelled while it runs.
    let conn = send_and_wait(&server, 60_000, "cancel-running");
    let in_progress = [("runner_name", "busy")];
    wait_metric(
        &server,
        "bentoml_runner_request_in_progress",
        &in_progress,
        1.0,
        "the call running",
    );
    drop(conn);
    let running = [("runner_name", "busy"), ("stage", "running")];
    let cancelled = "tiffin_runner_calls_cancelled_total";
    wait_metric(
        &server,
        cancelled,
        &running,
        1.0,
        "the running call cancelled",
    );
    wait_metric(
        &server,
        "bentoml_runner_request_in_progress",
        &in_progress,
        0.0,
        "the method returned",
    );
    let line = wait_log_line(&server, &["call cancelled by its caller", "cancel-running"]);
    assert!(line.contains("running"), "{line}");
    // It stopped: far fewer steps than its 6000, and no more after.
    let steps = work_done(&server);
    assert!(steps < 6000.0, "{steps}");
    assert_eq!(work_done(&server), steps, "no step after the cancel");
    assert_eq!(metric(&server, cancelled, &[("stage", "queued")]), 0.0);
}

#[test]
fn calls_cancelled_in_the_batch_queue_never_join_a_batch() {
    let server = busy_server();
    let release = std::env::temp_dir().join(format!("tiffin-cancel-{}", std::process::id()));
    let _ = std::fs::remove_file(&release);
    let batches = "bentoml_runner_adaptive_batch_size_count";
    let busy = [("runner_name", "busy")];
    // A first batch teaches the dispatcher that this method is slow: a
    // batch it expects to be short runs on the worker's own thread, where
    // nothing is read until it returns (runner-worker/src/batch/dispatch.rs).
    let r = server.post("/work_batch", "application/json", br#"{"ms": 100}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    wait_metric(&server, batches, &busy, 1.0, "the learning batch");
    // A batch of one starts and holds until released; 20 more calls queue
    // for the next one.
    let first = serde_json::json!({ "ms": 100, "hold": release }).to_string();
    let mut hanging = vec![send_to_and_wait(&server, "/work_batch", &first, "batch-0")];
    wait_metric(&server, batches, &busy, 2.0, "the held batch started");
    let queued_body = r#"{"ms": 2000}"#;
    hanging.extend(
        (1..=20)
            .map(|i| send_to_and_wait(&server, "/work_batch", queued_body, &format!("batch-{i}"))),
    );
    calls_in_flight(&server, 21.0, "the 21 calls sent");
    drop(hanging);
    // The 20 queued are taken out while the first batch still runs; a
    // batch method cannot stop, so that one is told and runs on.
    let cancelled = "tiffin_runner_calls_cancelled_total";
    let queued = [("runner_name", "busy"), ("stage", "queued")];
    wait_metric(
        &server,
        cancelled,
        &queued,
        20.0,
        "20 calls cancelled in the queue",
    );
    let running = [("runner_name", "busy"), ("stage", "running")];
    wait_metric(
        &server,
        cancelled,
        &running,
        1.0,
        "the batched call cancelled",
    );
    std::fs::write(&release, b"go").expect("the release file");
    let all_done = [("runner_name", "busy"), ("endpoint", "/work_batch")];
    wait_metric(
        &server,
        "bentoml_runner_request_in_progress",
        &all_done,
        0.0,
        "the first batch ended",
    );
    // No batch ran after the held one: two batches of one call, 10 steps
    // of work each.
    assert_eq!(metric(&server, batches, &busy), 2.0);
    let sizes = metric(&server, "bentoml_runner_adaptive_batch_size_sum", &busy);
    assert_eq!(sizes, 2.0);
    assert_eq!(work_done(&server), 20.0);
    let recorded = [
        ("runner_name", "busy"),
        ("endpoint", "/work_batch"),
        ("http_response_code", "499"),
    ];
    let total = "bentoml_runner_request_total";
    wait_metric(
        &server,
        total,
        &recorded,
        21.0,
        "21 calls recorded as cancelled",
    );
    wait_log_line(
        &server,
        &["call cancelled by its caller", "batch-20", "queued"],
    );
    let _ = std::fs::remove_file(&release);
}
