//! A real Prometheus server for a test: started on a free port with the
//! scrape configuration the test writes, in a scratch directory, queried
//! over its HTTP API, and killed (directory removed) when dropped, panics
//! included. Tests that check PromQL against tiffin go through this instead
//! of reading numbers off `/metrics` themselves, so the queries are the ones
//! a dashboard or the Prometheus adapter would send.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::host::{free_port, require_tool};
use super::http::http;
use super::wait::eventually;

/// A Prometheus child process and its scratch directory.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:<port>` of its HTTP API.
    pub addr: String,
}

impl Prometheus {
    /// Starts Prometheus with `scrape_configs` (YAML, the list under that
    /// key, indented by two spaces) and a 1 s scrape and evaluation interval;
    /// waits (bounded) until it is ready.
    pub fn start(scrape_configs: &str) -> Prometheus {
        let bin = require_tool("prometheus");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("tiffin-prometheus-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        let config = dir.join("prometheus.yml");
        let yaml = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n{scrape_configs}"
        );
        std::fs::write(&config, yaml).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus.log");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
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
        assert!(ready, "prometheus not ready; its log:\n{}", prom.log());
        prom
    }

    /// Prometheus's own log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// One instant query: `(labels, value)` per vector element, or why not.
    pub fn query(&self, promql: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
        self.query_path(
            promql,
            format!("/api/v1/query?query={}", percent_encode(promql)),
        )
    }

    /// [`Prometheus::query`] evaluated at `time` (seconds since the Unix
    /// epoch, as `timestamp()` returns them) instead of now.
    pub fn query_at(
        &self,
        promql: &str,
        time: f64,
    ) -> Result<Vec<(serde_json::Value, f64)>, String> {
        let path = format!(
            "/api/v1/query?query={}&time={time:.3}",
            percent_encode(promql)
        );
        self.query_path(promql, path)
    }

    fn query_path(
        &self,
        promql: &str,
        path: String,
    ) -> Result<Vec<(serde_json::Value, f64)>, String> {
        let r = http(&self.addr, "GET", &path, &[], b"").map_err(|e| format!("GET {path}: {e}"))?;
        let body: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("{promql}: not JSON ({e}): {}", r.text()))?;
        if r.status != 200 || body["status"] != "success" {
            return Err(format!("{promql}: HTTP {}: {body}", r.status));
        }
        if body["data"]["resultType"] != "vector" {
            return Err(format!("{promql}: not a vector: {body}"));
        }
        let result = body["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("{promql}: no result array: {body}"))?;
        result
            .iter()
            .map(|e| {
                let v = e["value"][1]
                    .as_str()
                    .ok_or_else(|| format!("{promql}: no value in {e}"))?;
                let v: f64 = v
                    .parse()
                    .map_err(|_| format!("{promql}: bad value {v:?}"))?;
                Ok((e["metric"].clone(), v))
            })
            .collect()
    }

    /// Waits (bounded) until every target of `job` is up; panics otherwise.
    pub fn wait_up(&self, job: &str, targets: usize, timeout: Duration) {
        let up = format!("up{{job=\"{job}\"}} == 1");
        let deadline = Instant::now() + timeout;
        loop {
            if self.query(&up).is_ok_and(|r| r.len() == targets) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never scraped {targets} targets of {job}: {:?}\nits log:\n{}",
                self.query(&format!("up{{job=\"{job}\"}}")),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query-string value (everything but RFC 3986 unreserved).
pub fn percent_encode(s: &str) -> String {
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
