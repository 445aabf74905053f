//! End to end with a real Prometheus server: it scrapes tiffin every second
//! while clients drive steady load, then the PromQL from BentoML's metrics
//! guide must return sane values.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::{
    Exposition, Launch, free_port, http, launch_grpc, parse_exposition, post_text_to, require_tool,
    settle,
};

const JOB: &str = "tiffin";
const LOAD_FOR: Duration = Duration::from_secs(12);
const QUERY_FOR: Duration = Duration::from_secs(10);

/// Starts Prometheus scraping `target` every second; waits until it is ready.
fn start_prometheus(target: &str) -> Prometheus {
    start_prometheus_jobs(&[(JOB, target, "/metrics")])
}

/// Starts Prometheus scraping every `(job, target, metrics_path)` each second.
fn start_prometheus_jobs(jobs: &[(&str, &str, &str)]) -> Prometheus {
    let scrape_configs: String = jobs
        .iter()
        .map(|(job, target, path)| {
            format!(
                "  - job_name: {job}\n    metrics_path: \"{path}\"\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            )
        })
        .collect();
    Prometheus::start(&scrape_configs)
}

/// Whether every value is finite and > 0 (and there is at least one).
fn all_positive(result: &[(serde_json::Value, f64)]) -> bool {
    !result.is_empty() && result.iter().all(|(_, v)| v.is_finite() && *v > 0.0)
}

#[test]
fn prometheus_scrapes_tiffin_and_bentoml_promql_works() {
    let test_started = Instant::now();
    // Fail (not skip) without the tools, before starting anything.
    require_tool("prometheus");
    let server = Launch::http(&["--api-workers", "2", "--runner-workers", "2"]).start();
    // Both API servers connected to their runners (see `common::settle`).
    settle(&server, 20);
    let prom = start_prometheus(&server.addr);
    let up = format!("up{{job=\"{JOB}\"}}");
    // Prometheus hands new targets to its scrapers after a few seconds
    // (discovery updates are throttled): start the load once it scrapes.
    let scraping = common::eventually(Duration::from_secs(15), || {
        prom.query(&up)
            .is_ok_and(|r| r.iter().any(|(_, v)| *v == 1.0))
    });
    assert!(
        scraping,
        "prometheus never scraped tiffin; its log:\n{}",
        prom.log()
    );

    // Steady load from three clients.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..3)
        .map(|t| {
            let (addr, stop, sent) = (server.addr.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let texts = [
                    "I love this product!",
                    "This is terrible, I hate it",
                    "What a wonderful day",
                    "An awful, horrible experience",
                ];
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    let r = post_text_to(&addr, "/analysis", texts[i % texts.len()])
                        .expect("POST /analysis");
                    assert_eq!(r.status, 200, "{}", r.text());
                    sent.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(15));
                }
            })
        })
        .collect();
    std::thread::sleep(LOAD_FOR);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent > 0);

    let rate = "rate(bentoml_api_server_request_total{service_name=\"sentiment_analyzer\",\
                endpoint=\"/analysis\"}[1m])";
    let p99 = "histogram_quantile(0.99, rate(bentoml_api_server_request_duration_seconds_bucket\
               {service_name=\"sentiment_analyzer\",endpoint=\"/analysis\"}[1m]))";
    let p95 = "histogram_quantile(0.95, rate(inference_duration_bucket[1m]))";
    let runner_rate = "sum(rate(bentoml_runner_request_total{runner_name=\"nltk_sentiment\",\
                       endpoint=\"/is_positive\"}[1m]))";
    let polarity = "sum(polarity_total)";
    let queries = [up.as_str(), rate, p99, p95, runner_rate, polarity];

    // Retry until every query has sane results and Prometheus has scraped
    // the final counts (load has stopped, so the next scrape sees them all).
    let deadline = Instant::now() + QUERY_FOR;
    let results = loop {
        let results: Vec<_> = queries.iter().map(|q| prom.query(q)).collect();
        let ok = results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| all_positive(r)))
            && results[5]
                .as_ref()
                .is_ok_and(|r| r.first().is_some_and(|(_, v)| *v == sent as f64));
        if ok || Instant::now() > deadline {
            break results;
        }
        std::thread::sleep(Duration::from_millis(250));
    };

    eprintln!("sent {sent} requests over {LOAD_FOR:?}");
    for (q, r) in queries.iter().zip(&results) {
        match r {
            Ok(v) => {
                let values: Vec<String> = v.iter().map(|(_, x)| format!("{x}")).collect();
                eprintln!("{q} => [{}]", values.join(", "));
            }
            Err(e) => eprintln!("{q} => error {e}"),
        }
    }
    let context = || {
        format!("prometheus log:\n{}\ntiffin log tail:\n{}", prom.log(), {
            let l = server.log();
            let from = l.len().saturating_sub(4000);
            let from = (from..=l.len())
                .find(|&i| l.is_char_boundary(i))
                .unwrap_or(0);
            l[from..].to_string()
        })
    };
    for (q, r) in queries.iter().zip(&results) {
        let r = r.as_ref().unwrap_or_else(|e| panic!("{e}\n{}", context()));
        assert!(
            all_positive(r),
            "{q}: expected a non-empty vector of finite values > 0, got {r:?}\n{}",
            context()
        );
    }
    let up = results[0].as_ref().unwrap();
    assert_eq!(up.len(), 1, "one target: {up:?}");
    assert_eq!(up[0].1, 1.0, "up == 1");
    // 200s only, from the one target; the rate is the load we drove.
    let rate = results[1].as_ref().unwrap();
    assert!(
        rate.iter()
            .all(|(m, _)| m["http_response_code"] == "200" && m["job"] == JOB),
        "{rate:?}"
    );
    assert_rate_is_what_was_sent(&prom, sent);
    // The quantiles lie in the buckets the observations fell in, per
    // tiffin's own final counts.
    let own = parse_exposition(&server.metrics());
    let p99 = results[2].as_ref().unwrap();
    let (low, high) = observed_between(
        &own,
        "bentoml_api_server_request_duration_seconds_bucket",
        &[("endpoint", "/analysis")],
    );
    assert!(
        p99.iter().all(|(_, v)| *v >= low && *v <= high),
        "p99 {p99:?} outside the buckets observed, {low} to {high} s"
    );
    let p95 = results[3].as_ref().unwrap();
    let (low, high) = observed_between(&own, "inference_duration_bucket", &[]);
    assert!(
        p95.iter().all(|(m, v)| *v >= low
            && *v <= high
            && m["sentiment_cls"] == "SentimentIntensityAnalyzer"
            && m.get("nltk_version").is_some()),
        "inference p95 {p95:?} outside the buckets observed, {low} to {high} s"
    );
    let polarity = results[5].as_ref().unwrap()[0].1;
    assert!(
        polarity > 0.0 && polarity <= sent as f64,
        "sum(polarity_total) = {polarity}, sent {sent}"
    );
    assert_eq!(
        polarity, sent as f64,
        "Prometheus's last scrape after the load stopped sees every request"
    );

    // The target is healthy: no scrape or parse errors.
    let r = http(&prom.addr, "GET", "/api/v1/targets", &[], b"").expect("targets");
    let targets: serde_json::Value = serde_json::from_slice(&r.body).expect("targets JSON");
    let active = targets["data"]["activeTargets"]
        .as_array()
        .expect("activeTargets");
    assert_eq!(active.len(), 1, "{targets}");
    assert_eq!(active[0]["health"], "up", "{targets}");
    assert_eq!(active[0]["lastError"], "", "{targets}");
    eprintln!(
        "target {} healthy, last scrape {}s; test took {:?}",
        active[0]["scrapeUrl"],
        active[0]["lastScrapeDuration"],
        test_started.elapsed()
    );
}

