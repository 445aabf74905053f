//! Hostile bytes on tiffin's Unix sockets: malformed or oversized frames and
//! wrong protocol versions close that one connection and crash nothing.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

fn start() -> Server {
    Launch::http(&["--runner-workers", "2"]).start()
}

/// Writes `bytes` to the socket and reports whether the peer closed it.
fn send_and_expect_close(path: &std::path::Path, bytes: &[u8]) -> bool {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn assert_still_serving(server: &Server, pids_before: &[(u32, String)]) {
    let r = server.post_text("/analysis", "I love this product!");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["is_positive"], true);
    let mut now: Vec<u32> = server.children().into_iter().map(|(p, _)| p).collect();
    let mut before: Vec<u32> = pids_before.iter().map(|(p, _)| *p).collect();
    now.sort_unstable();
    before.sort_unstable();
    assert_eq!(now, before, "a worker process died; log:\n{}", server.log());
}

#[test]
fn garbage_and_oversized_frames_on_a_runner_socket_close_only_that_connection() {
    let server = start();
    let before = server.children();
    let sock = server.runtime_dir.join("runner-nltk_sentiment-1.sock");
    // /readyz needs one worker per runner; this one may still be starting.
    assert!(
        eventually(Duration::from_secs(10), || is_socket(&sock)),
        "{}",
        server.log()
    );
    // A length prefix of 4 GiB: rejected from the header alone, nothing allocated.
    assert!(send_and_expect_close(
        &sock,
        &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]
    ));
    // A well-sized frame of garbage.
    assert!(send_and_expect_close(
        &sock,
        &[0, 0, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff]
    ));
    assert_still_serving(&server, &before);
    assert!(
        eventually(Duration::from_secs(10), || server
            .log()
            .contains("malformed frame")),
        "no logged error:\n{}",
        server.log()
    );
}

#[test]
fn garbage_on_the_control_socket_crashes_nothing() {
    let server = start();
    let before = server.children();
    let sock = server.runtime_dir.join("control.sock");
    assert!(send_and_expect_close(&sock, &[0xff, 0xff, 0xff, 0xff]));
    assert!(send_and_expect_close(&sock, &[0, 0, 0, 3, 9, 9, 9]));
    assert_still_serving(&server, &before);
    // The CLI still gets through afterwards.
    let out = server.cli(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_control_hello_with_another_protocol_version_is_refused() {
    let server = start();
    let before = server.children();
    let sock = server.runtime_dir.join("control.sock");
    // bincode (standard config) of Envelope::Request { id: 0, body:
    // ToSupervisor::Hello(Hello { version: 99, role: Role::Cli, pid: 1 }) }:
    // envelope variant 0, varint id 0, message variant 0, varint 99, role
    // variant 2 (Cli), varint pid 1.
    let payload = [0u8, 0, 0, 99, 2, 1];
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&frame).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("protocol version 99"), "reply: {reply:?}");
    assert_still_serving(&server, &before);
}
