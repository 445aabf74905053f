//! Streaming answers of Python services (issue 25): generators and async
//! generators, as BentoML's, served by the wheel's `tiffin` from
//! `tests/fixtures/python/stream_service.py` and read by clients that are
//! not ours (`curl -N`, httpx with httpx-sse from scripts/setup/25-stream).
//!
//! The fixture's generators take their orders in the request: they hold
//! their last item until the test writes a file, and write files of their
//! own (their progress, and a marker from their `finally` block), so "items
//! arrived before the end", "the generator was closed" and "the stream is
//! paused" are observed events, never guesses about timing. The same
//! fixture's `spin` APIs show a unary call cancelled end to end: the
//! client hangs up, the handler and the running method see
//! `asyncio.CancelledError`.

use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::common::*;

/// `tiffin serve-http stream_service.py:ATTR ARGS` from the wheel's venv.
fn serve(attr: &str, args: &[&str]) -> Server {
    launch(attr, args).start()
}

fn launch(attr: &str, args: &[&str]) -> Launch {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python/stream_service.py");
    let locator = format!("{}:{attr}", file.display());
    let mut all = vec![locator.as_str()];
    all.extend_from_slice(args);
    Launch::http(&all).bin(python_tiffin())
}

/// A path no file is at yet, unique to this test and `name`.
fn scratch(test: &str, name: &str) -> String {
    scratch_path(&format!("pystream-{test}"), name)
        .display()
        .to_string()
}

/// Waits for the file a generator writes, and answers its contents.
fn wait_file(server: &Server, path: &str, what: &str) -> String {
    let mut text = String::new();
    let seen = eventually(EVENT_WITHIN, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        !text.is_empty()
    });
    assert!(seen, "{what}: {path} never written; log:\n{}", server.log());
    text
}

/// Reads `n` lines of `lines`, the last when the test has released it:
/// the lines before the release arrived before it, the last after.
fn read_around_release(
    lines: &mpsc::Receiver<(Instant, String)>,
    before: usize,
    release: &str,
) -> Vec<String> {
    let mut got = Vec::new();
    let mut arrived = Vec::new();
    for _ in 0..before {
        let (at, line) = lines
            .recv_timeout(EVENT_WITHIN)
            .expect("a line before the release");
        arrived.push(at);
        got.push(line);
    }
    let released_at = Instant::now();
    std::fs::write(release, b"go").unwrap();
    for (at, line) in lines.iter() {
        assert!(at > released_at, "{line} arrived before the release");
        got.push(line);
    }
    assert!(arrived.iter().all(|at| *at < released_at));
    got
}

#[test]
fn curl_reads_each_event_of_an_async_generator_api_before_its_runner_generator_ends() {
    let server = serve("svc", &[]);
    let hold = scratch("sse", "hold");
    let body = json!({ "n": 3, "hold": hold }).to_string();
    let lines = curl_lines(&server, "/generate", &body, Blank::Skip);
    let got = read_around_release(&lines, 2, &hold);
    assert_eq!(
        got,
        [
            "data: word0",
            "data: word1",
            "data: word2",
            "event: end",
            "data: "
        ]
    );
    wait_items_sent(&server, "/generate", 3.0);
    let runner = [("runner_name", "words"), ("http_response_code", "200")];
    wait_metric(
        &server,
        "bentoml_runner_request_total",
        &runner,
        1.0,
        "one finished runner stream",
    );
}

