//! A runner embedded in an API-server process (`runners.<name>.embedded`,
//! BentoML's word): its runnable is loaded in every API server, and a call
//! is a function call, with no socket, frame or second process.
//!
//! Everything else about the runner holds, because the call runs through
//! the same [`Host`] as in a worker process: the `bentoml_runner_*`
//! families with the same labels (the worker index is the API server's
//! index), the runnable's custom metrics, adaptive batching (a dispatcher
//! per API server), deadlines, spans, and the request id on a model's
//! error. A panic in the model is that call's error, and the process lives
//! on.
//!
//! ## The model thread, and the I/O thread for a cheap method
//!
//! A non-batchable method runs on a thread of its own per runner and API
//! server ([`ModelThread`]), fed by a bounded queue, one call at a time as
//! in a worker process. The API server's I/O threads only queue the call
//! and await its answer, so they keep answering other requests, `/livez`
//! and `/metrics` while a model computes or hangs, and the request's own
//! timer still fires: a hung model costs its callers a 504 at
//! `api_server.traffic.timeout`, never the process. A queued call whose
//! caller went away (the client hung up, or its timeout answered first) is
//! dropped without running.
//!
//! For a model that takes microseconds (`echo`, the VADER scorer) the two
//! thread switches of that hop cost more than the call. So a method whose
//! last [`CHEAP_STREAK`] calls on the model thread each took under
//! [`CHEAP`] runs on the I/O thread instead ([`Pace`]), one call of it at a
//! time (others meanwhile take the model thread); the first inline call
//! that takes longer than [`DEMOTE`] sends the method back to the model
//! thread for good. What that costs: a cheap method that suddenly hangs
//! holds one I/O thread, and that one call is not answered at its timeout;
//! the supervisor's hung-process check (which probes every API server)
//! restarts the API server if it stops answering. Choose worker processes
//! for a model that may hang (docs/models.md).
//!
//! A stream method streams here too ([`Embedded::call_stream`]): its
//! iterator is pulled on the blocking pool under the same credit window as
//! over a socket, so a slow client slows the model, and dropping the stream
//! stops it. What does not apply is
//! refused where it is asked for: a supervisor starts no worker for an
//! embedded runner, `tiffin scale` refuses it, and its configuration
//! cannot autoscale it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use std::time::{Duration, Instant};
use tiffin_config::Config;
use tiffin_ipc::stream::{ReceiverHooks, STREAM_WINDOW, StreamReceiver};

use tiffin_service::{CallError, EncodedStream, MethodKind, Service};

use crate::WorkerError;
use crate::host::{CallContext, Host, Single};
use crate::stream::{Gate, ItemSink, Stopped};

/// An embedded runner, loaded in this process.
#[derive(Clone)]
pub struct Embedded {
    host: Arc<Host>,
    model: ModelThread,
    /// How fast each non-batchable method has been (see [`Pace`]).
    paces: Arc<HashMap<String, Pace>>,
}

/// A method runs on the I/O thread once its calls on the model thread have
/// earned a streak of [`CHEAP_STREAK`]: each call under [`CHEAP`] adds one,
/// each slower one takes [`SLOW_PENALTY`] away (so about nine in ten must be
/// cheap; a loaded machine's preemptions do not reset it). For such a model
/// the two thread switches of the hop cost about as much as the call.
const CHEAP: Duration = Duration::from_micros(100);
/// See [`CHEAP`].
const SLOW_PENALTY: u32 = 8;
/// See [`CHEAP`].
const CHEAP_STREAK: u32 = 256;
/// A call on the I/O thread that takes longer than this sends its method
/// back to the model thread for good.
const DEMOTE: Duration = Duration::from_millis(2);

/// How fast one non-batchable method has been: whether it may run inline on
/// the API server's I/O thread (the module docs say when and what it costs).
#[derive(Default)]
struct Pace {
    /// Cheap calls on the model thread, less [`SLOW_PENALTY`] per slow one.
    streak: AtomicU32,
    /// An inline call took longer than [`DEMOTE`]: never inline again.
    demoted: AtomicBool,
    /// A call of this method runs inline now: at most one does at a time,
    /// so a model that starts to hang holds one I/O thread, never all.
    inline: AtomicBool,
}

