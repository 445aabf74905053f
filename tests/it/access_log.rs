//! The access log and request ids (issue 13, items 3 and 4), on the real
//! binary: one line per request in BentoML's shape after the response,
//! probes and scrapes left out, the `api_server.logging.access.*` keys, the
//! same fields as JSON with `--log-format json`, and the request id taken
//! from `X-Request-ID` or `traceparent` (or made up), returned in
//! `X-Request-ID` / `X-BentoML-Request-ID`, and carried to the runner
//! worker, whose log line and error for a failing call name it.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// Lines of the log that are access-log lines of `path`.
fn access_lines(server: &Server, path: &str) -> Vec<String> {
    let needle = format!("path={path})");
    let needle_more = format!("path={path},");
    server
        .log()
        .lines()
        .filter(|l| {
            l.starts_with("[api_server:") && (l.contains(&needle) || l.contains(&needle_more))
        })
        .map(str::to_string)
        .collect()
}

/// POSTs `body` as text to `/echo` with `X-Request-ID: id`; it must answer 200.
fn echo_with_id(server: &Server, id: &str, body: &[u8]) -> Response {
    let r = http(
        &server.addr,
        "POST",
        "/echo",
        &[("Content-Type", "text/plain"), ("X-Request-ID", id)],
        body,
    )
    .expect("POST");
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn every_request_gets_one_line_in_bentomls_shape_and_its_id_back() {
    let server = Launch::http(&["echo"]).start();
    let r = http(
        &server.addr,
        "POST",
        "/echo",
        &[
            ("Content-Type", "text/plain"),
            ("X-Request-ID", "test-id-42"),
        ],
        b"hello",
    )
    .expect("POST /echo");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("test-id-42"));
    assert_eq!(r.header("x-bentoml-request-id"), Some("test-id-42"));

    let line = access_line(&server, "test-id-42");
    // [api_server:0] <time>  INFO 127.0.0.1:<port> (scheme=http,method=POST,path=/echo,type=text/plain,length=5) (status=200,type=text/plain; charset=utf-8,length=5) 0.123ms (trace=…,span=…,sampled=0,request_id=test-id-42)
    let rest = &line[line.find(" 127.0.0.1:").expect("client address") + 1..];
    let (client, rest) = rest.split_once(' ').expect("fields after the client");
    assert!(
        client
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok()),
        "{line}"
    );
    assert!(
        rest.starts_with(
            "(scheme=http,method=POST,path=/echo,type=text/plain,length=5) (status=200,type="
        ),
        "{line}"
    );
    assert!(rest.contains(",length=5) "), "response length: {line}");
    let latency = rest
        .split(") ")
        .nth(2)
        .expect("latency")
        .split(' ')
        .next()
        .unwrap_or("");
    assert!(
        latency
            .strip_suffix("ms")
            .is_some_and(|v| v.parse::<f64>().is_ok()),
        "latency {latency:?} in {line}"
    );
    let ids = &rest[rest.find("(trace=").expect("ids")..];
    // Tracing is off and no traceparent came: BentoML's zero ids, in the default formats.
    assert!(
        ids.starts_with(&format!(
            "(trace={},span={},sampled=0,",
            "0".repeat(32),
            "0".repeat(16)
        )),
        "{line}"
    );

    // One line per request; probes and scrapes have none.
    for path in ["/healthz", "/livez", "/readyz", "/metrics"] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }
    let r = http(
        &server.addr,
        "GET",
        "/echo",
        &[("X-Request-ID", "after-probes")],
        b"",
    )
    .expect("GET");
    assert_eq!(r.status, 405);
    access_line(&server, "after-probes");
    assert_eq!(
        access_lines(&server, "/echo").len(),
        2,
        "log:\n{}",
        server.log()
    );
    for path in ["/healthz", "/livez", "/readyz", "/metrics"] {
        assert!(
            access_lines(&server, path).is_empty(),
            "{path} logged:\n{}",
            server.log()
        );
    }
}

#[test]
fn request_ids_come_from_the_client_the_traceparent_or_are_made_up() {
    let server = Launch::http(&["echo"]).start();
    let post = |headers: &[(&str, &str)]| {
        let mut all = vec![("Content-Type", "text/plain")];
        all.extend_from_slice(headers);
        let r = http(&server.addr, "POST", "/echo", &all, b"x").expect("POST");
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.header("x-request-id").expect("x-request-id").to_string();
        assert_eq!(r.header("x-bentoml-request-id"), Some(id.as_str()));
        id
    };

    // None given: 32 hex digits, different each time.
    let a = post(&[]);
    let b = post(&[]);
    assert!(is_hex(&a, 32) && is_hex(&b, 32) && a != b, "{a} {b}");
    access_line(&server, &a);

    // A hostile id (too long, or not visible ASCII) is replaced, never echoed.
    let long = "a".repeat(4000);
    let replaced = post(&[("X-Request-ID", &long)]);
    assert!(is_hex(&replaced, 32), "{replaced}");
    let spaced = post(&[("X-Request-ID", "two words")]);
    assert!(is_hex(&spaced, 32), "{spaced}");
    assert!(!server.log().contains(&long[..200]));

    // A traceparent gives the id (its trace id) and the trace id of the line.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let from_trace = post(&[("traceparent", &tp)]);
    assert_eq!(from_trace, trace);
    let line = access_line(&server, trace);
    assert!(
        line.contains(&format!("(trace={trace},span=00f067aa0ba902b7,sampled=1,")),
        "{line}"
    );
    // X-Request-ID wins over the traceparent for the id.
    let both = post(&[("traceparent", &tp), ("X-Request-ID", "mine")]);
    assert_eq!(both, "mine");
}

