//! Hostile clients and hung models against the real binary: long unknown
//! URLs, silent and slow connections, short bodies, too many connections,
//! requests past their deadline, and too many requests at once. Each must
//! leave serving, metrics and recovery intact.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const RUNNER: &str = "__worker runner --runner nltk_sentiment";

/// How long a test waits for the server to close a connection it should
/// close after a timeout of about a second: a bound on the wait, not a
/// measured figure.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Reads until the server closes the connection (or `CLOSE_WITHIN` passes);
/// returns what it sent and whether it closed.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < CLOSE_WITHIN {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, true),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
    (got, false)
}

fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(&server.addr).expect("connect")
}

/// `TIFFIN_CONFIG_OPTIONS` with short connection timeouts.
const SHORT_TIMEOUTS: &str = "api_server.http.header_read_timeout=1 \
     api_server.http.body_read_timeout=1 api_server.http.keepalive_timeout=1";

#[test]
fn long_unknown_paths_keep_the_scrape_small_and_recovery_working() {
    let server = Launch::http(&["--api-workers", "1"]).start();
    // 60 distinct unknown paths of 60 KB each: 3.6 MB of URLs.
    for i in 0..60 {
        let path = format!("/scan-{i}-{}", "a".repeat(60_000));
        let r = http(&server.addr, "GET", &path, &[], b"").expect("answer");
        assert_eq!(r.status, 404, "{}", r.text());
    }
    let text = server.metrics();
    assert!(
        text.len() < 200_000,
        "the exposition grew to {} bytes",
        text.len()
    );
    let expo = parse_exposition(&text);
    let longest = expo
        .samples
        .iter()
        .flat_map(|s| s.labels.values().map(|v| v.len()))
        .max()
        .unwrap_or(0);
    assert!(longest <= 64, "a label value of {longest} bytes");
    assert_eq!(
        expo.sum(
            "bentoml_api_server_request_total",
            &[
                ("endpoint", "/__unmatched__"),
                ("http_response_code", "404")
            ]
        ),
        60.0
    );
    // A runner worker killed afterwards is replaced and picked up again.
    let before = child_pids(&server, RUNNER);
    assert_eq!(before.len(), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            let now = child_pids(&server, RUNNER);
            now.len() == 1 && now != before && server.post_text("/analysis", "great").status == 200
        }),
        "the replaced worker never served; log:\n{}",
        server.log()
    );
}

#[test]
fn a_silent_connection_is_closed() {
    let server = Launch::http(&[])
        .env("TIFFIN_CONFIG_OPTIONS", SHORT_TIMEOUTS)
        .start();
    let mut silent = connect(&server);
    let (_, closed) = read_until_closed(&mut silent);
    assert!(closed, "a connection that sent nothing was held open");
    assert_eq!(server.get("/readyz").status, 200);
}

