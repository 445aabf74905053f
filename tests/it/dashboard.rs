//! deploy/grafana-dashboard.json proven on data: a real Prometheus scrapes
//! two loaded tiffins (sentiment_analyzer and iris_classifier, so the
//! `$service` variable has values and the batching panel has batches), a
//! runner worker is stopped (so it is counted hung, killed and restarted),
//! iris autoscales (so the autoscaler decides), and
//! then every panel's every query, with the dashboard's variables
//! substituted as Grafana would, must return a non-empty result through
//! Prometheus' HTTP API; so must the `$service` variable's own query.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::prometheus::{Prometheus, percent_encode};
use common::*;
use serde_json::Value;

/// Starts Prometheus scraping each `(job, target)` at `/metrics` every second.
fn start_prometheus(jobs: &[(&str, &str)]) -> Prometheus {
    let scrape_configs: String = jobs
        .iter()
        .map(|(job, target)| {
            format!("  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n")
        })
        .collect();
    Prometheus::start(&scrape_configs)
}

/// Grafana's variables as a dashboard on this Prometheus would expand them:
/// `$service` with "All" selected (includeAll, multi) is a regex of all
/// values; `$__rate_interval` is at least four scrape intervals.
fn substitute(expr: &str) -> String {
    expr.replace("${service}", ".*")
        .replace("$service", ".*")
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
}

/// Every `(panel title, expr)` of the dashboard, rows' nested panels included.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let title = p["title"].as_str().unwrap_or_default().to_string();
                out.push((title, expr.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_dashboard_query_returns_data_from_a_loaded_tiffin() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read dashboard"))
            .expect("JSON");
    let queries = panel_queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");

    // A short hung-worker timeout, so that a stopped runner worker is
    // counted hung, killed and restarted within the test (the hung and
    // restart panels); iris autoscales on a low target, so that the load
    // makes the autoscaler decide (the autoscaling panel).
    let sentiment = Launch::http(&["sentiment_analyzer", "--api-workers", "1"])
        .env("TIFFIN_CONFIG_OPTIONS", "supervisor.hung_worker_timeout=2")
        .start();
    let iris = Launch::http(&["iris_classifier", "--api-workers", "1"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "runners.autoscaling.enabled=true runners.autoscaling.min_workers=1 \
             runners.autoscaling.max_workers=2 runners.autoscaling.target_in_flight=0.01 \
             runners.autoscaling.look_back_s=1 runners.autoscaling.upscale_delay_s=0",
        )
        .start();
    let prom = start_prometheus(&[("sentiment", &sentiment.addr), ("iris", &iris.addr)]);
    let scraping = eventually(Duration::from_secs(20), || {
        prom.query("up == 1").is_ok_and(|r| r.len() == 2)
    });
    assert!(scraping, "prometheus never scraped both:\n{}", prom.log());

    let runner = child_pids(&sentiment, "runner");
    assert!(!runner.is_empty(), "{:?}", sentiment.children());
    // SAFETY: kill(2) on a pid that is our own child's child; no memory involved.
    unsafe { libc::kill(runner[0] as i32, libc::SIGSTOP) };

    // Load on both: text analyses, and iris rows from concurrent clients so
    // that batches form; a few errors too (a 404 and a 400).
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (s, i, stop) = (sentiment.addr.clone(), iris.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let _ = post_text_to(&s, "/analysis", "I love this product!");
                    let _ = http(
                        &i,
                        "POST",
                        "/classify",
                        &[("Content-Type", "application/json")],
                        b"[[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]",
                    );
                    if n % 20 == t {
                        let _ = post_text_to(&s, "/nope", "x");
                        let _ = http(
                            &i,
                            "POST",
                            "/classify",
                            &[("Content-Type", "application/json")],
                            b"[",
                        );
                    }
                    n += 1;
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    let results = loop {
        std::thread::sleep(Duration::from_secs(2));
        let results: Vec<_> = queries
            .iter()
            .map(|(_, q)| prom.query(&substitute(q)))
            .collect();
        let all = results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|v| !v.is_empty()));
        if all || Instant::now() > deadline {
            break results;
        }
    };
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    let mut empty = Vec::new();
    for ((title, q), r) in queries.iter().zip(&results) {
        match r {
            Ok(v) if !v.is_empty() => eprintln!("{title}: {} series: {}", v.len(), substitute(q)),
            other => empty.push(format!("{title}: {} => {other:?}", substitute(q))),
        }
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}\nprometheus log:\n{}",
        empty.join("\n"),
        prom.log()
    );

    // The $service variable's query (label_values) has both services.
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(q) = var["query"].as_str() else {
            continue;
        };
        let Some(inner) = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        else {
            continue;
        };
        let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
        let path = format!(
            "/api/v1/label/{}/values?match[]={}",
            label.trim(),
            percent_encode(metric.trim())
        );
        let r = http(&prom.addr, "GET", &path, &[], b"").expect("label values");
        let values = r.json()["data"].clone();
        for service in ["sentiment_analyzer", "iris_classifier"] {
            assert!(
                values
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x == service)),
                "{q}: {values}"
            );
        }
    }
}
