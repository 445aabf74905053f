//! Configuration bounds and crash loops, against the real binary.
//!
//! Every numeric key has a range checked before any process starts, and the
//! error names the key and the value; a bad value is reported even when a
//! later source overrides it. The keys the API servers read reach every
//! child in the effective configuration. A worker slot whose processes keep
//! exiting before they become ready stops the service, gracefully and with
//! one clear error, after `max_failed_starts` of them; one that became ready
//! is restarted however often it crashes.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const RUNNER: &str = "__worker runner --runner nltk_sentiment";

/// `tiffin serve-http` on a free port, with no configuration from the
/// environment of the test run.
fn serve_http(extra: &[&str]) -> Command {
    let mut cmd = Command::new(tiffin_bin());
    cmd.args(["serve-http", "--host", "127.0.0.1", "--port", "0"])
        .args(extra)
        .env("TIFFIN_LOG", "info")
        .env_remove("TIFFIN_CONFIG")
        .env_remove("TIFFIN_CONFIG_OPTIONS");
    cmd
}

/// A YAML file in a directory of its own, removed on drop.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(text: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tiffin-config-bounds-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join("tiffin.yaml");
        std::fs::write(&path, text).expect("write config");
        TempFile { dir, path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The start failed fast, before any worker was spawned, with an error
/// mentioning every needle.
fn assert_refused(f: &Finished, what: &str, needles: &[&str]) {
    let status = f
        .status
        .unwrap_or_else(|| panic!("{what}: still running after {:?}:\n{}", f.elapsed, f.stderr));
    assert!(!status.success(), "{what}: should fail:\n{}", f.stderr);
    assert!(
        f.stderr.contains("tiffin: error: "),
        "{what}: no error line:\n{}",
        f.stderr
    );
    for n in needles {
        assert!(
            f.stderr.contains(n),
            "{what}: the error should mention {n:?}:\n{}",
            f.stderr
        );
    }
    assert!(
        !f.stderr.contains("worker started"),
        "{what}: a worker was started before the configuration was refused:\n{}",
        f.stderr
    );
}

#[test]
fn out_of_range_values_stop_the_start_naming_the_key_and_value() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "runners.workers=100000",
            &["'runners.workers'", "must be at most 256, got 100000"],
        ),
        (
            "api_server.http.max_request_size=1073741824",
            &[
                "'api_server.http.max_request_size'",
                "at most 67108864 (64 MiB",
                "got 1073741824",
            ],
        ),
        (
            "runners.nltk_sentiment.batching.max_latency_ms=3600001",
            &[
                "'runners.nltk_sentiment.batching.max_latency_ms'",
                "got 3600001",
            ],
        ),
        (
            "api_server.graceful_timeout=.inf",
            &["'api_server.graceful_timeout'", "got inf"],
        ),
        (
            "api_server.http.header_read_timeout=0",
            &["'api_server.http.header_read_timeout'", "> 0", "got 0"],
        ),
        (
            "api_server.traffic.max_concurrency=0",
            &["'api_server.traffic.max_concurrency'", "at least 1, got 0"],
        ),
    ];
    for (options, needles) in cases {
        let f = run_with_timeout(
            serve_http(&[]).env("TIFFIN_CONFIG_OPTIONS", options),
            Duration::from_secs(10),
        );
        assert_refused(&f, options, needles);
    }

    // The value that used to pass validation and then panic the runner
    // inside its semaphore, from a file this time.
    let file = TempFile::new("runners:\n  batching:\n    max_batch_size: 18446744073709551615\n");
    let f = run_with_timeout(
        serve_http(&["--config"]).arg(&file.path),
        Duration::from_secs(10),
    );
    assert_refused(
        &f,
        "max_batch_size = u64::MAX in a file",
        &[
            "'runners.batching.max_batch_size'",
            "must be at most 100000, got 18446744073709551615",
        ],
    );

    // And from a command-line flag.
    let f = run_with_timeout(
        &mut serve_http(&["--api-workers", "1000"]),
        Duration::from_secs(10),
    );
    assert_refused(
        &f,
        "--api-workers 1000",
        &["'api_server.workers'", "must be at most 256, got 1000"],
    );
}

