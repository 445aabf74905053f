//! Chaos: steady client load while runner workers are killed with SIGKILL and
//! the runner is scaled 1 → 4 → 2 → 1 (twice over), with `/metrics` scraped
//! throughout. Afterwards every successful answer must have been right, few
//! requests may have failed, every counter must have been monotonic at every
//! scrape, the API request counter must match what the clients received, the
//! process count must match the final scale, and nothing may outlive the
//! supervisor.
//!
//! The kill victims are chosen by a small LCG; its seed is printed and can be
//! fixed with `TIFFIN_CHAOS_SEED=<n>` to replay a run's choices.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const RUNNER: &str = "__worker runner --runner nltk_sentiment";
const API_SERVER: &str = "__worker api-server";
const CLIENTS: usize = 4;
const SCRAPE_EVERY: Duration = Duration::from_millis(300);
/// Pause between two chaos steps; the schedule below has 16 steps (~20 s).
const STEP: Duration = Duration::from_millis(1200);
const MAX_FAILURE_FRACTION: f64 = 0.01;

/// The two requests the clients alternate, with the answer each must get.
const TEXTS: [(&str, bool); 2] = [
    ("I love this product!", true),
    ("This is terrible. I hate it.", false),
];

/// What one client saw.
#[derive(Default, Debug)]
struct Tally {
    /// Requests attempted.
    sent: u64,
    /// Requests that got an HTTP response (any status).
    responses: u64,
    /// 200 with the right answer.
    correct: u64,
    /// 200 with a wrong or unreadable answer: (text, body).
    wrong: Vec<(String, String)>,
    /// Non-200 responses by status.
    failed_status: BTreeMap<u16, u64>,
    /// A few non-200 bodies, for the failure message.
    failed_samples: Vec<String>,
    /// Requests with no response at all (connect/read errors).
    conn_errors: u64,
    conn_error_samples: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.responses += other.responses;
        self.correct += other.correct;
        self.wrong.extend(other.wrong);
        for (status, n) in other.failed_status {
            *self.failed_status.entry(status).or_default() += n;
        }
        self.failed_samples.extend(other.failed_samples);
        self.failed_samples.truncate(10);
        self.conn_errors += other.conn_errors;
        self.conn_error_samples.extend(other.conn_error_samples);
        self.conn_error_samples.truncate(10);
    }

    fn failures(&self) -> u64 {
        self.failed_status.values().sum::<u64>() + self.conn_errors
    }
}

fn client(addr: &str, first: usize, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let (text, expected) = TEXTS[i % 2];
        i += 1;
        t.sent += 1;
        let r = match http(
            addr,
            "POST",
            "/analysis",
            &[("Content-Type", "text/plain")],
            text.as_bytes(),
        ) {
            Ok(r) => r,
            Err(e) => {
                t.conn_errors += 1;
                if t.conn_error_samples.len() < 10 {
                    t.conn_error_samples.push(e.to_string());
                }
                continue;
            }
        };
        t.responses += 1;
        if r.status != 200 {
            *t.failed_status.entry(r.status).or_default() += 1;
            if t.failed_samples.len() < 10 {
                t.failed_samples.push(format!("{}: {}", r.status, r.text()));
            }
            continue;
        }
        let answer = serde_json::from_slice::<serde_json::Value>(&r.body).ok();
        if answer.as_ref().map(|v| &v["is_positive"]) == Some(&serde_json::json!(expected)) {
            t.correct += 1;
        } else {
            t.wrong.push((text.to_string(), r.text()));
        }
    }
    t
}

/// The monotonic samples of a scrape: counters, and histogram `_count` and
/// `_bucket`, keyed by name and labels.
type Series = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn monotonic_series(text: &str) -> Series {
    let exp = parse_exposition(text);
    let mut out = Series::new();
    for s in &exp.samples {
        let Some(family) = exp.family_of(&s.name) else {
            continue;
        };
        let kind = exp.types.get(family).map(String::as_str);
        let monotonic = match kind {
            Some("counter") => true,
            Some("histogram") => s.name.ends_with("_count") || s.name.ends_with("_bucket"),
            _ => false,
        };
        if monotonic {
            out.insert((s.name.clone(), s.labels.clone()), s.value);
        }
    }
    out
}

/// Compares a scrape with the previous one; describes every series that went
/// backwards or vanished.
fn compare(scrape: usize, prev: &Series, now: &Series, violations: &mut Vec<String>) {
    for (key, &before) in prev {
        match now.get(key) {
            Some(&after) if after < before => violations.push(format!(
                "scrape {scrape}: {}{:?} went {before} -> {after}",
                key.0, key.1
            )),
            Some(_) => {}
            None => violations.push(format!(
                "scrape {scrape}: {}{:?} (was {before}) vanished",
                key.0, key.1
            )),
        }
    }
}

