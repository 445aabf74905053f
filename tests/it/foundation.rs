//! Foundation: the service answers, the process tree and runtime directory
//! look as designed, bad input gets clear JSON errors without crashing
//! anything, and the CLI fails fast and clearly on bad configuration.

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn custom(args: &[&str]) -> Launch {
    Launch::http(args).bin(example_bin("custom_service"))
}

/// A `tiffin` command with a clean environment (no inherited config).
fn tiffin(args: &[&str]) -> Command {
    let mut cmd = Command::new(tiffin_bin());
    cmd.args(args)
        .env_remove("TIFFIN_CONFIG")
        .env_remove("TIFFIN_CONFIG_OPTIONS");
    cmd
}

/// Asserts `resp` has `status` and a JSON body `{"error": "<non-empty string>"}`; returns the message.
fn assert_json_error(resp: &Response, status: u16, what: &str, server: &Server) -> String {
    assert_eq!(
        resp.status,
        status,
        "{what}: expected {status}, got {} with body {}\nlog:\n{}",
        resp.status,
        resp.text(),
        server.log()
    );
    let ct = resp.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{what}: error content-type should be application/json, got {ct:?}"
    );
    let body = resp.json();
    let msg = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: body has no \"error\" string: {body}"));
    assert!(!msg.is_empty(), "{what}: empty error message");
    msg.to_string()
}

fn assert_same_children(server: &Server, before: &[(u32, String)], what: &str) {
    let mut a: Vec<u32> = before.iter().map(|(p, _)| *p).collect();
    let mut b: Vec<u32> = server.children().iter().map(|(p, _)| *p).collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(
        a,
        b,
        "{what}: worker processes changed (a process crashed?)\nlog:\n{}",
        server.log()
    );
}

#[test]
fn analysis_answers_sentiment() {
    let server = Launch::http(&[]).start();
    let r = server.post_text("/analysis", "I love this product!");
    assert_eq!(r.status, 200, "{}\nlog:\n{}", r.text(), server.log());
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "content-type should be application/json, got {ct:?}"
    );
    assert_eq!(r.json(), serde_json::json!({ "is_positive": true }));
    assert_eq!(
        server.analyse("This is terrible. I hate it."),
        serde_json::json!({ "is_positive": false })
    );
}

#[test]
fn process_tree_matches_worker_counts() {
    let server = Launch::http(&["--api-workers", "2", "--runner-workers", "3"]).start();
    let children = server.children();
    let api = child_pids(&server, "__worker api-server");
    let runners = child_pids(&server, "__worker runner --runner nltk_sentiment");
    assert_eq!(api.len(), 2, "api servers: {children:#?}");
    assert_eq!(runners.len(), 3, "runner workers: {children:#?}");
    assert_eq!(
        children.len(),
        5,
        "unexpected extra children: {children:#?}"
    );
    let mut all: Vec<u32> = api.iter().chain(&runners).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 5, "pids must be distinct: {children:#?}");
    assert!(
        !all.contains(&server.pid()),
        "a worker cannot be the supervisor"
    );
}

#[test]
fn runtime_dir_and_sockets_are_private() {
    let server = Launch::http(&["--runner-workers", "2"]).start();
    let dir = &server.runtime_dir;
    let mode = std::fs::metadata(dir)
        .expect("runtime dir exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "runtime dir {} mode {mode:o}", dir.display());
    let mut sockets = vec![dir.join("control.sock")];
    for i in 1..=2 {
        sockets.push(dir.join(format!("runner-nltk_sentiment-{i}.sock")));
    }
    for path in &sockets {
        assert!(
            eventually(Duration::from_secs(5), || is_socket(path)),
            "{} is not a Unix socket; dir holds {:?}",
            path.display(),
            std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        let mode = std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} mode {mode:o}", path.display());
    }
}

#[test]
fn bad_requests_get_json_errors_and_crash_nothing() {
    let server = Launch::http(&[]).start();
    server.analyse("warm up");
    let before = server.children();

    let r = server.post_text("/nosuch", "hi");
    assert_json_error(&r, 404, "unknown route", &server);
    let r = server.get("/nosuch");
    assert_json_error(&r, 404, "GET unknown route", &server);
    let r = server.get("/analysis");
    assert_json_error(&r, 405, "GET /analysis", &server);
    let r = server.post_text("/readyz", "");
    assert_json_error(&r, 405, "POST /readyz", &server);
    let r = server.post("/analysis", "application/json", b"\"I love it\"");
    let msg = assert_json_error(&r, 415, "JSON to a text API", &server);
    assert!(
        msg.contains("text/plain"),
        "415 should name the expected type: {msg}"
    );
    let r = server.post("/analysis", "text/plain", b"good \xff\xfe bytes");
    assert_json_error(&r, 400, "invalid UTF-8", &server);

    assert_eq!(server.analyse("I love this product!")["is_positive"], true);
    assert_same_children(&server, &before, "after bad requests");
}

#[test]
fn body_over_limit_is_413() {
    let server = Launch::http(&[])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "api_server.http.max_request_size=100",
        )
        .start();
    let before = server.children();
    let big = "a".repeat(1000);
    let r = server.post_text("/analysis", &big);
    let msg = assert_json_error(&r, 413, "1000-byte body over a 100-byte limit", &server);
    assert!(msg.contains("100"), "413 should name the limit: {msg}");
    // A body within the limit still works.
    assert_eq!(server.analyse("I love this product!")["is_positive"], true);
    assert_same_children(&server, &before, "after an oversized body");
}

