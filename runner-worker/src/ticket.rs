//! The life of one unary call in a runner, as far as cancelling it goes.
//!
//! A call is *queued* from the moment the worker reads it until a thread
//! starts its method (it waits behind the running call, or in a batch
//! queue), then *running*, then *finished*. Its caller may go away at any
//! of those moments (the API server sends `DataRequest::StreamCancel` for
//! the call's envelope id, or its connection ends), and what the worker
//! must do differs: a queued call is taken out and never runs, a running
//! one is told through its [`Cancellation`] (a cancellable method may stop
//! early), a finished one needs nothing. The [`CallTicket`] decides which,
//! under one lock, so each call is counted once, in the stage it was in,
//! however the cancel and the start race.

use std::sync::{Arc, Mutex, OnceLock};

use tiffin_service::{CallError, Cancellation};
use tokio::sync::Notify;

/// The answer of a cancelled call (nobody reads it: its caller is gone),
/// the same words as a cancelled stream's end.
pub fn cancelled_error() -> CallError {
    CallError::Failed("cancelled by the caller".into())
}

/// Where a call was when its caller went away: the `stage` label of
/// `tiffin_runner_calls_cancelled_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelStage {
    /// It had not started: it never runs.
    Queued,
    /// Its method was running: it was told, and its result is dropped.
    Running,
}

impl CancelStage {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelStage::Queued => "queued",
            CancelStage::Running => "running",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Queued,
    Running,
    Finished,
    Cancelled(CancelStage),
}

/// One unary call's stage and cancellation token.
#[derive(Debug)]
pub struct CallTicket {
    stage: Mutex<Stage>,
    token: Cancellation,
    /// Woken when the call is cancelled while queued, so the queue holding
    /// it (a batch dispatcher's) takes it out at once.
    queue: OnceLock<Arc<Notify>>,
}

impl Default for CallTicket {
    fn default() -> Self {
        Self {
            stage: Mutex::new(Stage::Queued),
            token: Cancellation::new(),
            queue: OnceLock::new(),
        }
    }
}

impl CallTicket {
    /// The ticket of a call just read: queued.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn stage(&self) -> std::sync::MutexGuard<'_, Stage> {
        self.stage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token a cancellable method is handed.
    pub fn token(&self) -> &Cancellation {
        &self.token
    }

    /// Names the queue to wake when this call is cancelled while queued
    /// (the first one named wins: a call is in one queue).
    pub fn queued_in(&self, queue: &Arc<Notify>) {
        let _ = self.queue.set(Arc::clone(queue));
    }

    /// Its method starts now; `false` if the call was cancelled first
    /// (then it must not run).
    pub fn start(&self) -> bool {
        let mut stage = self.stage();
        match *stage {
            Stage::Queued => {
                *stage = Stage::Running;
                true
            }
            _ => false,
        }
    }

    /// Its method returned (or it was answered without running); a later
    /// cancel does nothing.
    pub fn finish(&self) {
        let mut stage = self.stage();
        if matches!(*stage, Stage::Queued | Stage::Running) {
            *stage = Stage::Finished;
        }
    }

    /// The caller went away: the stage the call was in, the first time
    /// only (`None` when it had finished or was already cancelled). A
    /// running call's token turns; a queued call's queue is woken.
    pub fn cancel(&self) -> Option<CancelStage> {
        let mut stage = self.stage();
        let was = match *stage {
            Stage::Queued => CancelStage::Queued,
            Stage::Running => CancelStage::Running,
            Stage::Finished | Stage::Cancelled(_) => return None,
        };
        *stage = Stage::Cancelled(was);
        drop(stage);
        match was {
            CancelStage::Running => self.token.cancel(),
            CancelStage::Queued => {
                if let Some(queue) = self.queue.get() {
                    queue.notify_one();
                }
            }
        }
        Some(was)
    }

    /// Whether the caller went away (in any stage).
    pub fn is_cancelled(&self) -> bool {
        matches!(*self.stage(), Stage::Cancelled(_))
    }

    /// Whether the caller went away before the call started.
    pub fn cancelled_queued(&self) -> bool {
        *self.stage() == Stage::Cancelled(CancelStage::Queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_call_cancelled_never_starts_and_counts_once_as_queued() {
        let t = CallTicket::new();
        assert_eq!(t.cancel(), Some(CancelStage::Queued));
        assert_eq!(t.cancel(), None, "counted once");
        assert!(!t.start(), "a cancelled call must not run");
        assert!(t.cancelled_queued() && !t.token().is_cancelled());
    }

    #[test]
    fn a_running_call_cancelled_turns_its_token_and_counts_once_as_running() {
        let t = CallTicket::new();
        assert!(t.start());
        assert_eq!(t.cancel(), Some(CancelStage::Running));
        assert!(t.token().is_cancelled());
        t.finish();
        assert_eq!(t.cancel(), None);
        assert!(t.is_cancelled() && !t.cancelled_queued());
    }

    #[test]
    fn a_finished_call_is_not_cancelled() {
        let t = CallTicket::new();
        assert!(t.start());
        t.finish();
        assert_eq!(t.cancel(), None);
        assert!(!t.is_cancelled() && !t.token().is_cancelled());
    }

    #[tokio::test]
    async fn a_queued_cancel_wakes_the_queue_holding_the_call() {
        let queue = Arc::new(Notify::new());
        let t = CallTicket::new();
        t.queued_in(&queue);
        t.cancel();
        // The permit is stored: a queue not yet waiting still sees it.
        queue.notified().await;
    }
}