/// What the scraper saw.
#[derive(Default)]
struct Scrapes {
    count: usize,
    failures: Vec<String>,
    violations: Vec<String>,
    last: Series,
}

impl Scrapes {
    fn record(&mut self, text: &str) {
        let now = monotonic_series(text);
        self.count += 1;
        if self.count > 1 {
            compare(self.count, &self.last, &now, &mut self.violations);
        }
        self.last = now;
    }
}

fn scraper(server: &Server, stop: &AtomicBool, seen: &Mutex<BTreeSet<u32>>) -> Scrapes {
    let mut out = Scrapes::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match http(&server.addr, "GET", "/metrics", &[], b"") {
            Ok(r) if r.status == 200 => out.record(&r.text()),
            Ok(r) => out
                .failures
                .push(format!("status {}: {}", r.status, r.text())),
            Err(e) => out.failures.push(e.to_string()),
        }
        note_children(server, seen);
        std::thread::sleep(SCRAPE_EVERY.saturating_sub(started.elapsed()));
    }
    out
}

/// Adds the supervisor's current children to `seen`.
fn note_children(server: &Server, seen: &Mutex<BTreeSet<u32>>) {
    let pids = server.children();
    seen.lock().unwrap().extend(pids.iter().map(|(p, _)| *p));
}

/// A 64-bit LCG (Knuth's MMIX constants); the top bits are used.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Scale(usize),
    Kill,
}