#[test]
fn a_bad_value_in_the_file_is_reported_though_a_flag_overrides_it() {
    let file = TempFile::new("api_server:\n  workers: 0\n");
    let f = run_with_timeout(
        serve_http(&["--api-workers", "2", "--config"]).arg(&file.path),
        Duration::from_secs(10),
    );
    let shown = file.path.display().to_string();
    assert_refused(
        &f,
        "workers: 0 in the file, --api-workers 2",
        &[
            "invalid value for 'api_server.workers': must be at least 1, got 0",
            &format!("in configuration file '{shown}'"),
            "overridden by command-line option 'api_server.workers=2'",
        ],
    );

    // TIFFIN_CONFIG_OPTIONS, hidden by a flag.
    let f = run_with_timeout(
        serve_http(&["--runner-workers", "1"])
            .env("TIFFIN_CONFIG_OPTIONS", "runners.workers=100000"),
        Duration::from_secs(10),
    );
    assert_refused(
        &f,
        "runners.workers=100000 in TIFFIN_CONFIG_OPTIONS, --runner-workers 1",
        &[
            "'runners.workers': must be at most 256, got 100000",
            "in TIFFIN_CONFIG_OPTIONS 'runners.workers=100000'",
            "overridden by command-line option 'runners.workers=1'",
        ],
    );
}

/// The effective configuration a child process was given, as YAML.
fn effective_config_of(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("cannot read the environment of {pid}: {e}"));
    let prefix = format!("{}=", tiffin_ipc::runtime::EFFECTIVE_CONFIG_ENV);
    environ
        .split(|b| *b == 0)
        .filter_map(|var| std::str::from_utf8(var).ok())
        .find_map(|var| var.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{pid} has no {prefix}"))
        .to_owned()
}

