//! What a browser sees of the front door: Swagger UI at `/`, rendered by
//! Debian's real headless `chromium` (scripts/setup/20-frontdoor installs
//! it) with a screenshot kept under target/test-artifacts/, and CORS
//! (`api_server.http.cors.*`) answered with the headers a browser sends,
//! preflights included, without reaching the runner.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// Runs headless chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=...`), giving the page's scripts a virtual-time budget to
/// fetch /docs.json and render.
fn chromium(url: &str, mode: &str) -> Finished {
    let (mut cmd, profile) = headless_chromium("1280,1400", &["--virtual-time-budget=15000"]);
    cmd.arg(mode).arg(url);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(90));
    let _ = std::fs::remove_dir_all(&profile);
    out
}

#[test]
fn swagger_ui_at_root_lists_the_apis_in_a_real_browser() {
    let server = Launch::http(&["sentiment_analyzer", "--api-workers", "1"]).start();
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    // The served HTML names no API: whatever lists them was rendered by the page's script.
    assert!(
        !html.contains("/analysis") && !html.contains("sentiment_analyzer"),
        "{html}"
    );
    assert!(html.contains("static_content/swagger-ui-bundle.js"));
    for asset in [
        "/static_content/swagger-ui-bundle.js",
        "/static_content/swagger-ui.css",
        "/static_content/swagger-initializer.js",
    ] {
        let r = server.get(asset);
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.body.len() > 100, "{asset}");
    }
    assert_eq!(server.get("/static_content/nope.js").status, 404);

    let url = format!("http://{}/", server.addr);
    let dom = chromium(&url, "--dump-dom");
    assert!(
        dom.status.is_some_and(|s| s.success()),
        "chromium failed: {:?}\n{}",
        dom.status,
        dom.stderr
    );
    let dom = dom.stdout;
    for rendered in [
        "data-path=\"/analysis\"",
        "sentiment_analyzer",
        "Service APIs",
        "Infrastructure",
        "data-path=\"/readyz\"",
        "data-path=\"/metrics\"",
    ] {
        assert!(
            dom.contains(rendered),
            "the rendered page lacks {rendered:?}; DOM:\n{dom}\nserver log:\n{}",
            server.log()
        );
    }

    let shot = artifacts().join("swagger-ui.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&url, &format!("--screenshot={}", shot.display()));
    assert!(out.status.is_some_and(|s| s.success()), "{}", out.stderr);
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "no screenshot at {} ({} bytes)",
        shot.display(),
        png.len()
    );
}

/// A config file enabling CORS for one origin.
fn cors_config(name: &str, yaml: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "tiffin-cors-{name}-{}-{}.yaml",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&path, yaml).expect("write config");
    path
}

const APP: &str = "http://app.example:8080";

fn preflight(server: &Server, origin: &str, method: &str, headers: &str) -> Response {
    http(
        &server.addr,
        "OPTIONS",
        "/classify",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", headers),
        ],
        b"",
    )
    .expect("OPTIONS")
}

#[test]
fn cors_preflight_and_answers_follow_the_bentoml_keys() {
    let config = cors_config(
        "on",
        &format!(
            "api_server:\n  http:\n    cors:\n      enabled: true\n      \
             access_control_allow_origins: [\"{APP}\"]\n      \
             access_control_allow_methods: [GET, POST]\n      \
             access_control_allow_headers: [X-Request-ID]\n      \
             access_control_expose_headers: X-Request-ID\n      \
             access_control_allow_credentials: true\n      \
             access_control_max_age: 120\n"
        ),
    );
    let server = Launch::http(&[
        "iris_classifier",
        "--api-workers",
        "1",
        "--config",
        config.to_str().unwrap_or_default(),
    ])
    .start();
    let _ = std::fs::remove_file(&config);

    // What Chromium sends before a cross-origin POST of JSON.
    let r = preflight(&server, APP, "POST", "content-type,x-request-id");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("120"));
    let allowed = r.header("access-control-allow-headers").unwrap_or_default();
    assert!(
        allowed.contains("content-type") && allowed.contains("x-request-id"),
        "{allowed}"
    );

    // A disallowed origin, method or header: 400 naming it, and no allow-origin.
    let bad = preflight(&server, "http://evil.example", "POST", "content-type");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.text(), "Disallowed CORS origin");
    assert_eq!(bad.header("access-control-allow-origin"), None);
    let bad = preflight(&server, APP, "DELETE", "x-secret");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.text(), "Disallowed CORS method, headers");

    // The actual request gets the headers; an error answer too; a disallowed origin none.
    let post = |origin: &str, body: &[u8]| {
        http(
            &server.addr,
            "POST",
            "/classify",
            &[("Origin", origin), ("Content-Type", "application/json")],
            body,
        )
        .expect("POST")
    };
    let ok = post(APP, b"[5.1, 3.5, 1.4, 0.2]");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json(), serde_json::json!(["setosa"]));
    assert_eq!(ok.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some("X-Request-ID")
    );
    assert_eq!(ok.header("vary"), Some("Origin"));
    let err = post(APP, b"not json");
    assert_eq!(err.status, 400);
    assert_eq!(err.header("access-control-allow-origin"), Some(APP));
    let evil = post("http://evil.example", b"[5.1, 3.5, 1.4, 0.2]");
    assert_eq!(evil.status, 200);
    assert_eq!(evil.header("access-control-allow-origin"), None);
    // Same-origin requests (no Origin) are left alone.
    let plain = server.post("/classify", "application/json", b"[5.1, 3.5, 1.4, 0.2]");
    assert_eq!(plain.header("access-control-allow-origin"), None);

    // Preflights never reached the API or the runner: the runner served
    // exactly the three POSTs that reached the model, and no OPTIONS request
    // was counted by the API server.
    let metrics = parse_exposition(&server.metrics());
    let runner_calls = metrics.sum(
        "bentoml_runner_request_total",
        &[("runner_name", "iris_clf")],
    );
    assert_eq!(runner_calls, 3.0, "runner calls");
    let api_requests = metrics.sum(
        "bentoml_api_server_request_total",
        &[("endpoint", "/classify")],
    );
    assert_eq!(api_requests, 4.0, "only the four POSTs are API requests");
}

#[test]
fn cors_is_off_by_default() {
    let server = Launch::http(&["iris_classifier", "--api-workers", "1"]).start();
    let r = preflight(&server, APP, "POST", "content-type");
    // Not a CORS preflight to tiffin: routed like any OPTIONS (405 on an API route).
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), None);
    let ok = http(
        &server.addr,
        "POST",
        "/classify",
        &[("Origin", APP), ("Content-Type", "application/json")],
        b"[5.1, 3.5, 1.4, 0.2]",
    )
    .expect("POST");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("access-control-allow-origin"), None);
}