fn scale(server: &Server, n: usize) {
    let out = server.cli(&["scale", "nltk_sentiment", &n.to_string()]);
    assert!(
        out.status.success(),
        "tiffin scale nltk_sentiment {n} failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

/// SIGKILLs a random runner worker (draining ones included); returns its pid.
fn kill_random_runner(server: &Server, rng: &mut Lcg) -> Option<u32> {
    let pids = child_pids(server, RUNNER);
    if pids.is_empty() {
        return None;
    }
    let victim = pids[rng.below(pids.len())];
    // SAFETY: kill(2) on a child of our supervisor, found by its command line.
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    Some(victim)
}

#[test]
fn chaos_under_load_keeps_answers_right_and_counters_monotonic() {
    let seed = std::env::var("TIFFIN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("chaos seed: {seed} (replay with TIFFIN_CHAOS_SEED={seed})");
    let mut rng = Lcg(seed);

    let mut server = Launch::http(&[]).env("NO_COLOR", "1").start();
    for (text, expected) in TEXTS {
        let r = server.post_text("/analysis", text);
        assert_eq!(r.status, 200, "warm-up {text:?}: {}", r.text());
        assert_eq!(
            r.json()["is_positive"],
            serde_json::json!(expected),
            "warm-up answer for {text:?}"
        );
    }
    let warmup_requests = TEXTS.len() as u64;

    let seen = Mutex::new(BTreeSet::new());
    note_children(&server, &seen);
    let stop = AtomicBool::new(false);
    let schedule = [
        Step::Scale(4),
        Step::Kill,
        Step::Kill,
        Step::Scale(2),
        Step::Kill,
        Step::Scale(1),
        Step::Kill,
        Step::Scale(4),
        Step::Kill,
        Step::Kill,
        Step::Scale(2),
        Step::Kill,
        Step::Kill,
        Step::Scale(1),
        Step::Kill,
        Step::Kill,
    ];
    let mut kills = Vec::new();
    let mut scales = 0;
    let chaos_started = Instant::now();

    let (tally, scrapes) = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, stop) = (&server.addr, &stop);
                s.spawn(move || client(addr, c, stop))
            })
            .collect();
        let scraping = s.spawn(|| scraper(&server, &stop, &seen));

        std::thread::sleep(STEP);
        for step in schedule {
            match step {
                Step::Scale(n) => {
                    scale(&server, n);
                    scales += 1;
                }
                Step::Kill => {
                    if let Some(pid) = kill_random_runner(&server, &mut rng) {
                        kills.push(pid);
                    }
                }
            }
            note_children(&server, &seen);
            // Note replacements and new workers as they appear, too.
            let until = Instant::now() + STEP;
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
                note_children(&server, &seen);
            }
        }

        stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for c in clients {
            tally.add(c.join().expect("client thread panicked"));
        }
        (tally, scraping.join().expect("scraper thread panicked"))
    });
    let chaos_secs = chaos_started.elapsed().as_secs_f64();
    let Scrapes {
        count: mut scrape_count,
        failures: scrape_failures,
        mut violations,
        last,
    } = scrapes;

    // Final scrape once in-flight work has settled.
    std::thread::sleep(Duration::from_millis(1500));
    let final_text = server.metrics();
    scrape_count += 1;
    let final_series = monotonic_series(&final_text);
    compare(scrape_count, &last, &final_series, &mut violations);
    let final_exp = parse_exposition(&final_text);
    let api_total = final_exp.sum(
        "bentoml_api_server_request_total",
        &[("endpoint", "/analysis")],
    );
    let by_code: Vec<(String, f64)> = final_exp
        .find(
            "bentoml_api_server_request_total",
            &[("endpoint", "/analysis")],
        )
        .map(|s| {
            (
                s.label("http_response_code").unwrap_or("?").to_string(),
                s.value,
            )
        })
        .collect();
    let restarts = final_exp.sum(
        "tiffin_supervisor_worker_restarts_total",
        &[("role", "runner")],
    );

    // (e) the final scale: one runner worker, one API server (drains are async).
    let mut runners = Vec::new();
    let settled = eventually(Duration::from_secs(10), || {
        note_children(&server, &seen);
        runners = child_pids(&server, RUNNER);
        runners.len() == 1
    });
    let api_servers = child_pids(&server, API_SERVER);
    let children = server.children();
    note_children(&server, &seen);

    let failures = tally.failures();
    let failure_pct = 100.0 * failures as f64 / tally.sent.max(1) as f64;
    eprintln!(
        "chaos summary: seed={seed} duration={chaos_secs:.1}s requests={} responses={} correct={} \
         wrong={} failures={failures} ({failure_pct:.3}%) failed_by_status={:?} conn_errors={} \
         kills={} scale_ops={scales} restarts={restarts} scrapes={scrape_count} \
         scrape_failures={} counter_violations={} api_request_total={api_total} \
         pids_seen={}",
        tally.sent,
        tally.responses,
        tally.correct,
        tally.wrong.len(),
        tally.failed_status,
        tally.conn_errors,
        kills.len(),
        scrape_failures.len(),
        violations.len(),
        seen.lock().unwrap().len(),
    );

    // (a) every successful response was right.
    assert!(
        tally.wrong.is_empty(),
        "{} wrong answers with status 200, e.g. {:?}",
        tally.wrong.len(),
        &tally.wrong[..tally.wrong.len().min(10)]
    );
    // (b) few failures (calls on a killed worker, or while a runner had no worker, may fail).
    assert!(
        tally.sent > 1000,
        "too little load to judge: {} requests",
        tally.sent
    );
    assert!(
        failures as f64 <= MAX_FAILURE_FRACTION * tally.sent as f64,
        "{failures} of {} requests failed ({failure_pct:.3}%, limit {}%): by status {:?}, \
         {} without a response; samples {:?} {:?}\nlog:\n{}",
        tally.sent,
        MAX_FAILURE_FRACTION * 100.0,
        tally.failed_status,
        tally.conn_errors,
        tally.failed_samples,
        tally.conn_error_samples,
        server.log()
    );
    // (c) counters never went backwards, and every scrape answered.
    assert!(
        scrape_failures.is_empty(),
        "{} scrapes failed: {:?}",
        scrape_failures.len(),
        &scrape_failures[..scrape_failures.len().min(10)]
    );
    assert!(
        violations.is_empty(),
        "{} counter samples went backwards or vanished between scrapes: {:#?}",
        violations.len(),
        &violations[..violations.len().min(20)]
    );
    // (d) the API server counted exactly the responses the clients received.
    let received = tally.responses + warmup_requests;
    assert_eq!(
        api_total, received as f64,
        "bentoml_api_server_request_total{{endpoint=\"/analysis\"}} (by code {by_code:?}) vs \
         responses received ({} under load + {warmup_requests} warm-up; {} requests got no \
         response)",
        tally.responses, tally.conn_errors
    );
    // (e) process count matches the final scale.
    assert!(
        settled && api_servers.len() == 1 && children.len() == 2,
        "after scaling to 1: runner workers {runners:?}, API servers {api_servers:?}, \
         children {children:#?}\nlog:\n{}",
        server.log()
    );
    assert!(
        kills.len() >= 8,
        "only {} runner workers were killed: {kills:?}",
        kills.len()
    );

    // (f) no orphans after a graceful shutdown.
    let status = server.signal_and_wait(libc::SIGTERM);
    assert_eq!(
        status.code(),
        Some(0),
        "supervisor exit after SIGTERM: {status:?}\nlog:\n{}",
        server.log()
    );
    let seen: Vec<u32> = seen.into_inner().unwrap().into_iter().collect();
    let gone = eventually(Duration::from_secs(5), || {
        seen.iter().all(|pid| !alive(*pid))
    });
    let left: Vec<_> = seen
        .iter()
        .filter(|p| alive(**p))
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            (*p, String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect();
    assert!(
        gone,
        "processes alive after the supervisor exited (of {} seen): {left:#?}\nlog:\n{}",
        seen.len(),
        server.log()
    );
}
