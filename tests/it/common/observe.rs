//! What a test waits on instead of sleeping: a metric of the aggregated
//! `/metrics` reaching a value, a log line appearing, the accept board's
//! slots (api-server/src/balance.rs), a process's scheduler state; and the
//! timestamps of the server's own log lines, for tests about *when* the
//! supervisor acted (restart delays, shutdown order). Every wait is bounded
//! and fails naming what it waited for, with the server's log.

use std::time::Duration;

use super::exposition::parse_exposition;
use super::server::Server;
use super::wait::eventually;

/// How long a test waits for an event that follows at once from what it
/// did (a call reaching its worker, a connection accepted, a log line): a
/// bound on the wait, not a figure of the server's speed.
pub const EVENT_WITHIN: Duration = Duration::from_secs(20);

/// The sum of the samples named `name` with `labels` in one scrape.
pub fn metric(server: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_exposition(&server.metrics()).sum(name, labels)
}

/// Waits (at most [`EVENT_WITHIN`]) until [`metric`] equals `want`; `what`
/// says what that value means, for the failure message.
pub fn wait_metric(server: &Server, name: &str, labels: &[(&str, &str)], want: f64, what: &str) {
    let mut last = f64::NAN;
    let ok = eventually(EVENT_WITHIN, || {
        last = metric(server, name, labels);
        last == want
    });
    assert!(
        ok,
        "{what}: {name}{labels:?} stayed {last}, not {want}; log:\n{}",
        server.log()
    );
}

/// Waits (at most [`EVENT_WITHIN`]) for a log line containing every one of
/// `needles`, and returns the first such line.
pub fn wait_log_line(server: &Server, needles: &[&str]) -> String {
    let mut found = None;
    let ok = eventually(EVENT_WITHIN, || {
        found = server
            .log()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string);
        found.is_some()
    });
    assert!(ok, "no log line with {needles:?}; log:\n{}", server.log());
    found.unwrap_or_default()
}

/// The lines of `log` written by `process` (`supervisor`, `api_server:0`,
/// ...) that contain every one of `needles`, in order, each from its
/// `[process]` prefix on: the processes share one stderr, and a child's
/// unprefixed write (`tiffin: error: ...` of a worker that fails at start)
/// can land at the start of a line the supervisor then completes.
pub fn lines_of<'a>(log: &'a str, process: &str, needles: &[&str]) -> Vec<&'a str> {
    let prefix = format!("[{process}] ");
    log.lines()
        .filter_map(|l| l.find(&prefix).map(|at| &l[at..]))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// The timestamp of a text log line (`[who] 2026-12-02T16:55:16.123456Z
/// ...`, logging/src/lib.rs), in seconds since the Unix epoch.
pub fn log_seconds(line: &str) -> f64 {
    let stamp = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    let bad = || -> ! { panic!("unreadable timestamp {stamp:?} in {line:?}") };
    let (date, time) = stamp
        .strip_suffix('Z')
        .and_then(|s| s.split_once('T'))
        .unwrap_or_else(|| bad());
    let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| bad());
    let ymd: Vec<i64> = date.split('-').map(num).collect();
    let hms: Vec<&str> = time.split(':').collect();
    if ymd.len() != 3 || hms.len() != 3 {
        bad();
    }
    let seconds: f64 = hms[2].parse().unwrap_or_else(|_| bad());
    let days = days_from_civil(ymd[0], ymd[1], ymd[2]);
    (days * 86_400 + num(hms[0]) * 3_600 + num(hms[1]) * 60) as f64 + seconds
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`, http://howardhinnant.github.io/date_algorithms.html).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The value of `key=` in a log line's fields (up to the next space).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    line[start..].split_whitespace().next()
}

/// The accept board of `server`'s API servers (api-server/src/balance.rs,
/// `BOARD_FILE` in its runtime directory): per server index, the last
/// heartbeat (milliseconds of `CLOCK_MONOTONIC`, 0 when never published or
/// withdrawn) and the connections it holds open.
pub fn board_slots(server: &Server) -> Vec<(u32, u32)> {
    let bytes = std::fs::read(server.runtime_dir.join("accept-board")).unwrap_or_default();
    bytes
        .chunks_exact(8)
        .map(|c| {
            let slot = u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
            ((slot >> 32) as u32, slot as u32)
        })
        .collect()
}

/// The scheduler state of a process (`R`, `S`, `T` for stopped, `Z`...),
/// from `/proc/<pid>/stat`; `None` once it is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Sends `sig` to `pid`, a worker of a server the test started.
pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a worker process of a supervisor this test spawned,
    // found by its command line among that supervisor's children.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_read_as_seconds_since_the_epoch() {
        let line = "[supervisor] 2026-12-07T00:28:16.250000Z  INFO worker started";
        // 2026-12-07 is day 20_794 since 1970-01-01.
        assert_eq!(log_seconds(line), 20_794.0 * 86_400.0 + 28.0 * 60.0 + 16.25);
        let next_day = "[supervisor] 2026-12-08T00:00:00.000000Z  INFO x";
        let joined = format!("tiffin: error: {next_day}");
        assert_eq!(lines_of(&joined, "supervisor", &["INFO"]), vec![next_day]);
        assert_eq!(
            log_seconds(next_day) - log_seconds(line),
            86_400.0 - 28.0 * 60.0 - 16.25
        );
        assert_eq!(
            field("a b worker=runner:calc:1 pid=7", "worker"),
            Some("runner:calc:1")
        );
    }
}
