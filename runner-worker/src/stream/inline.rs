//! An embedded runner's stream pulled on the thread that polls it.
//!
//! A stream normally has a blocking-pool thread of its own that pulls the
//! model's iterator and waits on the credit gate (`stream.rs`). For a model
//! whose items take microseconds (the built-in `text_generator` at full
//! speed), that thread costs more than the model: every credit wakes it and
//! every item wakes the API server's I/O thread, and in a `perf` profile of
//! 64 embedded streams the kernel's context-switch and wake-up paths took
//! about half of the samples. So once a stream method has earned it (its
//! `Pace`: a streak of cheap pulls on the pool, `pace.rs`), an embedded
//! runner's stream of it is an [`InlineStream`]: the response body's poll
//! pulls one item, as bare hyper would draw a token, and back-pressure is
//! simply not being polled. Nothing is pulled ahead of the body. (A worker
//! process pulls such a stream in a task on its own thread instead, still
//! under the credit window: `Host::call_stream`.)
//!
//! Every pull is timed. One that takes longer than `pace::DEMOTE` sends the
//! method back to the pool (later streams start there) and hands the rest
//! of this stream over to it too, so a model that turned slow holds the I/O
//! thread for that one item only. A hung model holds it: embedded runners
//! are for cheap, trusted models (docs/models.md), and the API server's
//! hung-process check covers it.
//!
//! The stream is recorded as a pooled one is: `request_in_progress` to its
//! end, its duration to its last item, a model error tagged with the
//! request id, and a stream dropped before its end counted as cancelled
//! (`stage="running"`) with its log line.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tiffin_service::{CallError, EncodedItems, EncodedStream};

use super::{Outcome, Streamed};
use crate::host::{CallContext, Host, guarded};

/// Goes on with a stream on the blocking pool: its bookkeeping, the
/// model's iterator, and the items already taken.
pub(crate) type Resume = fn(&Arc<Host>, Streamed, EncodedItems, u64) -> EncodedStream;

/// A stream pulled by its poller (see the module docs).
pub(crate) struct InlineStream {
    host: Arc<Host>,
    state: State,
    resume: Resume,
}

/// A stream being pulled here: its bookkeeping, the iterator, the items
/// pulled so far.
struct Pull {
    streamed: Streamed,
    items: EncodedItems,
    sent: u64,
}

enum State {
    /// Pulling here (boxed: a span and the metrics' guard make it large).
    Pulling(Box<Pull>),
    /// Handed over to the pool after a slow pull.
    Pooled(EncodedStream),
    /// Its error, yielded next, then the end.
    Failing(CallError),
    Done,
}

impl InlineStream {
    /// Starts a call of the stream method `method` to be pulled by its
    /// poller: refused (one error) if `cx.expires` has passed; otherwise
    /// the model's iterator is made now, on the caller's thread.
    pub(crate) fn start(
        host: &Arc<Host>,
        method: String,
        payload: &[u8],
        cx: CallContext,
        resume: Resume,
    ) -> InlineStream {
        let host = Arc::clone(host);
        if cx.expires.is_some_and(|t| Instant::now() >= t) {
            let state = State::Failing(CallError::DeadlineExceeded);
            return InlineStream {
                host,
                state,
                resume,
            };
        }
        let streamed = host.begin_stream(method, cx);
        let state = match host.open_stream(&streamed.method, payload) {
            Ok(items) => State::Pulling(Box::new(Pull {
                streamed,
                items,
                sent: 0,
            })),
            Err(e) => failed(&host, streamed, e, 0),
        };
        InlineStream {
            host,
            state,
            resume,
        }
    }

    /// Pulls one item; a slow pull demotes the method and hands the rest of
    /// the stream to the pool.
    fn pull(&mut self) -> Option<Result<Vec<u8>, CallError>> {
        let State::Pulling(pull) = std::mem::replace(&mut self.state, State::Done) else {
            return None;
        };
        let Pull {
            streamed,
            mut items,
            sent,
        } = *pull;
        let pulled = Instant::now();
        let next = guarded(|| items.next().transpose());
        let slow = self.host.slow_pull(&streamed.method, pulled.elapsed());
        match next {
            Ok(Some(item)) => {
                let sent = sent + 1;
                self.state = if slow {
                    State::Pooled((self.resume)(&self.host, streamed, items, sent))
                } else {
                    State::Pulling(Box::new(Pull {
                        streamed,
                        items,
                        sent,
                    }))
                };
                Some(Ok(item))
            }
            Ok(None) => {
                drop(items);
                self.host.end_stream(streamed, Outcome::Finished(sent));
                None
            }
            Err(e) => {
                drop(items);
                match failed(&self.host, streamed, e, sent) {
                    State::Failing(e) => Some(Err(e)),
                    _ => None,
                }
            }
        }
    }
}

/// The state of a stream that failed after `sent` items: recorded, its
/// error (tagged with the request id) yielded next.
fn failed(host: &Host, streamed: Streamed, e: CallError, sent: u64) -> State {
    match host.end_stream(streamed, Outcome::Failed(e, sent)) {
        Outcome::Failed(e, _) => State::Failing(e),
        _ => State::Done,
    }
}

impl futures::Stream for InlineStream {
    type Item = Result<Vec<u8>, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match &mut this.state {
            State::Pulling(_) => Poll::Ready(this.pull()),
            State::Pooled(rest) => rest.as_mut().poll_next(cx),
            State::Failing(_) => match std::mem::replace(&mut this.state, State::Done) {
                State::Failing(e) => Poll::Ready(Some(Err(e))),
                _ => Poll::Ready(None),
            },
            State::Done => Poll::Ready(None),
        }
    }
}

impl Drop for InlineStream {
    /// Dropped while pulling here: the caller went away. The iterator is
    /// dropped first (the model stops), then the stream is recorded as
    /// cancelled. A pooled rest is cancelled by its own receiver.
    fn drop(&mut self) {
        if let State::Pulling(pull) = std::mem::replace(&mut self.state, State::Done) {
            let Pull {
                streamed,
                items,
                sent,
            } = *pull;
            drop(items);
            self.host.end_stream(streamed, Outcome::Cancelled(sent));
        }
    }
}
