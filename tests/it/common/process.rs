//! The process tree of a running server, read from `/proc`, and external
//! commands run under a deadline: the supervisor's contract is about which
//! worker processes exist, so the tests look at processes, not at logs.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::server::Server;

/// Direct children of `pid` (from /proc), with their command lines.
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if ppid(child) == Some(pid) {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            out.push((child, cmd));
        }
    }
    out
}

/// Parent pid of a process, if it exists and is not a zombie.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    if state == "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    ppid(pid).is_some()
}

/// Pids of the supervisor's children whose command line contains `pattern`.
pub fn child_pids(server: &Server, pattern: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = server
        .children()
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(pattern))
        .map(|(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// What a command run by [`run_with_timeout`] did.
#[derive(Debug)]
pub struct Finished {
    /// Exit status, or `None` if it was killed for running past the timeout.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `cmd` (stdin null, stdout/stderr captured); kills it if it runs past `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Finished {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed,
    }
}