#[test]
fn the_http_and_traffic_keys_reach_every_child() {
    let server = Launch::http(&["--api-workers", "1"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "api_server.http.header_read_timeout=7.5 api_server.http.body_read_timeout=30 \
             api_server.http.keepalive_timeout=2 api_server.http.max_connections=500 \
             api_server.traffic.timeout=12",
        )
        .start();
    let children = server.children();
    assert_eq!(children.len(), 2, "children: {children:#?}");
    for (pid, cmd) in &children {
        let yaml = effective_config_of(*pid);
        // An unset max_concurrency is written out, so the key is visible.
        assert!(
            yaml.contains("max_concurrency: null"),
            "{cmd}: no max_concurrency in\n{yaml}"
        );
        let config = tiffin_config::Config::from_yaml_str(&yaml)
            .unwrap_or_else(|e| panic!("{cmd}: effective config does not load: {e}\n{yaml}"));
        let http = &config.api_server.http;
        assert_eq!(http.header_read_timeout, 7.5, "{cmd}");
        assert_eq!(http.body_read_timeout, 30.0, "{cmd}");
        assert_eq!(http.keepalive_timeout, 2.0, "{cmd}");
        assert_eq!(http.max_connections, 500, "{cmd}");
        assert_eq!(config.api_server.traffic.timeout, 12.0, "{cmd}");
        assert_eq!(config.api_server.traffic.max_concurrency, None, "{cmd}");
    }
}

#[test]
fn scaling_past_the_worker_range_is_refused_and_changes_nothing() {
    let server = Launch::http(&[]).start();
    let before = child_pids(&server, RUNNER);
    let out = server.cli(&["scale", "nltk_sentiment", "257"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scale to 257 should fail: {err}");
    assert!(err.contains("at most 256 workers"), "{err}");
    assert!(err.contains("got 257"), "{err}");
    // `tiffin scale` is answered once the supervisor's main loop has applied
    // (here: refused) it, so a worker it started would exist already.
    assert_eq!(child_pids(&server, RUNNER), before);
    let out = server.cli(&["scale", "api-server", "100000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scale to 100000 should fail: {err}");
    assert!(err.contains("at most 256 workers"), "{err}");
    assert_eq!(child_pids(&server, RUNNER), before);
}

/// Runs `server` until its supervisor exits (at most `limit`), recording
/// every child process seen meanwhile; returns the exit status and them.
fn run_to_exit(server: &mut Server, limit: Duration) -> (std::process::ExitStatus, Vec<u32>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        for (pid, _) in server.children() {
            if !seen.contains(&pid) {
                seen.push(pid);
            }
        }
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            return (status, seen);
        }
        assert!(
            start.elapsed() < limit,
            "the supervisor was still running after {limit:?}; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the stderr reader has seen `needle` (it runs on a thread of
/// its own, so the log may trail the process's exit by a moment).
fn log_with(server: &Server, needle: &str) -> String {
    eventually(Duration::from_secs(5), || server.log().contains(needle));
    server.log()
}

fn broken_custom_service(options: &str) -> Server {
    Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .env("CUSTOM_BROKEN_RUNNER", "1")
        .env("TIFFIN_CONFIG_OPTIONS", options)
        .no_wait()
        .start()
}

#[test]
fn a_runner_that_never_loads_stops_the_service_after_its_failed_starts() {
    let mut server = broken_custom_service("runners.max_failed_starts=5");
    let (status, seen) = run_to_exit(&mut server, Duration::from_secs(30));
    let final_error = "tiffin: error: worker runner:flaky:1 exited before becoming ready 5 times in a \
                       row (last: exit code 1); the service was shut down (the limit is \
                       runners.max_failed_starts=5; 0 retries forever)";
    let log = log_with(&server, final_error);
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status:?}; log:\n{log}"
    );
    assert!(log.contains(final_error), "no final error; log:\n{log}");

    // Five processes, then one error naming the worker, its exit and the count.
    let started = log
        .lines()
        .filter(|l| l.contains("worker started worker=runner:flaky:1 "))
        .count();
    assert_eq!(started, 5, "flaky starts; log:\n{log}");
    let gave_up: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("times in a row"))
        .collect();
    assert_eq!(gave_up.len(), 1, "log:\n{log}");
    for needle in [
        "worker=runner:flaky:1",
        "status=exit code 1",
        "failed_starts=5",
    ] {
        assert!(gave_up[0].contains(needle), "{needle}: {}", gave_up[0]);
    }

    // The rest was drained, not killed, and nothing outlived the supervisor.
    for worker in ["api_server:0", "runner:calc:1"] {
        let drained = format!("worker exited worker={worker} status=exit code 0");
        assert!(log.contains(&drained), "{worker} not drained; log:\n{log}");
    }
    assert!(!log.contains("killing"), "a worker was killed; log:\n{log}");
    assert!(log.contains("supervisor stopped"), "log:\n{log}");
    // A failing load exits within milliseconds, so polling does not see
    // every flaky process; the API server and calc worker it does see.
    assert!(seen.len() >= 2, "children seen: {seen:?}");
    let alive: Vec<&u32> = seen.iter().filter(|p| alive(**p)).collect();
    assert!(alive.is_empty(), "outlived the supervisor: {alive:?}");
    assert!(
        !Path::new(&server.runtime_dir).exists(),
        "runtime dir {} left behind",
        server.runtime_dir.display()
    );
}

#[test]
fn a_runner_of_its_own_limit_is_named_by_its_own_key() {
    let mut server = broken_custom_service("runners.flaky.max_failed_starts=2");
    let (status, _) = run_to_exit(&mut server, Duration::from_secs(30));
    let log = log_with(&server, "the service was shut down");
    assert_eq!(status.code(), Some(1), "log:\n{log}");
    assert!(
        log.contains("exited before becoming ready 2 times in a row")
            && log.contains("(the limit is runners.flaky.max_failed_starts=2;"),
        "log:\n{log}"
    );
}

/// The pid of the only runner worker once `tiffin status` shows it ready
/// and different from `old`.
fn ready_runner_other_than(server: &Server, old: Option<u64>) -> u64 {
    let mut pid = None;
    let ok = eventually(Duration::from_secs(10), || {
        let status = status_json(server);
        pid = status["workers"].as_array().and_then(|ws| {
            ws.iter()
                .find(|w| w["role"] == "runner" && w["state"] == "ready")
                .and_then(|w| w["pid"].as_u64())
                .filter(|p| Some(*p) != old && *p != 0)
        });
        pid.is_some()
    });
    assert!(ok, "no new ready runner worker; log:\n{}", server.log());
    pid.unwrap_or_default()
}

#[test]
fn a_worker_that_became_ready_is_restarted_however_often_it_crashes() {
    // The strictest limit: a single failed start would stop the service.
    let server = Launch::http(&["--api-workers", "1"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "runners.max_failed_starts=1 api_server.max_failed_starts=1",
        )
        .start();
    let mut pid = ready_runner_other_than(&server, None);
    for _ in 0..3 {
        // SAFETY: kill(2) on a ready runner worker of our supervisor.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        pid = ready_runner_other_than(&server, Some(pid));
    }
    assert_eq!(child_pids(&server, RUNNER), vec![pid as u32]);
    server.wait_ready(Duration::from_secs(10));
    server.analyse("still serving after three crashes");
    assert!(
        !server.log().contains("times in a row"),
        "log:\n{}",
        server.log()
    );
}
