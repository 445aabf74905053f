//! The streaming tests' clients and fixtures (tests/it/stream*.rs,
//! python_stream.rs; issue 25): the custom service they stream from,
//! scratch paths for the files its models wait on, clients that are not
//! ours reading a stream as it comes (`curl -N`, httpx-sse), and a raw TCP
//! client that posts a stream request and reads it a piece at a time, so a
//! test can stop reading, hang up or kill a worker mid-stream. Every wait
//! is bounded: an item by [`EVENT_WITHIN`], a whole stream by its client's
//! own limit ([`CLIENT_WITHIN`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::observe::{EVENT_WITHIN, wait_metric};
use super::process::run_with_timeout;
use super::python::venv_tool;
use super::server::{Launch, Server, example_bin};
use super::wait::eventually;

/// How long a client process that reads a stream whole (`curl`, httpx-sse)
/// may run before it is stopped: a bound on a test that would otherwise hang
/// on a stream that never ends, not a figure of the server's speed.
pub const CLIENT_WITHIN: Duration = Duration::from_secs(120);

/// tests/fixtures/custom_service.rs under `serve-http`, with
/// `TIFFIN_CONFIG_OPTIONS` set to `options` unless it is empty; returned
/// once the server answers `/readyz` (at most 30 s, [`Launch::start`]).
pub fn custom_service(options: &str) -> Server {
    let launch = Launch::http(&[]).bin(example_bin("custom_service"));
    if options.is_empty() {
        return launch.start();
    }
    launch.env("TIFFIN_CONFIG_OPTIONS", options).start()
}

/// A path no file is at yet, `name` in a directory of this test process's
/// own for `area`: where a test writes the file a model waits on (its
/// release) or a fixture writes one the test waits on.
pub fn scratch_path(area: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiffin-{area}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Each line `cmd` prints, passed through `keep` (`None` passes over a
/// line), with the instant it arrived, on a channel that closes when the
/// command's output ends; a thread of its own reads it, then reaps the
/// command. How long the channel stays open is the command's to bound.
pub fn output_lines<T: Send + 'static>(
    cmd: &mut Command,
    keep: impl Fn(String) -> Option<T> + Send + 'static,
) -> mpsc::Receiver<(Instant, T)> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let out = child.stdout.take().expect("the command's stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let Some(item) = keep(line) else { continue };
            if tx.send((Instant::now(), item)).is_err() {
                break;
            }
        }
        let _ = child.wait();
    });
    rx
}

/// Which lines of curl's output [`curl_lines`] passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blank {
    /// Every line: a JSON-lines stream has no blank line, and a stray one
    /// must fail the test.
    Keep,
    /// Non-empty lines only: Server-Sent Events end each event with one.
    Skip,
}

/// `curl -N` posting JSON `body` to `path`: each line of its output (the
/// blank ones as `blank` says) with the instant it arrived, on a channel
/// that closes when curl's output ends, [`CLIENT_WITHIN`] at the latest
/// (curl's `--max-time`).
pub fn curl_lines(
    server: &Server,
    path: &str,
    body: &str,
    blank: Blank,
) -> mpsc::Receiver<(Instant, String)> {
    let mut curl = Command::new("curl");
    curl.args(["-sSN", "--max-time"])
        .arg(CLIENT_WITHIN.as_secs().to_string())
        .args(["-H", "content-type: application/json", "-d", body])
        .arg(format!("http://{}{path}", server.addr));
    output_lines(&mut curl, move |line| {
        (blank == Blank::Keep || !line.is_empty()).then_some(line)
    })
}

/// The next item of a stream read by [`curl_lines`] or [`output_lines`]:
/// waits at most [`EVENT_WITHIN`] for it, and fails naming `what` with the
/// server's log.
pub fn next_item<T>(
    server: &Server,
    items: &mpsc::Receiver<(Instant, T)>,
    what: &str,
) -> (Instant, T) {
    items
        .recv_timeout(EVENT_WITHIN)
        .unwrap_or_else(|_| panic!("no {what}; log:\n{}", server.log()))
}

