//! Flow control of a streamed call (`DataRequest::StreamCall`): how many
//! items a runner worker may send ahead of what the API server has taken.
//!
//! Items are events on the call's connection, and a connection's queues are
//! unbounded (`connection.rs`), so without a bound a fast model and a slow
//! client would fill the API server's memory. Instead the worker holds
//! [`Credits`]: it starts with a window of [`STREAM_WINDOW`] items, spends
//! one per item sent, and waits (without pulling the model's iterator) when
//! it has none. The API server keeps [`Grants`]: each item its client takes
//! is counted, and every half window it gives that many credits back
//! (`DataRequest::StreamCredit`). Items sent and not yet taken therefore
//! never exceed the window, whatever the two speeds (nor, counted in
//! bytes, [`STREAM_BYTES_AHEAD`] and one item); and a client that keeps up
//! never leaves the worker waiting, since credits return while the second
//! half of the window is still in flight.
//!
//! [`StreamReceiver`] is the taking side as a `futures::Stream`, shared by
//! the API server's pool (items over a data connection) and an embedded
//! runner (items over a channel): it grants credits as items are taken,
//! yields the end last, and tells the producer when it is dropped early.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use tiffin_service::CallError;

/// Items a worker may send ahead of what the API server has taken, per
/// stream. Sixty-four: a credit message returns in tens of microseconds
/// over a Unix socket, so half a window in flight covers a round trip many
/// times over and a reader that keeps up never stalls the model; and each
/// grant wakes the worker's thread that pulls the model, so the window sets
/// how often: once per 32 items here. With a window of 16 (once per 8), a
/// `perf` profile of 64 streams at full speed spent more of the worker's
/// time in the kernel's context-switch paths than in the model.
///
/// Items are counted, not bytes: the worker also stops while the items it
/// sent and the API server has not taken reach [`STREAM_BYTES_AHEAD`]
/// (`runner-worker/src/stream.rs`), so a stream of large items holds about
/// that much, and 64 stalled token streams hold at most 4096 tokens (a few
/// hundred kilobytes).
pub const STREAM_WINDOW: u32 = 64;

/// Bytes of items a worker may send ahead of what the API server has taken,
/// per stream, whatever the window still allows: one more item is sent
/// while fewer than this are in flight.
pub const STREAM_BYTES_AHEAD: usize = 1 << 20;

/// The sender's side: items it may still send, and the bytes of those it
/// sent that the receiver has not taken yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credits {
    left: u64,
    /// The sizes of the items sent and not yet granted back, oldest first:
    /// the receiver grants in the order it takes them.
    ahead: VecDeque<usize>,
    bytes: usize,
}

impl Credits {
    /// The credits of a stream that starts with `window`.
    pub fn new(window: u32) -> Self {
        Credits {
            left: u64::from(window),
            ahead: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Spends a credit for one item; `false` (and nothing spent) when none
    /// is left, or when the items ahead hold [`STREAM_BYTES_AHEAD`] already.
    pub fn take(&mut self) -> bool {
        if self.left == 0 || self.bytes >= STREAM_BYTES_AHEAD {
            return false;
        }
        self.left -= 1;
        true
    }

    /// Counts the item of the last credit taken as sent, `len` bytes long.
    pub fn sent(&mut self, len: usize) {
        self.ahead.push_back(len);
        self.bytes += len;
    }

    /// Adds `items` credits the receiver granted: it took that many of the
    /// oldest items ahead.
    pub fn grant(&mut self, items: u32) {
        self.left = self.left.saturating_add(u64::from(items));
        for _ in 0..items {
            match self.ahead.pop_front() {
                Some(len) => self.bytes -= len,
                None => break,
            }
        }
    }

    /// Credits left.
    pub fn left(&self) -> u64 {
        self.left
    }
}

/// The receiver's side: items taken and not yet given back as credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    batch: u32,
    taken: u32,
    /// Bytes of the items counted in `taken`.
    bytes: usize,
}

impl Grants {
    /// The grants of a stream opened with `window`: credits go back every
    /// half window (at least every item), so one message covers many items,
    /// or as soon as the items taken hold half of [`STREAM_BYTES_AHEAD`],
    /// since a sender of large items stops on that bound well before its
    /// window is spent, and would otherwise wait for a grant forever.
    pub fn new(window: u32) -> Self {
        Grants {
            batch: (window / 2).max(1),
            taken: 0,
            bytes: 0,
        }
    }

