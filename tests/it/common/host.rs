//! What the tests take from the machine they run on: a free TCP port, an
//! external program on `PATH` (a missing one fails the test, never skips it),
//! and the type of a file the server creates.

use std::path::{Path, PathBuf};

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

/// Whether `path` is a Unix socket (a symlink to one does not count).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}
