//! Metrics integration tests: start the real `tiffin serve-http`, drive
//! requests over real sockets, scrape the aggregated exposition and check it
//! against BentoML's default families: the `bentoml_api_server_*` and
//! `bentoml_runner_*` names, types and labels of BentoML 1.1's metrics
//! guide, <https://docs.bentoml.com/en/v1.1.11/guides/metrics.html> (from
//! 1.2 on, <https://docs.bentoml.com/en/latest/build-with-bentoml/observability/metrics.html>
//! documents one `bentoml_service_*` set instead).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    Exposition, Launch, Server, child_pids, concurrent_clients, eventually, free_port, http,
    parse_exposition, post_text_to, promtool_check, run_with_timeout, settle, status_json,
    worker_role,
};

const SERVICE: &str = "sentiment_analyzer";
const RUNNER: &str = "nltk_sentiment";
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const POSITIVE: &[&str] = &[
    "I love this product!",
    "What a wonderful, great day",
    "This is excellent and amazing",
];
const NEGATIVE: &[&str] = &[
    "I hate this, it is terrible",
    "What an awful, horrible experience",
    "This is the worst. Very bad.",
];

/// The `n`th text of a run alternating `POSITIVE[k]` and `NEGATIVE[k]`.
fn alternating(n: usize, k: usize) -> &'static str {
    if n.is_multiple_of(2) {
        POSITIVE[k]
    } else {
        NEGATIVE[k]
    }
}

/// Labels of the `/analysis` calls the API server answered with 200.
const ANALYSIS_OK: &[(&str, &str)] = &[("endpoint", "/analysis"), ("http_response_code", "200")];
/// Labels of the calls of the sentiment runner's `is_positive` method.
const RUNNER_CALLS: &[(&str, &str)] = &[("endpoint", "/is_positive"), ("runner_name", RUNNER)];
/// Labels of the 404s for `GET /nope`.
const NOPE_404: &[(&str, &str)] = &[("endpoint", "/nope"), ("http_response_code", "404")];
/// The supervisor's labels for the sentiment runner's workers.
const RUNNER_ROLE: &[(&str, &str)] = &[("role", "runner"), ("runner_name", RUNNER)];
/// The supervisor's labels for the API servers.
const API_ROLE: &[(&str, &str)] = &[("role", "api_server")];

/// Consecutive `/readyz` 200s that make it very likely every API server has
/// answered one, i.e. is connected to its runners.
const SETTLE_STREAK: usize = 20;

/// BentoML's default buckets for request durations (and `inference_duration`).
const DEFAULT_LE: &[&str] = &[
    "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0",
    "7.5", "10.0", "+Inf",
];

/// The table of default families: name, type, label names (without `le`).
const DEFAULT_FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "bentoml_api_server_request_in_progress",
        "gauge",
        &["endpoint", "service_name", "service_version"],
    ),
    (
        "bentoml_api_server_request_total",
        "counter",
        &[
            "endpoint",
            "service_name",
            "service_version",
            "http_response_code",
        ],
    ),
    (
        "bentoml_api_server_request_duration_seconds",
        "histogram",
        &[
            "endpoint",
            "service_name",
            "service_version",
            "http_response_code",
        ],
    ),
    (
        "bentoml_runner_request_in_progress",
        "gauge",
        &["endpoint", "service_name", "service_version", "runner_name"],
    ),
    (
        "bentoml_runner_request_total",
        "counter",
        &[
            "endpoint",
            "service_name",
            "service_version",
            "http_response_code",
            "runner_name",
        ],
    ),
    (
        "bentoml_runner_request_duration_seconds",
        "histogram",
        &[
            "endpoint",
            "service_name",
            "service_version",
            "http_response_code",
            "runner_name",
        ],
    ),
];

/// Present only when a service has a batchable method (the sentiment service
/// has none); checked when present.
const ADAPTIVE_BATCH: (&str, &str, &[&str]) = (
    "bentoml_runner_adaptive_batch_size",
    "histogram",
    &[
        "runner_name",
        "worker_index",
        "method_name",
        "service_version",
        "service_name",
    ],
);

fn start(args: &[&str]) -> Server {
    Launch::http(args).start()
}

fn start_with(args: &[&str], options: &str) -> Server {
    Launch::http(args)
        .env("TIFFIN_CONFIG_OPTIONS", options)
        .start()
}

/// POSTs one text to /analysis; returns the `is_positive` answer.
fn analyse(server: &Server, text: &str) -> bool {
    let answer = server.analyse(text);
    answer["is_positive"]
        .as_bool()
        .unwrap_or_else(|| panic!("no is_positive in {answer}"))
}

fn scrape(server: &Server) -> Exposition {
    parse_exposition(&server.metrics())
}

