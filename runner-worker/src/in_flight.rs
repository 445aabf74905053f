//! A count of calls in flight that a drain can wait on.
//!
//! Draining must not end while a call is still running, and must end as soon
//! as the last one finishes: awaiting [`InFlight::zero`] wakes exactly then,
//! instead of polling the count on a timer.

use std::sync::atomic::{AtomicUsize, Ordering};

use tiffin_metrics::Count;
use tokio::sync::Notify;

/// Calls started and not yet finished.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// A call started.
    pub fn start(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// A call finished; the last one wakes whoever waits in [`InFlight::zero`].
    pub fn end(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Calls currently in flight.
    pub fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no call is in flight.
    pub async fn zero(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Registered before the check, so an `end` in between is not missed.
            idle.as_mut().enable();
            if self.get() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// A call is held in flight by a [`tiffin_metrics::CountGuard`], so it ends
/// however its answer goes (or does not).
impl Count for InFlight {
    fn up(&self) {
        self.start();
    }

    fn down(&self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn zero_resolves_when_the_last_call_ends_and_not_before() {
        let calls = InFlight::default();
        calls.start();
        calls.start();
        let zero = calls.zero();
        tokio::pin!(zero);
        calls.end();
        assert!(
            futures::poll!(zero.as_mut()).is_pending(),
            "one call is still in flight"
        );
        calls.end();
        tokio::time::timeout(Duration::from_secs(5), zero)
            .await
            .expect("zero() must wake when the count reaches zero");
        // Already idle: resolves at once.
        calls.zero().await;
    }
}