/// The request rate over 1m, evaluated at the time of Prometheus's last
/// scrape (so it extrapolates nothing past it), times the 60 s window is at
/// most the `sent` requests (Prometheus never extrapolates a counter's
/// start below zero) and at least what the window saw the counter grow
/// (its last value, which must be `sent`, less its first in the window).
fn assert_rate_is_what_was_sent(prom: &Prometheus, sent: u64) {
    let counter = "bentoml_api_server_request_total{service_name=\"sentiment_analyzer\",\
                   endpoint=\"/analysis\"}";
    let one = |r: Result<Vec<(serde_json::Value, f64)>, String>, q: &str| -> f64 {
        let r = r.unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(r.len(), 1, "{q} => {r:?}");
        r[0].1
    };
    let q = format!("max(timestamp({counter}))");
    let last_scrape = one(prom.query(&q), &q);
    let at = |q: String| one(prom.query_at(&q, last_scrape), &q);
    let last = at(format!("sum({counter})"));
    let first = at(format!("sum(min_over_time({counter}[1m]))"));
    let increase = 60.0 * at(format!("sum(rate({counter}[1m]))"));
    let sent = sent as f64;
    eprintln!("rate x 60 s at the last scrape: {increase} (sent {sent}, first sample {first})");
    assert_eq!(last, sent, "the last scrape counted every request sent");
    // The tolerance is for the timestamp's millisecond rounding.
    assert!(
        increase <= sent * (1.0 + 1e-3),
        "rate over 1m x 60 s = {increase}, more than the {sent} requests sent"
    );
    assert!(
        increase >= (sent - first) * (1.0 - 1e-3),
        "rate over 1m x 60 s = {increase}, less than the {} counted within the window",
        sent - first
    );
}