fn label_names(s: &common::Sample) -> BTreeSet<&str> {
    s.labels.keys().map(String::as_str).collect()
}

/// Checks one family's `# TYPE` and the label-name set of every sample of it.
fn check_family(expo: &Exposition, name: &str, kind: &str, labels: &[&str]) {
    assert_eq!(
        expo.types.get(name).map(String::as_str),
        Some(kind),
        "# TYPE of {name}"
    );
    assert!(expo.helps.contains_key(name), "no # HELP line for {name}");
    let expected: BTreeSet<&str> = labels.iter().copied().collect();
    let mut with_le = expected.clone();
    with_le.insert("le");
    let samples: Vec<_> = expo.family_samples(name).collect();
    assert!(!samples.is_empty(), "family {name} has no samples");
    for s in samples {
        let allowed_names: Vec<String> = match kind {
            "histogram" => vec![
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
            ],
            _ => vec![name.to_string()],
        };
        assert!(
            allowed_names.contains(&s.name),
            "sample {} does not belong to {kind} {name}",
            s.name
        );
        let want = if s.name.ends_with("_bucket") {
            &with_le
        } else {
            &expected
        };
        assert_eq!(&label_names(s), want, "label names of {s:?}");
    }
}

/// A histogram series' labels without `le`.
type SeriesKey = Vec<(String, String)>;

/// For every histogram series: buckets strictly increasing in `le`, counts
/// non-decreasing, last bucket `+Inf` equal to `_count`, `_sum` present.
fn check_histograms(expo: &Exposition) {
    let mut checked = 0;
    for (family, kind) in &expo.types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<SeriesKey, Vec<(f64, f64)>> = BTreeMap::new();
        for s in expo.find(&format!("{family}_bucket"), &[]) {
            let le = s
                .label("le")
                .unwrap_or_else(|| panic!("bucket without le: {s:?}"));
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()
                    .unwrap_or_else(|_| panic!("le is not a number: {s:?}"))
            };
            let key: SeriesKey = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        for (key, mut buckets) in series {
            let pairs: Vec<(&str, &str)> =
                key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            for w in buckets.windows(2) {
                assert!(w[0].0 < w[1].0, "{family}{key:?}: duplicate le {}", w[0].0);
                assert!(
                    w[0].1 <= w[1].1,
                    "{family}{key:?}: bucket le={} ({}) > le={} ({})",
                    w[0].0,
                    w[0].1,
                    w[1].0,
                    w[1].1
                );
            }
            let (last_le, inf) = *buckets.last().expect("at least one bucket");
            assert!(last_le.is_infinite(), "{family}{key:?}: no +Inf bucket");
            // The `_count` or `_sum` samples with exactly this series' labels.
            let of_series = |suffix: &str| {
                let name = format!("{family}{suffix}");
                expo.samples
                    .iter()
                    .filter(|s| s.name == name && s.labels.len() == key.len() && s.has(&pairs))
                    .map(|s| s.value)
                    .collect::<Vec<f64>>()
            };
            let counts = of_series("_count");
            assert_eq!(counts.len(), 1, "{family}{key:?}: one _count sample");
            assert_eq!(inf, counts[0], "{family}{key:?}: +Inf bucket != _count");
            let sums = of_series("_sum").len();
            assert_eq!(sums, 1, "{family}{key:?}: one _sum sample");
            checked += 1;
        }
    }
    assert!(checked > 0, "no histogram series in the exposition");
}

/// Rendered `le` values of one histogram series, in exposition order.
fn le_values(expo: &Exposition, bucket_name: &str, labels: &[(&str, &str)]) -> Vec<String> {
    expo.find(bucket_name, labels)
        .map(|s| s.label("le").unwrap_or_default().to_string())
        .collect()
}

/// Rendered `le` values of the request-duration histograms: the API
/// server's for `/analysis` and the runner's for `/is_positive`.
fn duration_le_values(expo: &Exposition) -> (Vec<String>, Vec<String>) {
    (
        le_values(
            expo,
            "bentoml_api_server_request_duration_seconds_bucket",
            &[("endpoint", "/analysis")],
        ),
        le_values(
            expo,
            "bentoml_runner_request_duration_seconds_bucket",
            &[("endpoint", "/is_positive")],
        ),
    )
}

/// Asserts that the API server counted `n` `/analysis` calls answered with
/// 200, and the service's own `polarity_total` counter `n` analyses.
fn assert_analyses(expo: &Exposition, n: f64) {
    assert_eq!(
        expo.sum("bentoml_api_server_request_total", ANALYSIS_OK),
        n,
        "/analysis answered with 200"
    );
    assert_eq!(expo.sum("polarity_total", &[]), n, "polarity_total");
}

/// Checks every family of [`DEFAULT_FAMILIES`] with [`check_family`].
fn check_default_families(expo: &Exposition) {
    for (name, kind, labels) in DEFAULT_FAMILIES {
        check_family(expo, name, kind, labels);
    }
}

