//! What the tests take from the machine they run on: a free TCP port, an
//! external program on `PATH` (a missing one fails the test, never skips it),
//! and the type of a file the server creates.

use std::path::{Path, PathBuf};

/// A TCP port that was free a moment ago on 127.0.0.1, for a flag that
/// takes a fixed port (`--metrics-port`).
///
/// It comes from below the kernel's ephemeral range (32768 and up on Linux),
/// never from `bind(0)`: every server a test starts binds port 0, and the
/// kernel could hand the port a test just closed to one of them before the
/// test's own server binds it ("already in use", seen once in seven runs).
/// Each test runs in its own process (nextest), so candidates start at an
/// offset from the pid and are checked by binding.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + start.wrapping_add(n.wrapping_mul(13)) % SPAN;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
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
        "`{name}` is not on PATH; run scripts/test, which installs the tools the tests \
         need (Debian's `prometheus` for `promtool` and `prometheus`, scripts/setup/* the rest)"
    );
}

/// Whether `path` is a Unix socket (a symlink to one does not count).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}