#[test]
fn headers_sent_slowly_are_cut_off() {
    let server = Launch::http(&[])
        .env("TIFFIN_CONFIG_OPTIONS", SHORT_TIMEOUTS)
        .start();
    let mut slow = connect(&server);
    slow.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    // One header byte every 200 ms: the headers would never end.
    while started.elapsed() < CLOSE_WITHIN {
        if slow.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        slow.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        let peek = slow.read(&mut buf);
        slow.set_nonblocking(false).unwrap();
        match peek {
            Ok(0) => {
                cut = true;
                break;
            }
            // hyper may answer 408 before closing.
            Ok(_) => {
                cut = true;
                break;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "a slowloris connection was held for {CLOSE_WITHIN:?}");
}

#[test]
fn a_body_shorter_than_its_content_length_gets_408() {
    let server = Launch::http(&[])
        .env("TIFFIN_CONFIG_OPTIONS", SHORT_TIMEOUTS)
        .start();
    let mut short = connect(&server);
    short
        .write_all(
            b"POST /analysis HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
              Content-Length: 100\r\n\r\nonly ten b",
        )
        .unwrap();
    let (got, _) = read_until_closed(&mut short);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "expected 408, got: {text:?}"
    );
    assert!(text.contains("body_read_timeout"), "{text}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let server = Launch::http(&[])
        .env("TIFFIN_CONFIG_OPTIONS", SHORT_TIMEOUTS)
        .start();
    let mut conn = connect(&server);
    conn.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (got, closed) = read_until_closed(&mut conn);
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{got:?}"
    );
    assert!(closed, "an idle keep-alive connection was held open");
}

#[test]
fn past_the_connection_limit_probes_still_answer_and_others_get_503() {
    let server = Launch::http(&["--api-workers", "1"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "api_server.http.max_connections=20 api_server.http.keepalive_timeout=60",
        )
        .start();
    let held: Vec<TcpStream> = (0..25).map(|_| connect(&server)).collect();
    // The API server has accepted them all once its slot of the accept
    // board (api-server/src/balance.rs) counts 25 open connections.
    let mut slots = Vec::new();
    let accepted = eventually(EVENT_WITHIN, || {
        slots = board_slots(&server);
        slots.first().is_some_and(|(_, open)| *open >= 25)
    });
    assert!(
        accepted,
        "the API server never held the 25 connections: board {:?}; log:\n{}",
        &slots[..slots.len().min(2)],
        server.log()
    );
    for probe in ["/readyz", "/livez", "/metrics"] {
        let r = server.get(probe);
        assert_eq!(r.status, 200, "{probe}: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"));
    }
    let r = server.post_text("/analysis", "I love this product!");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("max_connections"), "{}", r.text());
    drop(held);
    assert!(
        eventually(Duration::from_secs(5), || server
            .post_text("/analysis", "I love this product!")
            .status
            == 200),
        "requests were still refused after the connections closed"
    );
}

fn custom(options: &str) -> Server {
    Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .env("TIFFIN_CONFIG_OPTIONS", options)
        .start()
}

fn post_json(addr: &str, path: &str, body: &str) -> Response {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("an answer")
}

/// Waits until the `/slow` call sent on its thread runs in the `calc`
/// runner's one worker.
fn wait_slow_call_running(server: &Server) {
    wait_metric(
        server,
        "bentoml_runner_request_in_progress",
        &[("runner_name", "calc")],
        1.0,
        "the slow call running in the calc runner",
    );
}

#[test]
fn a_request_past_its_deadline_gets_504_and_a_queued_call_never_runs_late() {
    let server = custom("api_server.traffic.timeout=1");
    let addr = server.addr.clone();
    // The one worker sleeps 5 s; the second call waits behind it in the
    // worker's socket, and its deadline passes while it waits.
    let slow = std::thread::spawn(move || post_json(&addr, "/slow", "5000"));
    wait_slow_call_running(&server);
    let queued = post_json(&server.addr, "/double", "21");
    assert_eq!(queued.status, 504, "{}", queued.text());
    assert!(queued.text().contains("api_server.traffic.timeout"));
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 504, "{}", slow.text());
    // Once the worker is free, the queued call is refused there, not run.
    assert!(
        eventually(Duration::from_secs(10), || post_json(
            &server.addr,
            "/double",
            "2"
        )
        .status
            == 200),
        "the worker never served again"
    );
    let expo = parse_exposition(&server.metrics());
    let runner_ok = expo.sum(
        "bentoml_runner_request_total",
        &[("endpoint", "/double"), ("http_response_code", "200")],
    );
    assert!(
        runner_ok >= 1.0,
        "the later call ran: {runner_ok} ok calls of /double"
    );
    let doubles_ok = expo.sum(
        "bentoml_api_server_request_total",
        &[("endpoint", "/double"), ("http_response_code", "200")],
    );
    assert_eq!(
        runner_ok, doubles_ok,
        "the runner ran a /double call whose request had already got 504"
    );
}

