//! Exact counts across graceful scale-downs: a drained runner worker's
//! final snapshot (its `Drained` message, sent just before it exits) must
//! reach the aggregate even when the supervisor notices the exit first.
//!
//! The calls of each round are made right before the scale-down, so the
//! supervisor's cached snapshots (refreshed every second) mostly do not
//! have them yet: a lost final snapshot shows as a total below the number
//! of answered calls.

use crate::common;

use std::time::Duration;

use common::*;

const RUNNER: &str = "__worker runner --runner nltk_sentiment";
const WORKERS: usize = 4;
const ROUNDS: usize = 4;
const CALLS_PER_ROUND: usize = 40;

/// Runner and API-server request totals of `/analysis`, as one scrape shows them.
fn totals(server: &Server) -> (f64, f64) {
    let expo = parse_exposition(&server.metrics());
    (
        expo.sum(
            "bentoml_runner_request_total",
            &[("runner_name", "nltk_sentiment")],
        ),
        expo.sum(
            "bentoml_api_server_request_total",
            &[("endpoint", "/analysis")],
        ),
    )
}

fn ready_runners(server: &Server) -> usize {
    status_json(server)["workers"].as_array().map_or(0, |ws| {
        ws.iter()
            .filter(|w| w["role"] == "runner" && w["state"] == "ready")
            .count()
    })
}

fn scale(server: &Server, n: usize) {
    let out = server.cli(&["scale", "nltk_sentiment", &n.to_string()]);
    assert!(
        out.status.success(),
        "scale to {n}: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

#[test]
fn graceful_scale_downs_keep_every_drained_workers_counts() {
    let workers = WORKERS.to_string();
    let server = Launch::http(&["--runner-workers", &workers, "--api-workers", "1"]).start();
    let mut answered = 0.0;
    for round in 0..ROUNDS {
        assert!(
            eventually(Duration::from_secs(15), || ready_runners(&server)
                == WORKERS),
            "round {round}: {WORKERS} runner workers never ready; log:\n{}",
            server.log()
        );
        // Sequential calls: the pool spreads ties over every worker, so
        // each one that is about to be drained has served some of them.
        for i in 0..CALLS_PER_ROUND {
            server.analyse(if i % 2 == 0 { "I love it" } else { "I hate it" });
            answered += 1.0;
        }
        scale(&server, 1);
        assert!(
            eventually(Duration::from_secs(10), || child_pids(&server, RUNNER)
                .len()
                == 1),
            "round {round}: workers did not drain to 1; children: {:#?}",
            server.children()
        );
        // The exits are handled on the supervisor's main loop: wait until
        // `tiffin status` no longer lists the drained slots.
        assert!(
            eventually(Duration::from_secs(5), || {
                status_json(&server)["workers"]
                    .as_array()
                    .map_or(0, |ws| ws.iter().filter(|w| w["role"] == "runner").count())
                    == 1
            }),
            "round {round}: drained slots still listed"
        );
        let (runner, api) = totals(&server);
        assert_eq!(
            api, answered,
            "round {round}: the API server's own count is the reference"
        );
        assert_eq!(
            runner,
            answered,
            "round {round}: runner calls counted after draining {} workers; log:\n{}",
            WORKERS - 1,
            server.log()
        );
        scale(&server, WORKERS);
    }
}
