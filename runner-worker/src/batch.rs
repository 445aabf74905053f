//! The dispatcher of a batchable method: groups concurrent calls into batches.
//!
//! Calls wait in a bounded queue; the dispatcher takes whatever is queued, up
//! to `max_batch_size`, runs the method once on the whole batch and answers
//! each caller with its own item. Under light load a batch is a single call
//! (no added latency); under load, calls that arrive while a batch runs form
//! the next batch. A full queue, or a call that has already waited longer
//! than `max_latency_ms`, is rejected as overloaded instead of queueing
//! forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use tiffin_shared::call::CallError;

/// A batch implementation: many JSON inputs in, as many outputs out.
pub type BatchFn = Arc<dyn Fn(Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, CallError> + Send + Sync>;

/// Called with each dispatched batch size.
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

struct Item {
    payload: Vec<u8>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<u8>, CallError>>,
}

/// Handle to a running dispatcher; clone it into every connection.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Item>,
}

/// Limits of one dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Largest batch handed to the method.
    pub max_batch_size: usize,
    /// A call older than this when its batch would start is rejected.
    pub max_latency: Duration,
    /// Most calls allowed to wait.
    pub queue_capacity: usize,
}

impl Dispatcher {
    /// Starts the dispatcher task for one method.
    pub fn spawn(method: BatchFn, limits: BatchLimits, observe: BatchObserver) -> Self {
        let (tx, rx) = mpsc::channel(limits.queue_capacity.max(1));
        tokio::spawn(dispatch(rx, method, limits, observe));
        Self { tx }
    }

    /// Queues one call and waits for its result.
    pub async fn call(&self, payload: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let (reply, rx) = oneshot::channel();
        let item = Item {
            payload,
            enqueued: Instant::now(),
            reply,
        };
        self.tx.try_send(item).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                CallError::Overloaded("batch queue is full".to_string())
            }
            mpsc::error::TrySendError::Closed(_) => {
                CallError::Unavailable("batch dispatcher stopped".to_string())
            }
        })?;
        rx.await
            .unwrap_or_else(|_| Err(CallError::Failed("batch dropped".to_string())))
    }
}

async fn dispatch(
    mut rx: mpsc::Receiver<Item>,
    method: BatchFn,
    limits: BatchLimits,
    observe: BatchObserver,
) {
    let max = limits.max_batch_size.max(1);
    let mut batch: Vec<Item> = Vec::with_capacity(max);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let (late, ready): (Vec<Item>, Vec<Item>) = batch
            .drain(..)
            .partition(|item| now.duration_since(item.enqueued) > limits.max_latency);
        for item in late {
            let _ = item.reply.send(Err(CallError::Overloaded(format!(
                "call waited more than max_latency_ms={}",
                limits.max_latency.as_millis()
            ))));
        }
        if ready.is_empty() {
            continue;
        }
        observe(ready.len());
        let (payloads, replies): (Vec<Vec<u8>>, Vec<_>) =
            ready.into_iter().map(|i| (i.payload, i.reply)).unzip();
        match method(payloads) {
            Ok(outputs) => {
                for (reply, out) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(out));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn limits(max: usize) -> BatchLimits {
        BatchLimits {
            max_batch_size: max,
            max_latency: Duration::from_secs(10),
            queue_capacity: 1000,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_calls_form_bounded_batches_in_order() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let method: BatchFn = Arc::new(|xs: Vec<Vec<u8>>| {
            Ok(xs
                .into_iter()
                .map(|mut x| {
                    x.push(b'!');
                    x
                })
                .collect())
        });
        let d = Dispatcher::spawn(
            method,
            limits(4),
            Arc::new(move |n| seen.lock().unwrap().push(n)),
        );
        let calls: Vec<_> = (0..10u8)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move { d.call(vec![i]).await })
            })
            .collect();
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap(), vec![i as u8, b'!']);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
        assert!(sizes.iter().any(|&n| n > 1), "{sizes:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn method_error_reaches_every_caller_of_the_batch() {
        let method: BatchFn = Arc::new(|_| Err(CallError::Failed("boom".into())));
        let d = Dispatcher::spawn(method, limits(8), Arc::new(|_| {}));
        let a = tokio::spawn({
            let d = d.clone();
            async move { d.call(vec![1]).await }
        });
        let b = tokio::spawn({
            let d = d.clone();
            async move { d.call(vec![2]).await }
        });
        assert_eq!(a.await.unwrap(), Err(CallError::Failed("boom".into())));
        assert_eq!(b.await.unwrap(), Err(CallError::Failed("boom".into())));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn full_queue_is_overloaded_not_blocking() {
        let method: BatchFn = Arc::new(|xs: Vec<Vec<u8>>| Ok(xs));
        let lim = BatchLimits {
            max_batch_size: 1,
            max_latency: Duration::from_secs(10),
            queue_capacity: 1,
        };
        let d = Dispatcher::spawn(method, lim, Arc::new(|_| {}));
        // Both calls are polled before the dispatcher task gets a turn on
        // this single thread, so the second one finds the queue full.
        let (first, second) = tokio::join!(d.call(vec![1]), d.call(vec![2]));
        assert_eq!(first.unwrap(), vec![1]);
        assert!(
            matches!(second, Err(CallError::Overloaded(_))),
            "{second:?}"
        );
    }
}
