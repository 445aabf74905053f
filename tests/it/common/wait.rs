//! Waiting on another process: a test polls for what the server shows
//! instead of sleeping a fixed time that is too short on a busy machine and
//! too long on an idle one.

use std::time::{Duration, Instant};

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
