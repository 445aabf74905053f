//! The binary under test: starting `tiffin serve-http` (or another
//! subcommand, or an example built on the library) as a child process,
//! reading its stderr log, asking it over HTTP whether it is ready, running
//! `tiffin` CLI commands against it, and stopping it however a test ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{Response, http, post_text_to};
use super::process::children_of;
use super::wait::eventually;

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
    /// `tiffin <subcommand> <args>` on a free port (`start` appends `--host
    /// 127.0.0.1 --port 0`), waiting for readiness.
    pub fn subcommand(subcommand: &str, args: &[&str]) -> Self {
        Self {
            bin: tiffin_bin(),
            args: std::iter::once(subcommand.to_string())
                .chain(args.iter().map(|s| s.to_string()))
                .collect(),
            env: Vec::new(),
            wait_ready: true,
        }
    }

    /// `tiffin serve-http <args>` on a free port.
    pub fn http(args: &[&str]) -> Self {
        Self::subcommand("serve-http", args)
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

/// Waits until `streak` consecutive `GET /readyz` (each a fresh connection,
/// so the kernel spreads them over every API server sharing the listener)
/// answer 200. The harness's `wait_ready` returns on the first 200, which
/// with several API servers only proves one of them is connected to its
/// runners (see `every_api_server_serves_once_ready` in tests/it/metrics.rs).
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

/// Asserts that no API server wrote the access-log line of `request_id`
/// yet: a streaming request's line waits for its stream's end.
pub fn assert_no_access_line_yet(server: &Server, request_id: &str) {
    let needle = format!("request_id={request_id})");
    assert!(
        !server.log().contains(&needle),
        "an access-log line for {request_id} before its stream ended:\n{}",
        server.log()
    );
}

/// Waits (20 s at most) for the access-log line of an API server that
/// names `request_id`, and returns it.
pub fn access_line(server: &Server, request_id: &str) -> String {
    let needle = format!("request_id={request_id})");
    let mut found = None;
    let ok = eventually(Duration::from_secs(20), || {
        found = server
            .log()
            .lines()
            .find(|l| l.starts_with("[api_server:") && l.contains(&needle))
            .map(str::to_string);
        found.is_some()
    });
    assert!(
        ok,
        "no access line for {request_id}; log:\n{}",
        server.log()
    );
    found.unwrap_or_default()
}
