//! A stream method served through the host, as an embedded runner serves it
//! (a worker process differs only in its sink: `serve.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use futures::StreamExt;
use tiffin_ipc::stream::STREAM_WINDOW;
use tiffin_service::{CallError, Runnable, Runner, Service};

use super::Gate;
use crate::Embedded;

/// Pulls of the `endless` method's iterator, and its count when dropped.
struct Pulls {
    pulled: Arc<AtomicUsize>,
    dropped: mpsc::Sender<usize>,
}

impl Iterator for Pulls {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        Some(self.pulled.fetch_add(1, Ordering::SeqCst))
    }
}

impl Drop for Pulls {
    fn drop(&mut self) {
        let _ = self.dropped.send(self.pulled.load(Ordering::SeqCst));
    }
}

/// An embedded runner with `count`, `fails_at` and `endless` stream methods
/// and a one-result `plain`; `endless` reports its drop on the returned channel.
fn embedded(name: &str) -> (Embedded, mpsc::Receiver<usize>) {
    let (dropped_tx, dropped) = mpsc::channel();
    let dropped_tx = std::sync::Mutex::new(dropped_tx);
    let runner = Runner::new(name, move || {
        let dropped = dropped_tx.lock().unwrap().clone();
        Runnable::new()
            .stream_method("count", |n: u32| 0..n)
            .try_stream_method("fails_at", |n: u32| {
                Ok::<_, String>((0..=n).map(move |i| {
                    if i == n {
                        Err(format!("failed at {i}"))
                    } else {
                        Ok(i)
                    }
                }))
            })
            .stream_method("endless", move |_: u32| Pulls {
                pulled: Arc::default(),
                dropped: dropped.clone(),
            })
            .method("plain", |n: u32| n)
    });
    let service = Service::new("stream-tests").runner(&runner);
    let host = Embedded::load(&service, name, &tiffin_config::Config::default(), 1).unwrap();
    (host, dropped)
}

fn call(host: &Embedded, method: &str, input: &str) -> tiffin_service::EncodedStream {
    let cx = crate::CallContext {
        request_id: "req-7".into(),
        ..Default::default()
    };
    host.call_stream(method.into(), input.as_bytes().to_vec(), cx)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_item_arrives_in_order_then_the_stream_ends() {
    let (host, _) = embedded("ordered");
    let items: Vec<_> = call(&host, "count", "40").collect().await;
    let expected: Vec<_> = (0..40).map(|i| Ok(i.to_string().into_bytes())).collect();
    assert_eq!(items, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_after_items_ends_the_stream_with_that_error() {
    let (host, _) = embedded("failing");
    let items: Vec<_> = call(&host, "fails_at", "2").collect().await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[1], Ok(b"1".to_vec()));
    assert_eq!(
        items[2],
        Err(CallError::Failed("failed at 2 (request id: req-7)".into()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_result_method_called_as_a_stream_is_refused() {
    let (host, _) = embedded("refusing");
    let items: Vec<_> = call(&host, "plain", "1").collect().await;
    assert!(
        matches!(&items[..], [Err(CallError::Failed(m))] if m.contains("not a stream")),
        "{items:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_stream_stops_the_model_within_one_window() {
    let (host, dropped) = embedded("cancelled");
    let mut items = call(&host, "endless", "0");
    for expected in 0..3 {
        let item = items.next().await.unwrap().unwrap();
        assert_eq!(item, expected.to_string().into_bytes());
    }
    drop(items);
    // The iterator is dropped once the producer sees the cancellation.
    let pulled = tokio::task::spawn_blocking(move || dropped.recv().unwrap())
        .await
        .unwrap();
    assert!(
        pulled <= 3 + STREAM_WINDOW as usize,
        "pulled {pulled} items for a reader that took 3"
    );
}

#[test]
fn a_gate_lets_through_its_window_then_one_item_per_credit_until_cancelled() {
    let gate = Gate::new(4);
    let (passed_tx, passed) = mpsc::channel();
    let producer = std::thread::spawn({
        let gate = gate.clone();
        move || {
            let mut n = 0;
            while gate.wait_for_room() {
                n += 1;
                passed_tx.send(n).unwrap();
            }
            n
        }
    });
    for expected in 1..=4 {
        assert_eq!(passed.recv().unwrap(), expected);
    }
    gate.grant(1);
    assert_eq!(passed.recv().unwrap(), 5);
    gate.cancel();
    // The producer only leaves its loop through the cancellation: had it
    // passed without a credit, its count would be higher.
    assert_eq!(producer.join().unwrap(), 5);
}
