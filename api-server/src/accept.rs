//! Taking connections from the listening socket every API server shares,
//! spread evenly over the API servers.
//!
//! Every API server (HTTP, or gRPC through `grpc/incoming.rs`) accepts on
//! the same socket, which the supervisor opened and passed down
//! ([`inherit_listener`]). The kernel wakes every process waiting on it, and
//! the first to call `accept` wins, so when 64 connections arrive at once
//! one process often takes most of them: splits
//! of 6/70 and 70/6 open sockets were measured (issue 5's note), costing
//! about 15% of throughput in those rounds, because one process then does
//! most of the work on two cores.
//!
//! # The rule
//!
//! An API server takes a pending connection only while it holds at most
//! [`SLACK`] connections more than the least-loaded of its live peers;
//! otherwise it defers, re-checking every millisecond, so that the
//! less-loaded peer, woken by the same connection, takes it. A deferral
//! lasts at most [`MAX_DEFER`]: if no peer took the connection by then (a
//! peer stuck, or just descheduled), this server takes it anyway, so a
//! connection never waits on a peer that cannot serve. With one API server,
//! or when this one is the least loaded, accepting is what it always was.
//!
//! # The board
//!
//! What each server holds is published in a board ([`LoadBoard`]): a small
//! file in the supervisor's private runtime directory ([`BOARD_FILE`]), mapped into
//! every API server, with one 64-bit slot per server index: the open
//! connection count in the low 32 bits, and in the high 32 the last
//! heartbeat in milliseconds of `CLOCK_MONOTONIC` (the same in every
//! process, `tiffin_ipc::clock`). Only the server itself writes its slot,
//! from its accept loop: at every accept and every [`HEARTBEAT`]. A slot
//! whose heartbeat is older than [`STALE`] (its process died or hangs) or
//! zero (draining, or never started) does not count as a peer. A restarted
//! server takes over its index's slot.
//!
//! # Why not `SO_REUSEPORT`
//!
//! One listener per API server with `SO_REUSEPORT` lets the kernel pick a
//! listener by a hash of the connection's addresses: 64 connections over
//! two listeners then split 36/28 or worse about a third of the time, and a
//! listener that closes (scale-down, restart, drain) resets the connections
//! still in its queue. The shared socket loses none: it stays open as long
//! as one process holds it.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::MmapMut;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

use crate::ApiServerError;

/// Takes ownership of the listening TCP socket the supervisor placed at
/// `fd`, registered for readiness only: [`accept`] decides when to take a
/// connection from it, so no accept happens behind its back.
pub(crate) fn inherit_listener(
    fd: RawFd,
) -> Result<AsyncFd<std::net::TcpListener>, ApiServerError> {
    // SAFETY: the supervisor placed a listening TCP socket at this fd for us
    // (it is our only user of that number), and nothing else in this process owns it.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .and_then(|()| {
            // SAFETY: a std TcpListener owns its descriptor until dropped, and
            // its as_raw_fd always returns that one; the AsyncFd owns the
            // listener, so the descriptor stays open as long as it is registered.
            unsafe { AsyncFd::register_with_interest(std_listener, Interest::READABLE) }
                .map_err(Into::into)
        })
        .map_err(|source| ApiServerError::Listener { fd, source })
}

/// The board's file name in the runtime directory.
pub const BOARD_FILE: &str = "accept-board";

/// How many more connections than the least-loaded live peer a server may
/// hold and still accept at once.
pub const SLACK: u32 = 1;

/// The longest a server defers one pending connection to its peers.
pub const MAX_DEFER: Duration = Duration::from_millis(5);

/// How often a server refreshes its slot's heartbeat.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// A heartbeat older than this means the slot's server is not serving.
pub const STALE: Duration = Duration::from_millis(1000);

/// Packs a slot: heartbeat (ms, never 0 for a live slot) and open count.
fn pack(heartbeat_ms: u32, open: u32) -> u64 {
    (u64::from(heartbeat_ms.max(1)) << 32) | u64::from(open)
}

/// The open count of `slot` if its server is live at `now_ms`.
fn live_open(slot: u64, now_ms: u32) -> Option<u32> {
    let heartbeat = (slot >> 32) as u32;
    let stale = u32::try_from(STALE.as_millis()).unwrap_or(u32::MAX);
    (heartbeat != 0 && now_ms.wrapping_sub(heartbeat) <= stale).then_some(slot as u32)
}

/// Whether a server holding `mine` connections should take a pending one
/// now, given its peers' slots (see the module docs).
pub fn should_accept(mine: u32, peers: impl IntoIterator<Item = u64>, now_ms: u32) -> bool {
    match peers.into_iter().filter_map(|s| live_open(s, now_ms)).min() {
        Some(least) => mine <= least.saturating_add(SLACK),
        None => true,
    }
}

/// The monotonic clock in milliseconds, as slots store it (wrapping).
fn now_ms() -> u32 {
    (tiffin_ipc::clock::monotonic_ns() / 1_000_000) as u32
}

/// The open connections of every API server of the service (the board of
/// the module docs), as this server sees and updates them.
pub struct LoadBoard {
    map: MmapMut,
    index: usize,
    slots: usize,
}