#[test]
fn a_plain_def_generator_api_streams_json_lines_as_it_yields_them() {
    let server = serve("svc", &[]);
    let hold = scratch("ndjson", "hold");
    let body = json!({ "n": 3, "hold": hold }).to_string();
    let lines = curl_lines(&server, "/count", &body, Blank::Skip);
    let got = read_around_release(&lines, 2, &hold);
    let want: Vec<String> = (0..3)
        .map(|i| json!({ "i": i, "word": format!("word{i}") }).to_string())
        .collect();
    assert_eq!(got, want);
    let r = server.post("/count", "application/json", br#"{"n": 2}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.text().lines().count(), 2, "{}", r.text());
}

#[test]
fn a_plain_def_api_iterates_an_async_runnable_generator_with_stream() {
    let server = serve("svc", &[]);
    let text = "data: word0\n\ndata: word1\n\ndata: word2\n\nevent: end\ndata: \n\n";
    assert_three_items(&server, "/generate_sync", "text/event-stream", text);
}

/// Posts `{"n": 3}` to `path` and asserts its whole answer: a 200 of
/// `content_type` whose body is `text`.
fn assert_three_items(server: &Server, path: &str, content_type: &str, text: &str) {
    let r = server.post(path, "application/json", br#"{"n": 3}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(content_type));
    assert_eq!(r.text(), text);
}

#[test]
fn httpx_sse_reads_a_new_style_generator_method_event_by_event() {
    let server = serve("Streamer", &[]);
    let events = sse_events(&server, "/tokens", r#"{"n": 3}"#);
    let expected = vec![
        json!({ "event": "message", "data": "token0" }),
        json!({ "event": "message", "data": "token1" }),
        json!({ "event": "message", "data": "token2" }),
        json!({ "event": "end", "data": "" }),
        json!({ "closed": true }),
    ];
    assert_eq!(events, expected);
    let points = "{\"x\":0,\"y\":0}\n{\"x\":1,\"y\":1}\n{\"x\":2,\"y\":4}\n";
    assert_three_items(&server, "/points", "application/x-ndjson", points);
}

#[test]
fn a_generator_that_raises_after_items_ends_with_an_error_event_and_before_items_is_a_500() {
    let server = serve("svc", &[]);
    // The runner's generator raises at its third word: the API's generator
    // sees the runner error and the stream says so in its last event.
    let events = sse_events(&server, "/generate", r#"{"n": 5, "fail_at": 2}"#);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(
        (&events[0]["data"], &events[1]["data"]),
        (&json!("word0"), &json!("word1"))
    );
    assert_eq!(events[2]["event"], "error");
    let message = events[2]["data"].as_str().unwrap_or_default();
    assert!(message.contains("ValueError: no word 2"), "{message}");
    // An API generator of its own raising after an item: a last error line.
    let r = server.post("/count", "application/json", br#"{"n": 5, "fail_at": 1}"#);
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let error: Value = serde_json::from_str(lines[1]).unwrap();
    let message = error["error"].as_str().unwrap_or_default();
    assert!(message.contains("ValueError: no word 1"), "{message}");
    // Before the first item, the error is the request's 500, as for a unary API.
    for path in ["/generate", "/generate_sync", "/count"] {
        let r = server.post(path, "application/json", br#"{"n": 5, "fail_at": 0}"#);
        assert_eq!(r.status, 500, "{path}: {}", r.text());
        let message = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("no word 0"), "{path}: {message}");
    }
}

/// Posts an endless stream request on a raw connection and reads until
/// `items` items (words or tokens) arrived: the connection, and what it read.
fn endless_after(server: &Server, path: &str, body: &Value, items: usize) -> (TcpStream, String) {
    let mut conn = post_raw(server, path, &[], &body.to_string());
    let seen = read_items(&mut conn, &["word", "token"], items);
    (conn, seen)
}

#[test]
fn a_client_that_hangs_up_closes_the_api_and_runner_generators_and_is_counted() {
    let server = serve("svc", &[]);
    // An async API generator over a plain runnable generator, then a plain
    // API generator over an async runnable generator.
    for (round, path) in ["/generate", "/generate_sync"].into_iter().enumerate() {
        let api_closed = scratch("hang-up", &format!("api{round}"));
        let closed = scratch("hang-up", &format!("runner{round}"));
        let body = json!({ "api_closed": api_closed, "closed": closed });
        let (conn, _) = endless_after(&server, path, &body, 3);
        drop(conn);
        assert_eq!(wait_file(&server, &api_closed, "the API's finally"), "api");
        assert_eq!(
            wait_file(&server, &closed, "the runnable's finally"),
            "runner"
        );
        let want = (round + 1) as f64;
        wait_cancelled_calls(&server, "words", want, "the cancelled runner streams");
    }
    wait_metric(
        &server,
        "bentoml_runner_request_in_progress",
        &[("runner_name", "words")],
        0.0,
        "no stream left running",
    );
    // A generator API of its own (no runner) is closed the same way.
    let api_closed = scratch("hang-up", "count");
    let (conn, _) = endless_after(&server, "/count", &json!({ "api_closed": api_closed }), 3);
    drop(conn);
    assert_eq!(wait_file(&server, &api_closed, "the API's finally"), "api");
}

#[test]
fn a_client_that_hangs_up_closes_a_new_style_generator_method() {
    let server = serve("Streamer", &[]);
    let closed = scratch("hang-up-new", "runner");
    let (conn, _) = endless_after(&server, "/tokens", &json!({ "closed": closed }), 3);
    drop(conn);
    assert_eq!(
        wait_file(&server, &closed, "the method's finally"),
        "runner"
    );
    wait_cancelled_calls(&server, "streamer", 1.0, "the cancelled stream");
}

/// The index of the last item the generator writing `path` produced.
fn progress(path: &str) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(-1)
}

#[test]
fn while_streams_wait_for_their_client_the_same_workers_answer_other_requests() {
    let server = launch("svc", &["--api-workers", "1", "--runner-workers", "1"]).start();
    // Two streams whose client stops reading after the first item: a runner
    // generator behind an async API generator, and a plain API generator.
    // Big items fill the buffers soon; then each waits for room, the
    // generators unpulled.
    let runner_progress = scratch("paused", "runner");
    let api_progress = scratch("paused", "api");
    let pad = 1 << 16;
    let (mut runner_conn, mut runner_seen) = endless_after(
        &server,
        "/generate",
        &json!({ "pad": pad, "progress": runner_progress }),
        1,
    );
    let (mut api_conn, mut api_seen) = endless_after(
        &server,
        "/count",
        &json!({ "pad": pad, "progress": api_progress }),
        1,
    );
    // Other requests are answered all along, by the same API server and
    // runner worker, until both generators filled at least the answer's
    // window of items and neither moved over 20 of them in a row: both wait
    // for their client.
    let mut still = 0;
    let mut last = (progress(&runner_progress), progress(&api_progress));
    let mut answered = 0;
    let window = 16;
    while still < 20 || last.0 < window || last.1 < window {
        assert!(answered < 5000, "the streams never paused: {last:?}");
        let r = server.post_text("/upper", "abc");
        assert_eq!(
            (r.status, r.text()),
            (200, "ABC".to_string()),
            "{}",
            server.log()
        );
        let r = server.post_text("/echo", "abc");
        assert_eq!((r.status, r.text()), (200, "abc".to_string()));
        answered += 1;
        let now = (progress(&runner_progress), progress(&api_progress));
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    eprintln!("paused at items {last:?} after {answered} rounds of other requests");
    // The client reads again: the generators go on.
    for (conn, seen, path, paused) in [
        (&mut runner_conn, &mut runner_seen, &runner_progress, last.0),
        (&mut api_conn, &mut api_seen, &api_progress, last.1),
    ] {
        let mut read = 0;
        let resumed = eventually(EVENT_WITHIN, || {
            read += read_more(conn, seen);
            seen.clear();
            progress(path) > paused
        });
        assert!(
            resumed,
            "{path} stayed at {paused} after reading {read} bytes more"
        );
    }
}

#[test]
fn a_running_python_method_whose_client_hangs_up_raises_cancelled_error_and_its_worker_serves_on() {
    // One runner worker: the call after the cancel runs where it ran.
    let server = serve("svc", &["--runner-workers", "1"]);
    // An `async def` API awaiting `async_run`, then a plain `def` API blocked in `run()`.
    for (round, path) in ["/spin", "/spin_sync"].into_iter().enumerate() {
        let steps = scratch("spin", &format!("progress{round}"));
        let closed = scratch("spin", &format!("runner{round}"));
        let api_closed = scratch("spin", &format!("api{round}"));
        let body = json!({ "progress": steps, "closed": closed, "api_closed": api_closed });
        // Its answer is never read: dropping the connection is the hang-up.
        let conn = post_raw(&server, path, &[], &body.to_string());
        let running = eventually(EVENT_WITHIN, || progress(&steps) >= 2);
        assert!(
            running,
            "{path}: the method never ran; log:\n{}",
            server.log()
        );
        drop(conn);
        assert_eq!(
            wait_file(&server, &api_closed, "the handler's CancelledError"),
            "api"
        );
        assert_eq!(
            wait_file(&server, &closed, "the method's CancelledError"),
            "cancelled"
        );
        let stopped_at = progress(&steps);
        let want = (round + 1) as f64;
        wait_cancelled_calls(&server, "words", want, "the cancelled calls");
        // The worker serves the next call whole: nothing of the cancel is left
        // pending in its thread.
        let r = server.post(
            path,
            "application/json",
            json!({ "n": 3 }).to_string().as_bytes(),
        );
        assert_eq!((r.status, r.text()), (200, "spun".to_string()), "{path}");
        // The cancelled method took no step since it ended.
        assert_eq!(progress(&steps), stopped_at, "{path}");
    }
    let log = server.log();
    assert_eq!(
        log.matches("call cancelled by its caller").count(),
        2,
        "one cancel line per call; log:\n{log}"
    );
}
