//! Bearer tokens on the APIs (issue 27, `api_server.auth`), on the real
//! binary: tokens from a file or an environment variable; no token, a wrong
//! one, one for another API and one in the query string each get their
//! status, `WWW-Authenticate` challenge and JSON error; probes stay open;
//! the docs follow `public_docs`; refusals are counted in the aggregated
//! `/metrics`; the access log never holds a token; a client that is not
//! ours (Python grpcio) gets `UNAUTHENTICATED` / `PERMISSION_DENIED`; and
//! a bad token source stops `serve-http` naming its key.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A token for every API.
const EVERY: &str = "auth-test-every-api-3f9c2d7b";
/// A token limited to the `slow` API (custom_service).
const SLOW_ONLY: &str = "auth-test-slow-only-8a41e6c0";
/// A token that is none of ours, of a valid shape.
const WRONG: &str = "auth-test-not-ours-5b7d90f1";

const WAIT: Duration = Duration::from_secs(20);

/// A directory of its own under the temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("tiffin-auth-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `text` to `name` in the directory and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tokens file of the custom_service tests: one token for every API,
/// one for `slow` only, with a comment and a blank line.
fn tokens_file(dir: &TempDir) -> PathBuf {
    dir.file(
        "tokens",
        &format!("# the test's callers\n{EVERY}\n\n{SLOW_ONLY} slow\n"),
    )
}

/// `serve-http` of the custom_service example with auth from `options`.
fn custom_with_auth(options: &str) -> Server {
    Launch::http(&[])
        .bin(example_bin("custom_service"))
        .env("TIFFIN_CONFIG_OPTIONS", options)
        .start()
}

/// One request with `X-Request-ID: id` and, when given, a bearer token.
fn request(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    id: &str,
    body: &[u8],
) -> Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json"), ("X-Request-ID", id)];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    http(&server.addr, method, path, &headers, body).expect("request")
}

/// `r` is a refusal with `status`, `challenge` and a JSON `error` that
/// never repeats a token.
fn assert_refused(r: &Response, status: u16, challenge: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.header("www-authenticate"), Some(challenge), "{what}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let error = r.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error string in {}", r.text()))
        .to_owned();
    for token in [EVERY, SLOW_ONLY, WRONG] {
        assert!(!r.text().contains(token), "{what} echoes a token: {error}");
    }
}

/// The log holds no token, and no `Authorization` header.
fn assert_no_token_logged(server: &Server) {
    let log = server.log();
    for secret in [EVERY, SLOW_ONLY, WRONG, "Bearer", "uthorization"] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
}

/// The aggregated `/metrics`, scraped with the every-API token.
fn scrape(server: &Server) -> Exposition {
    let r = request(server, "GET", "/metrics", Some(EVERY), "scrape", b"");
    assert_eq!(r.status, 200, "metrics with a token: {}", r.text());
    parse_exposition(&r.text())
}

fn failures(e: &Exposition, endpoint: &str, reason: &str) -> f64 {
    e.sum(
        "tiffin_api_server_auth_failures_total",
        &[("endpoint", endpoint), ("reason", reason)],
    )
}