#[test]
fn the_access_log_keys_turn_fields_and_the_log_off() {
    let server = Launch::http(&["echo"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "api_server.logging.access.request_content_type=false \
             api_server.logging.access.response_content_length=false \
             api_server.logging.access.format.trace_id=d",
        )
        .start();
    echo_with_id(&server, "fields", b"abc");
    let line = access_line(&server, "fields");
    assert!(
        line.contains("(scheme=http,method=POST,path=/echo,length=3) (status=200,type="),
        "{line}"
    );
    // The response's part keeps its type and loses its length.
    assert!(line.contains(") (status=200,type=text/plain) "), "{line}");
    assert!(line.contains("(trace=0,span=0000000000000000,"), "{line}");
    drop(server);

    // Turned off by its key, and by the log filter (as BentoML's
    // `bentoml.access` logger level does) while the rest of the log goes on.
    for (key, value) in [
        (
            "TIFFIN_CONFIG_OPTIONS",
            "api_server.logging.access.enabled=false",
        ),
        ("TIFFIN_LOG", "info,tiffin::access=off"),
    ] {
        let off = Launch::http(&["echo"]).env(key, value).start();
        let r = echo_with_id(&off, "quiet", b"abc");
        assert_eq!(
            r.header("x-request-id"),
            Some("quiet"),
            "ids are returned with the log off too"
        );
        // Lines reach stderr within tiffin_logging::GATHER (10 ms) of the
        // answer; 300 ms later the line is missing, not late.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            access_lines(&off, "/echo").is_empty() && off.log().contains("[api_server:"),
            "{key}={value}; log:\n{}",
            off.log()
        );
    }

    // A bad id format is refused at start, naming the key.
    let out = Command::new(tiffin_bin())
        .args(["serve-http", "echo", "--port", "0"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "api_server.logging.access.format.span_id=016q",
        )
        .output()
        .expect("run tiffin");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api_server.logging.access.format.span_id"),
        "{err}"
    );
}

/// `tiffin serve-http <args> --log-format json` on a free port, with its
/// stderr captured (the harness's launcher reads the text start line).
fn start_json(bin: PathBuf, args: &[&str]) -> Server {
    let mut child = Command::new(bin)
        .arg("serve-http")
        .args(args)
        .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
        .env("TIFFIN_LOG", "info")
        .env_remove("TIFFIN_CONFIG")
        .env_remove("TIFFIN_CONFIG_OPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tiffin");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let mut start = None;
    let started = eventually(WAIT, || {
        start = log
            .lock()
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "supervisor starting");
        start.is_some()
    });
    let start = start.unwrap_or_default();
    let server = Server {
        child,
        addr: start["listen"].as_str().unwrap_or_default().to_string(),
        runtime_dir: PathBuf::from(start["runtime_dir"].as_str().unwrap_or_default()),
        log,
    };
    assert!(started, "no JSON start line; log:\n{}", server.log());
    server.wait_ready(WAIT);
    server
}

#[test]
fn log_format_json_writes_every_line_as_json_with_the_same_fields() {
    let server = start_json(tiffin_bin(), &["echo"]);
    echo_with_id(&server, "json-1", b"hello");
    let mut access = None;
    let ok = eventually(WAIT, || {
        access = server
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["request_id"] == "json-1");
        access.is_some()
    });
    assert!(ok, "no JSON access line; log:\n{}", server.log());
    let v = access.unwrap_or_default();
    assert!(
        v["process"]
            .as_str()
            .is_some_and(|p| p.starts_with("api_server:")),
        "{v}"
    );
    assert_eq!(v["target"], "tiffin::access", "{v}");
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["scheme"], "http");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["request_type"], "text/plain");
    assert_eq!(v["request_length"], "5");
    assert_eq!(v["status"], 200);
    assert_eq!(v["response_length"], 5);
    assert!(
        v["response_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("text/plain")),
        "{v}"
    );
    assert!(v["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{v}");
    assert!(
        v["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{v}"
    );
    assert_eq!(v["trace_id"], "0".repeat(32));
    assert_eq!(v["span_id"], "0".repeat(16));
    assert_eq!(v["sampled"], 0);
    // Every line of every process is one JSON object naming its process.
    drop(server.get("/readyz"));
    let log = server.log();
    let mut processes = std::collections::BTreeSet::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        processes.insert(
            v["process"]
                .as_str()
                .unwrap_or("?")
                .split(':')
                .next()
                .unwrap_or("?")
                .to_string(),
        );
    }
    assert!(
        processes.contains("supervisor")
            && processes.contains("api_server")
            && processes.contains("runner"),
        "{processes:?}"
    );
}

#[test]
fn a_failing_runner_call_names_the_request_in_the_workers_log_and_the_error() {
    let server = Launch::http(&[]).bin(example_bin("custom_service")).start();
    let r = http(
        &server.addr,
        "POST",
        "/fail",
        &[("Content-Type", "text/plain"), ("X-Request-ID", "doomed-7")],
        b"x",
    )
    .expect("POST /fail");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("doomed-7"));
    let error = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("model exploded") && error.contains("request id: doomed-7"),
        "{error}"
    );
    // The runner worker's own stderr line for this call.
    let mut line = None;
    let ok = eventually(WAIT, || {
        line = server
            .log()
            .lines()
            .find(|l| l.starts_with("[runner:") && l.contains("call failed"))
            .map(str::to_string);
        line.is_some()
    });
    assert!(ok, "no runner line; log:\n{}", server.log());
    let line = line.unwrap_or_default();
    assert!(
        line.contains("request_id=doomed-7") && line.contains("model exploded"),
        "{line}"
    );
}