impl Pace {
    /// Takes the one inline slot if the method has earned it.
    fn try_inline(&self) -> bool {
        self.streak.load(Ordering::Relaxed) >= CHEAP_STREAK
            && !self.demoted.load(Ordering::Relaxed)
            && !self.inline.swap(true, Ordering::Acquire)
    }

    /// Records a call that ran on the model thread for `took`; true when
    /// that call earned the method the I/O thread.
    fn ran_queued(&self, took: Duration) -> bool {
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
        cheap && before + 1 == CHEAP_STREAK && !self.demoted.load(Ordering::Relaxed)
    }
}

/// Calls that may wait for the model thread at once, beyond which a call
/// is refused as overloaded (503): the queue holds each waiting call's
/// input, so it must not grow without bound behind a hung model. Callers
/// give up at their deadline, so with a hung model the queue holds at most
/// what arrives within `api_server.traffic.timeout`, up to this bound.
const QUEUE_BOUND: usize = 4096;

/// One call waiting for the model thread.
struct Job {
    method: String,
    payload: Vec<u8>,
    cx: CallContext,
    answer: tokio::sync::oneshot::Sender<Result<Vec<u8>, CallError>>,
}

/// The thread that runs an embedded runner's non-batchable calls, one at a
/// time, in the order they came (see the module docs).
#[derive(Clone)]
struct ModelThread {
    queue: SyncSender<Job>,
}

impl ModelThread {
    /// Starts the thread of `host`; it ends when every [`Embedded`] handle
    /// is dropped (the queue's last sender).
    fn start(
        host: Arc<Host>,
        paces: Arc<HashMap<String, Pace>>,
    ) -> Result<ModelThread, WorkerError> {
        let (queue, jobs) = sync_channel(QUEUE_BOUND);
        let runner = host.runner.clone();
        // The model thread sees the API server's runtime, as the blocking
        // pool's threads did, for a model that reaches for it.
        let runtime = tokio::runtime::Handle::try_current().ok();
        std::thread::Builder::new()
            .name(format!("model-{}", host.runner))
            .spawn(move || {
                let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                run_jobs(&host, &paces, &jobs);
            })
            .map_err(|e| WorkerError::Load {
                runner,
                message: format!("cannot start the embedded runner's model thread: {e}"),
            })?;
        Ok(ModelThread { queue })
    }
}

/// The model thread's loop: each call in turn, skipping those whose caller
/// is gone.
fn run_jobs(host: &Arc<Host>, paces: &HashMap<String, Pace>, jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        if job.answer.is_closed() {
            tracing::debug!(
                runner = %host.runner,
                request_id = %job.cx.request_id,
                "a queued embedded call's caller went away; not run"
            );
            continue;
        }
        let answer = job.answer;
        let pace = paces.get_key_value(&job.method);
        let started = Instant::now();
        host.call(job.method, job.payload, job.cx, Single::Inline, move |r| {
            let _ = answer.send(r);
        });
        if let Some((method, pace)) = pace
            && pace.ran_queued(started.elapsed())
        {
            tracing::info!(
                runner = %host.runner,
                method = %method,
                "a cheap embedded method: its calls run on the I/O thread from now on"
            );
        }
    }
}

impl Embedded {
    /// Loads `runner` of `service` in API server `index`.
    pub fn load(
        service: &Service,
        runner: &str,
        config: &Config,
        index: usize,
    ) -> Result<Embedded, WorkerError> {
        let role = format!("api_server:{index}:{runner}");
        let host = Arc::new(Host::load(service, runner, config, index, &role)?);
        let paces: HashMap<String, Pace> = host
            .runnable
            .methods()
            .filter(|(name, kind)| !host.batches(name) && !matches!(kind, MethodKind::Stream(_)))
            .map(|(name, _)| (name.to_owned(), Pace::default()))
            .collect();
        let paces = Arc::new(paces);
        let model = ModelThread::start(Arc::clone(&host), Arc::clone(&paces))?;
        Ok(Embedded { host, model, paces })
    }

    /// The runner's name.
    pub fn name(&self) -> &str {
        &self.host.runner
    }