impl LoadBoard {
    /// Maps the board of `slots` servers in `runtime_dir` (creating it if
    /// this is the first server) as server `index`.
    pub fn open(runtime_dir: &Path, index: usize, slots: usize) -> std::io::Result<LoadBoard> {
        if index >= slots {
            return Err(std::io::Error::other(format!(
                "API server index {index} is outside the board's {slots} slots"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(runtime_dir.join(BOARD_FILE))?;
        let len = u64::try_from(slots * 8).unwrap_or(u64::MAX);
        if file.metadata()?.len() < len {
            // Every server sets the same length; the new bytes read as zero.
            file.set_len(len)?;
        }
        // SAFETY: the file lives in the supervisor's private runtime
        // directory (mode 0700, checked at start by supervisor/src/rundir.rs),
        // so only this service's processes map or change it, and they only
        // ever touch it through the atomics below; the mapping is owned by
        // the returned LoadBoard and outlives every slot reference it hands out.
        let map = unsafe { MmapMut::map_mut(&file)? };
        if map.len() < slots * 8 {
            return Err(std::io::Error::other(
                "the accept board is shorter than asked",
            ));
        }
        Ok(LoadBoard { map, index, slots })
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.slots);
        let base = self.map.as_ptr();
        // SAFETY: `i < slots` and the mapping holds `slots * 8` bytes (checked
        // in `open`); a mapping starts on a page boundary, so slot `i` at byte
        // `8 * i` is 8-byte aligned, as AtomicU64 requires; the memory lives
        // as long as `self.map`, which the returned reference borrows; and
        // every process accesses it only atomically.
        unsafe { &*base.add(8 * i).cast::<AtomicU64>() }
    }

    /// Publishes that this server holds `open` connections (and is live).
    pub fn publish(&self, open: usize) {
        let open = u32::try_from(open).unwrap_or(u32::MAX);
        self.slot(self.index)
            .store(pack(now_ms(), open), Ordering::Relaxed);
    }

    /// Takes this server off the board: it accepts no more.
    pub fn withdraw(&self) {
        self.slot(self.index).store(0, Ordering::Relaxed);
    }

    /// Whether this server, holding `open` connections, should take a
    /// pending connection now.
    pub fn should_accept(&self, open: usize) -> bool {
        let mine = u32::try_from(open).unwrap_or(u32::MAX);
        let peers = (0..self.slots)
            .filter(|&i| i != self.index)
            .map(|i| self.slot(i).load(Ordering::Relaxed));
        should_accept(mine, peers, now_ms())
    }
}

impl Drop for LoadBoard {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// Accepts the next connection on the shared `listener`, deferring to
/// less-loaded peers as the module docs say (`board` is `None` when there
/// is none to defer to); `open` is this server's open connection count.
/// Cancel-safe: a connection is taken only in the same poll that returns it.
pub async fn accept(
    listener: &AsyncFd<std::net::TcpListener>,
    board: Option<&LoadBoard>,
    open: impl Fn() -> usize,
) -> std::io::Result<(TcpStream, SocketAddr)> {
    let mut deferred_since: Option<Instant> = None;
    loop {
        let mut ready = listener.readable().await?;
        if let Some(board) = board {
            let waited = deferred_since.map_or(Duration::ZERO, |t| t.elapsed());
            if waited < MAX_DEFER && !board.should_accept(open()) {
                deferred_since.get_or_insert_with(Instant::now);
                // Readiness stays set: the next pass looks again at once.
                drop(ready);
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        match ready.try_io(|l| l.get_ref().accept()) {
            Ok(Ok((stream, client))) => {
                stream.set_nonblocking(true)?;
                return Ok((TcpStream::from_std(stream)?, client));
            }
            Ok(Err(e)) => return Err(e),
            // A peer took it: wait for the next one.
            Err(_would_block) => deferred_since = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_loaded_live_peer_decides() {
        let now = 50_000;
        let live = |open| pack(now - 10, open);
        // Alone, or every peer dead, stale or withdrawn: always accept.
        assert!(should_accept(100, [], now));
        assert!(should_accept(100, [0, pack(now - 5_000, 0)], now));
        // One more than the least loaded peer is within the slack...
        assert!(should_accept(4, [live(3), live(9)], now));
        // ...two more is not.
        assert!(!should_accept(5, [live(3), live(9)], now));
        // A stale peer's low count does not hold others back.
        assert!(should_accept(5, [pack(now - 5_000, 0), live(9)], now));
    }

    #[test]
    fn heartbeats_compare_across_the_clocks_wrap() {
        let now = 3u32;
        let just_before_wrap = pack(u32::MAX - 10, 0);
        assert_eq!(live_open(just_before_wrap, now), Some(0));
        assert!(!should_accept(5, [just_before_wrap], now));
    }

    #[test]
    fn two_boards_in_one_directory_see_each_other() {
        let dir = std::env::temp_dir().join(format!("tiffin-board-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = LoadBoard::open(&dir, 0, 2).unwrap();
        let b = LoadBoard::open(&dir, 1, 2).unwrap();
        assert!(a.should_accept(50), "no live peer yet");
        b.publish(3);
        assert!(a.should_accept(4));
        assert!(!a.should_accept(5));
        b.withdraw();
        assert!(a.should_accept(5));
        a.publish(10);
        drop(a);
        assert!(b.should_accept(100), "a dropped board withdraws");
        assert!(LoadBoard::open(&dir, 2, 2).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