#[test]
fn tokens_from_a_file_let_the_right_callers_in_and_refuse_the_rest_by_rfc_6750() {
    let dir = TempDir::new("file");
    let tokens = tokens_file(&dir);
    let server = custom_with_auth(&format!("api_server.auth.tokens_file={}", tokens.display()));

    // Probes are open (the harness already waited on /readyz without a token).
    for path in [
        "/livez",
        "/healthz",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
    ] {
        let r = http(&server.addr, "GET", path, &[], b"").expect("probe");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }

    let ok = request(&server, "POST", "/double", Some(EVERY), "every", b"21");
    assert_eq!(ok.status, 200, "{}\nlog:\n{}", ok.text(), server.log());
    assert_eq!(ok.json(), serde_json::json!({ "result": 42.0 }));
    let scoped = request(&server, "POST", "/slow", Some(SLOW_ONLY), "scoped", b"1");
    assert_eq!(scoped.status, 200, "{}", scoped.text());

    let missing = request(&server, "POST", "/double", None, "missing", b"21");
    assert_refused(&missing, 401, "Bearer realm=\"tiffin\"", "no token");
    let basic = http(
        &server.addr,
        "POST",
        "/double",
        &[
            ("Authorization", "Basic dXNlcjpwYXNz"),
            ("X-Request-ID", "basic"),
        ],
        b"21",
    )
    .expect("POST");
    assert_refused(&basic, 401, "Bearer realm=\"tiffin\"", "basic credentials");
    let wrong = request(&server, "POST", "/double", Some(WRONG), "wrong", b"21");
    assert_refused(
        &wrong,
        401,
        "Bearer realm=\"tiffin\", error=\"invalid_token\"",
        "wrong token",
    );
    let forbidden = request(
        &server,
        "POST",
        "/double",
        Some(SLOW_ONLY),
        "forbidden",
        b"21",
    );
    assert_refused(
        &forbidden,
        403,
        "Bearer realm=\"tiffin\", error=\"insufficient_scope\"",
        "token for another API",
    );
    assert!(
        forbidden.text().contains("'double'"),
        "{}",
        forbidden.text()
    );
    for (query, id) in [("access_token", "query-a"), ("token", "query-b")] {
        let path = format!("/double?{query}={EVERY}");
        let r = request(&server, "POST", &path, None, id, b"21");
        assert_refused(
            &r,
            400,
            "Bearer realm=\"tiffin\", error=\"invalid_request\"",
            &format!("token in the {query} parameter"),
        );
    }
    // An unknown path tells a caller without a token nothing: 401, not 404.
    let unknown = request(&server, "GET", "/admin", None, "unknown", b"");
    assert_refused(&unknown, 401, "Bearer realm=\"tiffin\"", "unknown path");
    assert_eq!(
        request(&server, "GET", "/admin", Some(EVERY), "unknown-ok", b"").status,
        404
    );

    // Docs are closed by default (public_docs: false): any valid token opens them.
    for path in ["/docs.json", "/"] {
        let r = request(&server, "GET", path, None, "docs", b"");
        assert_refused(&r, 401, "Bearer realm=\"tiffin\"", path);
        let r = request(&server, "GET", path, Some(SLOW_ONLY), "docs-ok", b"");
        assert_eq!(r.status, 200, "{path} with a token: {}", r.text());
    }

    // `/metrics` on the API port needs a token too; refusals are counted there.
    let r = request(&server, "GET", "/metrics", None, "metrics", b"");
    assert_refused(&r, 401, "Bearer realm=\"tiffin\"", "/metrics");
    let mut e = scrape(&server);
    let expected = [
        ("/double", "missing", 2.0),
        ("/double", "invalid", 1.0),
        ("/double", "forbidden", 1.0),
        ("/double", "query", 2.0),
        ("/__unmatched__", "missing", 1.0),
        ("/docs.json", "missing", 1.0),
        ("/metrics", "missing", 1.0),
    ];
    let counted = eventually(WAIT, || {
        e = scrape(&server);
        expected
            .iter()
            .all(|(endpoint, reason, n)| failures(&e, endpoint, reason) == *n)
    });
    assert!(
        counted,
        "failures should be {expected:?}:\n{:?}",
        e.family_samples("tiffin_api_server_auth_failures_total")
            .collect::<Vec<_>>()
    );

    // Every refusal has its access-log line, and no line holds a token.
    for id in [
        "missing",
        "wrong",
        "forbidden",
        "query-a",
        "query-b",
        "every",
    ] {
        let line = access_line(&server, id);
        assert!(line.contains("path=/double,"), "{line}");
    }
    assert!(access_line(&server, "forbidden").contains("(status=403,"));
    assert!(access_line(&server, "query-a").contains("(status=400,"));
    assert_no_token_logged(&server);
}