#[test]
fn custom_service_bad_json_and_model_error() {
    let server = custom(&[]).start();
    let r = server.post("/double", "application/json", b"21");
    assert_eq!(r.status, 200, "{}\nlog:\n{}", r.text(), server.log());
    assert_eq!(r.json(), serde_json::json!({ "result": 42.0 }));
    let before = server.children();

    let r = server.post("/double", "application/json", b"{not json");
    assert_json_error(&r, 400, "invalid JSON", &server);
    let r = server.post_text("/fail", "anything");
    let msg = assert_json_error(&r, 500, "runner raises", &server);
    assert!(
        msg.contains("model exploded"),
        "500 should carry the model's message: {msg}"
    );

    let r = server.post("/double", "application/json", b"4");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], 8.0);
    assert_same_children(&server, &before, "after model errors");
}

#[test]
fn broken_runner_gives_503_not_a_crash() {
    let server = custom(&["--api-workers", "1"])
        .env("CUSTOM_BROKEN_RUNNER", "1")
        // The flaky runner never loads: keep retrying it (the default gives up after 5).
        .env("TIFFIN_CONFIG_OPTIONS", "runners.flaky.max_failed_starts=0")
        .no_wait()
        .start();
    let ok = eventually(Duration::from_secs(15), || {
        http(
            &server.addr,
            "POST",
            "/double",
            &[("Content-Type", "application/json")],
            b"1",
        )
        .is_ok_and(|r| r.status == 200)
    });
    assert!(
        ok,
        "/double never worked with a broken sibling runner\nlog:\n{}",
        server.log()
    );
    // The flaky runner keeps being restarted; the API server and calc runner must not be.
    let stable = |s: &Server| {
        let mut v = child_pids(s, "__worker api-server");
        v.extend(child_pids(s, "--runner calc"));
        v
    };
    let before = stable(&server);
    assert_eq!(before.len(), 2, "children: {:#?}", server.children());

    let r = server.post_text("/broken", "ping");
    assert_json_error(&r, 503, "API whose runner cannot load", &server);
    let r = server.get("/readyz");
    assert_json_error(&r, 503, "/readyz with a runner that cannot load", &server);

    let r = server.post("/double", "application/json", b"2.5");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], 5.0);
    assert_eq!(
        stable(&server),
        before,
        "API server or calc runner was replaced\nlog:\n{}",
        server.log()
    );
}

#[test]
fn health_endpoints_and_docs() {
    let server = Launch::http(&[]).start();
    for path in ["/livez", "/healthz", "/readyz"] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let r = server.get("/docs.json");
    assert_eq!(r.status, 200, "{}", r.text());
    let docs = r.json();
    // An OpenAPI 3 document (tests/it/openapi.rs validates it in full).
    let analysis = &docs["paths"]["/analysis"]["post"];
    assert!(
        analysis.is_object(),
        "docs.json does not list `analysis`: {docs}"
    );
    assert_eq!(analysis["x-bentoml-name"], "analysis", "{docs}");
    assert!(
        analysis["requestBody"]["content"]["text/plain"].is_object(),
        "{docs}"
    );
    assert!(
        analysis["responses"]["200"]["content"]["application/json"].is_object(),
        "{docs}"
    );
}

#[test]
fn status_lists_every_worker() {
    let server = Launch::http(&["--api-workers", "2", "--runner-workers", "2"]).start();
    let children = server.children();
    assert_eq!(children.len(), 4, "{children:#?}");

    let out = server.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("supervisor pid {}", server.pid())),
        "status should name the supervisor pid {}:\n{text}",
        server.pid()
    );
    for (pid, cmd) in &children {
        let role = if cmd.contains("__worker api-server") {
            "api-server"
        } else {
            "runner"
        };
        let row = text
            .lines()
            .find(|l| l.split_whitespace().any(|t| t == pid.to_string()));
        let row = row.unwrap_or_else(|| panic!("status has no row for pid {pid} ({cmd}):\n{text}"));
        assert_eq!(
            row.split_whitespace().next(),
            Some(role),
            "row for {pid}: {row}"
        );
        if role == "runner" {
            assert!(
                row.contains("nltk_sentiment"),
                "runner row names its runner: {row}"
            );
        }
    }

    let status = status_json(&server);
    assert_eq!(status["pid"], server.pid(), "{status:#}");
    let workers = status["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers array: {status:#}"));
    assert_eq!(workers.len(), 4, "{status:#}");
    for (pid, cmd) in &children {
        let w = workers
            .iter()
            .find(|w| w["pid"] == *pid)
            .unwrap_or_else(|| panic!("pid {pid} missing from status --json: {status:#}"));
        let (role, runner, _) = worker_role(w);
        if cmd.contains("__worker api-server") {
            assert_eq!(role, "api-server", "{w}");
        } else {
            assert_eq!(
                (role.as_str(), runner.as_deref()),
                ("runner", Some("nltk_sentiment")),
                "{w}"
            );
        }
    }
}

