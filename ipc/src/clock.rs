//! A clock every process of one machine reads alike: `CLOCK_MONOTONIC`.
//!
//! A request's deadline is set in the API server and checked in the runner
//! worker. `std::time::Instant` cannot cross a socket, and wall-clock time
//! can jump; the monotonic clock is one system-wide count that never jumps,
//! so a deadline in its nanoseconds means the same in both processes.

use std::time::Duration;

/// Nanoseconds of `CLOCK_MONOTONIC` now.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call,
    // and CLOCK_MONOTONIC is always available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The monotonic time `after` from now, in nanoseconds.
pub fn deadline_after(after: Duration) -> u64 {
    let after = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
    monotonic_ns().saturating_add(after)
}

/// Time left until the monotonic `deadline_ns` (zero once it has passed).
pub fn until(deadline_ns: u64) -> Duration {
    Duration::from_nanos(deadline_ns.saturating_sub(monotonic_ns()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_and_deadlines_count_down() {
        let a = monotonic_ns();
        let deadline = deadline_after(Duration::from_secs(60));
        assert!(deadline > a);
        let left = until(deadline);
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
        assert_eq!(until(a), Duration::ZERO);
        assert!(monotonic_ns() >= a);
    }
}