    /// Runs one call of `method`, refused if `cx.expires` has passed, and
    /// waits for its result.
    pub async fn call(
        &self,
        method: String,
        payload: Vec<u8>,
        cx: CallContext,
    ) -> Result<Vec<u8>, CallError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.host.batches(&method) {
            // The dispatcher only queues the call: no thread to hop to.
            self.host
                .call(method, payload, cx, Single::Inline, move |result| {
                    let _ = tx.send(result);
                });
        } else if let Some(pace) = self.paces.get(&method).filter(|p| p.try_inline()) {
            let started = Instant::now();
            self.host
                .call(method.clone(), payload, cx, Single::Inline, move |result| {
                    let _ = tx.send(result);
                });
            if started.elapsed() > DEMOTE {
                pace.demoted.store(true, Ordering::Relaxed);
                tracing::warn!(
                    runner = %self.host.runner,
                    method,
                    took_ms = started.elapsed().as_millis() as u64,
                    "a call on the I/O thread was slow; the method runs on the model thread from now on"
                );
            }
            pace.inline.store(false, Ordering::Release);
        } else {
            let job = Job {
                method,
                payload,
                cx,
                answer: tx,
            };
            match self.model.queue.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    return Err(CallError::Overloaded(format!(
                        "{QUEUE_BOUND} calls already wait for the embedded runner '{}'",
                        self.host.runner
                    )));
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(CallError::Unavailable(format!(
                        "the embedded runner '{}' has stopped",
                        self.host.runner
                    )));
                }
            }
        }
        rx.await.unwrap_or_else(|_| {
            Err(CallError::Failed(
                "the embedded runner dropped the call".into(),
            ))
        })
    }
}

impl Embedded {
    /// Starts one call of the stream method `method` (refused if
    /// `cx.expires` has passed): its items as the model yields them, at
    /// most [`STREAM_WINDOW`] ahead of what was taken; dropping the stream
    /// cancels the call before its next item.
    pub fn call_stream(&self, method: String, payload: Vec<u8>, cx: CallContext) -> EncodedStream {
        let gate = Gate::new(STREAM_WINDOW);
        let (items_tx, items) = tokio::sync::mpsc::unbounded_channel();
        let (end_tx, end) = tokio::sync::oneshot::channel();
        let sink = ChannelSink {
            items: items_tx,
            gate: gate.clone(),
        };
        self.host
            .call_stream(method, payload, cx, sink, move |outcome| {
                let _ = end_tx.send(outcome.into_result());
            });
        let end = Box::pin(async move {
            end.await.unwrap_or_else(|_| {
                Err(CallError::Failed(
                    "the embedded runner dropped the stream".into(),
                ))
            })
        });
        let (granted, cancelled) = (gate.clone(), gate);
        let hooks = ReceiverHooks {
            credit: Box::new(move |n| granted.grant(n)),
            dropped: Box::new(move |ended| {
                if !ended {
                    cancelled.cancel();
                }
            }),
        };
        Box::pin(StreamReceiver::new(STREAM_WINDOW, None, items, end, hooks))
    }
}

/// A stream's items, handed to the API handler in this process.
struct ChannelSink {
    items: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    gate: std::sync::Arc<Gate>,
}

impl ItemSink for ChannelSink {
    fn room(&mut self) -> bool {
        self.gate.wait_for_room()
    }

    fn send(&mut self, item: Vec<u8>) -> Result<(), Stopped> {
        self.items.send(item).map_err(|_| Stopped::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_goes_inline_after_a_streak_of_cheap_calls_and_one_call_at_a_time() {
        let pace = Pace::default();
        for _ in 1..CHEAP_STREAK {
            assert!(!pace.ran_queued(Duration::from_micros(1)));
            assert!(!pace.try_inline());
        }
        assert!(
            pace.ran_queued(Duration::from_micros(1)),
            "the streak's last call says so"
        );
        assert!(pace.try_inline());
        assert!(
            !pace.try_inline(),
            "a second call while one runs inline is queued"
        );
        pace.inline.store(false, Ordering::Release);
        assert!(pace.try_inline());
    }

    #[test]
    fn one_slow_call_resets_the_streak_and_a_demoted_method_never_goes_inline() {
        let pace = Pace::default();
        for _ in 0..CHEAP_STREAK - 1 {
            pace.ran_queued(Duration::from_micros(1));
        }
        assert!(
            !pace.ran_queued(CHEAP),
            "a call of CHEAP or more is not cheap"
        );
        assert!(!pace.try_inline());
        for _ in 0..CHEAP_STREAK {
            pace.ran_queued(Duration::from_micros(1));
        }
        pace.demoted.store(true, Ordering::Relaxed);
        assert!(!pace.try_inline());
    }
}
