//! Certificates rotate without a restart: while wrk drives HTTPS load (one
//! run on keep-alive connections, one opening a new TLS connection for every
//! request), the certificate and key files are replaced (written under
//! another name, then renamed over the live ones). New connections get the
//! new certificate, wrk counts no error and no non-2xx answer, a bad file
//! keeps the certificate in use and counts a reload error, and SIGHUP to the
//! supervisor makes every API server re-read its files.

use std::time::Duration;

use crate::common::{Server, alive, eventually};

use super::door::{RELOAD_ERRORS, RELOADS, counter, serve_https, trust, wait_counter_above};
use super::pki::{Pki, SERIAL_1, SERIAL_2};
use super::tools::{Wrk, curl, https, served_serial};

const API_SERVERS: usize = 2;

/// Two API servers serving `live.pem`/`live.key`, first a copy of the
/// `server` pair (serial 1001); ready on every API server.
fn serve_live(pki: &Pki) -> Server {
    pki.replace("server.pem", "live.pem");
    pki.replace("server.key", "live.key");
    let args = [
        "--api-workers".to_string(),
        API_SERVERS.to_string(),
        "--ssl-certfile".into(),
        pki.file("live.pem"),
        "--ssl-keyfile".into(),
        pki.file("live.key"),
    ];
    let server = serve_https(&args, &trust(pki));
    // Both API servers accept on one socket; a run of fresh connections
    // that all answer reaches both (as common::settle does over HTTP).
    let mut run = 0;
    let settled = eventually(Duration::from_secs(30), || {
        let r = curl(
            &["--cacert", &pki.file("ca.pem")],
            &https(&server.addr, "/readyz"),
        );
        run = if r.status == 200 { run + 1 } else { 0 };
        run >= 20
    });
    assert!(
        settled,
        "not ready on every API server; log:\n{}",
        server.log()
    );
    server
}

/// Waits until `streak` new connections in a row are served `serial`.
fn wait_serial(server: &Server, pki: &Pki, serial: &str, streak: usize) {
    let ca = pki.file("ca.pem");
    let mut run = 0;
    let mut last = None;
    let ok = eventually(Duration::from_secs(30), || {
        last = served_serial(&server.addr, &ca);
        run = if last.as_deref() == Some(serial) {
            run + 1
        } else {
            0
        };
        run >= streak
    });
    assert!(
        ok,
        "new connections never all got serial {serial} (last: {last:?}); log:\n{}",
        server.log()
    );
}

/// The requests the API servers have answered (every endpoint and status).
const REQUESTS: &str = "bentoml_api_server_request_total";

/// Waits until wrk's load has added `more` answered requests.
fn wait_more_requests(server: &Server, pki: &Pki, more: f64) {
    let ca = trust(pki);
    let from = counter(server, &ca, REQUESTS);
    wait_counter_above(server, &ca, REQUESTS, from + more);
}

#[test]
fn certificates_rotate_under_https_load_with_no_failed_request() {
    let pki = Pki::new();
    let server = serve_live(&pki);
    let ca = trust(&pki);
    assert_eq!(
        served_serial(&server.addr, &pki.file("ca.pem")).as_deref(),
        Some(SERIAL_1)
    );

    let url = https(&server.addr, "/analysis");
    let keep_alive = Wrk::start(&url, 4, &[]);
    let handshakes = Wrk::start(&url, 2, &["-H", "Connection: close"]);
    wait_more_requests(&server, &pki, 200.0);

    // The new pair, each file written beside the live one and renamed over it.
    let reloads = counter(&server, &ca, RELOADS);
    pki.replace("server2.key", "live.key");
    pki.replace("server2.pem", "live.pem");
    wait_counter_above(&server, &ca, RELOADS, reloads);
    wait_serial(&server, &pki, SERIAL_2, 20);
    // Load goes on across the change, new TLS connections included.
    wait_more_requests(&server, &pki, 200.0);

    // A file with no certificate in it: the pair in use stays, the error is counted.
    let errors = counter(&server, &ca, RELOAD_ERRORS);
    pki.replace("garbage.pem", "live.pem");
    wait_counter_above(&server, &ca, RELOAD_ERRORS, errors);
    wait_serial(&server, &pki, SERIAL_2, 10);
    let live = pki.file("live.pem");
    let warned = eventually(Duration::from_secs(20), || {
        server
            .log()
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains(&live))
    });
    assert!(
        warned,
        "no warning naming {live} after the bad file; log:\n{}",
        server.log()
    );
    wait_more_requests(&server, &pki, 100.0);

    for (what, wrk) in [
        ("keep-alive", keep_alive),
        ("Connection: close", handshakes),
    ] {
        let (summary, out) = wrk.stop();
        assert!(summary.requests > 0, "{what}: wrk sent nothing:\n{out}");
        assert_eq!(
            (
                summary.connect,
                summary.read,
                summary.write,
                summary.status,
                summary.timeout
            ),
            (0, 0, 0, 0, 0),
            "{what}: wrk counted errors or non-2xx answers ({summary:?}):\n{out}\nlog:\n{}",
            server.log()
        );
    }
}

#[test]
fn sighup_to_the_supervisor_makes_every_api_server_reload() {
    let pki = Pki::new();
    let server = serve_live(&pki);
    let ca = trust(&pki);
    let reloads = counter(&server, &ca, RELOADS);
    // The files did not change: only the signal can cause these reloads.
    // SAFETY: kill(2) on the supervisor we spawned and have not reaped.
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGHUP);
    }
    // One reload per API server (the counter sums them).
    wait_counter_above(&server, &ca, RELOADS, reloads + API_SERVERS as f64 - 1.0);
    assert!(alive(server.pid()), "SIGHUP stopped the supervisor");
    assert_eq!(
        served_serial(&server.addr, &pki.file("ca.pem")).as_deref(),
        Some(SERIAL_1)
    );
}
