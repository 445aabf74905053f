//! Python clients that are not ours over TLS: grpcio against `serve-grpc`
//! (with and without a client certificate under `--ssl-cert-reqs 2`), and
//! BentoML 1.2's own client against `serve-http` over HTTPS.

use std::process::Command;
use std::time::Duration;

use crate::common::{Finished, Server, launch_grpc, run_with_timeout, venv_tool};
use serde_json::{Value, json};

use super::door::{serve_https, trust};
use super::pki::{Pki, fixture};

/// Runs tests/fixtures/tls/grpc_tls_client.py with grpcio from the venv
/// scripts/test makes (target/pyvenv, as tests/it/grpc.rs uses).
fn grpc_client(server: &Server, pki: &Pki, client_cert: bool, expect: &str) -> Finished {
    let python = venv_tool("target/pyvenv/bin/python", "scripts/test");
    let mut cmd = Command::new(python);
    cmd.arg(fixture("grpc_tls_client.py"))
        .arg(&server.addr)
        .arg(pki.path("ca.pem"))
        .args(["--expect", expect]);
    if client_cert {
        cmd.arg("--cert")
            .arg(pki.path("client.pem"))
            .arg("--key")
            .arg(pki.path("client.key"));
    }
    run_with_timeout(&mut cmd, Duration::from_secs(120))
}

fn assert_passed(out: &Finished, server: &Server, what: &str, mark: &str) {
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains(mark),
        "{what}: grpcio client failed ({:?})\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
        out.status,
        out.stdout,
        out.stderr,
        server.log()
    );
}

#[test]
fn grpcio_calls_serve_grpc_over_tls() {
    let pki = Pki::new();
    let mut args = vec!["--enable-reflection".to_string()];
    args.extend(pki.ssl_flags("server.pem", "server.key"));
    let server = launch_grpc(&args.iter().map(String::as_str).collect::<Vec<_>>()).start();
    let out = grpc_client(&server, &pki, false, "ok");
    assert_passed(&out, &server, "TLS, trusting the CA", "ALL CHECKS PASSED");
}

#[test]
fn grpcio_needs_a_client_certificate_under_cert_reqs_2() {
    let pki = Pki::new();
    let mut args = vec!["--enable-reflection".to_string()];
    args.extend(pki.ssl_flags("server.pem", "server.key"));
    args.extend(pki.client_ca_flags(2));
    let server = launch_grpc(&args.iter().map(String::as_str).collect::<Vec<_>>()).start();
    // First with the certificate: the server is up and serving...
    let out = grpc_client(&server, &pki, true, "ok");
    assert_passed(
        &out,
        &server,
        "with a client certificate",
        "ALL CHECKS PASSED",
    );
    // ...so a refusal without one is the handshake's.
    let out = grpc_client(&server, &pki, false, "refused");
    assert_passed(
        &out,
        &server,
        "without a client certificate",
        "REFUSED: UNAVAILABLE",
    );
}

#[test]
fn bentoml_client_calls_the_api_over_https_trusting_the_ca() {
    let pki = Pki::new();
    let mut args = vec!["--api-workers".to_string(), "1".to_string()];
    args.extend(pki.ssl_flags("server.pem", "server.key"));
    let server = serve_https(&args, &trust(&pki));
    let python = venv_tool(
        "target/pyvenv-frontdoor/bin/python",
        "scripts/setup/20-frontdoor",
    );
    let calls = json!({ "analysis": [
        "I love this product! It is wonderful and works great.",
        "This is terrible. I hate it, the worst purchase ever.",
    ]});
    let out = run_with_timeout(
        Command::new(python)
            .arg(fixture("bentoml_https_client.py"))
            .arg(format!("https://{}", server.addr))
            .arg(calls.to_string())
            .env("SSL_CERT_FILE", pki.path("ca.pem"))
            // BentoML writes its home (~/bentoml) on import; keep it out of the user's.
            .env(
                "BENTOML_HOME",
                std::env::temp_dir().join("tiffin-bentoml-home"),
            ),
        Duration::from_secs(120),
    );
    assert!(
        out.status.is_some_and(|s| s.success()),
        "bentoml client over HTTPS failed ({:?})\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
        out.status,
        out.stdout,
        out.stderr,
        server.log()
    );
    let last = out.stdout.lines().last().unwrap_or_default();
    let seen: Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout));
    assert_eq!(seen["title"], "sentiment_analyzer", "{seen:#}");
    assert_eq!(seen["endpoints"], json!(["analysis"]), "{seen:#}");
    let expected = json!([{ "is_positive": true }, { "is_positive": false }]);
    for flavour in ["answers", "attribute_answers", "async_answers"] {
        assert_eq!(seen[flavour]["analysis"], expected, "{flavour}: {seen:#}");
    }
    let untrusted = seen["untrusted"].as_str().unwrap_or_default();
    assert!(
        untrusted.contains("CERTIFICATE_VERIFY_FAILED"),
        "without the CA the client must refuse the certificate: {seen:#}"
    );
}
