//! The dispatcher on tokio's paused clock. A [`Probe`] method reports every
//! batch it gets and holds it until the test releases it after advancing the
//! clock by the batch's duration, so which calls share a batch, and when
//! each one is answered, follow from the test's steps, never from timing.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::*;

const MS: Duration = Duration::from_millis(1);

/// A batch method the test holds: it reports each batch it gets, then
/// blocks until the test releases it.
struct Probe {
    batches: mpsc::UnboundedReceiver<Vec<Vec<u8>>>,
    release: std::sync::mpsc::Sender<()>,
}

type Answer = fn(&[&[u8]]) -> Result<Vec<Vec<u8>>, CallError>;

/// The method and its probe; the method answers with `answer` once released.
fn probe(answer: Answer) -> (BatchFn, Probe) {
    let (seen, batches) = mpsc::unbounded_channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    let method: BatchFn = Arc::new(move |xs: &[&[u8]]| {
        let _ = seen.send(xs.iter().map(|x| x.to_vec()).collect());
        // Blocks a thread of the blocking pool (see `held_dispatcher`); a
        // test that went away releases it by dropping the sender.
        let _ = released.lock().map(|r| r.recv());
        answer(xs)
    });
    (method, Probe { batches, release })
}

impl Probe {
    /// The next batch the method got; it is held in the method until [`Probe::finish`].
    async fn next(&mut self) -> Vec<Vec<u8>> {
        self.batches.recv().await.expect("the method is alive")
    }

    /// Lets the held batch return, `took` after it started on the paused clock.
    async fn finish(&self, took: Duration) {
        tokio::time::advance(took).await;
        self.release.send(()).expect("a batch is held");
    }
}

/// A dispatcher of a probe's method whose model starts at 1 ms a batch, so
/// every batch runs on the blocking pool (a held batch run inline would hold
/// the test's own thread) as long as every batch takes at least 1 ms.
fn held_dispatcher(method: BatchFn, limits: BatchLimits, observe: BatchObserver) -> Dispatcher {
    let model = LatencyModel::with_prior(MS, Duration::ZERO);
    Dispatcher::start(method, limits, model, observe, None)
}

