//! The scrape endpoints under Prometheus's own web configuration file
//! (`--web.config.file`, the exporter-toolkit's format): a real Prometheus
//! scrapes `--metrics-port` with `scheme: https`, `tls_config` and
//! `basic_auth` and gets tiffin's series; a wrong password leaves the target
//! down with a 401. curl shows the same rules on the metrics port and on
//! the API port's `/metrics`, and gRPC's metrics port with client
//! certificates required.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::prometheus::Prometheus;
use crate::common::{
    Launch, eventually, free_port, http, launch_grpc, post_text_to, require_tool, run_with_timeout,
    venv_tool,
};

use super::door::{strs, trust, trust_with_cert};
use super::pki::Pki;
use super::tools::{Curl, curl, https};

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-me-27";
const REALM: &str = "Basic realm=\"tiffin metrics\"";

/// A bcrypt hash of `password`, made by Python's `bcrypt` package in the
/// venv scripts/setup/27-tls makes.
fn bcrypt_hash(password: &str) -> String {
    let python = venv_tool("target/pyvenv-tls/bin/python", "scripts/setup/27-tls");
    let out = run_with_timeout(
        Command::new(python).args([
            "-c",
            "import bcrypt, sys; \
             print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=10)).decode())",
            password,
        ]),
        Duration::from_secs(30),
    );
    let hash = out.stdout.trim().to_string();
    assert!(
        out.status.is_some_and(|s| s.success()) && hash.starts_with("$2"),
        "bcrypt failed: {out:?}"
    );
    hash
}

/// Writes `web.yml` into the pki directory: TLS with the server pair,
/// `extra_tls` lines under `tls_server_config`, and one basic-auth user.
fn web_config(pki: &Pki, extra_tls: &str) -> PathBuf {
    let path = pki.dir().join("web.yml");
    let yaml = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra_tls}\
         basic_auth_users:\n  {USER}: '{}'\n",
        pki.file("server.pem"),
        pki.file("server.key"),
        bcrypt_hash(PASSWORD)
    );
    std::fs::write(&path, yaml).expect("write web.yml");
    path
}

/// `-u USER:PASSWORD`.
fn basic(password: &str) -> Vec<String> {
    vec!["-u".into(), format!("{USER}:{password}")]
}

fn assert_401(r: &Curl, what: &str) {
    assert_eq!(r.status, 401, "{what}: {r:?}");
    assert_eq!(r.header("WWW-Authenticate"), Some(REALM), "{what}: {r:?}");
}

/// One scrape job of `target` over HTTPS trusting `ca`, with basic auth.
fn job(name: &str, target: &str, ca: &str, password: &str) -> String {
    format!(
        "  - job_name: {name}\n    scheme: https\n    metrics_path: /metrics\n\
         \x20   tls_config:\n      ca_file: {ca}\n\
         \x20   basic_auth:\n      username: {USER}\n      password: {password}\n\
         \x20   static_configs:\n      - targets: [\"{target}\"]\n"
    )
}

