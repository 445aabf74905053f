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
//! never exceed the window, whatever the two speeds; and a client that
//! keeps up never leaves the worker waiting, since credits return while the
//! second half of the window is still in flight.

/// Items a worker may send ahead of what the API server has taken, per
/// stream. Sixteen: a credit message returns in tens of microseconds over a
/// Unix socket, while a generating model takes a millisecond or more per
/// token, so half a window (8 items) in flight already covers a round trip
/// many times over and a reader that keeps up never stalls the model; and
/// 64 stalled streams hold at most 1024 items (for token streams, a few
/// tens of kilobytes) instead of whatever the model could produce.
pub const STREAM_WINDOW: u32 = 16;

/// The sender's side: items it may still send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credits {
    left: u64,
}

impl Credits {
    /// The credits of a stream that starts with `window`.
    pub fn new(window: u32) -> Self {
        Credits {
            left: u64::from(window),
        }
    }

    /// Spends a credit for one item; `false` (and nothing spent) when none is left.
    pub fn take(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }

    /// Adds `items` credits the receiver granted.
    pub fn grant(&mut self, items: u32) {
        self.left = self.left.saturating_add(u64::from(items));
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
}

impl Grants {
    /// The grants of a stream opened with `window`: credits go back every
    /// half window (at least every item), so one message covers many items.
    pub fn new(window: u32) -> Self {
        Grants {
            batch: (window / 2).max(1),
            taken: 0,
        }
    }

    /// Counts one item taken; the credits to grant now, if a batch is full.
    pub fn took_one(&mut self) -> Option<u32> {
        self.taken += 1;
        if self.taken < self.batch {
            return None;
        }
        Some(std::mem::take(&mut self.taken))
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
    fn the_receiver_grants_back_every_half_window() {
        let mut grants = Grants::new(STREAM_WINDOW);
        let half = STREAM_WINDOW / 2;
        for _ in 1..half {
            assert_eq!(grants.took_one(), None);
        }
        assert_eq!(grants.took_one(), Some(half));
        assert_eq!(grants.took_one(), None);
        assert_eq!(Grants::new(1).took_one(), Some(1));
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
                if let Some(n) = grants.took_one() {
                    credits.grant(n);
                }
            }
        }
        assert_eq!(most_in_flight, u64::from(STREAM_WINDOW));
        assert_eq!(sent, total);
    }
}
