//! Starting tiffin with TLS on its API port and talking to it over HTTPS
//! with curl: readiness, the aggregated `/metrics`, and the counters of
//! certificate reloads.

use std::process::Command;
use std::time::Duration;

use crate::common::{Finished, Launch, Server, eventually, parse_exposition, run_with_timeout};

use super::pki::Pki;
use super::tools::{curl, https};

/// The successful reloads of a certificate, summed over the API servers.
pub const RELOADS: &str = "tiffin_api_server_tls_reloads_total";
/// The reloads that kept the old certificate because the new files were bad.
pub const RELOAD_ERRORS: &str = "tiffin_api_server_tls_reload_errors_total";

/// `curl` arguments that trust the test CA.
pub fn trust(pki: &Pki) -> Vec<String> {
    vec!["--cacert".into(), pki.file("ca.pem")]
}

/// `curl` arguments that trust the test CA and present the client
/// certificate `NAME.pem` with its key `NAME.key` ("client": signed by the
/// test CA; "other-client": by an unrelated one).
pub fn trust_with_cert(pki: &Pki, name: &str) -> Vec<String> {
    let mut args = trust(pki);
    args.extend([
        "--cert".into(),
        pki.file(&format!("{name}.pem")),
        "--key".into(),
        pki.file(&format!("{name}.key")),
    ]);
    args
}

/// `args` as the `&str`s the launchers and curl take.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `tiffin serve-http ARGS` (TLS flags among them) on a free port, waiting
/// until `/readyz` answers 200 over HTTPS to curl run with `curl_args`.
pub fn serve_https(args: &[String], curl_args: &[String]) -> Server {
    let server = Launch::http(&strs(args)).no_wait().start();
    wait_ready_https(&server, curl_args);
    server
}

/// Waits (30 s at most) for `GET /readyz` to answer 200 over HTTPS.
pub fn wait_ready_https(server: &Server, curl_args: &[String]) {
    let args = strs(curl_args);
    let mut last = None;
    let ready = eventually(Duration::from_secs(30), || {
        let r = curl(&args, &https(&server.addr, "/readyz"));
        let ok = r.status == 200;
        last = Some(r);
        ok
    });
    assert!(
        ready,
        "/readyz never answered 200 over HTTPS; last try: {last:?}\nlog:\n{}",
        server.log()
    );
}

/// The aggregated `/metrics` over HTTPS.
pub fn metrics_https(server: &Server, curl_args: &[String]) -> String {
    let r = curl(&strs(curl_args), &https(&server.addr, "/metrics"));
    assert_eq!(
        r.status,
        200,
        "GET /metrics over HTTPS: {r:?}\nlog:\n{}",
        server.log()
    );
    r.body
}

/// One unlabelled counter of the aggregated `/metrics` (0 when absent).
pub fn counter(server: &Server, curl_args: &[String], name: &str) -> f64 {
    parse_exposition(&metrics_https(server, curl_args)).sum(name, &[])
}

/// Waits (30 s at most) until the counter `name` exceeds `above`; returns its value.
pub fn wait_counter_above(server: &Server, curl_args: &[String], name: &str, above: f64) -> f64 {
    let mut now = above;
    let grew = eventually(Duration::from_secs(30), || {
        now = counter(server, curl_args, name);
        now > above
    });
    assert!(
        grew,
        "{name} stayed at {now} (waited for more than {above}); log:\n{}",
        server.log()
    );
    now
}

/// Runs `tiffin SUBCOMMAND ARGS --host 127.0.0.1 --port 0` expecting it to
/// exit on its own (a start-up error); killed after 60 s.
pub fn run_to_exit(subcommand: &str, args: &[String]) -> Finished {
    run_with_timeout(
        Command::new(crate::common::tiffin_bin())
            .arg(subcommand)
            .args(args)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env("TIFFIN_LOG", "info")
            .env_remove("TIFFIN_CONFIG")
            .env_remove("TIFFIN_CONFIG_OPTIONS"),
        Duration::from_secs(60),
    )
}
