//! `serve-http` with BentoML's `--ssl-*` flags, seen by curl and
//! `openssl s_client`: the built-in service's API and `/metrics` over HTTPS,
//! HTTP/2 by ALPN, a CA that did not sign the certificate, TLS 1.2 and 1.3
//! but not 1.1, mutual TLS (required and optional), an expired certificate,
//! every key format, and a plaintext request to the TLS port.

use std::time::Duration;

use crate::common::{Launch, eventually, parse_exposition};

use super::door::{serve_https, strs, trust, trust_with_cert, wait_ready_https};
use super::pki::{KEY_PASSWORD, Pki};
use super::tools::{Curl, curl, https, post_text, s_client};

/// `--api-workers 1` and the server pair of `pki`, plus `extra`.
fn args(pki: &Pki, cert: &str, key: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--api-workers".to_string(), "1".to_string()];
    a.extend(pki.ssl_flags(cert, key));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// POSTs a happy text to `/analysis` over HTTPS with curl's `tls_args`.
fn happy(addr: &str, tls_args: &[String]) -> Curl {
    post_text(addr, "/analysis", "I love this product!", &strs(tls_args))
}

/// The sentiment of a happy text came back.
fn assert_positive(r: &Curl, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    let v: serde_json::Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {r:?}"));
    assert_eq!(v, serde_json::json!({"is_positive": true}), "{what}");
}

/// No HTTP response arrived: curl failed in or right after the handshake.
fn assert_refused(r: &Curl, what: &str) {
    assert!(
        r.status == 0 && r.exit.is_some_and(|c| c != 0),
        "{what}: expected a failed handshake, got {r:?}"
    );
}

#[test]
fn curl_trusting_the_ca_calls_the_api_and_reads_metrics_over_https() {
    let pki = Pki::new();
    let server = serve_https(&args(&pki, "server.pem", "server.key", &[]), &trust(&pki));
    let ca = trust(&pki);
    let r = happy(&server.addr, &ca);
    assert_positive(&r, "POST /analysis over HTTPS");

    let r = curl(&strs(&ca), &https(&server.addr, "/metrics"));
    assert_eq!(r.status, 200, "{r:?}");
    let served = parse_exposition(&r.body).sum(
        "bentoml_api_server_request_total",
        &[("endpoint", "/analysis"), ("http_response_code", "200")],
    );
    assert_eq!(served, 1.0, "the HTTPS call is counted:\n{}", r.body);
}

#[test]
fn curl_trusting_another_ca_refuses_the_certificate() {
    let pki = Pki::new();
    let server = serve_https(&args(&pki, "server.pem", "server.key", &[]), &trust(&pki));
    let other = ["--cacert".to_string(), pki.file("other-ca.pem")];
    let r = curl(&strs(&other), &https(&server.addr, "/readyz"));
    // 60: "Peer certificate cannot be authenticated with known CA certificates".
    assert_eq!(r.exit, Some(60), "{r:?}");
    assert_eq!(r.status, 0, "{r:?}");
    // The same server, trusted, still answers.
    assert_eq!(
        curl(&strs(&trust(&pki)), &https(&server.addr, "/readyz")).status,
        200
    );
}

#[test]
fn http2_and_http1_are_negotiated_by_alpn() {
    let pki = Pki::new();
    let server = serve_https(&args(&pki, "server.pem", "server.key", &[]), &trust(&pki));
    let mut h2 = trust(&pki);
    h2.push("--http2".into());
    let r = happy(&server.addr, &h2);
    assert_eq!(r.version, "2", "curl --http2 got HTTP/{}: {r:?}", r.version);
    assert_positive(&r, "POST /analysis over HTTP/2");

    let mut h1 = trust(&pki);
    h1.push("--http1.1".into());
    let r = happy(&server.addr, &h1);
    assert_eq!(r.version, "1.1", "{r:?}");
    assert_positive(&r, "POST /analysis over HTTP/1.1");

    let ca = pki.file("ca.pem");
    for proto in ["h2", "http/1.1"] {
        let s = s_client(&server.addr, &["-CAfile", &ca, "-alpn", proto]);
        assert!(
            s.success && s.output.contains(&format!("ALPN protocol: {proto}")),
            "s_client -alpn {proto}:\n{}",
            s.output
        );
    }
}

#[test]
fn openssl_s_client_connects_with_tls_1_2_and_1_3_but_not_1_1() {
    let pki = Pki::new();
    let server = serve_https(&args(&pki, "server.pem", "server.key", &[]), &trust(&pki));
    let ca = pki.file("ca.pem");
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let s = s_client(
            &server.addr,
            &[flag, "-CAfile", &ca, "-verify_return_error"],
        );
        assert!(
            s.success
                && s.output.contains(&format!("New, {version}, Cipher is"))
                && s.output.contains("Verify return code: 0 (ok)"),
            "s_client {flag}:\n{}",
            s.output
        );
    }
    // Security level 0 lets this client offer TLS 1.1 at all (OpenSSL 3
    // refuses to at its default level), so a refusal is the server's.
    let s = s_client(
        &server.addr,
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", &ca],
    );
    assert!(
        !s.success && !s.output.contains("no protocols available"),
        "s_client -tls1_1 must be refused by the server:\n{}",
        s.output
    );
    assert!(
        !s.output.contains("New, TLSv1.1"),
        "a TLS 1.1 session was made:\n{}",
        s.output
    );
}

