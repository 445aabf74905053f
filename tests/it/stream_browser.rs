//! A browser reads `text_generator`'s tokens one by one (issue 25): Debian's
//! headless `chromium` (scripts/setup/20-frontdoor installs it) loads
//! tests/fixtures/stream_page.html, whose `EventSource` adds each token to
//! a list as it arrives, and the test drives it over the DevTools protocol
//! (`--remote-debugging-pipe`: NUL-separated JSON on fds 3 and 4, no
//! WebSocket library needed). Two screenshots, kept under
//! target/test-artifacts/: one while the stream runs (some tokens, no end
//! yet), one after its `end` event (every token); the DOM's counts and
//! tokens are asserted against the model's own answer for the seed.
//!
//! `EventSource` can only `GET`, and tiffin's APIs are `POST` (api-server/
//! routes them so): the page is served by a tiny same-origin server in the
//! test, which also relays `GET /generate?body=<json>` to tiffin's `POST
//! /generate` and copies tiffin's response bytes (head and chunks) to the
//! browser as they come, one `read` and one `write` at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::common::*;
use crate::stream_generate::{sse_tokens, text_generator};

/// Serves the page at `/` and relays `GET /generate?body=...` to tiffin at
/// `upstream` as `POST /generate`; returns its address.
fn page_server(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let page = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stream_page.html"),
    )
    .expect("stream_page.html");
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let page = page.clone();
            let upstream = upstream.clone();
            std::thread::spawn(move || serve_one(conn, &page, &upstream));
        }
    });
    addr
}

/// Answers one browser connection (one request; the browser opens another).
fn serve_one(mut conn: TcpStream, page: &[u8], upstream: &str) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The rest of the head is not needed.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    if let Some(query) = target.strip_prefix("/generate?body=") {
        let body = percent_decode(query);
        let Ok(mut up) = TcpStream::connect(upstream) else {
            return;
        };
        let _ = write!(
            up,
            "POST /generate HTTP/1.1\r\nhost: {upstream}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        // Byte for byte, as it comes: the relay holds nothing back.
        let mut buf = [0u8; 4096];
        while let Ok(n) = up.read(&mut buf) {
            if n == 0 || conn.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        return;
    }
    let (status, ctype, body): (&str, &str, &[u8]) = if target == "/" || target.starts_with("/?") {
        ("200 OK", "text/html; charset=utf-8", page)
    } else {
        ("404 Not Found", "text/plain", b"not found")
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(body);
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A headless chromium driven over `--remote-debugging-pipe`.
struct Browser {
    child: Child,
    to: std::fs::File,
    from: BufReader<std::fs::File>,
    next_id: u64,
    session: String,
    profile: PathBuf,
}

/// A pipe's (read, write) ends.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) writes two fds into the array we own.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened by pipe(2) and are owned by no one else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts chromium on `url` and attaches to its page.
    fn open(url: &str) -> Browser {
        // Chromium reads commands on fd 3 and writes answers on fd 4.
        let (cmd_read, cmd_write) = pipe();
        let (out_read, out_write) = pipe();
        let (cr, ow) = (cmd_read.as_raw_fd(), out_write.as_raw_fd());
        let (mut cmd, profile) = headless_chromium("1000,700", &["--remote-debugging-pipe"]);
        cmd.arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only dup2(2), which is
        // async-signal-safe, on fds that are open in the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(cr, 3) < 0 || libc::dup2(ow, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        drop((cmd_read, out_write));
        let mut browser = Browser {
            child,
            to: std::fs::File::from(cmd_write),
            from: BufReader::new(std::fs::File::from(out_read)),
            next_id: 0,
            session: String::new(),
            profile,
        };
        let targets = browser.call("Target.getTargets", serde_json::json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].clone())
            .unwrap_or_else(|| panic!("no page target: {targets}"));
        let attached = browser.call(
            "Target.attachToTarget",
            serde_json::json!({ "targetId": page, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().expect("a session").into();
        browser
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        loop {
            let mut reply = Vec::new();
            let n = self
                .from
                .read_until(0, &mut reply)
                .expect("read from chromium");
            assert!(n > 0, "chromium closed its pipe");
            reply.pop();
            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("JSON");
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; its JSON value.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// The page's state: (state text, tokens in the list).
    fn tokens(&mut self) -> (String, Vec<String>) {
        let v = self.eval(
            "JSON.stringify([document.getElementById('state').textContent, \
             Array.from(document.querySelectorAll('#tokens li')).map(li => li.textContent)])",
        );
        let v: serde_json::Value = serde_json::from_str(v.as_str().unwrap_or("null")).unwrap();
        let state = v[0].as_str().unwrap_or_default().to_string();
        let tokens = serde_json::from_value(v[1].clone()).unwrap_or_default();
        (state, tokens)
    }

    /// Saves a PNG screenshot of the page as `name` under target/test-artifacts/.
    fn screenshot(&mut self, name: &str) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png" }),
        );
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        std::fs::write(artifacts().join(name), &png).expect("write the screenshot");
        png
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = s.bytes().filter_map(value).collect();
    sextets
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |acc, &v| acc << 6 | u32::from(v)) << (6 * (4 - c.len()));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(c.len().saturating_sub(1))
        })
        .collect()
}

#[test]
fn stream_browser_event_source_shows_tokens_arrive_one_by_one() {
    let server = text_generator();
    let request =
        r#"{"prompt": "The with statement", "max_tokens": 12, "pace_ms": 400, "seed": 0}"#;
    // What the model answers for this request, read whole first.
    let whole = server.post("/generate", "application/json", request.as_bytes());
    let (expected, ended) = sse_tokens(&whole.text());
    assert!(ended && expected.len() == 12, "{}", whole.text());

    let page = page_server(server.addr.clone());
    let query: String = request
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut browser = Browser::open(&format!("http://{page}/?body={query}"));

    // The first moment: some tokens are on the page, the stream runs on.
    let mut early = (String::new(), Vec::new());
    let seen_some = eventually(EVENT_WITHIN, || {
        early = browser.tokens();
        early.1.len() >= 3
    });
    assert!(seen_some, "the page never showed 3 tokens: {early:?}");
    let first_png = browser.screenshot("stream-browser-1-streaming.png");
    let (early_state, early_tokens) = early;
    assert_eq!(early_state, "streaming", "{early_tokens:?}");
    assert!(early_tokens.len() < expected.len(), "{early_tokens:?}");
    assert_eq!(early_tokens[..], expected[..early_tokens.len()]);

    // The second moment: every token, then the end event.
    let mut late = (String::new(), Vec::new());
    let ended = eventually(EVENT_WITHIN, || {
        late = browser.tokens();
        late.0 == "ended"
    });
    assert!(ended, "the page never saw the end event: {late:?}");
    let second_png = browser.screenshot("stream-browser-2-ended.png");
    assert_eq!(late.1, expected);
    assert_eq!(late.1.last(), expected.last());
    assert!(late.1.len() > early_tokens.len());
    for png in [&first_png, &second_png] {
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{} bytes",
            png.len()
        );
    }
    assert_ne!(first_png, second_png, "the two moments look the same");
    // The browser's stream went through tiffin as one stream among the two.
    wait_metric(
        &server,
        "tiffin_api_server_stream_items_total",
        &[("endpoint", "/generate")],
        24.0,
        "the whole read's and the browser's tokens",
    );
}