#[test]
fn tokens_from_an_environment_variable_with_public_docs_leave_the_docs_open() {
    let server = Launch::http(&["echo"])
        .env(
            "TIFFIN_TEST_TOKENS",
            &format!("{EVERY} echo; # retired\n{SLOW_ONLY}"),
        )
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "api_server.auth.tokens_env=TIFFIN_TEST_TOKENS api_server.auth.public_docs=true",
        )
        .start();
    for path in ["/docs.json", "/", "/static_content/swagger-ui.css"] {
        let r = http(&server.addr, "GET", path, &[], b"").expect("GET");
        assert_eq!(r.status, 200, "{path} is public: {}", r.text());
    }
    let post = |token: Option<&str>, id: &str| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "text/plain"), ("X-Request-ID", id)];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b.as_str()));
        }
        http(&server.addr, "POST", "/echo", &headers, b"hello").expect("POST")
    };
    assert_refused(
        &post(None, "env-missing"),
        401,
        "Bearer realm=\"tiffin\"",
        "no token",
    );
    for (token, id) in [(EVERY, "env-a"), (SLOW_ONLY, "env-b")] {
        let r = post(Some(token), id);
        assert_eq!(r.status, 200, "{id}: {}", r.text());
        assert_eq!(r.text(), "hello");
        access_line(&server, id);
    }
    // The docs being public opens nothing else.
    let r = http(&server.addr, "GET", "/metrics", &[], b"").expect("GET");
    assert_eq!(r.status, 401, "{}", r.text());
    access_line(&server, "env-missing");
    assert_no_token_logged(&server);
}

#[test]
fn a_refusal_comes_before_the_body_is_read() {
    let dir = TempDir::new("body");
    let tokens = tokens_file(&dir);
    let server = custom_with_auth(&format!("api_server.auth.tokens_file={}", tokens.display()));
    // Headers announce a body that never comes: the answer cannot wait for it.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.addr).expect("connect");
    stream
        .write_all(
            b"POST /double HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000000\r\nConnection: close\r\n\r\n21",
        )
        .expect("write");
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .expect("an answer before the body");
    assert_eq!(&head, b"HTTP/1.1 401");
}

/// `serve-http` of the echo service with `options`, expected to stop
/// before spawning anything, with an error naming every needle and none
/// of the `secrets`.
fn assert_start_refused(options: &str, env: &[(&str, &str)], needles: &[&str], secrets: &[&str]) {
    let mut cmd = Command::new(tiffin_bin());
    cmd.args(["serve-http", "echo", "--host", "127.0.0.1", "--port", "0"])
        .env("TIFFIN_LOG", "info")
        .env_remove("TIFFIN_CONFIG")
        .env("TIFFIN_CONFIG_OPTIONS", options);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let f = run_with_timeout(&mut cmd, WAIT);
    let status = f
        .status
        .unwrap_or_else(|| panic!("{options}: still running:\n{}", f.stderr));
    assert!(!status.success(), "{options}: should fail:\n{}", f.stderr);
    assert!(
        f.stderr.contains("tiffin: error: "),
        "{options}:\n{}",
        f.stderr
    );
    for n in needles {
        assert!(
            f.stderr.contains(n),
            "{options}: should say {n:?}:\n{}",
            f.stderr
        );
    }
    for s in secrets {
        assert!(
            !f.stderr.contains(s),
            "{options}: prints a token:\n{}",
            f.stderr
        );
    }
    assert!(
        !f.stderr.contains("worker started"),
        "{options}: a worker was started:\n{}",
        f.stderr
    );
}