/// Asserts that `{prefix}_request_total` and
/// `{prefix}_request_duration_seconds_count` both sum to `n` over the series
/// carrying `labels`: every request counted was also timed, once.
fn assert_counted_and_timed(expo: &Exposition, prefix: &str, labels: &[(&str, &str)], n: f64) {
    for name in ["request_total", "request_duration_seconds_count"] {
        let name = format!("{prefix}_{name}");
        assert_eq!(expo.sum(&name, labels), n, "{name} for {labels:?}");
    }
}

#[test]
fn default_families_have_bentoml_names_types_and_labels() {
    let server = start(&[]);
    let mut positives = 0;
    for i in 0..6 {
        positives += analyse(&server, alternating(i, i / 2)) as usize;
    }
    assert_eq!(positives, 3, "the sample texts classify as intended");
    assert_eq!(server.get("/nope").status, 404);
    // Scrape twice: the first scrape must not show up in the second.
    let _ = server.metrics();
    let text = server.metrics();
    let expo = parse_exposition(&text);

    check_default_families(&expo);
    if expo.types.contains_key(ADAPTIVE_BATCH.0) {
        check_family(&expo, ADAPTIVE_BATCH.0, ADAPTIVE_BATCH.1, ADAPTIVE_BATCH.2);
    }
    check_family(
        &expo,
        "inference_duration",
        "histogram",
        &["nltk_version", "sentiment_cls"],
    );
    check_family(&expo, "polarity_total", "counter", &["polarity"]);
    assert_eq!(expo.sum("polarity_total", &[("polarity", "True")]), 3.0);
    assert_eq!(expo.sum("polarity_total", &[("polarity", "False")]), 3.0);
    assert_eq!(expo.sum("inference_duration_count", &[]), 6.0);
    assert_eq!(
        le_values(&expo, "inference_duration_bucket", &[]),
        DEFAULT_LE,
        "inference_duration uses the default buckets"
    );

    // HELP texts as BentoML writes them.
    for (family, help) in [
        (
            "bentoml_api_server_request_duration_seconds",
            "API HTTP request duration in seconds",
        ),
        (
            "bentoml_api_server_request_total",
            "Total number of HTTP requests",
        ),
        (
            "bentoml_api_server_request_in_progress",
            "Total number of HTTP requests in progress now",
        ),
        ("bentoml_runner_request_total", "Total number of runner RPC"),
        (
            "bentoml_runner_request_duration_seconds",
            "runner RPC duration in seconds",
        ),
        (
            "bentoml_runner_request_in_progress",
            "Total number of runner RPC in progress now",
        ),
        ("inference_duration", "Duration of inference"),
        (
            "polarity_total",
            "Count total number of analysis by polarity scores",
        ),
    ] {
        assert_eq!(
            expo.helps.get(family).map(String::as_str),
            Some(help),
            "# HELP of {family}"
        );
    }

    // Every sample belongs to a declared family; no doubled `_total`.
    for s in &expo.samples {
        assert!(
            expo.family_of(&s.name).is_some(),
            "sample {} has no # TYPE",
            s.name
        );
        assert!(
            !s.name.contains("_total_total"),
            "doubled suffix: {}",
            s.name
        );
    }

    // Label values as BentoML writes them.
    for s in expo
        .samples
        .iter()
        .filter(|s| s.name.starts_with("bentoml_"))
    {
        assert_eq!(s.label("service_name"), Some(SERVICE), "{s:?}");
        assert_eq!(s.label("service_version"), Some("not available"), "{s:?}");
        if s.name.starts_with("bentoml_runner_") {
            assert_eq!(s.label("runner_name"), Some(RUNNER), "{s:?}");
        }
        if let Some(code) = s.label("http_response_code") {
            assert!(
                code.len() == 3 && code.parse::<u16>().is_ok(),
                "numeric status code: {s:?}"
            );
        }
        assert_ne!(
            s.label("endpoint"),
            Some("/metrics"),
            "scrapes must not be counted: {s:?}"
        );
    }
    let api = [
        ("endpoint", "/analysis"),
        ("http_response_code", "200"),
        ("service_name", SERVICE),
        ("service_version", "not available"),
    ];
    assert_counted_and_timed(&expo, "bentoml_api_server", &api, 6.0);
    assert_eq!(
        expo.find(
            "bentoml_api_server_request_in_progress",
            &[("endpoint", "/analysis")]
        )
        .count(),
        1
    );
    assert_eq!(expo.sum("bentoml_api_server_request_total", NOPE_404), 1.0);
    // Health probes are counted (the harness polled /readyz until ready).
    assert!(
        expo.sum(
            "bentoml_api_server_request_total",
            &[("endpoint", "/readyz"), ("http_response_code", "200")]
        ) >= 1.0,
        "readiness probes are counted like BentoML"
    );
    let runner = [
        ("endpoint", "/is_positive"),
        ("http_response_code", "200"),
        ("runner_name", RUNNER),
    ];
    assert_counted_and_timed(&expo, "bentoml_runner", &runner, 6.0);
    assert_eq!(
        expo.find("bentoml_runner_request_in_progress", RUNNER_CALLS)
            .count(),
        1
    );
    for s in expo.family_samples("bentoml_runner_request_total") {
        assert_eq!(s.label("endpoint"), Some("/is_positive"), "{s:?}");
    }
    check_histograms(&expo);
    assert!(
        !text.contains("endpoint=\"/metrics\""),
        "/metrics requests must not be counted"
    );
}

