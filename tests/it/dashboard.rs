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
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// A Prometheus child and its scratch directory, removed on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Prometheus {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts Prometheus scraping each `(job, target)` at `/metrics` every second.
fn start_prometheus(jobs: &[(&str, &str)]) -> Prometheus {
    let bin = require_tool("prometheus");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("tiffin-dashboard-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut yaml = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n",
    );
    for (job, target) in jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), yaml).expect("prometheus.yml");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("spawn prometheus");
    let prom = Prometheus { child, dir, addr };
    let ready = eventually(Duration::from_secs(20), || {
        http(&prom.addr, "GET", "/-/ready", &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert!(ready, "prometheus not ready:\n{}", prom.log());
    prom
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An instant query's result vector, or why not.
fn query(prom: &Prometheus, promql: &str) -> Result<Vec<Value>, String> {
    let path = format!("/api/v1/query?query={}", percent_encode(promql));
    let r = http(&prom.addr, "GET", &path, &[], b"").map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{e}: {}", r.text()))?;
    if body["status"] != "success" {
        return Err(format!("HTTP {}: {body}", r.status));
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
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
        query(&prom, "up == 1").is_ok_and(|r| r.len() == 2)
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
            .map(|(_, q)| query(&prom, &substitute(q)))
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
