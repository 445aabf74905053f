//! Which calls run on the caller's thread: a method that takes microseconds.
//!
//! A non-batchable method runs on its host's model thread (`serial.rs`), so
//! that the thread that receives calls (a worker's connection reader, an
//! embedded runner's API-server I/O thread) keeps receiving: cancels, the
//! next calls, probes and scrapes. For a model that takes microseconds
//! (`echo`, the VADER scorer) the two thread switches of that hand-over
//! cost as much as the call itself, and on a busy 2-core machine more.
//!
//! So each such method keeps a [`Pace`]: once its calls on the model thread
//! have earned a streak of [`CHEAP_STREAK`] (each call under [`CHEAP`] adds
//! one, each slower call takes [`SLOW_PENALTY`] away, so about nine in ten
//! must be cheap and a loaded machine's preemptions do not reset it), its
//! calls run on the caller's thread, one at a time (others meanwhile take
//! the model thread). A call there that takes longer than [`DEMOTE`]
//! (a model that slowed down, or a thread the kernel preempted) sends the
//! method back to the model thread until it earns the streak again: at
//! most one slow call on the caller's thread per [`CHEAP_STREAK`] cheap
//! ones.
//!
//! What that costs, and why it is bounded: a cheap method that suddenly
//! hangs holds the caller's thread for that one call. In a worker process
//! that is what every call did before the model thread existed; in an API
//! server it is one I/O thread and one request not answered at its timeout,
//! and the supervisor's hung-process check restarts an API server that
//! stops answering. docs/models.md says to use worker processes for a model
//! that may hang.
//!
//! A stream method keeps a [`Pace`] too, fed by each item pulled on the
//! blocking pool: once earned ([`Pace::earned`]), an embedded runner pulls
//! its streams in the response body's poll, all of them (each pull is one
//! item, so no stream holds the thread for long), and a pull over
//! [`DEMOTE`] demotes it ([`Pace::demote`]; `stream/inline.rs`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// A call under this is cheap (see the module docs).
pub(crate) const CHEAP: Duration = Duration::from_micros(100);
/// The streak a method needs to run on the caller's thread.
pub(crate) const CHEAP_STREAK: u32 = 256;
/// What one call of [`CHEAP`] or more takes off the streak.
pub(crate) const SLOW_PENALTY: u32 = 8;
/// A call on the caller's thread that takes longer than this sends its
/// method back to the model thread until it earns [`CHEAP_STREAK`] again.
pub(crate) const DEMOTE: Duration = Duration::from_millis(2);

/// How fast one non-batchable method has been.
#[derive(Default)]
pub(crate) struct Pace {
    /// Cheap calls on the model thread, less [`SLOW_PENALTY`] per slow one;
    /// back to 0 when a call on the caller's thread was slow.
    streak: AtomicU32,
    /// A call of this method runs on a caller's thread now: at most one
    /// does at a time, so a model that starts to hang holds one thread.
    inline: AtomicBool,
}

impl Pace {
    /// Takes the one slot on the caller's thread if the method has earned
    /// it; [`Pace::ran_inline`] gives it back.
    pub fn try_inline(&self) -> bool {
        self.streak.load(Ordering::Relaxed) >= CHEAP_STREAK
            && !self.inline.swap(true, Ordering::Acquire)
    }

    /// Records a call that ran on the caller's thread for `took` and gives
    /// the slot back; true when it was slow enough to send the method back
    /// to the model thread.
    pub fn ran_inline(&self, took: Duration) -> bool {
        let demote = took > DEMOTE;
        if demote {
            self.streak.store(0, Ordering::Relaxed);
        }
        self.inline.store(false, Ordering::Release);
        demote
    }

    /// Whether the method has earned the caller's thread, without taking
    /// the one slot: an embedded runner's stream of a cheap method is
    /// pulled on the thread that polls it (`stream/inline.rs`), every item
    /// timed, so a slow one demotes the method at once.
    pub fn earned(&self) -> bool {
        self.streak.load(Ordering::Relaxed) >= CHEAP_STREAK
    }

    /// Sends the method back until it earns [`CHEAP_STREAK`] again (one of
    /// its items on the caller's thread took longer than [`DEMOTE`]).
    pub fn demote(&self) {
        self.streak.store(0, Ordering::Relaxed);
    }

    /// Records a call that ran on the model thread for `took`; true when
    /// that call earned the method the caller's thread.
    pub fn ran_queued(&self, took: Duration) -> bool {
        let cheap = took < CHEAP;
        let before = self
            .streak
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(if cheap {
                    n.saturating_add(1)
                } else {
                    n.saturating_sub(SLOW_PENALTY)
                })
            })
            .unwrap_or(0);
        cheap && before + 1 == CHEAP_STREAK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_micros(1);

    #[test]
    fn a_method_goes_inline_after_a_streak_of_cheap_calls_and_one_call_at_a_time() {
        let pace = Pace::default();
        for _ in 1..CHEAP_STREAK {
            assert!(!pace.ran_queued(FAST));
            assert!(!pace.try_inline());
        }
        assert!(pace.ran_queued(FAST), "the streak's last call says so");
        assert!(pace.try_inline());
        assert!(
            !pace.try_inline(),
            "a second call while one runs inline is queued"
        );
        assert!(!pace.ran_inline(FAST));
        assert!(pace.try_inline());
    }

    #[test]
    fn a_slow_call_costs_the_streak_eight_cheap_ones() {
        let pace = Pace::default();
        for _ in 0..CHEAP_STREAK {
            pace.ran_queued(FAST);
        }
        assert!(
            !pace.ran_queued(CHEAP),
            "a call of CHEAP or more is not cheap"
        );
        for _ in 0..SLOW_PENALTY {
            assert!(!pace.try_inline());
            pace.ran_queued(FAST);
        }
        assert!(
            pace.try_inline(),
            "eight cheap calls made up for the slow one"
        );
    }

    #[test]
    fn a_slow_inline_call_sends_the_method_back_until_it_earns_the_streak_again() {
        let pace = Pace::default();
        for _ in 0..CHEAP_STREAK {
            pace.ran_queued(FAST);
        }
        assert!(pace.try_inline());
        assert!(pace.ran_inline(DEMOTE + Duration::from_millis(1)));
        assert!(!pace.try_inline());
        for _ in 1..CHEAP_STREAK {
            assert!(!pace.ran_queued(FAST));
            assert!(!pace.try_inline());
        }
        assert!(pace.ran_queued(FAST), "earned again");
        assert!(pace.try_inline());
    }
}