/// The rest of a stream's items, once its client's output ended (the
/// client's own limit bounds the wait: [`CLIENT_WITHIN`] for curl).
pub fn rest_items<T>(items: mpsc::Receiver<(Instant, T)>) -> Vec<T> {
    items.iter().map(|(_, item)| item).collect()
}

/// The events httpx-sse (tests/fixtures/stream_sse.py, venv from
/// scripts/setup/25-stream) read from a POST of JSON `body` to `path`, one
/// JSON object each, the last `{"closed": true}`: waits for the script to
/// end, [`CLIENT_WITHIN`] at most.
pub fn sse_events(server: &Server, path: &str, body: &str) -> Vec<serde_json::Value> {
    let python = venv_tool("target/pyvenv-stream/bin/python", "scripts/setup/25-stream");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stream_sse.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(format!("http://{}{path}", server.addr))
        .arg(body);
    let out = run_with_timeout(&mut cmd, CLIENT_WITHIN);
    assert!(
        out.status.is_some_and(|s| s.success()),
        "stream_sse.py failed ({:?}): {}\n{}",
        out.status,
        out.stderr,
        server.log()
    );
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Posts JSON `body` to `path` on a connection of its own, with `headers`
/// after `host` and `content-type`, and reads nothing: the test reads the
/// answer when it wants ([`read_more`], [`read_until`]), and dropping the
/// connection is the client hanging up. Each read waits at most
/// [`EVENT_WITHIN`].
pub fn post_raw(server: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> TcpStream {
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    conn.set_read_timeout(Some(EVENT_WITHIN)).unwrap();
    let mut head =
        format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(conn, "{head}content-length: {}\r\n\r\n{body}", body.len()).unwrap();
    conn
}

/// Reads what `conn` has next onto `seen` (one read, at most its read
/// timeout, [`EVENT_WITHIN`] for [`post_raw`]) and returns how many bytes;
/// the stream must not have ended.
pub fn read_more(conn: &mut TcpStream, seen: &mut String) -> usize {
    let mut buf = vec![0u8; 1 << 16];
    let n = conn.read(&mut buf).expect("the stream goes on");
    assert!(n > 0, "the stream ended early: {seen}");
    seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    n
}

/// Reads `conn` onto `seen` until `done(seen)` holds, at most
/// [`EVENT_WITHIN`]; the stream must not end first. `what` names what the
/// test waits for, for the failure message.
pub fn read_until(
    conn: &mut TcpStream,
    seen: &mut String,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let ok = eventually(EVENT_WITHIN, || {
        if !done(seen) {
            read_more(conn, seen);
        }
        done(seen)
    });
    assert!(ok, "no {what} within {EVENT_WITHIN:?}: {seen}");
}

/// Reads a stream posted with [`post_raw`] until `items` items arrived (an
/// item is an occurrence of one of `markers`), at most [`EVENT_WITHIN`], and
/// returns what it read: a `200` head, then the items.
pub fn read_items(conn: &mut TcpStream, markers: &[&str], items: usize) -> String {
    let mut seen = String::new();
    let count = |s: &str| markers.iter().map(|m| s.matches(m).count()).sum::<usize>();
    read_until(
        conn,
        &mut seen,
        &format!("{items} items {markers:?}"),
        |s| count(s) >= items,
    );
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    seen
}

/// Waits (at most [`EVENT_WITHIN`]) until the API servers counted `items`
/// stream items written to clients on `endpoint`
/// (`tiffin_api_server_stream_items_total`).
pub fn wait_items_sent(server: &Server, endpoint: &str, items: f64) {
    let labels = [("endpoint", endpoint)];
    let name = "tiffin_api_server_stream_items_total";
    wait_metric(server, name, &labels, items, "items sent");
}

/// Waits (at most [`EVENT_WITHIN`]) until `runner` counted `calls` calls
/// cancelled while they ran (`tiffin_runner_calls_cancelled_total`, stage
/// `running`); `what` names them for the failure message.
pub fn wait_cancelled_calls(server: &Server, runner: &str, calls: f64, what: &str) {
    let labels = [("runner_name", runner), ("stage", "running")];
    let name = "tiffin_runner_calls_cancelled_total";
    wait_metric(server, name, &labels, calls, what);
}