fn assert_fails_fast(f: &Finished, what: &str, needles: &[&str]) {
    let Some(status) = f.status else {
        panic!(
            "{what}: still running after {:?}; stderr:\n{}",
            f.elapsed, f.stderr
        );
    };
    assert!(
        !status.success(),
        "{what}: should exit non-zero; stderr:\n{}",
        f.stderr
    );
    for n in needles {
        assert!(
            f.stderr.contains(n),
            "{what}: stderr should mention {n:?}:\n{}",
            f.stderr
        );
    }
}

#[test]
fn unknown_config_option_fails_naming_the_key() {
    let f = run_with_timeout(
        tiffin(&["serve-http", "--host", "127.0.0.1", "--port", "0"])
            .env("TIFFIN_CONFIG_OPTIONS", "api_server.http.prot=1"),
        Duration::from_secs(10),
    );
    assert_fails_fast(
        &f,
        "unknown key in TIFFIN_CONFIG_OPTIONS",
        &["api_server.http.prot"],
    );
}

#[test]
fn unknown_key_in_config_file_fails_naming_the_key() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("tiffin-foundation-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "api_server:\n  workers: 1\n  htpp:\n    port: 3000\n",
    )
    .unwrap();
    let f = run_with_timeout(
        tiffin(&[
            "serve-http",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--config",
        ])
        .arg(&file),
        Duration::from_secs(10),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_fails_fast(&f, "unknown key in a YAML file", &["api_server.htpp"]);
}

#[test]
fn unknown_service_lists_the_available_ones() {
    let f = run_with_timeout(
        &mut tiffin(&[
            "serve-http",
            "no_such_service",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]),
        Duration::from_secs(10),
    );
    assert_fails_fast(
        &f,
        "unknown service",
        &["no_such_service", "sentiment_analyzer", "echo"],
    );
}

#[test]
fn port_in_use_fails_fast() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port().to_string();
    let f = run_with_timeout(
        tiffin(&["serve-http", "--host", "127.0.0.1", "--port", &port]).env("TIFFIN_LOG", "info"),
        Duration::from_secs(10),
    );
    assert_fails_fast(&f, "port in use", &[&port, "in use"]);
    // Fast means before anything was started, not within a time.
    assert!(
        !f.stderr.contains("worker started"),
        "a worker was started before the port was found taken:\n{}",
        f.stderr
    );
    drop(taken);
}

#[test]
fn version_and_help() {
    let f = run_with_timeout(&mut tiffin(&["--version"]), Duration::from_secs(10));
    assert!(f.status.is_some_and(|s| s.success()), "--version: {f:?}");
    assert!(
        f.stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version should print {}: {f:?}",
        env!("CARGO_PKG_VERSION")
    );
    let f = run_with_timeout(
        &mut tiffin(&["serve-http", "--help"]),
        Duration::from_secs(10),
    );
    assert!(
        f.status.is_some_and(|s| s.success()),
        "serve-http --help: {f:?}"
    );
    for flag in [
        "--host",
        "--port",
        "--api-workers",
        "--runner-workers",
        "--config",
        "--metrics-port",
        "--graceful-timeout",
    ] {
        assert!(
            f.stdout.contains(flag),
            "serve-http --help should document {flag}:\n{}",
            f.stdout
        );
    }
    let f = run_with_timeout(&mut tiffin(&["list"]), Duration::from_secs(10));
    assert!(f.status.is_some_and(|s| s.success()), "list: {f:?}");
    let names: Vec<&str> = f.stdout.lines().collect();
    assert!(
        names.contains(&"sentiment_analyzer") && names.contains(&"echo"),
        "tiffin list: {names:?}"
    );
}

/// Logs written to a pipe or file must be plain text (no ANSI colour codes),
/// so `key=value` fields can be grepped and parsed.
#[test]
fn logs_are_plain_text_on_a_pipe() {
    let mut child = Command::new(tiffin_bin())
        .args(["serve-http", "--host", "127.0.0.1", "--port", "0"])
        .env_remove("TIFFIN_CONFIG")
        .env_remove("TIFFIN_CONFIG_OPTIONS")
        .env_remove("NO_COLOR")
        .env("TIFFIN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tiffin");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("supervisor starting") {
                let _ = tx.send(line);
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("no 'supervisor starting' log line");
    assert!(
        !line.contains('\u{1b}'),
        "log line written to a pipe contains ANSI escape codes: {line:?}"
    );
    assert!(
        line.contains("listen=127.0.0.1:"),
        "start line should carry listen=: {line:?}"
    );
}
