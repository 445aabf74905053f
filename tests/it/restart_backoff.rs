//! The supervisor's crash-restart delays (supervisor/src/lifecycle.rs):
//! 100 ms after the first crash, doubling with every crash up to 10 s, and
//! back to 100 ms for a process that had been up 30 s. Measured on the real
//! binary from the supervisor's own log: the time between the line saying
//! a worker exited unexpectedly and the line starting its replacement. A
//! restart never comes before its delay (the supervisor sleeps it first), so
//! the lower bounds are exact; the upper bounds leave a busy machine 2 s for
//! the spawn, and are still below the next step of the sequence where that
//! matters (the 10 s cap against an uncapped 12.8 s).

use crate::common;

use std::time::Duration;

use common::*;

const EXITED: &str = "worker exited unexpectedly; restarting";
const STARTED: &str = "worker started";
/// What the supervisor may take, past a restart delay, to log the start.
const SPAWN_SLACK: f64 = 2.0;

/// The restart delays of `worker` (its role as the log writes it), in
/// seconds: for each unexpected exit, the time until the next start.
fn restart_delays(log: &str, worker: &str) -> Vec<f64> {
    let mine = |l: &&str| field(l, "worker") == Some(worker);
    let exits: Vec<f64> = lines_of(log, "supervisor", &[EXITED])
        .into_iter()
        .filter(mine)
        .map(log_seconds)
        .collect();
    let starts: Vec<f64> = lines_of(log, "supervisor", &[STARTED])
        .into_iter()
        .filter(mine)
        .map(log_seconds)
        .collect();
    exits
        .iter()
        .filter_map(|exit| {
            starts
                .iter()
                .find(|start| *start >= exit)
                .map(|start| start - exit)
        })
        .collect()
}

/// Asserts `delay` (seconds) is a restart after `nominal`: never before it,
/// and within [`SPAWN_SLACK`] after.
fn assert_delay(delay: f64, nominal: f64, what: &str, log: &str) {
    assert!(
        delay >= nominal && delay <= nominal + SPAWN_SLACK,
        "{what}: restarted {delay:.3} s after the exit, expected {nominal} s \
         (+ up to {SPAWN_SLACK} s); log:\n{log}"
    );
}

#[test]
fn a_worker_crashing_at_start_is_restarted_after_100ms_doubling_up_to_10s() {
    // The `flaky` runner of the example cannot load its model; with no
    // crash-loop limit the supervisor keeps restarting it.
    let server = Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .env("CUSTOM_BROKEN_RUNNER", "1")
        .env("TIFFIN_CONFIG_OPTIONS", "runners.flaky.max_failed_starts=0")
        .no_wait()
        .start();
    let worker = "runner:flaky:1";
    let nominal = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0];
    // 33 s of delays in all, plus the starts.
    let enough = eventually(Duration::from_secs(90), || {
        restart_delays(&server.log(), worker).len() >= nominal.len()
    });
    let log = server.log();
    assert!(enough, "fewer than {} restarts; log:\n{log}", nominal.len());
    let delays = restart_delays(&log, worker);
    eprintln!("restart delays of a worker crashing at start (s): {delays:.3?}");
    for (i, (delay, nominal)) in delays.iter().zip(nominal).enumerate() {
        assert_delay(*delay, nominal, &format!("restart {}", i + 1), &log);
    }
    // Capped: without the cap the last two would be 12.8 s and 25.6 s.
    assert!(delays[7] < 12.8 && delays[8] < 12.8, "{delays:?}");
    let status = status_json(&server);
    let flaky = status["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["runner"] == "flaky").cloned())
        .unwrap_or_else(|| panic!("no flaky worker in {status}"));
    assert!(
        flaky["restarts"].as_u64() >= Some(nominal.len() as u64),
        "restarts in status: {flaky}"
    );
}

#[test]
fn the_restart_delay_starts_over_at_100ms_once_a_worker_was_up_30s() {
    // Killed before they are ready, the quick crashes would otherwise
    // count toward the crash-loop limit.
    let server = Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .env("TIFFIN_CONFIG_OPTIONS", "runners.max_failed_starts=0")
        .start();
    let pattern = "__worker runner --runner calc";
    let worker = "runner:calc:1";
    let kill_current = |server: &Server| {
        let pids = child_pids(server, pattern);
        assert_eq!(pids.len(), 1, "{:?}", server.children());
        send_signal(pids[0], libc::SIGKILL);
        let replaced = eventually(Duration::from_secs(30), || {
            let now = child_pids(server, pattern);
            now.len() == 1 && now[0] != pids[0]
        });
        assert!(replaced, "no replacement; log:\n{}", server.log());
        pids[0]
    };
    // Four crashes in quick succession: 100, 200, 400, 800 ms.
    for _ in 0..4 {
        kill_current(&server);
    }
    let delays = |server: &Server, n: usize| {
        let mut d = Vec::new();
        let ok = eventually(EVENT_WITHIN, || {
            d = restart_delays(&server.log(), worker);
            d.len() >= n
        });
        assert!(ok, "{n} restarts expected; log:\n{}", server.log());
        d
    };
    let grown = delays(&server, 4);
    let log = server.log();
    for (i, nominal) in [0.1, 0.2, 0.4, 0.8].into_iter().enumerate() {
        assert_delay(grown[i], nominal, &format!("quick crash {}", i + 1), &log);
    }

    // The replacement stays up past 30 s (the behaviour under test is what
    // 30 s of uptime does, so this waits for the time to pass, bounded).
    let started = lines_of(&log, "supervisor", &[STARTED])
        .into_iter()
        .rfind(|l| field(l, "worker") == Some(worker))
        .map(log_seconds)
        .expect("the replacement's start line");
    let up_30s = eventually(Duration::from_secs(60), || {
        wall_clock_seconds() - started > 31.0
    });
    assert!(up_30s);
    kill_current(&server);
    let after = delays(&server, 5);
    let log = server.log();
    let exit = lines_of(&log, "supervisor", &[EXITED])
        .into_iter()
        .rfind(|l| field(l, "worker") == Some(worker))
        .expect("the last exit line");
    let uptime_ms: u64 = field(exit, "uptime_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no uptime_ms in {exit}"));
    assert!(uptime_ms >= 30_000, "{exit}");
    eprintln!("restart delays, the last after {uptime_ms} ms up (s): {after:.3?}");
    // Without the reset this one would wait 1.6 s.
    assert_delay(after[4], 0.1, "the crash after 30 s up", &log);
    assert!(after[4] < 1.6, "{after:?}");
}

/// Now, in seconds since the Unix epoch (the clock of the log's timestamps).
fn wall_clock_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