#[test]
fn metrics_content_types_text_and_openmetrics() {
    let server = start(&[]);
    analyse(&server, POSITIVE[0]);
    analyse(&server, NEGATIVE[0]);

    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(TEXT_CONTENT_TYPE));
    assert!(!r.text().contains("# EOF"), "0.0.4 text has no # EOF");

    let r = http(
        &server.addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    )
    .expect("GET /metrics (OpenMetrics)");
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/openmetrics-text"),
        "OpenMetrics content type, got {ct:?}"
    );
    let body = r.text();
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF: {:?}",
        &body[body.len().saturating_sub(80)..]
    );
    assert_eq!(body.matches("# EOF").count(), 1, "exactly one # EOF");
    let om = parse_exposition(&body);
    // OpenMetrics names counter families without `_total`; samples carry it.
    for (family, kind) in &om.types {
        if kind == "counter" {
            assert!(
                !family.ends_with("_total"),
                "OpenMetrics counter family {family} must not end in _total"
            );
            for s in om.family_samples(family) {
                assert!(
                    s.name == format!("{family}_total") || s.name == format!("{family}_created"),
                    "counter sample {} of {family}",
                    s.name
                );
            }
        }
    }
    assert_eq!(
        om.types
            .get("bentoml_api_server_request")
            .map(String::as_str),
        Some("counter")
    );
    assert_analyses(&om, 2.0);
    check_histograms(&om);
}

