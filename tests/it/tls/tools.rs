//! The clients that are not ours, as the TLS tests run them: `curl`,
//! `openssl s_client` and `openssl x509`, and wrk (Debian's build speaks
//! HTTPS), each bounded in time so a server that hangs fails the test
//! instead of stalling it.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{require_tool, run_with_timeout};

use super::pki::fixture;

/// What one curl run saw.
pub struct Curl {
    /// curl's exit code (0: a response arrived; 35, 56, 58, 60: TLS
    /// failures), `None` if it was killed at the bound.
    pub exit: Option<i32>,
    /// The HTTP status, 0 when no response arrived.
    pub status: u16,
    /// `%{http_version}`: "1.1", "2", or "0" without a response.
    pub version: String,
    /// The response's header block (status line included), as printed by `-i`.
    pub headers: String,
    pub body: String,
    /// curl's error message (`-sS`), empty on success.
    pub stderr: String,
}

/// Failure messages show the body's start only (a `/metrics` page is long).
impl std::fmt::Debug for Curl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = self
            .body
            .char_indices()
            .nth(400)
            .map_or(self.body.len(), |(i, _)| i);
        f.debug_struct("Curl")
            .field("exit", &self.exit)
            .field("status", &self.status)
            .field("version", &self.version)
            .field("headers", &self.headers)
            .field("body", &&self.body[..cut])
            .field("body_bytes", &self.body.len())
            .field("stderr", &self.stderr)
            .finish()
    }
}

impl Curl {
    /// Whether the response had `name: value` among its headers (name
    /// case-insensitive, value exact).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

const MARK: &str = "\n__curl_write_out__ ";

/// Runs `curl -sS -i --max-time 20 ARGS... URL`.
pub fn curl(args: &[&str], url: &str) -> Curl {
    let bin = require_tool("curl");
    let out = run_with_timeout(
        Command::new(bin)
            .args(["-sS", "-i", "--max-time", "20"])
            .args(["-w", &format!("{MARK}%{{http_code}} %{{http_version}}")])
            .args(args)
            .arg(url),
        Duration::from_secs(40),
    );
    let (response, write_out) = out
        .stdout
        .rsplit_once(MARK)
        .unwrap_or((out.stdout.as_str(), "000 0"));
    let mut w = write_out.split_whitespace();
    let status = w.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = w.next().unwrap_or("0").to_string();
    // `-i` prints every header block, an interim 1xx answer's too: the
    // body follows the first block that is not 1xx.
    let mut rest = response;
    let (headers, body) = loop {
        let Some((head, tail)) = rest.split_once("\r\n\r\n") else {
            break (rest, "");
        };
        let interim = head
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('1'));
        if !interim {
            break (head, tail);
        }
        rest = tail;
    };
    Curl {
        exit: out.status.and_then(|s| s.code()),
        status,
        version,
        headers: headers.to_string(),
        body: body.to_string(),
        stderr: out.stderr,
    }
}

/// `https://ADDR/PATH`.
pub fn https(addr: &str, path: &str) -> String {
    format!("https://{addr}{path}")
}

/// POSTs `text` as text/plain over HTTPS with `tls_args` (`--cacert`, `--cert`, `-k`...).
pub fn post_text(addr: &str, path: &str, text: &str, tls_args: &[&str]) -> Curl {
    let mut args = tls_args.to_vec();
    args.extend(["-H", "Content-Type: text/plain", "--data-binary", text]);
    curl(&args, &https(addr, path))
}

/// What `openssl s_client` did.
pub struct SClient {
    pub success: bool,
    /// stdout and stderr together (s_client splits its report between them).
    pub output: String,
}

/// `openssl s_client -connect ADDR ARGS...` with stdin closed: it
/// handshakes, prints the session, and exits. The machine's openssl.cnf is
/// not read (`OPENSSL_CONF=/dev/null`), so what the client offers is what
/// `args` say, not Debian's system-wide minimum.
pub fn s_client(addr: &str, args: &[&str]) -> SClient {
    let bin = require_tool("openssl");
    let out = run_with_timeout(
        Command::new(bin)
            .args(["s_client", "-connect", addr])
            .args(args)
            .env("OPENSSL_CONF", "/dev/null"),
        Duration::from_secs(30),
    );
    SClient {
        success: out.status.is_some_and(|s| s.success()),
        output: format!("{}\n{}", out.stdout, out.stderr),
    }
}

/// The serial number (hex, as `openssl x509 -serial` prints it) of the
/// certificate a new connection to `addr` is served, verified against
/// `ca`; `None` when the handshake or the verification fails.
pub fn served_serial(addr: &str, ca: &str) -> Option<String> {
    let s = s_client(addr, &["-CAfile", ca, "-verify_return_error"]);
    if !s.success {
        return None;
    }
    let begin = s.output.find("-----BEGIN CERTIFICATE-----")?;
    let end_mark = "-----END CERTIFICATE-----";
    let end = s.output[begin..].find(end_mark)? + begin + end_mark.len();
    let pem = &s.output[begin..end];
    let mut x509 = Command::new(require_tool("openssl"))
        .args(["x509", "-noout", "-serial"])
        .env("OPENSSL_CONF", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl x509");
    x509.stdin
        .take()
        .expect("stdin")
        .write_all(pem.as_bytes())
        .expect("write the certificate to openssl x509");
    let out = x509.wait_with_output().expect("openssl x509");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("serial=")
        .map(str::to_string)
}

/// A wrk run in the background (POSTs of tests/fixtures/tls/wrk_post.lua),
/// stopped by SIGINT, after which wrk still prints its summary. Killed if
/// the test ends first.
pub struct Wrk {
    child: Option<Child>,
}

/// wrk's own count of what went wrong, from the `done` hook of wrk_post.lua.
#[derive(Debug, PartialEq, Eq)]
pub struct WrkSummary {
    pub requests: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    /// Responses that were not 2xx or 3xx.
    pub status: u64,
    pub timeout: u64,
}

impl Wrk {
    /// `wrk -t1 -cCONNECTIONS -d600s --timeout 10s [extra] URL` posting text to `/analysis`.
    pub fn start(url: &str, connections: u32, extra: &[&str]) -> Wrk {
        let bin = require_tool("wrk");
        let child = Command::new(bin)
            .args([
                "-t1",
                &format!("-c{connections}"),
                "-d600s",
                "--timeout",
                "10s",
            ])
            .arg("-s")
            .arg(fixture("wrk_post.lua"))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wrk");
        Wrk { child: Some(child) }
    }

    /// Stops wrk with SIGINT and returns its summary (and its whole output).
    pub fn stop(mut self) -> (WrkSummary, String) {
        let child = self.child.take().expect("wrk runs");
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let out = child.wait_with_output().expect("wait for wrk");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("wrk-summary "))
            .unwrap_or_else(|| panic!("wrk printed no summary:\n{text}"));
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in wrk's summary {line:?}"))
        };
        let summary = WrkSummary {
            requests: field("requests"),
            connect: field("connect"),
            read: field("read"),
            write: field("write"),
            status: field("status"),
            timeout: field("timeout"),
        };
        (summary, text)
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
