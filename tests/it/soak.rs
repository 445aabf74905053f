//! The soak of issue 28, section 4, for one minute: `scripts/bench.d/soak.py`
//! (the bench's `soak` section, an hour there) against the real binary, with
//! the faults on a faster schedule so that each happens in a minute. It
//! fails when a counter goes backwards, when requests fail in a window with
//! no kill to explain them, when a scrape fails, or when the server does not
//! answer at the end.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn a_minute_under_kills_scaling_scrapes_and_hostile_clients_loses_nothing_it_should_not() {
    let oha = venv_tool("target/tools/bin/oha", "scripts/setup/28-soak");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.d/soak.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg("--bin")
        .arg(tiffin_bin())
        .arg("--oha")
        .arg(&oha)
        .args(["--seconds", "60", "--window", "15", "--hostile", "30"])
        .args([
            "--kill-runner-every",
            "10",
            "--scale-every",
            "15",
            "--kill-api-every",
            "25",
        ]);
    // A bound on the whole run: the minute, the measurement before it and shutdown.
    let run = run_with_timeout(&mut cmd, Duration::from_secs(240));
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        run.status.is_some_and(|s| s.success()),
        "the soak failed:\n{out}"
    );
    // It did what it says: kills of both kinds, scalings, scrapes, hostile clients.
    for needle in [
        "kill -9 runner nltk_sentiment",
        "kill -9 api-server",
        "scale nltk_sentiment to 4: ok",
        "scale nltk_sentiment to 1: ok",
    ] {
        assert!(out.contains(needle), "no '{needle}' in:\n{out}");
    }
    assert!(out.contains("counters that went backwards: 0"), "{out}");
    assert!(
        out.contains("server alive and ready at the end: True"),
        "{out}"
    );
    let opened: u64 = out
        .split("hostile connections opened: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(opened >= 30, "{out}");
}