fn echo_bang(xs: &[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> {
    Ok(xs.iter().map(|x| [x, &b"!"[..]].concat()).collect())
}

fn echo(xs: &[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> {
    Ok(xs.iter().map(|x| x.to_vec()).collect())
}

/// An observer that records every batch size.
fn sizes() -> (BatchObserver, Arc<Mutex<Vec<usize>>>) {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    (Arc::new(move |n| seen.lock().unwrap().push(n)), sizes)
}

/// A call's result and the (paused) instant it was delivered.
type Answered = (Result<Vec<u8>, CallError>, Instant);

/// Submits a call; the receiver gets its result and when it was delivered.
fn submit(d: &Dispatcher, call: Call) -> oneshot::Receiver<Answered> {
    let (tx, rx) = oneshot::channel();
    d.submit(
        call,
        Reply::new(move |result| {
            let _ = tx.send((result, Instant::now()));
        }),
    );
    rx
}

fn byte(i: u8) -> Call {
    Call::new(vec![i])
}

/// Submits call 0, then calls `more` while its batch (of one) is held in the
/// method; returns every call's receiver, in order, the first batch still held.
async fn arriving_while_the_first_batch_runs(
    d: &Dispatcher,
    probe: &mut Probe,
    more: Range<u8>,
) -> Vec<oneshot::Receiver<Answered>> {
    let mut replies = vec![submit(d, byte(0))];
    assert_eq!(probe.next().await, [[0]]);
    replies.extend(more.map(|i| submit(d, byte(i))));
    replies
}

#[test]
fn a_reply_delivers_once_and_a_dropped_one_still_answers() {
    type Delivered = Arc<Mutex<Vec<Result<Vec<u8>, CallError>>>>;
    let got: Delivered = Arc::new(Mutex::new(Vec::new()));
    let sink = |got: &Delivered| {
        let got = got.clone();
        Reply::new(move |r| got.lock().unwrap().push(r))
    };
    sink(&got).send(Ok(vec![7]));
    // The connection counts a call as finished only when its reply runs:
    // a reply lost with the dispatcher must still run.
    drop(sink(&got));
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], Ok(vec![7]));
    assert!(matches!(&got[1], Err(CallError::Failed(m)) if m.contains("dropped")));
}

#[tokio::test(start_paused = true)]
async fn calls_arriving_while_a_batch_runs_form_the_next_bounded_batches_in_order() {
    let (method, mut probe) = probe(echo_bang);
    let (observe, sizes) = sizes();
    let d = held_dispatcher(method, BatchLimits::new(4, 10 * 1000 * MS), observe);
    let replies = arriving_while_the_first_batch_runs(&d, &mut probe, 1..10).await;
    probe.finish(MS).await;
    let expected: [&[u8]; 3] = [&[1, 2, 3, 4], &[5, 6, 7, 8], &[9]];
    for batch in expected {
        let got = probe.next().await;
        assert_eq!(got, batch.iter().map(|&i| vec![i]).collect::<Vec<_>>());
        probe.finish(MS).await;
    }
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.await.unwrap().0, Ok(vec![i as u8, b'!']));
    }
    assert_eq!(*sizes.lock().unwrap(), [1, 4, 4, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_lone_call_goes_at_once_and_company_is_awaited_at_most_the_fixed_cost() {
    let (method, mut probe) = probe(echo);
    let model = LatencyModel::with_prior(5 * MS, Duration::ZERO);
    let (observe, _) = sizes();
    let limits = BatchLimits::new(8, 1000 * MS);
    let d = Dispatcher::start(method, limits, model, observe, None);
    let t0 = Instant::now();
    let lone = submit(&d, byte(0));
    assert_eq!(probe.next().await, [[0]]);
    assert_eq!(Instant::now(), t0, "a lone call does not wait");
    probe.finish(5 * MS).await;
    assert_eq!(lone.await.unwrap().0, Ok(vec![0]));

    // Two calls at once: the next is expected within the fixed cost (5 ms),
    // so the dispatcher waits for it, but no longer than that cost.
    let t1 = Instant::now();
    let pair = [submit(&d, byte(1)), submit(&d, byte(2))];
    assert_eq!(probe.next().await, [[1], [2]]);
    let waited = Instant::now() - t1;
    assert!(waited >= 5 * MS && waited < 6 * MS, "{waited:?}");
    probe.finish(5 * MS).await;
    for (i, reply) in (1..).zip(pair) {
        assert_eq!(reply.await.unwrap().0, Ok(vec![i]));
    }
}

#[tokio::test(start_paused = true)]
async fn errors_land_on_the_calls_that_caused_them() {
    // Odd inputs fail; a batch with one fails as a whole, then each call is retried alone.
    let (method, mut probe) = probe(|xs| {
        if xs.iter().any(|x| x[0] % 2 == 1) {
            Err(CallError::BadInput("odd".into()))
        } else {
            echo(xs)
        }
    });
    let (observe, _) = sizes();
    let d = held_dispatcher(method, BatchLimits::new(8, 10 * 1000 * MS), observe);
    let replies = arriving_while_the_first_batch_runs(&d, &mut probe, 1..6).await;
    probe.finish(MS).await;
    assert_eq!(probe.next().await, [[1], [2], [3], [4], [5]]);
    probe.finish(MS).await;
    for i in 1..6u8 {
        assert_eq!(probe.next().await, [[i]], "call {i} retried alone");
        probe.finish(MS).await;
    }
    for (i, reply) in (0u8..).zip(replies) {
        let got = reply.await.unwrap().0;
        if i % 2 == 1 {
            assert_eq!(got, Err(CallError::BadInput("odd".into())));
        } else {
            assert_eq!(got, Ok(vec![i]));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn method_error_reaches_every_caller_and_a_panic_is_contained() {
    // Both calls are handed over before the dispatcher runs, so they share a batch.
    let method: BatchFn = Arc::new(|_| Err(CallError::Failed("boom".into())));
    let d = Dispatcher::spawn(
        method,
        BatchLimits::new(8, 10 * 1000 * MS),
        Arc::new(|_| {}),
        None,
    );
    let (a, b) = tokio::join!(d.call(byte(1)), d.call(byte(2)));
    assert_eq!(a, Err(CallError::Failed("boom".into())));
    assert_eq!(b, Err(CallError::Failed("boom".into())));

    let method: BatchFn = Arc::new(|xs: &[&[u8]]| {
        if xs[0][0] == 0 {
            panic!("bad model");
        }
        echo(xs)
    });
    let d = Dispatcher::spawn(
        method,
        BatchLimits::new(8, 10 * 1000 * MS),
        Arc::new(|_| {}),
        None,
    );
    let r = d.call(byte(0)).await;
    assert!(
        matches!(&r, Err(CallError::Failed(m)) if m.contains("bad model")),
        "{r:?}"
    );
    // The dispatcher is still there.
    assert_eq!(d.call(byte(1)).await, Ok(vec![1]));
}

#[tokio::test(start_paused = true)]
async fn overload_is_rejected_fast_not_queued_forever() {
    // Batches of 1 that take 20 ms, a 50 ms budget.
    let (method, mut probe) = probe(echo);
    let (observe, _) = sizes();
    let d = held_dispatcher(method, BatchLimits::new(1, 50 * MS), observe);
    // Teach the model.
    for i in 0..3 {
        let reply = submit(&d, byte(i));
        probe.next().await;
        probe.finish(20 * MS).await;
        assert_eq!(reply.await.unwrap().0, Ok(vec![i]));
    }
    let started = Instant::now();
    let replies: Vec<_> = (0..20).map(|i| submit(&d, byte(i))).collect();
    // Two calls fit the budget (20 + 20 ms); the other 18 are refused at
    // once, before any batch of them ran.
    for i in 0..2 {
        assert_eq!(probe.next().await, [[i]]);
        probe.finish(20 * MS).await;
    }
    let (mut ok, mut overloaded) = (0, 0);
    for reply in replies {
        let (result, at) = reply.await.unwrap();
        match result {
            Ok(_) => {
                ok += 1;
                assert!(at - started <= 50 * MS, "served late: {:?}", at - started);
            }
            Err(CallError::Overloaded(_)) => {
                overloaded += 1;
                assert_eq!(at, started, "refused after waiting");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((ok, overloaded), (2, 18));
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_deadline_passes_in_the_queue_never_runs() {
    let (method, mut probe) = probe(echo);
    let (observe, sizes) = sizes();
    let d = held_dispatcher(method, BatchLimits::new(4, 1000 * MS), observe);
    let first = submit(&d, byte(0));
    assert_eq!(probe.next().await, [[0]]);
    let expiring = Call {
        expires: Some((Instant::now() + 5 * MS).into_std()),
        ..byte(1)
    };
    let (expiring, kept) = (submit(&d, expiring), submit(&d, byte(2)));
    probe.finish(10 * MS).await;
    assert_eq!(probe.next().await, [[2]]);
    probe.finish(10 * MS).await;
    assert_eq!(first.await.unwrap().0, Ok(vec![0]));
    assert_eq!(expiring.await.unwrap().0, Err(CallError::DeadlineExceeded));
    assert_eq!(kept.await.unwrap().0, Ok(vec![2]));
    assert_eq!(*sizes.lock().unwrap(), [1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_call_cancelled_in_the_queue_is_answered_at_once_and_never_takes_a_batch_slot() {
    let (method, mut probe) = probe(echo);
    let (observe, sizes) = sizes();
    let d = held_dispatcher(method, BatchLimits::new(2, 1000 * MS), observe);
    let first = submit(&d, byte(0));
    assert_eq!(probe.next().await, [[0]]);
    // Three calls queue behind the held batch; the middle one's caller leaves.
    let ticket = crate::ticket::CallTicket::new();
    let leaving = Call {
        ticket: Some(Arc::clone(&ticket)),
        ..byte(2)
    };
    let (kept, leaving, last) = (
        submit(&d, byte(1)),
        submit(&d, leaving),
        submit(&d, byte(3)),
    );
    assert_eq!(ticket.cancel(), Some(crate::ticket::CancelStage::Queued));
    // Answered while the batch ahead of it is still held.
    let (answer, _) = leaving.await.unwrap();
    assert_eq!(answer, Err(crate::ticket::cancelled_error()));
    probe.finish(10 * MS).await;
    // The next batch of two is the two calls still wanted.
    assert_eq!(probe.next().await, [[1], [3]]);
    probe.finish(10 * MS).await;
    assert_eq!(first.await.unwrap().0, Ok(vec![0]));
    assert_eq!(kept.await.unwrap().0, Ok(vec![1]));
    assert_eq!(last.await.unwrap().0, Ok(vec![3]));
    assert_eq!(*sizes.lock().unwrap(), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_call_cancelled_after_its_batch_started_is_counted_running_and_still_answered() {
    let (method, mut probe) = probe(echo);
    let (observe, _) = sizes();
    let d = held_dispatcher(method, BatchLimits::new(2, 1000 * MS), observe);
    let ticket = crate::ticket::CallTicket::new();
    let call = Call {
        ticket: Some(Arc::clone(&ticket)),
        ..byte(0)
    };
    let answered = submit(&d, call);
    assert_eq!(probe.next().await, [[0]]);
    assert_eq!(ticket.cancel(), Some(crate::ticket::CancelStage::Running));
    probe.finish(10 * MS).await;
    // The batch's result still reaches the reply (the host drops it).
    assert_eq!(answered.await.unwrap().0, Ok(vec![0]));
}
