//! Back-pressure from a client that stops reading (issue 25,
//! docs/streaming.md "From the worker to the API server"): a raw TCP client
//! asks `text_generator` for ten million tokens at full speed and never
//! reads. The model must pause once the credit window and the socket
//! buffers are full: its own `generated_tokens_total` stops growing at a
//! bound computed from the window and the bytes the kernel holds for that
//! connection (read from /proc/net/tcp), and the API server's and runner
//! worker's resident memory stays within a bound that does not depend on
//! how long the client waits. When the client reads again the model
//! resumes; when it hangs up, the stream is cancelled.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

use crate::common::*;
use crate::stream_generate::text_generator;

/// The stream's credit window (`tiffin_ipc::stream::STREAM_WINDOW`).
const WINDOW: u64 = tiffin_ipc::stream::STREAM_WINDOW as u64;

/// The fewest bytes one token takes on the wire: its chunk head (`1\r\n`),
/// `data: ` + one letter + `\n\n`, and the chunk's `\r\n`.
const MIN_ITEM_WIRE_BYTES: u64 = 3 + 9 + 2;

/// What hyper may hold in its write buffer before it stops polling the
/// body (hyper 1's default `max_buf_size`, 8 KiB + 400 KiB).
const HYPER_WRITE_BUFFER: u64 = 8 * 1024 + 400 * 1024;

/// The client's receive buffer, fixed (the kernel doubles what is asked):
/// without autotuning it cannot grow while the test watches.
const CLIENT_RCVBUF: libc::c_int = 64 * 1024;

/// A TCP connection to `addr` whose receive buffer is [`CLIENT_RCVBUF`],
/// set before connecting so the window it advertises is small from the start.
fn connect_small(addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    let SocketAddr::V4(v4) = addr else {
        panic!("the test server listens on IPv4: {addr}")
    };
    // SAFETY: socket(2) with constant arguments; the fd is checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is an open socket we own; it is moved into the
    // TcpStream, which closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let size = CLIENT_RCVBUF;
    // SAFETY: setsockopt(2) on our socket with a pointer to a live c_int
    // and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: connect(2) on our socket with a pointer to a live sockaddr_in
    // and its size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
    stream
}

/// Bytes the kernel holds for the TCP connection whose client end is
/// `port`: the send and receive queues of both ends (/proc/net/tcp's
/// `tx_queue:rx_queue`).
fn kernel_queued_bytes(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let f: Vec<&str> = row.split_whitespace().collect();
            let ours = f.get(1)?.ends_with(&port) || f.get(2)?.ends_with(&port);
            let (tx, rx) = f.get(4)?.split_once(':')?;
            ours.then(|| {
                u64::from_str_radix(tx, 16).unwrap_or(0) + u64::from_str_radix(rx, 16).unwrap_or(0)
            })
        })
        .sum()
}

/// Resident memory of `pid` in bytes (/proc/<pid>/status `VmRSS`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a live process");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// The one process of the server whose command line has `pattern`.
fn only_pid(server: &Server, pattern: &str) -> u32 {
    let pids = child_pids(server, pattern);
    assert_eq!(pids.len(), 1, "{pattern}: {pids:?}");
    pids[0]
}

/// Waits until the model's produced-token count has not moved for `polls`
/// scrapes in a row, and returns it. Bounded by [`EVENT_WITHIN`] × 6: the
/// kernel's send buffer grows (to `tcp_wmem`'s maximum) while the model
/// fills it, a few MB of tokens at a debug build's pace on a busy machine.
fn wait_paused(server: &Server, polls: usize) -> f64 {
    let (mut last, mut same) = (-1.0, 0);
    let paused = eventually(EVENT_WITHIN * 6, || {
        let now = metric(server, "generated_tokens_total", &[]);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        same >= polls
    });
    assert!(paused, "the model never paused; it produced {last} tokens");
    last
}