#[test]
fn bad_token_sources_stop_serve_http_naming_the_key() {
    let dir = TempDir::new("bad");
    let missing = dir.0.join("no-such-file");
    assert_start_refused(
        &format!("api_server.auth.tokens_file={}", missing.display()),
        &[],
        &[
            "'api_server.auth.tokens_file'",
            "cannot read the file",
            "no-such-file",
        ],
        &[],
    );
    assert_start_refused(
        "api_server.auth.tokens_env=TIFFIN_TEST_UNSET_TOKENS",
        &[],
        &[
            "'api_server.auth.tokens_env'",
            "'TIFFIN_TEST_UNSET_TOKENS' is not set",
        ],
        &[],
    );
    let short = "tooshort-42";
    let file = dir.file("short", &format!("{EVERY}\n{short}\n"));
    assert_start_refused(
        &format!("api_server.auth.tokens_file={}", file.display()),
        &[],
        &["'api_server.auth.tokens_file'", "line 2", "at least 16"],
        &[short, EVERY],
    );
    let file = dir.file("unknown-api", &format!("{EVERY} echo,analysis\n"));
    assert_start_refused(
        &format!("api_server.auth.tokens_file={}", file.display()),
        &[],
        &[
            "'api_server.auth.tokens_file'",
            "'analysis' is not an API",
            "its APIs: echo",
        ],
        &[EVERY],
    );
    let file = dir.file("empty", "# nobody yet\n\n");
    assert_start_refused(
        &format!("api_server.auth.tokens_file={}", file.display()),
        &[],
        &["'api_server.auth.tokens_file'", "holds no token"],
        &[],
    );
    assert_start_refused(
        "api_server.auth.tokens_env=TIFFIN_TEST_SHORT_TOKENS",
        &[("TIFFIN_TEST_SHORT_TOKENS", short)],
        &["'api_server.auth.tokens_env'", "entry 1", "at least 16"],
        &[short],
    );
    assert_start_refused(
        "api_server.auth.token_file=/x",
        &[],
        &[
            "unknown configuration key 'api_server.auth.token_file'",
            "tokens_file",
        ],
        &[],
    );
}

#[test]
fn python_grpcio_gets_unauthenticated_and_permission_denied_and_a_token_gets_in() {
    let python = crate::grpc::python_with_grpcio();
    let dir = TempDir::new("grpc");
    let tokens = tokens_file(&dir);
    let metrics_port = free_port();
    let server = launch_grpc(&[
        "--enable-reflection",
        "--metrics-port",
        &metrics_port.to_string(),
    ])
    .bin(example_bin("custom_service"))
    .env(
        "TIFFIN_CONFIG_OPTIONS",
        &format!(
            "api_server.auth.tokens_file={} api_server.grpc.metrics.host=127.0.0.1",
            tokens.display()
        ),
    )
    .start();
    // The health service is open: the harness's wait needs no token.
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_auth_client.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script).args([
        "--addr",
        &server.addr,
        "--every",
        EVERY,
        "--slow-only",
        SLOW_ONLY,
        "--wrong",
        WRONG,
    ]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains("ALL CHECKS PASSED"),
        "python grpcio client failed\nstdout:\n{}\nstderr:\n{}\nlog:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );

    let call = "/bentoml.grpc.v1.BentoService/Call";
    let reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
    let expected = [
        (call, "missing"),
        (call, "invalid"),
        ("/double", "forbidden"),
        (reflection, "missing"),
    ];
    let mut text = String::new();
    let counted = eventually(WAIT, || {
        let r = http(&format!("127.0.0.1:{metrics_port}"), "GET", "/", &[], b"").expect("scrape");
        text = r.text();
        let e = parse_exposition(&text);
        expected
            .iter()
            .all(|(endpoint, reason)| failures(&e, endpoint, reason) == 1.0)
    });
    assert!(counted, "each refusal once, {expected:?}:\n{text}");
    assert!(
        server
            .log()
            .contains("path=/bentoml.grpc.v1.BentoService/Call"),
        "calls are logged:\n{}",
        server.log()
    );
    assert_no_token_logged(&server);
}