/// The range of the buckets of histogram `bucket` (cumulative `_bucket`
/// samples with `labels`, summed over the other labels) that hold any
/// observation: from the lower edge of the lowest non-empty bucket to the
/// upper edge of the highest (the largest finite edge when that one is
/// `+Inf`, as `histogram_quantile` answers then). Any quantile of the
/// histogram lies in it.
fn observed_between(expo: &Exposition, bucket: &str, labels: &[(&str, &str)]) -> (f64, f64) {
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for sample in expo.find(bucket, labels) {
        let le: f64 = match sample.label("le") {
            Some("+Inf") => f64::INFINITY,
            Some(v) => v.parse().unwrap_or_else(|_| panic!("le {v:?}")),
            None => panic!("{bucket} without le: {sample:?}"),
        };
        match by_le.iter_mut().find(|(l, _)| *l == le) {
            Some((_, count)) => *count += sample.value,
            None => by_le.push((le, sample.value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(!by_le.is_empty(), "no {bucket}{labels:?} samples");
    let mut edges = Vec::new();
    let mut below = (0.0, 0.0);
    for &(le, count) in &by_le {
        if count > below.1 {
            edges.push((below.0, le));
        }
        below = (le, count);
    }
    let low = edges.first().map_or(0.0, |e| e.0);
    let high = edges.last().map_or(0.0, |e| e.1);
    let largest_finite = by_le
        .iter()
        .map(|(le, _)| *le)
        .filter(|le| le.is_finite())
        .fold(0.0, f64::max);
    (
        low,
        if high.is_finite() {
            high
        } else {
            largest_finite
        },
    )
}

/// Waits until Prometheus reports `up == 1` for `job`.
fn wait_scraping(prom: &Prometheus, job: &str) {
    let up = format!("up{{job=\"{job}\"}}");
    let scraping = common::eventually(Duration::from_secs(15), || {
        prom.query(&up)
            .is_ok_and(|r| r.iter().any(|(_, v)| *v == 1.0))
    });
    assert!(
        scraping,
        "prometheus never scraped {job}; its log:\n{}",
        prom.log()
    );
}

/// Retries `promql` until it yields a non-empty vector of finite values > 0.
fn eventually_positive(prom: &Prometheus, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let deadline = Instant::now() + QUERY_FOR;
    loop {
        let r = prom.query(promql);
        if let Ok(v) = &r
            && all_positive(v)
        {
            eprintln!(
                "{promql} => {:?}",
                v.iter().map(|(_, x)| *x).collect::<Vec<_>>()
            );
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{promql}: {r:?}\nprometheus log:\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_scrapes_batch_sizes_and_a_grpc_server_at_its_metrics_port() {
    require_tool("prometheus");
    let iris = Launch::http(&["iris_classifier"]).start();
    let metrics_port = free_port();
    let grpc = launch_grpc(&["--metrics-port", &metrics_port.to_string()]).start();
    let grpc_metrics = format!("127.0.0.1:{metrics_port}");
    assert!(
        common::eventually(Duration::from_secs(20), || {
            http(&grpc_metrics, "GET", "/", &[], b"").is_ok_and(|r| r.status == 200)
        }),
        "gRPC-mode metrics port never answered; log:\n{}",
        grpc.log()
    );
    let prom = start_prometheus_jobs(&[
        ("iris", iris.addr.as_str(), "/metrics"),
        ("grpc", grpc_metrics.as_str(), "/"),
    ]);
    wait_scraping(&prom, "iris");
    wait_scraping(&prom, "grpc");

    let stop = Arc::new(AtomicBool::new(false));
    // 16 concurrent HTTP clients make the iris dispatcher form batches.
    let mut clients: Vec<_> = (0..16)
        .map(|t| {
            let (addr, stop) = (iris.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let rows = [
                    "[5.1,3.5,1.4,0.2]",
                    "[6.7,3.0,5.2,2.3]",
                    "[5.9,3.0,4.2,1.5]",
                ];
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    let r = http(
                        &addr,
                        "POST",
                        "/classify",
                        &[("Content-Type", "application/json")],
                        rows[i % rows.len()].as_bytes(),
                    )
                    .expect("POST /classify");
                    assert_eq!(r.status, 200, "{}", r.text());
                    i += 1;
                }
            })
        })
        .collect();
    // One gRPC client calling `analysis` through BentoService/Call.
    let grpc_addr = grpc.addr.clone();
    let grpc_stop = stop.clone();
    clients.push(std::thread::spawn(move || {
        use tiffin_api_server::grpc::proto::bento_service_client::BentoServiceClient;
        use tiffin_api_server::grpc::proto::{Request, request};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let ch = tiffin_api_server::tonic::transport::Endpoint::from_shared(format!(
                "http://{grpc_addr}"
            ))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect gRPC");
            let mut client = BentoServiceClient::new(ch);
            while !grpc_stop.load(Ordering::SeqCst) {
                let call = client
                    .call(Request {
                        api_name: "analysis".into(),
                        content: Some(request::Content::Text("I love this product!".into())),
                    })
                    .await;
                // Runners may still be connecting right after start.
                if call.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }));
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }

    // The reference's batch-size query, on the batchable iris runner.
    let q75 = eventually_positive(
        &prom,
        "histogram_quantile(0.75, rate(bentoml_runner_adaptive_batch_size_bucket\
         {service_name=\"iris_classifier\"}[1m]))",
    );
    // Every batch holds 1 to max_batch_size (100) calls, but
    // histogram_quantile interpolates inside a bucket, and the first bucket
    // (le="1") is interpolated from 0: a p75 that falls in it is in (0, 1].
    assert!(
        q75.iter().all(|(_, v)| *v > 0.0 && *v <= 100.0),
        "batch-size p75 within (0, max_batch_size]: {q75:?}"
    );
    // gRPC requests are counted in the API-server families, scraped at `/`.
    let grpc_rate = eventually_positive(
        &prom,
        "rate(bentoml_api_server_request_total{job=\"grpc\",\
         service_name=\"sentiment_analyzer\",endpoint=\"/analysis\"}[1m])",
    );
    assert!(
        grpc_rate
            .iter()
            .any(|(m, _)| m["http_response_code"] == "200"),
        "{grpc_rate:?}"
    );
}
