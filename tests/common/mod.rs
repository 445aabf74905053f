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
        let field = |name: &str| -> String {
            let start = line.find(&format!("{name}=")).expect("field in start line") + name.len() + 1;
            line[start..].split_whitespace().next().unwrap().to_string()
        };
        let server = Server {
            child,
            addr: field("listen"),
            runtime_dir: PathBuf::from(field("runtime_dir")),
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
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Response> {
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

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(pos) = data.windows(2).position(|w| w == b"\r\n") else { break };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..pos]).trim(), 16).unwrap_or(0);
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
        http(&self.addr, "POST", path, &[("Content-Type", "text/plain")], body.as_bytes()).expect("POST")
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Response {
        http(&self.addr, "POST", path, &[("Content-Type", content_type)], body).expect("POST")
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
                panic!("supervisor did not exit after signal {sig}; log:\n{}", self.log());
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
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Direct children of `pid` (from /proc), with their command lines.
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
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

/// Value of one sample in a Prometheus text exposition, matched by name and
/// a subset of labels; sums every matching series.
pub fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, rest) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        if labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))) {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

/// Path helper for asserting file types.
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}
