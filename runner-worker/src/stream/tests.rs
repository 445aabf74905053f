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

/// The `where` method's items: the thread that pulled each, `slow_at`
/// taking longer than `pace::DEMOTE`; reports how many it pulled when dropped.
struct Where {
    n: u32,
    slow_at: u32,
    i: u32,
    dropped: mpsc::Sender<usize>,
}

impl Iterator for Where {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        if self.i == self.n {
            return None;
        }
        if self.i == self.slow_at {
            std::thread::sleep(crate::pace::DEMOTE * 2);
        }
        self.i += 1;
        Some(format!("{:?}", std::thread::current().id()))
    }
}

impl Drop for Where {
    fn drop(&mut self) {
        let _ = self.dropped.send(self.i as usize);
    }
}

/// An embedded runner with `count`, `fails_at`, `endless` and `where`
/// stream methods and a one-result `plain`; `endless` and `where` report
/// their drop on the returned channel.
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
            .stream_method("endless", {
                let dropped = dropped.clone();
                move |_: u32| Pulls {
                    pulled: Arc::default(),
                    dropped: dropped.clone(),
                }
            })
            .stream_method("where", move |(n, slow_at): (u32, u32)| Where {
                n,
                slow_at,
                i: 0,
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

/// The threads that pulled the items of one `where` stream of `n` items,
/// `slow_at` slow, read whole.
async fn threads(host: &Embedded, n: u32, slow_at: u32) -> Vec<String> {
    let input = format!("[{n}, {slow_at}]");
    call(host, "where", &input)
        .map(|item| thread_of(item.unwrap()))
        .collect()
        .await
}

/// The thread an item of `where` names.
fn thread_of(item: Vec<u8>) -> String {
    tiffin_service::codec::decode_owned(item).unwrap()
}

/// This thread, as `where` names it.
fn here() -> String {
    format!("{:?}", std::thread::current().id())
}

/// Streams `where` on the pool until the method has earned this thread (a
/// stream of it is pulled here whole), at most 40 streams of 300 items.
async fn earn_inline(host: &Embedded) {
    for _ in 0..40 {
        let pulled = threads(host, 300, u32::MAX).await;
        assert_eq!(pulled.len(), 300);
        if pulled.iter().all(|t| *t == here()) {
            return;
        }
    }
    let last = threads(host, 3, u32::MAX).await;
    panic!(
        "40 streams of cheap items never earned the caller's thread ({}): {last:?}",
        here()
    );
}

// A current-thread runtime: the thread that polls the stream is the test's.
#[tokio::test]
async fn a_cheap_stream_method_is_pulled_by_its_poller_once_it_earned_it() {
    let (host, _) = embedded("inline");
    let first = threads(&host, 20, u32::MAX).await;
    assert!(
        first.iter().all(|t| *t != here()),
        "a new method starts on the pool: {first:?}"
    );
    earn_inline(&host).await;
    let items: Vec<_> = call(&host, "count", "5").collect().await;
    assert_eq!(items.len(), 5, "another method is paced on its own");
}

#[tokio::test]
async fn a_slow_item_pulled_inline_hands_the_rest_to_the_pool_and_demotes_the_method() {
    let (host, _) = embedded("demoted");
    earn_inline(&host).await;
    let pulled = threads(&host, 20, 5).await;
    assert_eq!(pulled.len(), 20, "every item, and no error: {pulled:?}");
    // Pulled here up to the slow item 5 (or an earlier one, if the kernel
    // preempted its pull past the bound), then on the pool.
    let here_ones = pulled.iter().take_while(|t| **t == here()).count();
    assert!((1..=6).contains(&here_ones), "{pulled:?}");
    assert!(
        pulled[here_ones..].iter().all(|t| *t != here()),
        "{pulled:?}"
    );
    let next = threads(&host, 3, u32::MAX).await;
    assert!(
        next.iter().all(|t| *t != here()),
        "demoted: the next stream starts on the pool: {next:?}"
    );
}

#[tokio::test]
async fn an_inline_stream_pulls_nothing_ahead_and_dropped_it_is_counted_cancelled() {
    let (host, dropped) = embedded("inline-cancel");
    let pace = &host.host.stream_paces["where"];
    // A pull the kernel preempted past the bound would hand the stream to
    // the pool (which pulls ahead): such a round is done again, at most 5.
    for _ in 0..5 {
        earn_inline(&host).await;
        while dropped.try_recv().is_ok() {}
        let cancelled = host.host.cancelled.get();
        let mut items = call(&host, "where", "[1000000, 4294967295]");
        for _ in 0..3 {
            let item = items.next().await.unwrap().unwrap();
            assert_eq!(thread_of(item), here());
        }
        drop(items);
        if pace.earned() {
            assert_eq!(
                dropped.try_recv(),
                Ok(3),
                "the iterator is dropped with the stream, three items pulled"
            );
            assert_eq!(host.host.cancelled.get(), cancelled + 1.0);
            return;
        }
        // Handed over: the pool's thread drops the iterator once it sees
        // the cancel.
        let _ = dropped.recv_timeout(std::time::Duration::from_secs(10));
    }
    panic!("five rounds were each handed to the pool");
}

/// A sink that hands items to the test, with the gate that paces it.
struct TestSink {
    items: mpsc::Sender<Vec<u8>>,
    gate: Arc<Gate>,
}

impl super::ItemSink for TestSink {
    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn hand_over(&mut self, item: Vec<u8>) -> Result<(), super::Stopped> {
        self.items.send(item).map_err(|_| super::Stopped::Cancelled)
    }
}

/// The outcome `end` gets, waited for 10 s at most: a stream that never
/// ends fails its test instead of hanging it.
async fn within_bound(end: tokio::sync::oneshot::Receiver<super::Outcome>) -> super::Outcome {
    tokio::time::timeout(std::time::Duration::from_secs(10), end)
        .await
        .expect("the stream ended within 10 s")
        .expect("the stream's end was sent")
}

/// Starts a `where` stream as a worker process does for a cheap method
/// (`Host::call_stream` with `PullOn::CallerIfCheap`) with a window of `window`: its items, and
/// its outcome once it ended.
fn here_stream(
    host: &Embedded,
    n: u32,
    window: u32,
) -> (
    Arc<Gate>,
    mpsc::Receiver<Vec<u8>>,
    tokio::sync::oneshot::Receiver<super::Outcome>,
) {
    let gate = Gate::new(window);
    let (items_tx, items) = mpsc::channel();
    let (end_tx, end) = tokio::sync::oneshot::channel();
    let sink = TestSink {
        items: items_tx,
        gate: gate.clone(),
    };
    let cx = crate::CallContext::default();
    let input = format!("[{n}, {}]", u32::MAX).into_bytes();
    host.host.call_stream(
        "where".into(),
        input,
        cx,
        super::PullOn::CallerIfCheap,
        sink,
        move |o| {
            let _ = end_tx.send(o);
        },
    );
    (gate, items, end)
}

#[tokio::test]
async fn a_worker_pulls_a_cheap_stream_on_its_own_thread_and_waits_for_credits_without_one() {
    let (host, _) = embedded("here");
    earn_inline(&host).await;
    let (gate, items, end) = here_stream(&host, 10, 4);
    // The task runs when this thread yields: the window's four items, then
    // it waits for a credit (this runtime has one thread: the test's).
    tokio::task::yield_now().await;
    let first: Vec<_> = items.try_iter().map(thread_of).collect();
    assert_eq!(first, vec![here(); 4], "the window, pulled here");
    // Six items and one more credit: as on the pool, room comes before
    // each pull, the one that finds the end included.
    gate.grant(7);
    let outcome = within_bound(end).await;
    assert!(
        matches!(outcome, super::Outcome::Finished(10)),
        "{outcome:?}"
    );
    let rest: Vec<_> = items.try_iter().map(thread_of).collect();
    assert_eq!(rest, vec![here(); 6]);
}

#[tokio::test]
async fn a_cancel_ends_a_worker_stream_waiting_for_a_credit() {
    let (host, dropped) = embedded("here-cancel");
    earn_inline(&host).await;
    while dropped.try_recv().is_ok() {}
    let (gate, items, end) = here_stream(&host, 1000, 4);
    tokio::task::yield_now().await;
    assert_eq!(items.try_iter().count(), 4);
    let cancelled = host.host.cancelled.get();
    gate.cancel();
    let outcome = within_bound(end).await;
    assert!(
        matches!(outcome, super::Outcome::Cancelled(4)),
        "{outcome:?}"
    );
    assert_eq!(dropped.try_recv(), Ok(4), "the model's iterator, dropped");
    assert_eq!(host.host.cancelled.get(), cancelled + 1.0);
}
