//! Test harness: start the real `tiffin` binary, talk HTTP to it over real
//! sockets, inspect its process tree, and stop it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the tiffin binary built for these tests.
pub fn tiffin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tiffin"))
}

/// Path of an example binary (built by `cargo test`/`scripts/test`).
pub fn example_bin(name: &str) -> PathBuf {
    let bin = tiffin_bin();
    let dir = bin.parent().expect("binary has a parent dir");
    dir.join("examples").join(name)
}

/// A running supervisor with its captured stderr.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub runtime_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
}

/// How to start a server.
pub struct Launch {
    pub bin: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub wait_ready: bool,
}

impl Launch {
    /// `tiffin serve-http <args>` on a free port.
    pub fn http(args: &[&str]) -> Self {
        Self {
            bin: tiffin_bin(),
            args: std::iter::once("serve-http".to_string())
                .chain(args.iter().map(|s| s.to_string()))
                .collect(),
            env: Vec::new(),
            wait_ready: true,
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn bin(mut self, bin: PathBuf) -> Self {
        self.bin = bin;
        self
    }

    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub fn start(self) -> Server {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env("TIFFIN_LOG", "info")
            .env_remove("TIFFIN_CONFIG")
            .env_remove("TIFFIN_CONFIG_OPTIONS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tiffin");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent && line.contains("supervisor starting") {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
                if std::env::var_os("TIFFIN_TEST_ECHO").is_some() {
                    eprintln!("{line}");
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("tiffin did not start; log:\n{}", log.lock().unwrap());
            }
        };
        let field = |name: &str| -> Option<String> {
            let start = line.find(&format!("{name}="))? + name.len() + 1;
            Some(line[start..].split_whitespace().next()?.to_string())
        };
        let (Some(addr), Some(dir)) = (field("listen"), field("runtime_dir")) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cannot parse the start line: {line}");
        };
        let server = Server {
            child,
            addr,
            runtime_dir: PathBuf::from(dir),
            log,
        };
        if self.wait_ready {
            server.wait_ready(Duration::from_secs(30));
        }
        server
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes())?;
    // The server may answer (413) before reading the whole body and close; that's fine.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// One `text/plain` POST over a fresh connection (for client threads, which
/// hold only the address).
pub fn post_text_to(addr: &str, path: &str, body: &str) -> std::io::Result<Response> {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "text/plain")],
        body.as_bytes(),
    )
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

impl Server {
    pub fn get(&self, path: &str) -> Response {
        http(&self.addr, "GET", path, &[], b"").expect("GET")
    }

    pub fn post_text(&self, path: &str, body: &str) -> Response {
        post_text_to(&self.addr, path, body).expect("POST")
    }

    /// POSTs `text` to `/analysis`, asserts a 200, and returns the JSON answer.
    pub fn analyse(&self, text: &str) -> serde_json::Value {
        let r = self.post_text("/analysis", text);
        assert_eq!(
            r.status,
            200,
            "analysis of {text:?}: {}\nlog:\n{}",
            r.text(),
            self.log()
        );
        r.json()
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Response {
        http(
            &self.addr,
            "POST",
            path,
            &[("Content-Type", content_type)],
            body,
        )
        .expect("POST")
    }

    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "metrics: {}", r.text());
        r.text()
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(r) = http(&self.addr, "GET", "/readyz", &[], b"")
                && r.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("not ready after {timeout:?}; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Child processes of the supervisor with their command lines.
    pub fn children(&self) -> Vec<(u32, String)> {
        children_of(self.pid())
    }

    /// Sends a signal to the supervisor and waits for it to exit.
    pub fn signal_and_wait(&mut self, sig: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > Duration::from_secs(40) {
                let _ = self.child.kill();
                panic!(
                    "supervisor did not exit after signal {sig}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `tiffin <args>` against this server's runtime dir.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(tiffin_bin())
            .args(args)
            .arg("--runtime-dir")
            .arg(&self.runtime_dir)
            .output()
            .expect("run tiffin cli")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SIGTERM first so the supervisor removes its runtime dir; SIGKILL if it hangs.
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if self.child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Direct children of `pid` (from /proc), with their command lines.
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if ppid(child) == Some(pid) {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            out.push((child, cmd));
        }
    }
    out
}

/// Parent pid of a process, if it exists and is not a zombie.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    if state == "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    ppid(pid).is_some()
}

/// Waits until `cond` holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Path helper for asserting file types.
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

/// What a command run by [`run_with_timeout`] did.
#[derive(Debug)]
pub struct Finished {
    /// Exit status, or `None` if it was killed for running past the timeout.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `cmd` (stdin null, stdout/stderr captured); kills it if it runs past `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Finished {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed,
    }
}

/// Pids of the supervisor's children whose command line contains `pattern`.
pub fn child_pids(server: &Server, pattern: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = server
        .children()
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(pattern))
        .map(|(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// `tiffin status --json` against this server, parsed.
pub fn status_json(server: &Server) -> serde_json::Value {
    let out = server.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "tiffin status --json failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One worker entry of `status --json`: (role, runner name, index).
/// Role is `"api-server"` or `"runner"`.
pub fn worker_role(worker: &serde_json::Value) -> (String, Option<String>, u64) {
    let role = worker["role"]
        .as_str()
        .unwrap_or_else(|| panic!("unexpected role shape in status: {worker}"));
    (
        role.to_string(),
        worker["runner"].as_str().map(str::to_string),
        worker["index"].as_u64().unwrap_or(0),
    )
}

// ---------------------------------------------------------------------------
// Metrics helpers (used by tests/metrics.rs and tests/prometheus_e2e.rs).
// ---------------------------------------------------------------------------

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Full path of an external tool the tests need; panics (the test fails,
/// it is not skipped) when it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not on PATH; run scripts/test, which installs Debian's `prometheus` \
         package (it provides `promtool` and `prometheus`)"
    );
}

/// One sample of a Prometheus text (or OpenMetrics) exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// Whether every `(name, value)` pair is one of this sample's labels.
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

/// A parsed exposition: `# TYPE` and `# HELP` per family, samples in order.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    pub types: std::collections::BTreeMap<String, String>,
    pub helps: std::collections::BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The family (a name with a `# TYPE` line) a sample name belongs to.
    pub fn family_of(&self, sample_name: &str) -> Option<&str> {
        if let Some((name, _)) = self.types.get_key_value(sample_name) {
            return Some(name);
        }
        for suffix in ["_bucket", "_sum", "_count", "_total", "_created", "_info"] {
            if let Some(base) = sample_name.strip_suffix(suffix)
                && let Some((name, _)) = self.types.get_key_value(base)
            {
                return Some(name);
            }
        }
        None
    }

    /// Samples named exactly `name` that carry every label in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && s.has(labels))
    }

    /// Sum of the samples named `name` carrying every label in `labels`
    /// (exact names and unescaped values; other labels may be present), so
    /// several series add up; `0.0` when none matches (a fold from `0.0`:
    /// `Iterator::sum` of no `f64` is `-0.0`, which prints as `-0`).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .fold(0.0, |total, s| total + s.value)
    }