/// The state Prometheus reports for the one target of `job`: (health, lastError).
fn target_state(prom: &Prometheus, job: &str) -> Option<(String, String)> {
    let r = http(&prom.addr, "GET", "/api/v1/targets", &[], b"").ok()?;
    let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    body["data"]["activeTargets"]
        .as_array()?
        .iter()
        .find(|t| t["labels"]["job"] == job)
        .map(|t| {
            (
                t["health"].as_str().unwrap_or_default().to_string(),
                t["lastError"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[test]
fn prometheus_scrapes_the_metrics_port_over_tls_with_basic_auth() {
    require_tool("prometheus");
    let pki = Pki::new();
    let web = web_config(&pki, "");
    let port = free_port();
    let port_s = port.to_string();
    let web_s = web.display().to_string();
    let server = Launch::http(&[
        "--api-workers",
        "1",
        "--metrics-port",
        &port_s,
        "--web.config.file",
        &web_s,
    ])
    .start();
    let r = post_text_to(&server.addr, "/analysis", "I love this product!").expect("POST");
    assert_eq!(r.status, 200, "{}", r.text());

    // curl on the metrics port: TLS from the file, and its user.
    let target = format!("127.0.0.1:{port}");
    let url = https(&target, "/metrics");
    let ca = trust(&pki);
    assert_401(&curl(&strs(&ca), &url), "no credentials");
    assert_401(
        &curl(&strs(&[ca.clone(), basic("wrong")].concat()), &url),
        "a wrong password",
    );
    let r = curl(&strs(&[ca.clone(), basic(PASSWORD)].concat()), &url);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("bentoml_api_server_request_total"), "{r:?}");
    let ca_file = pki.file("ca.pem");
    let prom = Prometheus::start(&format!(
        "{}{}",
        job("good", &target, &ca_file, PASSWORD),
        job("bad", &target, &ca_file, "not-the-password")
    ));
    prom.wait_up("good", 1, Duration::from_secs(60));
    let query = "bentoml_api_server_request_total{job=\"good\",endpoint=\"/analysis\"}";
    let mut last = None;
    let scraped = eventually(Duration::from_secs(30), || {
        let r = prom.query(query);
        let ok = r.as_ref().is_ok_and(|v| v.iter().any(|(_, x)| *x >= 1.0));
        last = Some(r);
        ok
    });
    assert!(
        scraped,
        "{query}: {last:?}\nprometheus log:\n{}",
        prom.log()
    );

    let mut state = None;
    let refused = eventually(Duration::from_secs(60), || {
        state = target_state(&prom, "bad");
        state
            .as_ref()
            .is_some_and(|(health, error)| health == "down" && error.contains("401"))
    });
    assert!(
        refused,
        "the wrong password's target must be down with a 401: {state:?}\nprometheus log:\n{}",
        prom.log()
    );
    assert_eq!(
        prom.query("up{job=\"bad\"}")
            .ok()
            .and_then(|v| v.first().map(|(_, x)| *x)),
        Some(0.0)
    );
}

#[test]
fn the_api_ports_metrics_ask_for_the_users_of_the_web_config() {
    let pki = Pki::new();
    let web = web_config(&pki, "");
    let server = Launch::http(&[
        "--api-workers",
        "1",
        "--metrics-port",
        &free_port().to_string(),
        "--web.config.file",
        &web.display().to_string(),
    ])
    .start();
    // Plain HTTP on the API port here: its TLS is api_server.ssl's, not the file's.
    let api = format!("http://{}/metrics", server.addr);
    assert_401(
        &curl(&[], &api),
        "the API port's /metrics without credentials",
    );
    assert_401(
        &curl(&strs(&basic("wrong")), &api),
        "the API port's /metrics with a wrong password",
    );
    let r = curl(&strs(&basic(PASSWORD)), &api);
    assert_eq!(r.status, 200, "{r:?}");
    // The probes stay open.
    assert_eq!(
        curl(&[], &format!("http://{}/readyz", server.addr)).status,
        200
    );
}

#[test]
fn grpc_metrics_port_requires_the_client_certificate_and_user_of_the_web_config() {
    let pki = Pki::new();
    let web = web_config(
        &pki,
        &format!(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            pki.file("ca.pem")
        ),
    );
    let port = free_port();
    let _server = launch_grpc(&[
        "--metrics-port",
        &port.to_string(),
        "--web.config.file",
        &web.display().to_string(),
    ])
    .start();
    let url = https(&format!("127.0.0.1:{port}"), "/metrics");
    let cert = trust_with_cert(&pki, "client");
    let authed = [cert.clone(), basic(PASSWORD)].concat();
    let mut last = None;
    let served = eventually(Duration::from_secs(30), || {
        let r = curl(&strs(&authed), &url);
        let ok = r.status == 200;
        last = Some(r);
        ok
    });
    assert!(served, "metrics port with certificate and user: {last:?}");
    assert_401(
        &curl(&strs(&cert), &url),
        "a client certificate but no user",
    );
    let r = curl(&strs(&[trust(&pki), basic(PASSWORD)].concat()), &url);
    assert!(
        r.status == 0 && r.exit.is_some_and(|c| c != 0),
        "no client certificate must fail the handshake: {r:?}"
    );
}
