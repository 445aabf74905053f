//! The worker process's model thread: its non-batchable calls run here, one
//! at a time and in the order they were read, as a BentoML runner without
//! multi-threading serves them.
//!
//! They used to run on the connection's reader task itself, which was one
//! call at a time too, but then the reader could not read anything while a
//! call ran, so a caller's cancel waited behind the very call it cancelled
//! and every call queued after it. With the model on a thread of its own,
//! the reader keeps reading: a queued call whose caller went away is taken
//! out of [`Serial`]'s queue (it never runs), and a running one is told
//! through its ticket (`ticket.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use crate::ticket::CallTicket;

/// A call waiting for the model thread: its ticket (to find it when its
/// caller goes away) and what running it does. The job itself checks the
/// ticket, so one taken out after a cancel answers without running.
pub(crate) struct Job {
    pub ticket: Arc<CallTicket>,
    pub run: Box<dyn FnOnce() + Send>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Set when the [`Serial`] is dropped: the thread ends.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One model thread and its queue; the thread starts with the first call.
pub(crate) struct Serial {
    shared: Arc<Shared>,
    started: std::sync::Once,
}

impl Default for Serial {
    fn default() -> Self {
        Self {
            shared: Arc::default(),
            started: std::sync::Once::new(),
        }
    }
}

impl Serial {
    /// Queues `job` behind the calls already waiting.
    pub fn push(&self, job: Job) {
        self.started.call_once(|| {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("tiffin-model".into())
                .spawn(move || serve(&shared));
            if let Err(e) = spawned {
                // Without its thread the queue would never move: `push`
                // runs the calls on the caller's thread instead, as before
                // the model had a thread (cancelling them is then late).
                tracing::error!(error = %e, "cannot start the model thread; calls run on the reader");
                self.shared.lock().closed = true;
            }
        });
        let mut queue = self.shared.lock();
        if queue.closed {
            drop(queue);
            (job.run)();
            return;
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.shared.ready.notify_one();
    }

    /// Takes the call of `ticket` out of the queue, if it is still there.
    pub fn remove(&self, ticket: &Arc<CallTicket>) -> Option<Job> {
        let mut queue = self.shared.lock();
        let at = queue
            .jobs
            .iter()
            .position(|job| Arc::ptr_eq(&job.ticket, ticket))?;
        queue.jobs.remove(at)
    }

    /// Calls waiting (not the one running).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.shared.lock().jobs.len()
    }
}

impl Drop for Serial {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

/// The model thread: runs jobs in order until its [`Serial`] is dropped.
fn serve(shared: &Shared) {
    loop {
        let mut queue = shared.lock();
        let job = loop {
            if let Some(job) = queue.jobs.pop_front() {
                break job;
            }
            if queue.closed {
                return;
            }
            queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
        };
        drop(queue);
        (job.run)();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A job that reports its name, once it may run (`gate`), or `skipped`.
    fn job(name: &'static str, done: &mpsc::Sender<&'static str>) -> (Arc<CallTicket>, Job) {
        let ticket = CallTicket::new();
        let (t, done) = (Arc::clone(&ticket), done.clone());
        let run = Box::new(move || {
            let _ = done.send(if t.start() { name } else { "skipped" });
            t.finish();
        });
        let job = Job {
            ticket: Arc::clone(&ticket),
            run,
        };
        (ticket, job)
    }

    #[test]
    fn calls_run_one_at_a_time_in_order_and_a_removed_one_never_runs() {
        let serial = Serial::default();
        let (done_tx, done) = mpsc::channel();
        // The first job holds the thread until released, so the others queue.
        let (release_tx, release) = mpsc::channel::<()>();
        let first = CallTicket::new();
        serial.push(Job {
            ticket: first,
            run: Box::new(move || {
                let _ = release.recv();
            }),
        });
        let (_, a) = job("a", &done_tx);
        let (b_ticket, b) = job("b", &done_tx);
        let (_, c) = job("c", &done_tx);
        serial.push(a);
        serial.push(b);
        serial.push(c);
        let removed = serial.remove(&b_ticket).expect("b is still queued");
        assert!(serial.remove(&b_ticket).is_none(), "taken out once");
        b_ticket.cancel();
        (removed.run)();
        assert_eq!(done.recv().unwrap(), "skipped");
        release_tx.send(()).unwrap();
        assert_eq!(done.recv().unwrap(), "a");
        assert_eq!(done.recv().unwrap(), "c");
        assert_eq!(serial.waiting(), 0);
    }
}
