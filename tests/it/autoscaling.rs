//! Autoscaling of runner workers, against the real binary with load made
//! here: a step of concurrent calls to a slow method grows the runner toward
//! the count its target asks for, removing the load brings it back to
//! `min_workers` after `downscale_delay_s`, and every call is answered, and
//! answered right, throughout; min and max are never crossed. A runner with
//! `min_workers: 0` goes to zero when idle, stays ready, and answers its next
//! call (the cold-start latency is printed, not asserted). `tiffin scale`
//! pins an autoscaled runner until `tiffin scale RUNNER auto`. Bad values
//! fail at start naming the key.
//!
//! The service is `tests/fixtures/custom_service.rs`: its `slow` API calls the
//! `calc` runner's `sleep_ms`, a plain method that holds its worker for as
//! long as it sleeps, so N concurrent callers keep N calls in flight.
//! Delays are short (seconds) through the configuration; every wait is
//! bounded.

use crate::common;

use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Autoscaling of `calc` with short delays; `extra` adds or overrides keys.
fn autoscaled(extra: &str) -> Server {
    let options = format!(
        "runners.calc.autoscaling.enabled=true runners.calc.autoscaling.target_in_flight=1 \
         runners.calc.autoscaling.look_back_s=1 runners.calc.autoscaling.upscale_delay_s=1 \
         runners.calc.autoscaling.downscale_delay_s=3 {extra}"
    );
    Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .env("TIFFIN_CONFIG_OPTIONS", &options)
        .start()
}

/// The `calc` row of `tiffin status --json`'s `autoscaling`.
fn calc_status(server: &Server) -> serde_json::Value {
    let status = status_json(server);
    status["autoscaling"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["runner"] == "calc").cloned())
        .unwrap_or_else(|| panic!("no autoscaling row for calc in {status}"))
}

/// `calc` workers that are not draining away, from the worker rows.
fn calc_workers(server: &Server) -> usize {
    let status = status_json(server);
    status["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter(|w| w["runner"] == "calc" && w["state"] != "draining")
                .count()
        })
        .unwrap_or(0)
}

fn current(server: &Server) -> u64 {
    calc_status(server)["current"].as_u64().unwrap_or(u64::MAX)
}

/// One `/slow` call of `ms`; `Ok` only for a 200 carrying `{"slept_ms": ms}`.
fn slow(server: &Server, ms: u64) -> Result<(), String> {
    let r = http(
        &server.addr,
        "POST",
        "/slow",
        &[("Content-Type", "application/json")],
        ms.to_string().as_bytes(),
    )
    .map_err(|e| format!("connection: {e}"))?;
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.text()));
    }
    let body: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("not JSON ({e}): {}", r.text()))?;
    if body != serde_json::json!({ "slept_ms": ms }) {
        return Err(format!("wrong answer {body}"));
    }
    Ok(())
}

/// Sets a flag when dropped: a test that fails inside `thread::scope`
/// still stops the threads the scope waits for, so it fails instead of hanging.
struct SetOnDrop<'a>(&'a AtomicBool, bool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(self.1, Ordering::SeqCst);
    }
}

/// Watches `calc` while a test runs: every few hundred milliseconds, the
/// autoscaler's desired count and the workers not draining must lie within
/// `[min, max]`; returns the largest worker count seen.
struct Watch {
    stop: AtomicBool,
    violations: Mutex<Vec<String>>,
    largest: AtomicUsize,
}

impl Watch {
    fn new() -> Self {
        Watch {
            stop: AtomicBool::new(false),
            violations: Mutex::default(),
            largest: AtomicUsize::new(0),
        }
    }

