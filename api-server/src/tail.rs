//! What a streaming request holds from its response head to its last item.
//!
//! A request is metered (`state.rs`: `request_in_progress`, its duration
//! and status) and limited (`traffic.rs`: a `max_concurrency` slot) around
//! its handler's future, which for a streaming API ends when the first item
//! is ready and the response head goes out. The rest of the request lives in
//! the response body. So that the request ends at its last item, as
//! BentoML records a streaming response, the layers hand what they would
//! release at the head over to the body instead:
//!
//! 1. `ServerState::metered` runs the request [`within`] a fresh [`Tail`];
//! 2. the code that starts a stream (`stream.rs`) takes the [`StreamEnd`]
//!    of the current tail ([`stream_end`]), which marks it as streaming;
//! 3. when their futures end, the layers [`Tail::defer`] what they hold:
//!    accepted only if a stream took the tail and has not ended yet;
//! 4. the body ends (its last item, an error ending, or dropped because the
//!    client went away) by finishing the [`StreamEnd`] with the stream's
//!    status, which runs every deferred closure with it.
//!
//! The tail travels as a task-local like the deadline (`deadline.rs`):
//! the layers between the meter and the stream know nothing of it.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;

/// The status a stream whose client went away is recorded with: nginx's
/// "client closed request", as the runner records a cancelled stream.
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// What runs when a stream ends, given its status.
type Deferred = Box<dyn FnOnce(u16) + Send>;

#[derive(Default)]
struct State {
    /// A stream took the tail ([`stream_end`]).
    streaming: bool,
    /// The stream ended; later deferrals are refused.
    ended: bool,
    deferred: Vec<Deferred>,
}

/// One request's tail: shared by its meter and its stream, if it has one.
#[derive(Clone, Default)]
pub(crate) struct Tail(Arc<Mutex<State>>);

tokio::task_local! {
    static TAIL: Tail;
}

/// Runs `fut` (a request's handler) with `tail` as the current request's tail.
///
/// A plain function returning tokio's scope future, not an `async fn`, so
/// that `fut` is held once (see `request_scope::within`).
pub(crate) fn within<F: Future>(tail: Tail, fut: F) -> impl Future<Output = F::Output> {
    TAIL.scope(tail, fut)
}

/// The end of the current request's stream: taking it says that the
/// request goes on in its response body. Outside a request (no tail set)
/// the end belongs to a tail of its own, which nothing defers to.
pub(crate) fn stream_end() -> StreamEnd {
    let tail = TAIL.try_with(Tail::clone).unwrap_or_default();
    tail.0.lock().streaming = true;
    StreamEnd { tail }
}

/// The current request's tail, if any (for a layer inside the meter).
pub(crate) fn current() -> Option<Tail> {
    TAIL.try_with(Tail::clone).ok()
}

impl Tail {
    /// Whether a stream took this tail (its request goes on in its body).
    pub fn streaming(&self) -> bool {
        self.0.lock().streaming
    }

    /// Runs `release` with the stream's status when the request's stream
    /// ends, if the request is streaming and its stream has not ended yet;
    /// otherwise gives `release` back, for the caller to run now.
    pub fn defer<F: FnOnce(u16) + Send + 'static>(&self, release: F) -> Result<(), F> {
        let mut state = self.0.lock();
        if state.streaming && !state.ended {
            state.deferred.push(Box::new(release));
            Ok(())
        } else {
            Err(release)
        }
    }
}

/// Held by a stream's response body; finishing or dropping it ends the
/// request (see the module docs).
pub(crate) struct StreamEnd {
    tail: Tail,
}

impl StreamEnd {
    /// Ends the request with `status`: 200 for a stream that ended well, its
    /// error's status for one that failed after items.
    pub fn finish(self, status: u16) {
        self.end(status);
    }

    fn end(&self, status: u16) {
        let deferred = {
            let mut state = self.tail.0.lock();
            if state.ended {
                return;
            }
            state.ended = true;
            std::mem::take(&mut state.deferred)
        };
        for release in deferred {
            release(status);
        }
    }
}

impl Drop for StreamEnd {
    /// A stream dropped before it ended: its client went away.
    fn drop(&mut self) {
        self.end(CLIENT_CLOSED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (Arc<Mutex<Vec<u16>>>, impl Fn() -> Deferred) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let make = {
            let seen = seen.clone();
            move || -> Deferred {
                let seen = seen.clone();
                Box::new(move |status| seen.lock().push(status))
            }
        };
        (seen, make)
    }

    #[tokio::test]
    async fn without_a_stream_the_caller_releases_at_once() {
        let (seen, make) = recorder();
        let tail = Tail::default();
        let refused = within(tail.clone(), async { current().map(|t| t.defer(make())) }).await;
        assert!(matches!(refused, Some(Err(_))));
        assert!(seen.lock().is_empty());
    }

    #[tokio::test]
    async fn a_stream_runs_what_was_deferred_with_its_status_once() {
        let (seen, make) = recorder();
        let tail = Tail::default();
        let end = within(tail.clone(), async { stream_end() }).await;
        assert!(tail.defer(make()).is_ok());
        assert!(tail.defer(make()).is_ok());
        end.finish(500);
        assert_eq!(*seen.lock(), [500, 500]);
        // Ended: later deferrals are given back.
        assert!(tail.defer(make()).is_err());
    }

    #[tokio::test]
    async fn a_dropped_stream_ends_as_closed_by_the_client() {
        let (seen, make) = recorder();
        let tail = Tail::default();
        let end = within(tail.clone(), async { stream_end() }).await;
        assert!(tail.defer(make()).is_ok());
        drop(end);
        assert_eq!(*seen.lock(), [CLIENT_CLOSED]);
    }
}