#[test]
fn plaintext_http_to_the_tls_port_gets_a_400_naming_tls_not_a_hang() {
    let pki = Pki::new();
    let server = serve_https(&args(&pki, "server.pem", "server.key", &[]), &trust(&pki));
    let r = curl(
        &[
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            "I love this product!",
        ],
        &format!("http://{}/analysis", server.addr),
    );
    // curl's --max-time (20 s) bounds a hang: exit 28 instead of 0.
    assert_eq!(r.exit, Some(0), "plaintext request: {r:?}");
    assert!(r.headers.starts_with("HTTP/1.1 400 Bad Request"), "{r:?}");
    let body: serde_json::Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("the 400's body is not JSON ({e}): {r:?}"));
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HTTPS") && error.contains("TLS"),
        "the refusal names TLS: {r:?}"
    );
    // The port still serves TLS afterwards.
    assert_eq!(
        curl(&strs(&trust(&pki)), &https(&server.addr, "/readyz")).status,
        200
    );
}

#[test]
fn mutual_tls_required_refuses_clients_without_a_certificate_signed_by_ca_certs() {
    let pki = Pki::new();
    let mut a = args(&pki, "server.pem", "server.key", &[]);
    a.extend(pki.client_ca_flags(2));
    let with_cert = trust_with_cert(&pki, "client");
    let server = serve_https(&a, &with_cert);

    let r = happy(&server.addr, &with_cert);
    assert_positive(&r, "with the client certificate");

    let r = happy(&server.addr, &trust(&pki));
    assert_refused(&r, "without a client certificate");

    let other = trust_with_cert(&pki, "other-client");
    let r = happy(&server.addr, &other);
    assert_refused(&r, "with a certificate from another CA");
}

#[test]
fn mutual_tls_optional_verifies_a_client_certificate_only_when_one_is_given() {
    let pki = Pki::new();
    let mut a = args(&pki, "server.pem", "server.key", &[]);
    a.extend(pki.client_ca_flags(1));
    let server = serve_https(&a, &trust(&pki));

    let r = happy(&server.addr, &trust(&pki));
    assert_positive(&r, "without a client certificate");
    let with_cert = trust_with_cert(&pki, "client");
    let r = happy(&server.addr, &with_cert);
    assert_positive(&r, "with the client certificate");

    let other = trust_with_cert(&pki, "other-client");
    let r = happy(&server.addr, &other);
    assert_refused(&r, "with a certificate from another CA");
}

#[test]
fn an_expired_certificate_starts_with_a_warning_naming_the_file_and_the_date() {
    let pki = Pki::new();
    let expired = pki.file("expired.pem");
    let server = serve_https(
        &args(&pki, "expired.pem", "expired.key", &[]),
        &["-k".to_string()],
    );
    // make_certs.sh: valid 2020-01-01 to 2021-01-01.
    let mut warning = None;
    let warned = eventually(Duration::from_secs(20), || {
        warning = server
            .log()
            .lines()
            .find(|l| l.contains("expired") && l.contains("2021-01-01") && l.contains(&expired))
            .map(str::to_string);
        warning.is_some()
    });
    assert!(
        warned,
        "no warning naming {expired}, 'expired' and 2021-01-01; log:\n{}",
        server.log()
    );

    let r = curl(&strs(&trust(&pki)), &https(&server.addr, "/readyz"));
    assert_eq!(
        r.exit,
        Some(60),
        "curl must refuse the expired certificate: {r:?}"
    );
    assert!(r.stderr.contains("expired"), "{r:?}");
    let r = happy(&server.addr, &["-k".to_string()]);
    assert_positive(&r, "curl -k to the expired certificate");
}

#[test]
fn keys_in_sec1_pkcs1_and_encrypted_pkcs8_serve() {
    let pki = Pki::new();
    let ca = trust(&pki);
    for (cert, key, extra) in [
        ("server.pem", "server-sec1.key", vec![]),
        ("rsa.pem", "rsa.key", vec![]),
        (
            "server.pem",
            "server-enc.key",
            vec!["--ssl-keyfile-password", KEY_PASSWORD],
        ),
    ] {
        let server = serve_https(&args(&pki, cert, key, &extra), &ca);
        let r = happy(&server.addr, &ca);
        assert_positive(&r, &format!("{cert} with {key}"));
    }
}

#[test]
fn bentoml_defaults_of_ssl_version_and_ciphers_are_accepted() {
    let pki = Pki::new();
    // BentoML 1.2 passes version 17 (PROTOCOL_TLS_SERVER) and ciphers "TLSv1"
    // by default; 2 is PROTOCOL_TLS.
    for version in ["17", "2"] {
        let server = serve_https(
            &args(
                &pki,
                "server.pem",
                "server.key",
                &["--ssl-version", version, "--ssl-ciphers", "TLSv1"],
            ),
            &trust(&pki),
        );
        assert_eq!(
            curl(&strs(&trust(&pki)), &https(&server.addr, "/livez")).status,
            200
        );
    }
}

#[test]
fn ssl_config_keys_alone_turn_tls_on() {
    let pki = Pki::new();
    let options = format!(
        "api_server.ssl.certfile={} api_server.ssl.keyfile={}",
        pki.file("server.pem"),
        pki.file("server.key")
    );
    let server = Launch::http(&["--api-workers", "1"])
        .env("TIFFIN_CONFIG_OPTIONS", &options)
        .no_wait()
        .start();
    wait_ready_https(&server, &trust(&pki));
    let r = happy(&server.addr, &trust(&pki));
    assert_positive(&r, "TLS from TIFFIN_CONFIG_OPTIONS");
}
