//! The log's writer: lines gathered in memory and written by one thread.
//!
//! A request that logs must never wait for stderr, and must not pay a
//! thread wake-up per line either: with a channel per line (what
//! tracing-appender's non-blocking writer does) the writer thread sleeps
//! between lines and every line of a busy server wakes it, a futex call and
//! a context switch per request. Here a line is appended to one shared
//! buffer under a mutex; only a line that finds the buffer empty wakes the
//! writer, which then waits [`GATHER`] for more before it writes them all
//! with one `write`. Under load that is one wake-up and one `write` per
//! [`GATHER`], whatever the request rate; a line reaches stderr at most
//! about [`GATHER`] after it was logged.
//!
//! The buffer holds at most [`MAX_QUEUED_BYTES`]: past that (stderr blocked
//! or slower than the log) lines are dropped and counted, and the count is
//! reported when the process ends.

use std::io::Write;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes of lines waiting to be written, at most (thousands of lines).
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// How long the writer gathers lines after the first one wakes it.
pub const GATHER: Duration = Duration::from_millis(10);

/// How long the end of the process waits for the last lines to be written.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
    finished: bool,
}

/// The shared buffer and the writer thread's signal.
#[derive(Default)]
pub(crate) struct Sink {
    state: Mutex<State>,
    wake: Condvar,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Never poisoned: a thread that panicked while holding the lock left
        // whole lines (appends are single extend calls), so the buffer is
        // still good to use.
        self.state.lock()
    }

    /// Starts the writer thread, writing to `out`.
    pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(Arc<Sink>, JoinHandle<()>)> {
        let sink = Arc::new(Sink::default());
        let writer = sink.clone();
        let handle = std::thread::Builder::new()
            .name("tiffin-log".into())
            .spawn(move || writer.run(out))?;
        Ok((sink, handle))
    }

    /// Queues one whole line (or drops it, counted, when the buffer is
    /// full or the writer has stopped). Never blocks on the output.
    pub fn push(&self, line: &[u8]) -> bool {
        let mut st = self.lock();
        if st.finished || st.lines.len() + line.len() > MAX_QUEUED_BYTES {
            st.dropped += 1;
            return false;
        }
        let was_empty = st.lines.is_empty();
        st.lines.extend_from_slice(line);
        drop(st);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Asks the writer to write what is queued and stop, and waits for it
    /// (at most [`FINAL_FLUSH`]: a blocked stderr must not hold the exit).
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.wake.notify_all();
        self.wake
            .wait_while_for(&mut st, |s| !s.finished, FINAL_FLUSH);
        st.finished = true;
    }

    fn run(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        loop {
            let mut st = self.lock();
            // Idle: sleep until a line arrives.
            while st.lines.is_empty() && !st.closed {
                self.wake.wait(&mut st);
            }
            // Busy: let more lines gather, unless the process is ending.
            if !st.closed {
                self.wake.wait_while_for(&mut st, |s| !s.closed, GATHER);
            }
            std::mem::swap(&mut st.lines, &mut batch);
            let closed = st.closed;
            drop(st);
            // A failed write (stderr closed) loses these lines; there is
            // nowhere left to say so.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if closed && self.lock().lines.is_empty() {
                break;
            }
        }
        self.lock().finished = true;
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock();
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_burst_of_lines_is_written_whole_in_few_writes_and_close_flushes() {
        let out = Shared::default();
        let (sink, handle) = Sink::start(out.clone()).unwrap();
        for i in 0..1000 {
            assert!(sink.push(format!("line {i}\n").as_bytes()));
        }
        sink.close();
        handle.join().unwrap();
        let (bytes, writes) = out.0.lock().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 1000);
        assert!(
            text.lines()
                .enumerate()
                .all(|(i, l)| l == format!("line {i}"))
        );
        assert!(writes <= 3, "{writes} writes for one burst");
        assert!(!sink.push(b"late\n"), "a closed sink takes no lines");
    }

    #[test]
    fn past_the_bound_lines_are_dropped_and_counted() {
        struct Blocked;
        impl Write for Blocked {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (sink, _handle) = Sink::start(Blocked).unwrap();
        let line = vec![b'x'; 1024];
        let mut taken = 0;
        for _ in 0..(2 * MAX_QUEUED_BYTES / 1024 + 16) {
            taken += usize::from(sink.push(&line));
        }
        // The writer took at most one buffer's worth before it blocked.
        assert!(taken <= 2 * MAX_QUEUED_BYTES / 1024);
        assert!(sink.dropped() >= 16);
        let started = std::time::Instant::now();
        sink.close();
        assert!(started.elapsed() < FINAL_FLUSH + Duration::from_secs(1));
    }
}