#[test]
fn stream_backpressure_a_client_that_stops_reading_pauses_the_model_and_memory_stays_flat() {
    let server = text_generator();
    let api = only_pid(&server, "__worker api-server");
    let worker = only_pid(&server, "__worker runner");
    // A whole stream first, so the buffers and threads a stream uses exist
    // before the baseline is read.
    let warm = server.post(
        "/generate",
        "application/json",
        br#"{"max_tokens": 20000, "seed": 1}"#,
    );
    assert_eq!(warm.status, 200);
    let base = (rss(api), rss(worker));
    let warmed = metric(&server, "generated_tokens_total", &[]);
    assert_eq!(warmed, 20000.0);

    let mut conn = connect_small(&server.addr);
    let client_port = conn.local_addr().unwrap().port();
    let body = r#"{"prompt": "The with statement", "max_tokens": 10000000, "seed": 3}"#;
    write!(
        conn,
        "POST /generate HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The client now reads nothing.
    let started = std::time::Instant::now();
    let paused = wait_paused(&server, 25) - warmed;
    eprintln!("paused after {:?}", started.elapsed());
    let queued = kernel_queued_bytes(client_port);
    let at_pause = (rss(api), rss(worker));
    // Items the model may be ahead of the client: the window between the
    // worker and the API server, one item being written, what hyper
    // buffers, and what the kernel holds for this connection.
    let bound = WINDOW + 1 + (HYPER_WRITE_BUFFER + queued) / MIN_ITEM_WIRE_BYTES;
    eprintln!(
        "paused at {paused} tokens (bound {bound}: window {WINDOW}, {queued} bytes in the kernel); \
         RSS api {} -> {} KiB, worker {} -> {} KiB",
        base.0 / 1024,
        at_pause.0 / 1024,
        base.1 / 1024,
        at_pause.1 / 1024
    );
    assert!(paused >= 1.0, "the stream never started");
    assert!(
        paused as u64 <= bound,
        "the model produced {paused} tokens for a client that read none (bound {bound})"
    );
    // Memory: what a paused stream may hold is the window and hyper's
    // buffer (and the worker's waiting thread), a few MiB at most with the
    // allocator's slack; a server that buffered the model's output would
    // grow with every token the model could make (tens of bytes each, 10
    // million asked for).
    let rss_bound = 8 * 1024 * 1024 + HYPER_WRITE_BUFFER + WINDOW * 64 * 1024;
    for (what, before, after) in [
        ("API server", base.0, at_pause.0),
        ("runner worker", base.1, at_pause.1),
    ] {
        assert!(
            after.saturating_sub(before) <= rss_bound,
            "{what} RSS grew by {} KiB for a paused stream (bound {} KiB)",
            after.saturating_sub(before) / 1024,
            rss_bound / 1024
        );
    }
    // Still paused after as many scrapes again, within the same bound: flat,
    // not slow. Not equal to the first count: the kernel may still grow the
    // connection's send buffer (tcp_wmem autotuning) and take a few more
    // tokens (one loop run saw 8 more of 228,936; the bound was 312,452).
    let still = wait_paused(&server, 25) - warmed;
    let queued_now = kernel_queued_bytes(client_port);
    let bound_now = WINDOW + 1 + (HYPER_WRITE_BUFFER + queued_now) / MIN_ITEM_WIRE_BYTES;
    eprintln!(
        "still paused at {still} tokens (bound {bound_now}, {queued_now} bytes in the kernel)"
    );
    assert!(
        still >= paused && still as u64 <= bound_now,
        "the paused model moved on: {paused} then {still} tokens (bound {bound_now})"
    );
    for (what, at, now) in [
        ("API server", at_pause.0, rss(api)),
        ("runner worker", at_pause.1, rss(worker)),
    ] {
        assert!(
            now.saturating_sub(at) <= 1024 * 1024,
            "{what} RSS kept growing while paused: {} -> {} KiB",
            at / 1024,
            now / 1024
        );
    }

    // The client reads again: the model resumes where it stopped.
    conn.set_read_timeout(Some(EVENT_WITHIN)).unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Once the client has taken what the kernel and hyper held, the model
    // must make more.
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    let mut after = still;
    while after <= still {
        let n = conn.read(&mut buf).expect("the stream goes on");
        assert!(n > 0, "the stream ended early");
        read += n as u64;
        if read > queued + HYPER_WRITE_BUFFER {
            after = metric(&server, "generated_tokens_total", &[]) - warmed;
        }
        assert!(
            read < 64 * (queued + HYPER_WRITE_BUFFER),
            "the model did not resume when the client read {read} bytes"
        );
    }
    eprintln!("resumed after {:?}", started.elapsed());
    // The client hangs up: the stream is cancelled, not left running.
    drop(conn);
    wait_metric(
        &server,
        "tiffin_runner_calls_cancelled_total",
        &[("runner_name", "bigram_lm"), ("stage", "running")],
        1.0,
        "the abandoned stream, cancelled",
    );
    // And the service still answers whole streams.
    let r = server.post("/generate", "application/json", br#"{"max_tokens": 5}"#);
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("event: end\ndata: \n\n"), "{}", r.text());
}