    /// Every sample belonging to `family`.
    pub fn family_samples<'a>(&'a self, family: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| self.family_of(&s.name) == Some(family))
    }
}

/// Parses a Prometheus text exposition (0.0.4) or OpenMetrics text; panics on
/// any line it cannot read, naming the line.
pub fn parse_exposition(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| -> ! { panic!("exposition line {}: {why}: {line:?}", n + 1) };
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| bad("TYPE without a type"));
            if out
                .types
                .insert(name.to_string(), kind.trim().to_string())
                .is_some()
            {
                bad("second TYPE line for this family");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.helps.insert(name.to_string(), help.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad("no value"));
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            bad("bad metric name");
        }
        let mut labels = std::collections::BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(mut body) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = body.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = body.find('=').unwrap_or_else(|| bad("label without '='"));
                let label = body[..eq].trim().to_string();
                let mut chars = body[eq + 1..].char_indices();
                if chars.next().map(|(_, c)| c) != Some('"') {
                    bad("label value is not quoted");
                }
                let mut value = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            _ => bad("bad escape in label value"),
                        },
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let end = end.unwrap_or_else(|| bad("unterminated label value"));
                if labels.insert(label, value).is_some() {
                    bad("duplicate label");
                }
                body = &body[eq + 1 + end + 1..];
                body = body.strip_prefix(',').unwrap_or(body);
            }
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().unwrap_or_else(|| bad("no value"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| bad("value is not a number")),
        };
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// Waits until `streak` consecutive `GET /readyz` (each a fresh connection,
/// so the kernel spreads them over every API server sharing the listener)
/// answer 200. The harness's `wait_ready` returns on the first 200, which
/// with several API servers only proves one of them is connected to its
/// runners (see `every_api_server_serves_once_ready` in tests/metrics.rs).
pub fn settle(server: &Server, streak: usize) {
    let mut run = 0;
    let ok = eventually(Duration::from_secs(20), || {
        match http(&server.addr, "GET", "/readyz", &[], b"") {
            Ok(r) if r.status == 200 => run += 1,
            _ => run = 0,
        }
        run >= streak
    });
    assert!(
        ok,
        "/readyz never answered 200 {streak} times in a row; log:\n{}",
        server.log()
    );
}

// ---------------------------------------------------------------------------
// gRPC helpers (used by tests/grpc.rs).
// ---------------------------------------------------------------------------

/// `tiffin serve-grpc <args>` on a free port (the harness appends `--host
/// 127.0.0.1 --port 0`) with colourless logs, and `--metrics-port` on a free
/// port unless `args` name one (the default, 3001, would clash between tests
/// running in parallel). It does not wait for readiness: a gRPC port has no
/// `/readyz`; wait on the gRPC health service instead.
pub fn launch_grpc(args: &[&str]) -> Launch {
    let mut launch = launch_grpc_bare(args);
    if !args.contains(&"--metrics-port") {
        launch.args.push("--metrics-port".to_string());
        launch.args.push(free_port().to_string());
    }
    launch
}

/// [`launch_grpc`] without the free `--metrics-port`: the metrics port then
/// comes from the configuration (`api_server.grpc.metrics.port`).
pub fn launch_grpc_bare(args: &[&str]) -> Launch {
    Launch {
        bin: tiffin_bin(),
        args: std::iter::once("serve-grpc".to_string())
            .chain(args.iter().map(|s| s.to_string()))
            .collect(),
        env: Vec::new(),
        wait_ready: false,
    }
}
