//! Lifecycle: graceful shutdown on SIGINT/SIGTERM, no orphans when the
//! supervisor is killed, crash restarts, live scaling, and counters that
//! never go backwards across a crash.

use crate::common;

use std::time::Duration;

use common::*;

const RUNNER: &str = "__worker runner --runner nltk_sentiment";

fn analyse_ok(server: &Server, text: &str) {
    let answer = server.analyse(text);
    assert!(answer["is_positive"].is_boolean(), "{answer}");
}

/// Runner workers as `(index, pid, state, restarts, requests)` from `status --json`.
fn runner_rows(server: &Server) -> Vec<(u64, u64, String, u64, u64)> {
    let status = status_json(server);
    let workers = status["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers array: {status:#}"));
    let mut rows: Vec<_> = workers
        .iter()
        .filter_map(|w| {
            let (role, runner, index) = worker_role(w);
            (role == "runner" && runner.as_deref() == Some("nltk_sentiment")).then(|| {
                (
                    index,
                    w["pid"].as_u64().unwrap_or(0),
                    w["state"].as_str().unwrap_or("").to_ascii_lowercase(),
                    w["restarts"].as_u64().unwrap_or(u64::MAX),
                    w["requests"].as_u64().unwrap_or(0),
                )
            })
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// Waits until `status --json` shows `n` runner workers, all ready, and
/// returns their rows; `what` opens the failure message.
fn runner_rows_once_ready(
    server: &Server,
    n: usize,
    what: &str,
) -> Vec<(u64, u64, String, u64, u64)> {
    let mut rows = Vec::new();
    let ready = eventually(Duration::from_secs(5), || {
        rows = runner_rows(server);
        rows.len() == n && rows.iter().all(|r| r.2 == "ready")
    });
    assert!(ready, "{what}: {rows:?}\nlog:\n{}", server.log());
    rows
}

/// Sends requests until every one of `n` runner workers has served some
/// (per `status --json`, refreshed by a scrape): proves each is reachable
/// from the API server. Returns the last rows seen.
fn until_every_runner_served(server: &Server, n: usize) -> Vec<(u64, u64, String, u64, u64)> {
    let mut rows = Vec::new();
    let ok = eventually(Duration::from_secs(5), || {
        for i in 0..6 {
            analyse_ok(server, if i % 2 == 0 { "good" } else { "bad" });
        }
        let _ = server.metrics(); // per-worker request counts are refreshed by a scrape
        rows = runner_rows(server);
        rows.len() == n && rows.iter().all(|r| r.2 == "ready" && r.4 > 0)
    });
    assert!(
        ok,
        "every runner worker should be ready and serve requests: {rows:?}\nlog:\n{}",
        server.log()
    );
    rows
}

/// Waits up to 5 s for every one of `children` (the supervisor's, listed
/// before it stopped) to be gone; `what` opens the failure message, which
/// lists the ones still alive.
fn assert_all_gone(server: &Server, children: &[(u32, String)], what: &str) {
    let gone = eventually(Duration::from_secs(5), || {
        children.iter().all(|(pid, _)| !alive(*pid))
    });
    let left: Vec<_> = children.iter().filter(|(p, _)| alive(*p)).collect();
    assert!(gone, "{what}: {left:#?}\nlog:\n{}", server.log());
}

fn shuts_down_cleanly(sig: i32, name: &str) {
    let mut server = Launch::http(&["--api-workers", "2", "--runner-workers", "2"]).start();
    analyse_ok(&server, "I love this product!");
    let children = server.children();
    assert_eq!(children.len(), 4, "{children:#?}");
    let dir = server.runtime_dir.clone();
    assert!(dir.exists());

    let status = server.signal_and_wait(sig);
    assert_eq!(
        status.code(),
        Some(0),
        "{name}: supervisor should exit with code 0, got {status:?}\nlog:\n{}",
        server.log()
    );
    assert_all_gone(
        &server,
        &children,
        &format!("{name}: children still alive after exit"),
    );
    assert!(
        eventually(Duration::from_secs(2), || !dir.exists()),
        "{name}: runtime dir {} not removed\nlog:\n{}",
        dir.display(),
        server.log()
    );
}

#[test]
fn sigint_drains_and_exits_cleanly() {
    shuts_down_cleanly(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    shuts_down_cleanly(libc::SIGTERM, "SIGTERM");
}

#[test]
fn shutdown_drains_the_api_servers_before_the_runners() {
    let mut server = Launch::http(&["--api-workers", "2", "--runner-workers", "2"]).start();
    analyse_ok(&server, "I love this product!");
    let status = server.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    wait_log_line(&server, &["supervisor stopped"]);
    let log = server.log();
    // The supervisor's log, in the order it acted: each retirement says
    // "draining worker", each exit "worker exited".
    let events: Vec<(&str, &str)> = lines_of(&log, "supervisor", &[])
        .into_iter()
        .filter_map(|l| {
            let what = if l.contains("draining worker") {
                "drain"
            } else if l.contains("worker exited") {
                "exit"
            } else {
                return None;
            };
            Some((what, field(l, "worker")?))
        })
        .collect();
    let is_api = |w: &str| w.starts_with("api_server:");
    let first_runner_drain = events
        .iter()
        .position(|(what, w)| *what == "drain" && !is_api(w))
        .unwrap_or_else(|| panic!("no runner was drained: {events:?}\nlog:\n{log}"));
    let api_exits = events[..first_runner_drain]
        .iter()
        .filter(|(what, w)| *what == "exit" && is_api(w))
        .count();
    let api_drains = events[..first_runner_drain]
        .iter()
        .filter(|(what, w)| *what == "drain" && is_api(w))
        .count();
    assert_eq!(
        (api_drains, api_exits),
        (2, 2),
        "both API servers drained and exited before the first runner was drained: \
         {events:?}"
    );
    let runner_drains = events
        .iter()
        .filter(|(what, w)| *what == "drain" && !is_api(w))
        .count();
    assert_eq!(runner_drains, 2, "{events:?}");
}

#[test]
fn killed_supervisor_takes_its_children_down() {
    let mut server = Launch::http(&["--api-workers", "2", "--runner-workers", "2"]).start();
    let children = server.children();
    assert_eq!(children.len(), 4, "{children:#?}");
    server.child.kill().expect("kill -9 supervisor");
    server.child.wait().expect("reap supervisor");
    assert_all_gone(
        &server,
        &children,
        "orphans after kill -9 of the supervisor",
    );
    // A killed supervisor cannot clean up; don't leave its directory behind.
    let _ = std::fs::remove_dir_all(&server.runtime_dir);
}

#[test]
fn crashed_runner_is_restarted_and_counted() {
    let server = Launch::http(&["--runner-workers", "2"]).start();
    // /readyz needs only one ready worker; make sure both serve before the kill.
    until_every_runner_served(&server, 2);
    let victim = child_pids(&server, &format!("{RUNNER} --index 1 "));
    assert_eq!(victim.len(), 1, "{:#?}", server.children());
    let victim = victim[0];
    let survivor = child_pids(&server, &format!("{RUNNER} --index 2 "));
    let api_before = child_pids(&server, "__worker api-server");

    // SAFETY: kill(2) on a child of our supervisor, found by its command line.
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    // The other runner worker keeps serving meanwhile.
    for _ in 0..5 {
        analyse_ok(&server, "This is terrible. I hate it.");
    }

    let mut replacement = Vec::new();
    let restarted = eventually(EVENT_WITHIN, || {
        replacement = child_pids(&server, &format!("{RUNNER} --index 1 "));
        replacement.len() == 1 && replacement[0] != victim
    });
    assert!(
        restarted,
        "no replacement for runner 1 (now {replacement:?}); children {:#?}\nlog:\n{}",
        server.children(),
        server.log()
    );
    assert!(!alive(victim), "killed worker {victim} is still alive");
    assert_eq!(
        child_pids(&server, &format!("{RUNNER} --index 2 ")),
        survivor,
        "the other runner worker was replaced too"
    );
    assert_eq!(
        child_pids(&server, "__worker api-server"),
        api_before,
        "the API server was replaced"
    );

    let rows = runner_rows_once_ready(&server, 2, "runner workers not ready again");
    let one = rows.iter().find(|r| r.0 == 1).unwrap();
    let two = rows.iter().find(|r| r.0 == 2).unwrap();
    assert_eq!(
        one.1, replacement[0] as u64,
        "status pid of runner 1: {rows:?}"
    );
    assert_eq!(one.3, 1, "restarts of runner 1: {rows:?}");
    assert_eq!(two.3, 0, "restarts of runner 2: {rows:?}");

    for _ in 0..10 {
        analyse_ok(&server, "I love this product!");
    }

    let metrics = server.metrics();
    let line = r#"tiffin_supervisor_worker_restarts_total{role="runner",runner_name="nltk_sentiment"} 1.0"#;
    assert!(
        metrics.lines().any(|l| l == line),
        "metrics should contain exactly {line:?}; restart lines: {:#?}",
        metrics
            .lines()
            .filter(|l| l.contains("restarts"))
            .collect::<Vec<_>>()
    );
    let expo = parse_exposition(&metrics);
    assert_eq!(
        expo.sum(
            "tiffin_supervisor_worker_restarts_total",
            &[("role", "runner"), ("runner_name", "nltk_sentiment")]
        ),
        1.0
    );
    assert_eq!(
        expo.sum(
            "tiffin_supervisor_worker_restarts_total",
            &[("role", "api_server")]
        ),
        0.0,
        "no API server was restarted"
    );
}

#[test]
fn scale_runner_up_and_down() {
    let server = Launch::http(&[]).start();
    assert_eq!(child_pids(&server, RUNNER).len(), 1);
    let original = child_pids(&server, RUNNER)[0];

    let out = server.cli(&["scale", "nltk_sentiment", "3"]);
    assert!(
        out.status.success(),
        "scale up failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let up = eventually(Duration::from_secs(5), || {
        child_pids(&server, RUNNER).len() == 3
    });
    assert!(
        up,
        "runner processes after scale 3: {:#?}",
        server.children()
    );
    let rows = runner_rows_once_ready(&server, 3, "status after scale 3");
    let mut status_pids: Vec<u32> = rows.iter().map(|r| r.1 as u32).collect();
    status_pids.sort_unstable();
    assert_eq!(
        status_pids,
        child_pids(&server, RUNNER),
        "status pids vs processes"
    );

    // Every worker answers.
    until_every_runner_served(&server, 3);

    let out = server.cli(&["scale", "nltk_sentiment", "1"]);
    assert!(
        out.status.success(),
        "scale down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let down = eventually(Duration::from_secs(10), || {
        child_pids(&server, RUNNER).len() == 1
    });
    assert!(
        down,
        "runner processes after scale 1: {:#?}\nlog:\n{}",
        server.children(),
        server.log()
    );
    assert_eq!(
        child_pids(&server, RUNNER),
        vec![original],
        "scale-down should keep worker 1"
    );
    assert!(
        eventually(Duration::from_secs(5), || runner_rows(&server).len() == 1),
        "status after scale 1: {:?}",
        runner_rows(&server)
    );
    for _ in 0..5 {
        analyse_ok(&server, "still here");
    }
}

#[test]
fn scale_rejects_bad_requests_and_changes_nothing() {
    let server = Launch::http(&["--runner-workers", "2"]).start();
    let before = server.children();
    let before_rows = runner_rows(&server);

    let out = server.cli(&["scale", "nosuch", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scale nosuch should fail: {err}");
    assert!(
        err.contains("nosuch") && err.contains("nltk_sentiment"),
        "error should name the target and the runners: {err}"
    );

    let out = server.cli(&["scale", "nltk_sentiment", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scale to 0 should fail: {err}");
    assert!(err.contains("at least 1"), "unclear message for 0: {err}");

    let out = server.cli(&["scale", "nltk_sentiment", "abc"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scale to abc should fail: {err}");
    assert!(
        err.contains("abc"),
        "message should quote the bad count: {err}"
    );

    // No wait needed: `tiffin scale` is answered by the supervisor's main
    // loop once it has applied (here: refused) the request, so any process
    // it would have started exists by the time the CLI returns.
    let mut a: Vec<u32> = before.iter().map(|(p, _)| *p).collect();
    let mut b: Vec<u32> = server.children().iter().map(|(p, _)| *p).collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "failed scale requests changed the processes");
    let after: Vec<_> = runner_rows(&server).iter().map(|r| (r.0, r.1)).collect();
    let before: Vec<_> = before_rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(after, before, "failed scale requests changed the status");
    analyse_ok(&server, "I love this product!");
}

fn totals(metrics: &str) -> (f64, f64) {
    let expo = parse_exposition(metrics);
    (
        expo.sum(
            "bentoml_api_server_request_total",
            &[("endpoint", "/analysis")],
        ),
        expo.sum(
            "bentoml_runner_request_total",
            &[("runner_name", "nltk_sentiment")],
        ),
    )
}

#[test]
fn counters_survive_a_runner_crash() {
    let server = Launch::http(&[]).start();
    for i in 0..20 {
        analyse_ok(&server, if i % 2 == 0 { "I love it" } else { "I hate it" });
    }
    let (api, runner) = totals(&server.metrics());
    assert_eq!(api, 20.0, "api request total for /analysis");
    assert_eq!(runner, 20.0, "runner request total");

    let victim = child_pids(&server, RUNNER);
    assert_eq!(victim.len(), 1);
    let victim = victim[0];
    // SAFETY: kill(2) on a child of our supervisor, found by its command line.
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let restarted = eventually(EVENT_WITHIN, || {
        let now = child_pids(&server, RUNNER);
        now.len() == 1 && now[0] != victim
    });
    assert!(restarted, "runner not restarted\nlog:\n{}", server.log());
    server.wait_ready(EVENT_WITHIN);

    let (api_after, runner_after) = totals(&server.metrics());
    assert!(
        runner_after >= runner,
        "runner total went backwards across a crash: {runner} -> {runner_after}"
    );
    assert!(
        api_after >= api,
        "api total went backwards: {api} -> {api_after}"
    );

    for _ in 0..5 {
        analyse_ok(&server, "I love this product!");
    }
    let (api_final, runner_final) = totals(&server.metrics());
    assert!(
        runner_final >= runner + 5.0,
        "runner total should count the old worker plus new requests: {runner} then {runner_final}"
    );
    assert!(api_final >= api + 5.0, "api total: {api} then {api_final}");
}

/// `POST /slow` of tests/fixtures/custom_service.rs, which sleeps `millis` ms in
/// the runner, sent on a thread of its own.
fn slow_call(server: &Server, millis: u64) -> std::thread::JoinHandle<std::io::Result<Response>> {
    let addr = server.addr.clone();
    std::thread::spawn(move || {
        http(
            &addr,
            "POST",
            "/slow",
            &[("Content-Type", "application/json")],
            millis.to_string().as_bytes(),
        )
    })
}

/// Waits until `calls` calls of the `calc` runner of tests/fixtures/custom_service.rs
/// are running in its workers: the slow calls sent on their threads have
/// reached the model.
fn wait_calc_running(server: &Server, calls: f64) {
    wait_metric(
        server,
        "bentoml_runner_request_in_progress",
        &[("runner_name", "calc")],
        calls,
        "slow calls running in the calc runner",
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_stops_accepting() {
    let mut server = Launch::http(&[]).bin(example_bin("custom_service")).start();
    let slow = slow_call(&server, 5000);
    // Once the slow call runs in the runner, ask for a graceful stop.
    wait_calc_running(&server, 1.0);
    // SAFETY: kill(2) on the supervisor we spawned and have not reaped.
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGTERM);
    }
    let refused = eventually(EVENT_WITHIN, || {
        std::net::TcpStream::connect(&server.addr).is_err()
    });
    let still_running = !slow.is_finished();
    let resp = slow
        .join()
        .expect("client thread")
        .expect("slow request got a response");
    assert_eq!(resp.status, 200, "{}\nlog:\n{}", resp.text(), server.log());
    assert_eq!(resp.json()["slept_ms"], 5000);
    assert!(
        refused,
        "the port still accepted connections while draining"
    );
    assert!(
        still_running,
        "the port was refused only after the in-flight call had finished"
    );
    let status = server.signal_and_wait(0);
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log()
    );
}

#[test]
fn a_second_sigint_forces_exit_without_waiting_for_in_flight_work() {
    let mut server = Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .start();
    // A call that would keep a graceful drain busy for 10 s.
    let slow = slow_call(&server, 10_000);
    wait_calc_running(&server, 1.0);
    let children: Vec<u32> = server.children().into_iter().map(|(p, _)| p).collect();
    // SAFETY: kill(2) on the supervisor we spawned and have not reaped.
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGINT);
    }
    wait_log_line(&server, &["SIGINT: shutting down gracefully"]);
    wait_log_line(&server, &["draining worker"]);
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the first SIGINT must drain, not exit at once"
    );
    let status = server.signal_and_wait(libc::SIGINT);
    assert!(
        status.code().is_some(),
        "supervisor exited by itself: {status:?}"
    );
    wait_log_line(&server, &["second SIGINT: forcing exit"]);
    // The slow call was cut off, not waited for.
    let cut = slow.join().expect("client thread");
    assert!(
        !cut.as_ref().is_ok_and(|r| r.status == 200),
        "the in-flight call was answered, so the exit waited for it: {cut:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || children
            .iter()
            .all(|p| !alive(*p))),
        "children left after a forced exit: {:?}",
        children.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
}

#[test]
fn scaling_down_under_load_fails_no_request() {
    // Several workers drain at once, so a refused call may meet a second draining worker.
    let server = Launch::http(&["--runner-workers", "6"]).start();
    assert!(
        eventually(Duration::from_secs(10), || {
            status_json(&server)["workers"].as_array().is_some_and(|w| {
                w.iter()
                    .filter(|w| w["role"] == "runner" && w["state"] == "ready")
                    .count()
                    == 6
            })
        }),
        "workers never all ready; log:\n{}",
        server.log()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (addr, stop, served) = (server.addr.clone(), stop.clone(), served.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = post_text_to(&addr, "/analysis", "I love this product!")
                        .expect("a response");
                    served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if r.status == 200 {
                        ok += 1;
                    } else {
                        failed.push(format!("{} {}", r.status, r.text()));
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let progress = |answered: usize| {
        let ok = eventually(EVENT_WITHIN, || {
            served.load(std::sync::atomic::Ordering::SeqCst) >= answered
        });
        assert!(ok, "the load stalled below {answered} answers");
    };
    // The load runs before the scale-down...
    progress(50);
    let out = server.cli(&["scale", "nltk_sentiment", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(Duration::from_secs(10), || child_pids(&server, RUNNER)
            .len()
            == 1),
        "runners did not drain to 1"
    );
    // ...and after it, on the one worker left.
    progress(served.load(std::sync::atomic::Ordering::SeqCst) + 50);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.join().expect("client");
        ok += o;
        failed.extend(f);
    }
    assert!(ok > 0);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during scale-down: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
}