    /// Counts one item of `len` bytes taken; the credits to grant now, if a
    /// batch is full.
    pub fn took_one(&mut self, len: usize) -> Option<u32> {
        self.taken += 1;
        self.bytes += len;
        if self.taken < self.batch && self.bytes < STREAM_BYTES_AHEAD / 2 {
            return None;
        }
        self.bytes = 0;
        Some(std::mem::take(&mut self.taken))
    }
}

/// What a [`StreamReceiver`] does when the consumer takes items or leaves.
pub struct ReceiverHooks {
    /// Grants the producer this many more items.
    pub credit: Box<dyn Fn(u32) + Send>,
    /// Called once when the receiver is dropped, with whether the stream's
    /// end was seen; before the end, it cancels the producer.
    pub dropped: Box<dyn FnOnce(bool) + Send>,
}

/// The taking side of a stream: its items as they arrive, then its end (an
/// `Err` item if it failed; nothing more if it finished).
pub struct StreamReceiver {
    first: Option<Vec<u8>>,
    items: mpsc::UnboundedReceiver<Vec<u8>>,
    /// The end, until it resolved.
    end: Option<BoxFuture<'static, Result<u64, CallError>>>,
    /// The end once resolved, until it is yielded after the last item.
    ended: Option<Result<u64, CallError>>,
    grants: Grants,
    taken: u64,
    hooks: Option<ReceiverHooks>,
}

impl StreamReceiver {
    /// Receives the items that the producer puts in `items` (a producer
    /// drops its sender before `end` resolves, so every item comes before
    /// the end), `first` having been taken from it already. `end` answers
    /// how many items were sent, or the error that ended the stream.
    pub fn new(
        window: u32,
        first: Option<Vec<u8>>,
        items: mpsc::UnboundedReceiver<Vec<u8>>,
        end: BoxFuture<'static, Result<u64, CallError>>,
        hooks: ReceiverHooks,
    ) -> Self {
        StreamReceiver {
            first,
            items,
            end: Some(end),
            ended: None,
            grants: Grants::new(window),
            taken: 0,
            hooks: Some(hooks),
        }
    }

    fn took(&mut self, item: Vec<u8>) -> Poll<Option<Result<Vec<u8>, CallError>>> {
        self.taken += 1;
        if let (Some(n), Some(hooks)) = (self.grants.took_one(item.len()), &self.hooks) {
            (hooks.credit)(n);
        }
        Poll::Ready(Some(Ok(item)))
    }
}

impl futures::Stream for StreamReceiver {
    type Item = Result<Vec<u8>, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return self.took(first);
        }
        if let Poll::Ready(Some(item)) = self.items.poll_recv(cx) {
            return self.took(item);
        }
        if let Some(end) = self.end.as_mut() {
            let result = ready!(end.as_mut().poll(cx));
            self.end = None;
            self.ended = Some(result);
        }
        // The end may come by another path than the items (a reply on a
        // connection, while its handler still holds the sender), but never
        // before them: whatever is queued now is taken before the end.
        if let Ok(item) = self.items.try_recv() {
            return self.took(item);
        }
        let Some(result) = self.ended.take() else {
            return Poll::Ready(None);
        };
        Poll::Ready(match result {
            Ok(sent) if sent == self.taken => None,
            // Items the end counts but that never came would be a silent cut.
            Ok(sent) => Some(Err(CallError::Failed(format!(
                "the stream ended after {} of its {sent} items",
                self.taken
            )))),
            Err(e) => Some(Err(e)),
        })
    }
}