    fn run(&self, server: &Server, min: u64, max: u64) {
        while !self.stop.load(Ordering::SeqCst) {
            let row = calc_status(server);
            let desired = row["desired"].as_u64().unwrap_or(u64::MAX);
            let workers = calc_workers(server) as u64;
            let text = server.metrics();
            let gauge = parse_exposition(&text).sum(
                "tiffin_supervisor_autoscale_desired_workers",
                &[("runner_name", "calc")],
            );
            for (what, v) in [
                ("desired", desired as f64),
                ("workers", workers as f64),
                ("desired gauge", gauge),
            ] {
                if v < min as f64 || v > max as f64 {
                    self.violations
                        .lock()
                        .unwrap()
                        .push(format!("{what} {v} outside {min}..={max}: {row}"));
                }
            }
            self.largest.fetch_max(workers as usize, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_step_of_load_grows_the_runner_to_its_target_and_idling_brings_it_back_to_min() {
    let server =
        autoscaled("runners.calc.autoscaling.min_workers=1 runners.calc.autoscaling.max_workers=3");
    assert_eq!(current(&server), 1, "starts at min_workers");
    let watch = Watch::new();
    let failures = Mutex::new(Vec::<String>::new());
    let answered = AtomicUsize::new(0);
    let loading = AtomicBool::new(true);
    let started = Instant::now();
    let (mut grown_after, mut shrunk_after) = (None, None);
    std::thread::scope(|s| {
        let _stop_watch = SetOnDrop(&watch.stop, true);
        let _stop_load = SetOnDrop(&loading, false);
        s.spawn(|| watch.run(&server, 1, 3));
        // Six callers keep six 150 ms calls in flight: with a target of one
        // call per worker the runner wants six workers, clamped to three.
        for _ in 0..6 {
            s.spawn(|| {
                while loading.load(Ordering::SeqCst) {
                    match slow(&server, 150) {
                        Ok(()) => answered.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            0
                        }
                    };
                }
            });
        }
        if eventually(Duration::from_secs(40), || current(&server) == 3) {
            grown_after = Some(started.elapsed());
            // A little more load at the top, then none.
            std::thread::sleep(Duration::from_secs(2));
        }
        loading.store(false, Ordering::SeqCst);
        let idle = Instant::now();
        if grown_after.is_some()
            && eventually(Duration::from_secs(40), || {
                current(&server) == 1 && calc_workers(&server) == 1
            })
        {
            shrunk_after = Some(idle.elapsed());
        }
        watch.stop.store(true, Ordering::SeqCst);
    });
    let log = server.log();
    let grown_after = grown_after
        .unwrap_or_else(|| panic!("never grew to 3: {}\nlog:\n{log}", calc_status(&server)));
    let shrunk_after = shrunk_after.unwrap_or_else(|| {
        panic!(
            "never came back to 1: {}\nlog:\n{log}",
            calc_status(&server)
        )
    });
    eprintln!(
        "autoscaling: 1 -> 3 workers {:.1}s after the step, back to 1 {:.1}s after the load stopped; {} calls answered",
        grown_after.as_secs_f64(),
        shrunk_after.as_secs_f64(),
        answered.load(Ordering::SeqCst)
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "failed calls: {failures:?}\nlog:\n{log}"
    );
    assert!(answered.load(Ordering::SeqCst) > 0);
    let violations = watch.violations.into_inner().unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(
        watch.largest.load(Ordering::SeqCst),
        3,
        "max reached, not crossed"
    );

    // Status shows the last decision with its figures; the log has each
    // decision once; the counter counted both ways.
    let row = calc_status(&server);
    assert_eq!(row["min"], 1);
    assert_eq!(row["max"], 3);
    assert_eq!(row["last"]["direction"], "down", "{row}");
    assert_eq!(row["last"]["to"], 1, "{row}");
    let reason = row["last"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("downscale_delay_s"), "{reason}");
    let decisions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("autoscaling decision"))
        .collect();
    assert!(
        decisions
            .iter()
            .any(|l| l.contains("direction=\"up\"") || l.contains("direction=up")),
        "{decisions:?}"
    );
    assert!(
        decisions.iter().all(|l| l.contains("average_in_flight=")),
        "{decisions:?}"
    );
    let text = server.metrics();
    let exp = parse_exposition(&text);
    let total = |direction| {
        exp.sum(
            "tiffin_supervisor_autoscale_decisions_total",
            &[("runner_name", "calc"), ("direction", direction)],
        )
    };
    assert!(total("up") >= 1.0, "{text}");
    assert!(total("down") >= 1.0, "{text}");
    assert_eq!(
        (total("up") + total("down")) as usize,
        decisions.len(),
        "one log line per decision: {decisions:?}"
    );

    // Status as a table names the runner's figures.
    let out = server.cli(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("autoscaling calc: current 1 desired 1 min 1 max 3"),
        "{table}"
    );
    assert!(table.contains("last decision"), "{table}");
}

#[test]
fn a_runner_at_zero_stays_ready_and_answers_its_next_call() {
    let server = autoscaled(
        "runners.calc.autoscaling.min_workers=0 runners.calc.autoscaling.max_workers=2 \
         runners.calc.autoscaling.downscale_delay_s=1",
    );
    let watch = Watch::new();
    std::thread::scope(|s| {
        let _stop_watch = SetOnDrop(&watch.stop, true);
        s.spawn(|| watch.run(&server, 0, 2));
        // Idle: down to zero workers.
        let at_zero = eventually(Duration::from_secs(30), || {
            current(&server) == 0 && calc_workers(&server) == 0
        });
        assert!(
            at_zero,
            "never went to zero: {}\nlog:\n{}",
            calc_status(&server),
            server.log()
        );
        // Zero on purpose is ready.
        let ready = server.get("/readyz");
        assert_eq!(ready.status, 200, "{}", ready.text());
        // The first call after idling waits for a worker and is answered.
        let cold = Instant::now();
        let answer = slow(&server, 0);
        let latency = cold.elapsed();
        assert_eq!(answer, Ok(()), "log:\n{}", server.log());
        eprintln!(
            "autoscaling: cold start from zero answered in {:.1} ms",
            latency.as_secs_f64() * 1000.0
        );
        // Log lines reach stderr a few milliseconds after they are logged.
        assert!(
            eventually(Duration::from_secs(10), || server.log().lines().any(|l| l
                .contains("autoscaling decision")
                && l.contains("waiting"))),
            "the cold start is a decision of its own:\n{}",
            server.log()
        );
        // Idle again: back to zero, and the service still answers.
        assert!(eventually(Duration::from_secs(30), || current(&server) == 0));
        assert_eq!(slow(&server, 5), Ok(()));
        watch.stop.store(true, Ordering::SeqCst);
    });
    let violations = watch.violations.into_inner().unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn a_call_waiting_on_a_runner_at_zero_is_bounded_by_the_request_timeout() {
    // The `flaky` runner may scale to zero and its workers cannot start
    // (their model does not load; the supervisor keeps retrying), so a call
    // to it waits for a worker that never comes: for as long as
    // `api_server.traffic.timeout` allows, no longer.
    let server = Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .env("CUSTOM_BROKEN_RUNNER", "1")
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "runners.flaky.autoscaling.enabled=true runners.flaky.autoscaling.min_workers=0 \
             runners.flaky.autoscaling.max_workers=1 runners.flaky.max_failed_starts=0 \
             api_server.traffic.timeout=3",
        )
        .no_wait()
        .start();
    let calc_ready = eventually(EVENT_WITHIN, || {
        http(
            &server.addr,
            "POST",
            "/double",
            &[("Content-Type", "application/json")],
            b"2",
        )
        .is_ok_and(|r| r.status == 200)
    });
    assert!(
        calc_ready,
        "the calc runner never served; log:\n{}",
        server.log()
    );
    let sent = Instant::now();
    let r = server.post("/broken", "text/plain", b"ping");
    let waited = sent.elapsed();
    eprintln!(
        "a call to a runner at zero that cannot start: {} after {waited:?}",
        r.status
    );
    // It waited as long as its request may run (3 s), not the 1 s a call
    // waits for a runner that does not scale to zero; and it was answered
    // (the client would give up at 30 s). A wait for a runner at zero ends
    // at the request's deadline, so it is the deadline's 504: no worker could
    // start in time (api-server/src/pool.rs, `pick_or_wait`).
    assert!(
        waited >= Duration::from_secs(3),
        "answered after {waited:?}, before the request's 3 s: {}",
        r.text()
    );
    assert!(
        r.status == 504,
        "{} {}\nlog:\n{}",
        r.status,
        r.text(),
        server.log()
    );
    // The service keeps serving what does not need the broken runner.
    let r = server.post("/double", "application/json", b"21");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn tiffin_scale_pins_an_autoscaled_runner_until_auto() {
    let server = autoscaled(
        "runners.calc.autoscaling.min_workers=1 runners.calc.autoscaling.max_workers=3 \
         runners.calc.autoscaling.downscale_delay_s=1",
    );
    let out = server.cli(&["scale", "calc", "3"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("pinned"), "{said}");
    assert!(eventually(Duration::from_secs(20), || current(&server) == 3));
    assert_eq!(calc_status(&server)["pinned"], 3);
    // Idle for well past look_back_s + downscale_delay_s: a free autoscaler
    // would have drained two workers; a pinned one keeps all three.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(current(&server), 3, "pinned: {}", calc_status(&server));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        calc_status(&server)["last"].is_null(),
        "no decision while pinned"
    );

    let out = server.cli(&["scale", "calc", "auto"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("autoscaled"), "{said}");
    assert!(calc_status(&server)["pinned"].is_null());
    assert!(
        eventually(Duration::from_secs(30), || current(&server) == 1),
        "auto did not resume: {}\nlog:\n{}",
        calc_status(&server),
        server.log()
    );
    // `auto` on a runner that is not autoscaled names the key to set.
    let out = server.cli(&["scale", "flaky", "auto"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("runners.flaky.autoscaling.enabled"), "{err}");
}

#[test]
fn bad_autoscaling_values_fail_at_start_naming_the_key() {
    let cases: &[(&str, &[&str])] = &[
        (
            "runners.autoscaling.min_workers=3 runners.autoscaling.max_workers=2",
            &[
                "runners.autoscaling.min_workers",
                "runners.autoscaling.max_workers",
            ],
        ),
        (
            "runners.nltk_sentiment.autoscaling.min_workers=4 runners.autoscaling.max_workers=2",
            &["runners.nltk_sentiment.autoscaling.min_workers", "got 4"],
        ),
        (
            "runners.autoscaling.max_workers=0",
            &["runners.autoscaling.max_workers", "at least 1", "got 0"],
        ),
        (
            "runners.autoscaling.upscale_delay_s=-1",
            &["runners.autoscaling.upscale_delay_s", "got -1"],
        ),
        (
            "runners.nltk_sentiment.autoscaling.downscale_delay_s=-0.5",
            &[
                "runners.nltk_sentiment.autoscaling.downscale_delay_s",
                "got -0.5",
            ],
        ),
        (
            "runners.autoscaling.target_in_flight=0",
            &["runners.autoscaling.target_in_flight", "got 0"],
        ),
        (
            "runners.autoscaling.look_back_s=0",
            &["runners.autoscaling.look_back_s", "got 0"],
        ),
        (
            "runners.autoscaling.max_workers=257",
            &["runners.autoscaling.max_workers", "at most 256"],
        ),
        ("runners.autoscaling.max_wrokers=2", &["max_wrokers"]),
    ];
    for (options, needles) in cases {
        let mut cmd = Command::new(tiffin_bin());
        cmd.args(["serve-http", "--host", "127.0.0.1", "--port", "0"])
            .env("TIFFIN_LOG", "info")
            .env_remove("TIFFIN_CONFIG")
            .env("TIFFIN_CONFIG_OPTIONS", options);
        let f = run_with_timeout(&mut cmd, Duration::from_secs(20));
        let status = f
            .status
            .unwrap_or_else(|| panic!("{options}: still running:\n{}", f.stderr));
        assert!(!status.success(), "{options}: should fail:\n{}", f.stderr);
        for n in *needles {
            assert!(
                f.stderr.contains(n),
                "{options}: the error should mention {n:?}:\n{}",
                f.stderr
            );
        }
        assert!(
            !f.stderr.contains("worker started"),
            "{options}: refused before any worker:\n{}",
            f.stderr
        );
    }
}
