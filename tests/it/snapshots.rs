//! The supervisor's cached snapshots (supervisor/src/scrape.rs), against the
//! real binary: a process that misses a scrape's deadline is served from its
//! last snapshot and counted in `tiffin_supervisor_scrape_stale_total`, and
//! the once-a-second refresh bounds what a `kill -9` can lose to about one
//! refresh interval of the dead worker's increments.

use crate::common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const RUNNER: &str = "__worker runner --runner nltk_sentiment";
/// The runner worker's own count of its calls: nothing else adds to it, so
/// what a scrape shows of it comes from that worker's snapshots alone.
const RUNNER_CALLS: &[(&str, &str)] = &[("runner_name", "nltk_sentiment")];

/// How often the supervisor refreshes every snapshot (`REFRESH_EVERY` in
/// supervisor/src/run.rs).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The one runner worker of `server`.
fn the_runner(server: &Server) -> u32 {
    let pids = child_pids(server, RUNNER);
    assert_eq!(pids.len(), 1, "{:?}", server.children());
    pids[0]
}

#[test]
fn a_stopped_worker_is_served_from_its_cached_snapshot_and_counted_stale() {
    let server = Launch::http(&["--api-workers", "1"]).start();
    for _ in 0..10 {
        server.analyse("I love this product!");
    }
    // A scrape with every process answering: the cache now holds the
    // runner's ten calls, and nothing is stale yet.
    let fresh = parse_exposition(&server.metrics());
    assert_eq!(
        fresh.sum("bentoml_runner_request_total", RUNNER_CALLS),
        10.0
    );
    let stale_before = fresh.sum("tiffin_supervisor_scrape_stale_total", &[]);

    let worker = the_runner(&server);
    send_signal(worker, libc::SIGSTOP);
    let started = Instant::now();
    let r = http(&server.addr, "GET", "/metrics", &[], b"");
    let took = started.elapsed();
    // The scrape answered while the worker was still stopped: it did not
    // wait for it (the hung-worker timeout, 10 s, would have killed it).
    let state = proc_state(worker);
    send_signal(worker, libc::SIGCONT);
    eprintln!("scrape with a stopped runner worker answered in {took:?}");
    let r = r.expect("the scrape answers");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        state,
        Some('T'),
        "the worker was still stopped when the scrape answered"
    );
    let stale = parse_exposition(&r.text());
    assert_eq!(
        stale.sum("bentoml_runner_request_total", RUNNER_CALLS),
        10.0,
        "the stopped worker's calls come from its cached snapshot"
    );
    let counted = stale.sum("tiffin_supervisor_scrape_stale_total", &[]);
    assert!(
        counted > stale_before,
        "tiffin_supervisor_scrape_stale_total stayed {counted} (was {stale_before}) \
         with a process past the deadline"
    );
    assert_eq!(
        stale.sum("tiffin_supervisor_worker_hung_total", &[]),
        0.0,
        "two seconds of silence are not a hung worker"
    );
    wait_log_line(
        &server,
        &["processes missed the scrape deadline; using cached snapshots"],
    );

    // Continued, the same worker serves and answers scrapes again.
    server.analyse("I love this product!");
    wait_metric(
        &server,
        "bentoml_runner_request_total",
        RUNNER_CALLS,
        11.0,
        "the continued worker's fresh snapshot",
    );
    assert_eq!(
        the_runner(&server),
        worker,
        "the stopped worker was replaced"
    );
}

#[test]
fn a_kill_9_without_a_scrape_loses_at_most_about_one_refresh_of_increments() {
    let server = Launch::http(&["--api-workers", "1"]).start();
    settle(&server, 3);
    let worker = the_runner(&server);
    // Four clients for several refresh intervals; every answer's time is
    // kept, so the calls of the last interval before the kill are known.
    let load_for = 6 * REFRESH_EVERY;
    let answered = Mutex::new(Vec::<Instant>::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for c in 0..4 {
            let (answered, stop, addr) = (&answered, &stop, &server.addr);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let text = if c % 2 == 0 { "I love it" } else { "I hate it" };
                    let r = post_text_to(addr, "/analysis", text).expect("POST /analysis");
                    assert_eq!(r.status, 200, "{}", r.text());
                    answered.lock().unwrap().push(Instant::now());
                }
            });
        }
        let started = Instant::now();
        while started.elapsed() < load_for {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::SeqCst);
    });
    // No scrape since the load started: only the periodic refresh has
    // copied the worker's counts to the supervisor.
    send_signal(worker, libc::SIGKILL);
    let killed_at = Instant::now();
    let answered = answered.into_inner().unwrap();
    let served = answered.len() as f64;

    let replaced = eventually(EVENT_WITHIN, || {
        child_pids(&server, RUNNER).iter().any(|p| *p != worker)
    });
    assert!(replaced, "no replacement; log:\n{}", server.log());
    server.wait_ready(EVENT_WITHIN);
    let after = parse_exposition(&server.metrics());
    let counted = after.sum("bentoml_runner_request_total", RUNNER_CALLS);
    assert_eq!(
        after.sum(
            "bentoml_api_server_request_total",
            &[("endpoint", "/analysis"), ("http_response_code", "200")]
        ),
        served,
        "the API server, still alive, counted every answer"
    );
    assert!(
        counted <= served,
        "the runner counted {counted} calls, more than the {served} answered"
    );
    // A refresh tick comes every interval, and its collection may take up
    // to its one-second deadline before the snapshot is stored: the counts
    // at stake are those of the last two intervals before the kill.
    let window = 2 * REFRESH_EVERY;
    let at_stake = answered
        .iter()
        .filter(|t| killed_at.duration_since(**t) <= window)
        .count() as f64;
    let lost = served - counted;
    eprintln!(
        "kill -9 after {served} calls: {lost} lost, {at_stake} answered in the last {window:?}"
    );
    assert!(
        lost <= at_stake,
        "a kill -9 lost {lost} of {served} calls, more than the {at_stake} the worker \
         answered in its last {window:?}; log:\n{}",
        server.log()
    );
    assert!(
        served > at_stake,
        "the load ran longer than the window, so the bound says something: \
         {served} answered, {at_stake} in the window"
    );
}