impl Drop for StreamReceiver {
    fn drop(&mut self) {
        if let Some(hooks) = self.hooks.take() {
            (hooks.dropped)(self.end.is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_stops_when_its_window_is_spent_and_resumes_on_a_grant() {
        let mut credits = Credits::new(3);
        assert!(credits.take() && credits.take() && credits.take());
        assert!(!credits.take());
        assert_eq!(credits.left(), 0);
        credits.grant(2);
        assert!(credits.take() && credits.take());
        assert!(!credits.take());
    }

    #[test]
    fn a_sender_also_stops_while_the_bytes_ahead_reach_the_bound() {
        let mut credits = Credits::new(STREAM_WINDOW);
        let half = STREAM_BYTES_AHEAD / 2;
        assert!(credits.take());
        credits.sent(half);
        assert!(credits.take(), "below the bound: one more item");
        credits.sent(half);
        assert!(!credits.take(), "the bytes ahead reached the bound");
        assert_eq!(credits.left(), u64::from(STREAM_WINDOW) - 2);
        // The oldest item was taken: its bytes no longer count.
        credits.grant(1);
        assert!(credits.take());
        credits.sent(10);
        credits.grant(2);
        assert!(credits.take());
    }

    /// Large items: the sender stops on the byte bound long before its
    /// window is spent; the receiver grants by bytes, so it never waits for
    /// a grant that would come only after items it cannot send.
    #[test]
    fn large_items_flow_on_the_byte_bound_without_a_deadlock() {
        let mut credits = Credits::new(STREAM_WINDOW);
        let mut grants = Grants::new(STREAM_WINDOW);
        let len = 1 << 16;
        let mut in_flight = std::collections::VecDeque::new();
        let mut delivered = 0;
        for _ in 0..10_000 {
            while credits.take() {
                credits.sent(len);
                in_flight.push_back(len);
            }
            let Some(item) = in_flight.pop_front() else {
                panic!("nothing in flight: the sender waits for a grant that never comes");
            };
            delivered += 1;
            if let Some(n) = grants.took_one(item) {
                credits.grant(n);
            }
            assert!(in_flight.len() * len <= STREAM_BYTES_AHEAD + len);
        }
        assert_eq!(delivered, 10_000);
    }

    #[test]
    fn the_receiver_grants_back_every_half_window() {
        let mut grants = Grants::new(STREAM_WINDOW);
        let half = STREAM_WINDOW / 2;
        for _ in 1..half {
            assert_eq!(grants.took_one(1), None);
        }
        assert_eq!(grants.took_one(1), Some(half));
        assert_eq!(grants.took_one(1), None);
        assert_eq!(Grants::new(1).took_one(1), Some(1));
    }

    /// A producer as fast as possible and a reader that takes one item now
    /// and then: what is in flight never exceeds the window, and every
    /// item is eventually sent.
    #[test]
    fn items_in_flight_never_exceed_the_window() {
        let mut credits = Credits::new(STREAM_WINDOW);
        let mut grants = Grants::new(STREAM_WINDOW);
        let (mut sent, mut taken) = (0u64, 0u64);
        let total = 1000;
        let mut most_in_flight = 0;
        for step in 0u64.. {
            while sent < total && credits.take() {
                sent += 1;
            }
            most_in_flight = most_in_flight.max(sent - taken);
            if taken == total {
                break;
            }
            // The reader takes an item on every third step only.
            if step % 3 == 0 && taken < sent {
                taken += 1;
                if let Some(n) = grants.took_one(1) {
                    credits.grant(n);
                }
            }
        }
        assert_eq!(most_in_flight, u64::from(STREAM_WINDOW));
        assert_eq!(sent, total);
    }

    use futures::StreamExt;
    use std::sync::{Arc, Mutex};

    /// A receiver over a channel, with what its hooks saw.
    struct Probe {
        granted: Arc<Mutex<Vec<u32>>>,
        dropped: Arc<Mutex<Option<bool>>>,
    }

    fn receiver(
        window: u32,
        end: BoxFuture<'static, Result<u64, CallError>>,
    ) -> (mpsc::UnboundedSender<Vec<u8>>, StreamReceiver, Probe) {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = Probe {
            granted: Arc::default(),
            dropped: Arc::default(),
        };
        let (granted, dropped) = (probe.granted.clone(), probe.dropped.clone());
        let hooks = ReceiverHooks {
            credit: Box::new(move |n| granted.lock().unwrap().push(n)),
            dropped: Box::new(move |ended| *dropped.lock().unwrap() = Some(ended)),
        };
        (tx, StreamReceiver::new(window, None, rx, end, hooks), probe)
    }

    #[tokio::test]
    async fn a_receiver_yields_every_item_then_ends_and_grants_as_items_are_taken() {
        let (tx, rx, probe) = receiver(4, Box::pin(async { Ok(5) }));
        for i in 0..5u8 {
            tx.send(vec![i]).unwrap();
        }
        drop(tx);
        let items: Vec<_> = rx.collect().await;
        assert_eq!(items, (0..5u8).map(|i| Ok(vec![i])).collect::<Vec<_>>());
        assert_eq!(*probe.granted.lock().unwrap(), vec![2, 2]);
        assert_eq!(*probe.dropped.lock().unwrap(), Some(true));
    }

    #[tokio::test]
    async fn an_error_after_items_is_the_last_item() {
        let failed = CallError::Failed("ran dry".into());
        let end = Box::pin(std::future::ready(Err(failed.clone())));
        let (tx, rx, _probe) = receiver(16, end);
        tx.send(b"a".to_vec()).unwrap();
        tx.send(b"b".to_vec()).unwrap();
        // The sender outlives the end (a connection's handler holds it).
        let items: Vec<_> = rx.collect().await;
        assert_eq!(
            items,
            vec![Ok(b"a".to_vec()), Ok(b"b".to_vec()), Err(failed)]
        );
        drop(tx);
    }

    #[tokio::test]
    async fn an_end_that_names_items_never_received_is_an_error_not_a_cut() {
        let (tx, rx, _probe) = receiver(16, Box::pin(async { Ok(3) }));
        tx.send(b"a".to_vec()).unwrap();
        drop(tx);
        let items: Vec<_> = rx.collect().await;
        assert!(
            matches!(&items[..], [Ok(_), Err(CallError::Failed(m))] if m.contains("1 of its 3")),
            "{items:?}"
        );
    }

    #[tokio::test]
    async fn dropping_a_receiver_before_its_end_says_so() {
        let (tx, mut rx, probe) = receiver(16, Box::pin(futures::future::pending()));
        tx.send(b"a".to_vec()).unwrap();
        assert_eq!(rx.next().await, Some(Ok(b"a".to_vec())));
        drop(rx);
        assert_eq!(*probe.dropped.lock().unwrap(), Some(false));
    }
}