#[test]
fn requests_past_max_concurrency_get_429_and_probes_do_not_count() {
    let server = custom("api_server.traffic.max_concurrency=1");
    let addr = server.addr.clone();
    // Long enough that the slow call is still running when the second one
    // comes, however late the waiting below returns.
    let slow = std::thread::spawn(move || post_json(&addr, "/slow", "5000"));
    wait_slow_call_running(&server);
    let refused = post_json(&server.addr, "/double", "21");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.text().contains("max_concurrency"));
    for probe in ["/readyz", "/livez", "/metrics"] {
        assert_eq!(server.get(probe).status, 200, "{probe}");
    }
    assert_eq!(slow.join().unwrap().status, 200);
    assert_eq!(post_json(&server.addr, "/double", "21").status, 200);
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

#[test]
fn a_stopped_worker_is_reported_taken_out_replaced_and_counted() {
    let server = Launch::http(&["--api-workers", "1"]).start();
    let stopped = child_pids(&server, RUNNER);
    assert_eq!(stopped.len(), 1);
    signal(stopped[0], nix::sys::signal::Signal::SIGSTOP);
    // While it is the only worker and out of routing, /readyz says so...
    assert!(
        eventually(Duration::from_secs(30), || server.get("/readyz").status
            == 503),
        "/readyz stayed 200 with the only worker stopped; log:\n{}",
        server.log()
    );
    // ...then a replacement serves, and the hung worker is counted.
    assert!(
        eventually(Duration::from_secs(20), || server
            .post_text("/analysis", "I love this product!")
            .status
            == 200),
        "no replacement served; log:\n{}",
        server.log()
    );
    let now = child_pids(&server, RUNNER);
    assert!(
        !now.contains(&stopped[0]),
        "the stopped worker is still there"
    );
    let expo = parse_exposition(&server.metrics());
    assert_eq!(
        expo.sum(
            "tiffin_supervisor_worker_hung_total",
            &[("role", "runner"), ("runner_name", "nltk_sentiment")]
        ),
        1.0
    );
}

#[test]
fn a_slow_model_is_not_taken_for_hung() {
    let server = custom("api_server.traffic.timeout=60");
    let before = child_pids(&server, "__worker runner --runner calc");
    // Two 10 s inferences back to back on the one worker: 20 s in the model,
    // twice the supervisor's patience with a silent process.
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let addr = server.addr.clone();
            std::thread::spawn(move || post_json(&addr, "/slow", "10000"))
        })
        .collect();
    for call in calls {
        let slow = call.join().unwrap();
        assert_eq!(slow.status, 200, "{}", slow.text());
    }
    assert_eq!(
        child_pids(&server, "__worker runner --runner calc"),
        before,
        "the slow worker was replaced"
    );
    let expo = parse_exposition(&server.metrics());
    assert_eq!(expo.sum("tiffin_supervisor_worker_hung_total", &[]), 0.0);
}

#[test]
fn the_hung_worker_timeout_is_taken_from_the_config() {
    // Three seconds of silence instead of the default ten.
    let server = Launch::http(&["--api-workers", "1"])
        .env("TIFFIN_CONFIG_OPTIONS", "supervisor.hung_worker_timeout=3")
        .start();
    let stopped = child_pids(&server, RUNNER);
    assert_eq!(stopped.len(), 1);
    signal(stopped[0], nix::sys::signal::Signal::SIGSTOP);
    let line = "worker stopped answering the supervisor";
    assert!(
        eventually(Duration::from_secs(30), || server.log().contains(line)),
        "the stopped worker was never taken out; log:\n{}",
        server.log()
    );
    let log = server.log();
    let taken_out = log.lines().find(|l| l.contains(line)).unwrap_or_default();
    assert!(
        taken_out.contains("missed=3"),
        "taken out after another number of missed refreshes: {taken_out}"
    );
    assert!(
        eventually(Duration::from_secs(20), || server
            .post_text("/analysis", "I love this product!")
            .status
            == 200),
        "no replacement served; log:\n{}",
        server.log()
    );
}