/// Sets its flag when dropped, panics included.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn counts_are_exact_under_concurrent_load() {
    const M: usize = 300;
    const THREADS: usize = 16;
    // Only this thread owns the server, so a panic anywhere still drops
    // (and stops) it; helper threads get its address.
    let server = start(&["--api-workers", "2", "--runner-workers", "3"]);
    // Both API servers connected (the readiness race has its own test).
    settle(&server, SETTLE_STREAK);
    let next = Arc::new(AtomicUsize::new(0));
    let positives = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Stops the scraper however this test ends.
    let _stop_scraper = SetOnDrop(done.clone());

    // A scraper running alongside the load: every scrape parses, its
    // histograms are consistent and the counters never go backwards.
    let scrapes = Arc::new(Mutex::new(Vec::<(f64, f64, f64)>::new()));
    let scraper = {
        let (addr, done, scrapes) = (server.addr.clone(), done.clone(), scrapes.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let r = http(&addr, "GET", "/metrics", &[], b"").expect("GET /metrics");
                assert_eq!(r.status, 200, "{}", r.text());
                let expo = parse_exposition(&r.text());
                check_histograms(&expo);
                let api = expo.sum(
                    "bentoml_api_server_request_total",
                    &[("endpoint", "/analysis")],
                );
                let runner = expo.sum(
                    "bentoml_runner_request_total",
                    &[("endpoint", "/is_positive")],
                );
                let polarity = expo.sum("polarity_total", &[]);
                scrapes.lock().unwrap().push((api, runner, polarity));
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };

    let clients: Vec<_> = (0..THREADS)
        .map(|_| {
            let (addr, next, positives) = (server.addr.clone(), next.clone(), positives.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= M {
                        break;
                    }
                    // POSITIVE and NEGATIVE are of one length.
                    let text = alternating(i, i % POSITIVE.len());
                    // `http` opens a fresh connection for every request.
                    let r = post_text_to(&addr, "/analysis", text).expect("POST /analysis");
                    assert_eq!(r.status, 200, "request {i}: {}", r.text());
                    if r.json()["is_positive"].as_bool() == Some(true) {
                        positives.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    done.store(true, Ordering::SeqCst);
    scraper.join().expect("scraper thread");

    let positives = positives.load(Ordering::SeqCst) as f64;
    assert!(
        positives > 0.0 && positives < M as f64,
        "mixed answers, got {positives} positive of {M}"
    );
    let scrapes = scrapes.lock().unwrap().clone();
    assert!(!scrapes.is_empty(), "the scraper ran");
    for w in scrapes.windows(2) {
        assert!(
            w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2,
            "counters went backwards between scrapes: {:?} -> {:?}",
            w[0],
            w[1]
        );
    }
    for s in &scrapes {
        assert!(
            s.0 <= M as f64 && s.1 <= M as f64 && s.2 <= M as f64,
            "over-count during load: {s:?}"
        );
    }

    for _ in 0..5 {
        assert_eq!(server.get("/nope").status, 404);
    }

    let m = M as f64;
    let expo = scrape(&server);
    assert_counted_and_timed(&expo, "bentoml_api_server", ANALYSIS_OK, m);
    assert_eq!(
        expo.sum(
            "bentoml_api_server_request_total",
            &[("endpoint", "/analysis")]
        ),
        m,
        "no /analysis request failed"
    );
    assert_eq!(
        expo.sum(
            "bentoml_api_server_request_duration_seconds_bucket",
            &[
                ("endpoint", "/analysis"),
                ("http_response_code", "200"),
                ("le", "+Inf")
            ]
        ),
        m
    );
    assert_counted_and_timed(&expo, "bentoml_runner", RUNNER_CALLS, m);
    assert_eq!(
        expo.sum(
            "bentoml_runner_request_total",
            &[("endpoint", "/is_positive"), ("http_response_code", "200")]
        ),
        m
    );
    assert_eq!(expo.sum("inference_duration_count", &[]), m);
    let t = expo.sum("polarity_total", &[("polarity", "True")]);
    let f = expo.sum("polarity_total", &[("polarity", "False")]);
    assert_eq!(t + f, m, "polarity True {t} + False {f}");
    assert_eq!(t, positives, "polarity True == positive answers received");
    assert_counted_and_timed(&expo, "bentoml_api_server", NOPE_404, 5.0);
    // Nothing in flight any more.
    assert_eq!(expo.sum("bentoml_api_server_request_in_progress", &[]), 0.0);
    assert_eq!(expo.sum("bentoml_runner_request_in_progress", &[]), 0.0);
    check_histograms(&expo);
    assert_eq!(expo.sum("tiffin_supervisor_workers", RUNNER_ROLE), 3.0);
    assert_eq!(expo.sum("tiffin_supervisor_workers", API_ROLE), 2.0);

    // Spread over the runner workers: per-worker request counts in `status`
    // (refreshed by the scrape above) add up to M over more than one worker.
    let status = status_json(&server);
    let per_worker: Vec<u64> = status["workers"]
        .as_array()
        .expect("workers array")
        .iter()
        .filter(|w| worker_role(w).0 == "runner")
        .map(|w| w["requests"].as_u64().expect("requests field"))
        .collect();
    assert_eq!(per_worker.len(), 3, "three runner workers: {status}");
    assert_eq!(per_worker.iter().sum::<u64>(), M as u64, "{per_worker:?}");
    assert!(
        per_worker.iter().filter(|&&n| n > 0).count() > 1,
        "requests went to a single runner worker: {per_worker:?}"
    );
}

#[test]
fn duration_buckets_follow_the_configuration() {
    let server = start_with(
        &[],
        "api_server.metrics.duration.min=0.1 api_server.metrics.duration.max=5.0 \
         api_server.metrics.duration.factor=2.0 runners.metrics.duration.buckets=[0.05,0.5,2.5]",
    );
    analyse(&server, POSITIVE[1]);
    let expo = scrape(&server);
    let (api, runner) = duration_le_values(&expo);
    assert_eq!(
        api,
        ["0.1", "0.2", "0.4", "0.8", "1.6", "3.2", "5.0", "+Inf"],
        "{{min: 0.1, max: 5.0, factor: 2.0}} on the API server"
    );
    assert_eq!(
        runner,
        ["0.05", "0.5", "2.5", "+Inf"],
        "explicit runners.metrics.duration.buckets"
    );
    // Custom metrics keep their own buckets.
    assert_eq!(
        le_values(&expo, "inference_duration_bucket", &[]),
        DEFAULT_LE
    );
    check_histograms(&expo);
}

#[test]
fn default_duration_buckets_match_bentoml() {
    let server = start(&[]);
    analyse(&server, POSITIVE[2]);
    let expo = scrape(&server);
    let (api, runner) = duration_le_values(&expo);
    assert_eq!(api, DEFAULT_LE);
    assert_eq!(runner, DEFAULT_LE);
}

#[test]
fn invalid_bucket_configuration_fails_at_start_naming_the_key() {
    let cases = [
        (
            "api_server.metrics.duration.min=0 api_server.metrics.duration.max=5.0 \
             api_server.metrics.duration.factor=2.0",
            "api_server.metrics.duration.min",
        ),
        (
            "api_server.metrics.duration.min=0.1 api_server.metrics.duration.max=5.0 \
             api_server.metrics.duration.factor=1.0",
            "api_server.metrics.duration.factor",
        ),
        (
            "api_server.metrics.duration.min=1.0 api_server.metrics.duration.max=0.5 \
             api_server.metrics.duration.factor=2.0",
            "api_server.metrics.duration.max",
        ),
        (
            "runners.metrics.duration.min=0 runners.metrics.duration.max=5.0 \
             runners.metrics.duration.factor=2.0",
            "runners.metrics.duration.min",
        ),
        (
            "api_server.metrics.duration.buckets=[1.0,0.5]",
            "api_server.metrics.duration.buckets",
        ),
    ];
    for (options, key) in cases {
        let done = run_with_timeout(
            Command::new(common::tiffin_bin())
                .args(["serve-http", "--host", "127.0.0.1", "--port", "0"])
                .env_remove("TIFFIN_CONFIG")
                .env("TIFFIN_CONFIG_OPTIONS", options),
            Duration::from_secs(15),
        );
        let status = done
            .status
            .unwrap_or_else(|| panic!("{options}: tiffin kept running; stderr:\n{}", done.stderr));
        assert!(!status.success(), "{options}: started anyway");
        assert!(
            done.stderr.contains(key),
            "{options}: the error names {key}; stderr:\n{}",
            done.stderr
        );
        assert!(
            !done.stderr.contains("supervisor starting"),
            "{options}: must fail before starting workers; stderr:\n{}",
            done.stderr
        );
    }
}

#[test]
fn disabled_metrics_answer_404_json_and_the_api_still_works() {
    let server = start_with(&[], "api_server.metrics.enabled=false");
    assert!(analyse(&server, POSITIVE[0]));
    assert!(!analyse(&server, NEGATIVE[0]));
    let r = server.get("/metrics");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "JSON error: {:?}",
        r.headers
    );
    let body = r.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{{\"error\": ...}} body: {body}"
    );
    assert_eq!(server.get("/livez").status, 200);
}

#[test]
fn promtool_check_metrics_reports_no_errors() {
    let server = start(&["--runner-workers", "2"]);
    for text in POSITIVE.iter().chain(NEGATIVE) {
        analyse(&server, text);
    }
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(
        server.post("/analysis", "application/json", b"{}").status,
        415
    );
    // promtool exits 1 on parse errors (and on lint problems); lint
    // findings are printed as "<metric> <problem>" lines, parse errors as
    // "error while linting: ...". Fail on either.
    let said = promtool_check(&server.metrics());
    if !said.trim().is_empty() {
        eprintln!("promtool says:\n{said}");
    }
    assert!(
        !said.to_ascii_lowercase().contains("error"),
        "promtool reported errors:\n{said}"
    );
}

#[test]
fn metrics_port_serves_the_same_families() {
    let port = free_port();
    let port_s = port.to_string();
    let server = start(&["--metrics-port", &port_s]);
    analyse(&server, POSITIVE[0]);
    analyse(&server, NEGATIVE[1]);
    let addr = format!("127.0.0.1:{port}");
    let ok = eventually(Duration::from_secs(10), || {
        http(&addr, "GET", "/", &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert!(ok, "metrics port {port} answers; log:\n{}", server.log());

    let main = scrape(&server);
    let r = http(&addr, "GET", "/", &[], b"").expect("GET metrics port /");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(TEXT_CONTENT_TYPE));
    let side = parse_exposition(&r.text());
    assert_eq!(
        main.types, side.types,
        "same families and types on both endpoints"
    );
    for name in [
        "bentoml_api_server_request_total",
        "bentoml_runner_request_total",
        "polarity_total",
        "inference_duration_count",
    ] {
        assert_eq!(main.sum(name, &[]), side.sum(name, &[]), "{name}");
        assert!(main.sum(name, &[]) > 0.0, "{name} counted");
    }
    check_histograms(&side);

    // `/metrics` on the metrics port too; anything else is 404.
    let r = http(&addr, "GET", "/metrics", &[], b"").expect("GET metrics port /metrics");
    assert_eq!(r.status, 200);
    let r = http(&addr, "GET", "/other", &[], b"").expect("GET metrics port /other");
    assert_eq!(r.status, 404);
}

/// Pid of the `role` worker (`"runner"` or `"api-server"`) that `status`
/// (refreshed by the last scrape) shows served the most requests; asserts
/// it served some, so that killing it puts its counts at stake.
fn busiest_worker(server: &Server, role: &str) -> u32 {
    let status = status_json(server);
    let victim = status["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter(|w| worker_role(w).0 == role)
        .max_by_key(|w| w["requests"].as_u64().unwrap_or(0))
        .unwrap_or_else(|| panic!("no {role} worker in {status}"));
    assert!(victim["requests"].as_u64().unwrap_or(0) > 0, "{status}");
    victim["pid"].as_u64().expect("pid") as u32
}

/// `kill -9` of the worker `pid` (`what` names it), then waits until it is gone.
fn kill_9(pid: u32, what: &str) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("kill -9 {what}: {e}"));
    assert!(
        eventually(Duration::from_secs(10), || !common::alive(pid)),
        "{what} {pid} died"
    );
}

/// Waits until `status` shows `n` ready `role` workers (`"runner"` or
/// `"api-server"`), none with pid `gone`.
fn wait_workers_ready(server: &Server, role: &str, n: usize, gone: u32) {
    let ok = eventually(Duration::from_secs(20), || {
        let status = status_json(server);
        let workers: Vec<_> = status["workers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|w| worker_role(w).0 == role)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        workers.len() == n
            && workers.iter().all(|w| {
                w["state"].as_str() == Some("ready") && w["pid"].as_u64() != Some(gone as u64)
            })
    });
    assert!(
        ok,
        "{role} workers not all ready again; status: {}\nlog:\n{}",
        status_json(server),
        server.log()
    );
}

#[test]
fn counters_survive_a_runner_worker_kill() {
    let server = start(&["--runner-workers", "3"]);
    concurrent_clients(4, 15, |t, i| {
        let r = server.post_text("/analysis", alternating(t + i, 0));
        assert_eq!(r.status, 200, "{}", r.text());
    });
    let before = scrape(&server);
    let runner_before = before.sum("bentoml_runner_request_total", RUNNER_CALLS);
    let inference_before = before.sum("inference_duration_count", &[]);
    assert_eq!(runner_before, 60.0);

    // Kill -9 a runner worker that served requests, so its counts are
    // really at stake.
    let pid = busiest_worker(&server, "runner");
    let runner_pids = child_pids(&server, "__worker runner");
    assert_eq!(runner_pids.len(), 3, "{:?}", server.children());
    assert!(runner_pids.contains(&pid), "{pid} in {runner_pids:?}");
    kill_9(pid, "runner worker");
    wait_workers_ready(&server, "runner", 3, pid);
    let pids_after = child_pids(&server, "__worker runner");
    assert_eq!(pids_after.len(), 3, "{:?}", server.children());
    assert!(!pids_after.contains(&pid));

    let after = scrape(&server);
    let runner_after = after.sum("bentoml_runner_request_total", RUNNER_CALLS);
    assert!(
        runner_after >= runner_before,
        "runner request_total went from {runner_before} to {runner_after} after a worker died"
    );
    assert_eq!(runner_after, runner_before, "no requests in between");
    assert_eq!(after.sum("inference_duration_count", &[]), inference_before);
    assert_eq!(after.sum("tiffin_supervisor_workers", RUNNER_ROLE), 3.0);
    assert_eq!(
        after.sum("tiffin_supervisor_worker_restarts_total", RUNNER_ROLE),
        1.0
    );
    check_histograms(&after);

    // New requests add on top of what the dead worker had counted.
    for i in 0..30 {
        analyse(&server, alternating(i, 1));
    }
    let later = scrape(&server);
    assert_eq!(
        later.sum("bentoml_runner_request_total", RUNNER_CALLS),
        90.0
    );
    assert_eq!(later.sum("inference_duration_count", &[]), 90.0);
    assert_analyses(&later, 90.0);
    check_histograms(&later);
}

#[test]
fn counters_survive_an_api_server_kill() {
    let server = start(&["--api-workers", "2"]);
    settle(&server, SETTLE_STREAK);
    for i in 0..20 {
        analyse(&server, alternating(i, 2));
    }
    let before = scrape(&server);
    assert_analyses(&before, 20.0);

    let pid = busiest_worker(&server, "api-server");
    kill_9(pid, "API server");
    wait_workers_ready(&server, "api-server", 2, pid);
    settle(&server, SETTLE_STREAK);

    let after = scrape(&server);
    assert_analyses(&after, 20.0);
    assert_eq!(
        after.sum("tiffin_supervisor_worker_restarts_total", API_ROLE),
        1.0
    );
    assert_eq!(after.sum("tiffin_supervisor_workers", API_ROLE), 2.0);
    for i in 0..10 {
        analyse(&server, alternating(i, 0));
    }
    let later = scrape(&server);
    assert_analyses(&later, 30.0);
}

/// Once `/readyz` answers 200, every API server behind the shared listener
/// must serve: none may accept a request before it can reach a runner.
/// Repeated a few times because the window is narrow.
#[test]
fn every_api_server_serves_once_ready() {
    for round in 0..12 {
        let server = start(&["--api-workers", "4", "--runner-workers", "2"]);
        let answers = Mutex::new(Vec::<(u16, String)>::new());
        concurrent_clients(12, 4, |t, i| {
            let r = server.post_text("/analysis", alternating(t + i, 0));
            answers.lock().unwrap().push((r.status, r.text()));
        });
        let answers = answers.into_inner().unwrap();
        let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
        assert!(
            failed.is_empty(),
            "round {round}: {} of {} requests failed right after /readyz said 200: {:?}",
            failed.len(),
            answers.len(),
            failed.first()
        );
    }
}

/// The checks above are not vacuous: the parser reads escapes and the
/// histogram check rejects broken series.
#[test]
fn exposition_checks_catch_broken_input() {
    let good = "# HELP h A histogram\n# TYPE h histogram\n\
                h_bucket{a=\"x \\\"q\\\" \\\\ y\",le=\"0.5\"} 1.0\n\
                h_bucket{a=\"x \\\"q\\\" \\\\ y\",le=\"+Inf\"} 2.0\n\
                h_sum{a=\"x \\\"q\\\" \\\\ y\"} 0.7\n\
                h_count{a=\"x \\\"q\\\" \\\\ y\"} 2.0\n";
    let expo = parse_exposition(good);
    assert_eq!(expo.samples.len(), 4);
    assert_eq!(expo.samples[0].label("a"), Some("x \"q\" \\ y"));
    assert_eq!(expo.family_of("h_bucket"), Some("h"));
    check_histograms(&expo);

    let decreasing = good.replace("le=\"+Inf\"} 2.0", "le=\"+Inf\"} 0.0");
    let expo = parse_exposition(&decreasing);
    assert!(std::panic::catch_unwind(|| check_histograms(&expo)).is_err());

    let wrong_count = good.replace(
        "0.7\nh_count{a=\"x \\\"q\\\" \\\\ y\"} 2.0",
        "0.7\nh_count{a=\"x \\\"q\\\" \\\\ y\"} 3.0",
    );
    assert_ne!(wrong_count, good);
    let expo = parse_exposition(&wrong_count);
    assert!(std::panic::catch_unwind(|| check_histograms(&expo)).is_err());

    let bad_line = "metric{a=\"unterminated} 1\n";
    assert!(std::panic::catch_unwind(|| parse_exposition(bad_line)).is_err());
}

/// `bentoml_runner_adaptive_batch_size` with its labels and buckets (1, 2,
/// 4, … up to `max_batch_size`, then that maximum), on the batchable
/// built-in `iris_classifier`.
#[test]
fn adaptive_batch_size_family_for_a_batchable_runner() {
    let server = start_with(
        &["iris_classifier", "--runner-workers", "2"],
        "runners.batching.max_batch_size=10",
    );
    const N: usize = 24;
    concurrent_clients(12, N / 12, |_, _| {
        let r = server.post(
            "/classify",
            "application/json",
            b"[[5.1,3.5,1.4,0.2],[6.3,3.3,6.0,2.5]]",
        );
        assert_eq!(r.status, 200, "{}", r.text());
    });
    let expo = scrape(&server);
    let (name, kind, labels) = ADAPTIVE_BATCH;
    check_family(&expo, name, kind, labels);
    check_default_families(&expo);
    check_histograms(&expo);
    let mut workers = BTreeSet::new();
    for s in expo.family_samples(name) {
        assert_eq!(s.label("runner_name"), Some("iris_clf"), "{s:?}");
        assert_eq!(s.label("method_name"), Some("predict"), "{s:?}");
        assert_eq!(s.label("service_name"), Some("iris_classifier"), "{s:?}");
        assert_eq!(s.label("service_version"), Some("not available"), "{s:?}");
        workers.insert(s.label("worker_index").unwrap_or_default().to_string());
        if s.name.ends_with("_bucket") {
            assert!(
                ["1.0", "2.0", "4.0", "8.0", "10.0", "+Inf"].contains(&s.label("le").unwrap()),
                "bucket bounds 1, 2, 4, 8, then max_batch_size 10: {s:?}"
            );
        }
    }
    assert!(
        workers.iter().all(|w| w == "1" || w == "2"),
        "1-based worker_index: {workers:?}"
    );
    for w in &workers {
        assert_eq!(
            le_values(&expo, &format!("{name}_bucket"), &[("worker_index", w)]),
            ["1.0", "2.0", "4.0", "8.0", "10.0", "+Inf"]
        );
    }
    // One request is one call of `predict`: batch sizes add up to N.
    assert_eq!(expo.sum(&format!("{name}_sum"), &[]), N as f64);
    let batches = expo.sum(&format!("{name}_count"), &[]);
    assert!((1.0..=N as f64).contains(&batches), "{batches} batches");
    assert_eq!(
        expo.sum(
            "bentoml_runner_request_total",
            &[("endpoint", "/predict"), ("runner_name", "iris_clf")]
        ),
        N as f64
    );
}
