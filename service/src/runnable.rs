//! A [`Runnable`]: the loaded model, as a table of named methods that take
//! and return encoded values (JSON, or a raw string: `codec.rs`). Built once
//! in each runner worker by [`crate::Runner::load`].
//!
//! Registration says what a method is, so the worker knows how to run it:
//!
//! | registration | the model's function | kind |
//! |---|---|---|
//! | [`Runnable::method`] | `Fn(I) -> O` | one call |
//! | [`Runnable::try_method`] | `Fn(I) -> Result<O, E>` | one call |
//! | [`Runnable::batch_method`] | `Fn(Vec<I>) -> Vec<O>` | batch |
//! | [`Runnable::try_batch_method`] | `Fn(Vec<I>) -> Result<Vec<O>, E>` | batch |
//! | [`Runnable::cancellable_method`] | `Fn(I, &Cancellation) -> O` | one call, told when its caller leaves |
//! | [`Runnable::try_cancellable_method`] | `Fn(I, &Cancellation) -> Result<O, E>` | one call, told when its caller leaves |
//! | [`Runnable::stream_method`] | `Fn(I) -> impl IntoIterator<Item = O>` | stream |
//! | [`Runnable::try_stream_method`] | `Fn(I) -> Result<impl IntoIterator<Item = Result<O, E>>, E>` | stream |
//! | [`Runnable::raw_method`], [`Runnable::raw_batch_method`], [`Runnable::raw_stream_method`], [`Runnable::raw_cancellable_method`] | encoded bytes in and out | any |
//!
//! Every form ends in a [`MethodKind`] over encoded bytes: the typed ones
//! decode and encode around the user's function, the raw ones are for a
//! model that is not Rust code. A caller never sees a batch: it sends one
//! input and gets one output, and the worker's dispatcher forms batches.
//! A stream method is the one kind a caller must know: it answers a
//! sequence of outputs, pulled one at a time by the worker as the caller
//! takes them (`Method::call_stream`, docs/streaming.md), so it cannot be
//! called as a one-output method, nor a one-output method as a stream.
//!
//! A caller that goes away (its HTTP client hung up, its gRPC call was
//! cancelled) cancels its call: a call still queued in the worker never
//! runs, and a running *cancellable* method sees its [`Cancellation`] turn
//! ([`Cancellation::is_cancelled`], [`Cancellation::wait_timeout`]) and may
//! return early; whatever it returns then is dropped. Every other kind runs
//! to its end once started (a stream stops before its next item).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::CallError;

type SingleFn = dyn Fn(&[u8]) -> Result<Vec<u8>, CallError> + Send + Sync;
type BatchFn = dyn Fn(&[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> + Send + Sync;
type StreamFn = dyn Fn(&[u8]) -> Result<EncodedItems, CallError> + Send + Sync;
type CancellableFn = dyn Fn(&[u8], &Cancellation) -> Result<Vec<u8>, CallError> + Send + Sync;

/// The encoded outputs of one call of a stream method, in order. The worker
/// pulls the next one only when the caller has room for it, and stops
/// pulling when the caller goes away: the model's work for an item happens
/// in `next`, so a stream nobody reads costs nothing more. An `Err` item
/// ends the stream with that error, after the items before it.
pub type EncodedItems = Box<dyn Iterator<Item = Result<Vec<u8>, CallError>> + Send>;

/// A named method of a [`Runnable`], and how it is invoked: calls of a
/// `Batch` method may be grouped by the worker's dispatcher.
#[derive(Clone)]
pub enum MethodKind {
    /// One input, one output.
    Single(Arc<SingleFn>),
    /// A batch of inputs in, the same number of outputs out, in order.
    Batch(Arc<BatchFn>),
    /// One input, a sequence of outputs, each sent as soon as it exists.
    Stream(Arc<StreamFn>),
    /// One input, one output, and the call's [`Cancellation`]: the method
    /// may stop early once its caller went away.
    Cancellable(Arc<CancellableFn>),
}

impl fmt::Debug for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MethodKind::Single(_) => "Single",
            MethodKind::Batch(_) => "Batch",
            MethodKind::Stream(_) => "Stream",
            MethodKind::Cancellable(_) => "Cancellable",
        })
    }
}

fn decode_input<I: DeserializeOwned>(bytes: &[u8]) -> Result<I, CallError> {
    codec::decode(bytes).map_err(|e| CallError::BadInput(e.to_string()))
}

fn encode_output<O: Serialize>(out: &O) -> Result<Vec<u8>, CallError> {
    codec::encode(out).map_err(|e| CallError::Failed(format!("cannot encode output: {e}")))
}

/// A loaded model: a table of named methods, built in the runner worker.
#[derive(Default, Clone, Debug)]
pub struct Runnable {
    methods: HashMap<String, MethodKind>,
}

impl Runnable {
    /// An empty runnable; add methods with [`Runnable::method`],
    /// [`Runnable::try_method`], [`Runnable::batch_method`] and
    /// [`Runnable::try_batch_method`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a method that cannot fail: one `I` in, one `O` out.
    ///
    /// For a model that can fail, use [`Runnable::try_method`]: a closure
    /// returning a `Result` here would send the `Result` itself as the answer.
    pub fn method<I, O, F>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(I) -> O + Send + Sync + 'static,
    {
        self.try_method(name, move |input: I| Ok::<O, Infallible>(f(input)))
    }

    /// Adds a method that can fail: its error's message becomes the runner
    /// error (HTTP 500 with the message, as a Python exception in a BentoML
    /// runnable does).
    pub fn try_method<I, O, E, F>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        E: fmt::Display,
        F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
    {
        let call = move |bytes: &[u8]| {
            let input = decode_input::<I>(bytes)?;
            let out = f(input).map_err(|e| CallError::Failed(e.to_string()))?;
            encode_output(&out)
        };
        self.raw_method(name, call)
    }

    /// Adds a batchable method that cannot fail: it receives every input of
    /// a batch and returns exactly one output per input, in order. Inputs
    /// are a list, so the batch dimension is always 0 (BentoML's default
    /// `batch_dim`). Callers still send one input and get one output: the
    /// worker's dispatcher forms the batches.
    pub fn batch_method<I, O, F>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(Vec<I>) -> Vec<O> + Send + Sync + 'static,
    {
        self.try_batch_method(name, move |inputs: Vec<I>| {
            Ok::<Vec<O>, Infallible>(f(inputs))
        })
    }

    /// Like [`Runnable::batch_method`] for a model that can fail: an error
    /// fails the batch, and the dispatcher then retries each call alone so
    /// one bad input fails only its own call.
    pub fn try_batch_method<I, O, E, F>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        E: fmt::Display,
        F: Fn(Vec<I>) -> Result<Vec<O>, E> + Send + Sync + 'static,
    {
        let call = move |inputs: &[&[u8]]| {
            let n = inputs.len();
            let decoded = inputs
                .iter()
                .map(|b| decode_input::<I>(b))
                .collect::<Result<Vec<I>, _>>()?;
            let outs = f(decoded).map_err(|e| CallError::Failed(e.to_string()))?;
            if outs.len() != n {
                return Err(CallError::Failed(format!(
                    "batch method returned {} outputs for {n} inputs",
                    outs.len()
                )));
            }
            outs.iter().map(encode_output).collect()
        };
        self.raw_batch_method(name, call)
    }

    /// Adds a method that takes and answers encoded bytes (the runner
    /// codec's, `codec.rs`) as they travel, for a runnable that is not Rust
    /// code (an interpreter, another runtime): the worker and the API server
    /// treat it like any other method, since neither looks inside a payload.
    pub fn raw_method<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(&[u8]) -> Result<Vec<u8>, CallError> + Send + Sync + 'static,
    {
        self.methods
            .insert(name.to_string(), MethodKind::Single(Arc::new(f)));
        self
    }

    /// The batchable form of [`Runnable::raw_method`]: one encoded output
    /// per encoded input, in order.
    pub fn raw_batch_method<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(&[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> + Send + Sync + 'static,
    {
        self.methods
            .insert(name.to_string(), MethodKind::Batch(Arc::new(f)));
        self
    }

    /// Adds a stream method that cannot fail: one `I` in, a sequence of `O`
    /// out. The iterator is pulled one item at a time on the worker's
    /// blocking pool, as the caller takes the items, so each item's work
    /// belongs in `next` (a token-by-token generator): the first item
    /// travels while the second is computed.
    pub fn stream_method<I, O, It, F>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize + 'static,
        It: IntoIterator<Item = O>,
        It::IntoIter: Send + 'static,
        F: Fn(I) -> It + Send + Sync + 'static,
    {
        self.try_stream_method(name, move |input: I| {
            Ok::<_, Infallible>(f(input).into_iter().map(Ok::<O, Infallible>))
        })
    }

    /// Adds a stream method that can fail before its first item (the
    /// outer `Result`, an error like [`Runnable::try_method`]'s) or at any
    /// item (the stream ends with that error after the items before it;
    /// the client is told, not silently cut off).
    pub fn try_stream_method<I, O, E, It, F>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize + 'static,
        E: fmt::Display + 'static,
        It: IntoIterator<Item = Result<O, E>>,
        It::IntoIter: Send + 'static,
        F: Fn(I) -> Result<It, E> + Send + Sync + 'static,
    {
        let call = move |bytes: &[u8]| -> Result<EncodedItems, CallError> {
            let input = decode_input::<I>(bytes)?;
            let items = f(input).map_err(|e| CallError::Failed(e.to_string()))?;
            let encoded = items.into_iter().map(|item| match item {
                Ok(out) => encode_output(&out),
                Err(e) => Err(CallError::Failed(e.to_string())),
            });
            Ok(Box::new(encoded))
        };
        self.raw_stream_method(name, call)
    }

    /// The stream form of [`Runnable::raw_method`]: encoded input in, an
    /// iterator of encoded outputs out.
    pub fn raw_stream_method<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(&[u8]) -> Result<EncodedItems, CallError> + Send + Sync + 'static,
    {
        self.methods
            .insert(name.to_string(), MethodKind::Stream(Arc::new(f)));
        self
    }

    /// Adds a method that cannot fail and is told when its caller goes
    /// away: one `I` in, one `O` out, and the call's [`Cancellation`],
    /// which a long computation checks between steps (or waits on, with
    /// [`Cancellation::wait_timeout`]) to stop early. What it returns once
    /// cancelled is dropped: nobody waits for it.
    pub fn cancellable_method<I, O, F>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(I, &Cancellation) -> O + Send + Sync + 'static,
    {
        self.try_cancellable_method(name, move |input: I, cancel: &Cancellation| {
            Ok::<O, Infallible>(f(input, cancel))
        })
    }

    /// Like [`Runnable::cancellable_method`] for a model that can fail (an
    /// error as [`Runnable::try_method`]'s); [`Cancellation::check`]'s
    /// error converts, so a step can be `cancel.check()?`.
    pub fn try_cancellable_method<I, O, E, F>(self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        E: fmt::Display,
        F: Fn(I, &Cancellation) -> Result<O, E> + Send + Sync + 'static,
    {
        let call = move |bytes: &[u8], cancel: &Cancellation| {
            let input = decode_input::<I>(bytes)?;
            let out = f(input, cancel).map_err(|e| CallError::Failed(e.to_string()))?;
            encode_output(&out)
        };
        self.raw_cancellable_method(name, call)
    }

    /// The cancellable form of [`Runnable::raw_method`].
    pub fn raw_cancellable_method<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(&[u8], &Cancellation) -> Result<Vec<u8>, CallError> + Send + Sync + 'static,
    {
        self.methods
            .insert(name.to_string(), MethodKind::Cancellable(Arc::new(f)));
        self
    }

    /// Looks a method up by name.
    pub fn get(&self, name: &str) -> Option<&MethodKind> {
        self.methods.get(name)
    }

    /// Names and kinds of every method.
    pub fn methods(&self) -> impl Iterator<Item = (&str, &MethodKind)> {
        self.methods.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Runs one call of a method synchronously (batchable methods get a
    /// batch of one). A stream method is refused: its outputs are many.
    pub fn call(&self, name: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        self.call_cancellable(name, payload, &Cancellation::new())
    }

    /// As [`Runnable::call`], with the call's cancellation: a cancellable
    /// method is handed `cancel`, the other kinds run as with `call`.
    pub fn call_cancellable(
        &self,
        name: &str,
        payload: &[u8],
        cancel: &Cancellation,
    ) -> Result<Vec<u8>, CallError> {
        let method = self
            .get(name)
            .ok_or_else(|| CallError::UnknownMethod(name.to_string()))?;
        match method {
            MethodKind::Single(f) => f(payload),
            MethodKind::Cancellable(f) => f(payload, cancel),
            MethodKind::Batch(f) => {
                let mut out = f(&[payload])?;
                out.pop()
                    .ok_or_else(|| CallError::Failed("empty batch output".into()))
            }
            MethodKind::Stream(_) => Err(CallError::Failed(format!(
                "method '{name}' streams its results: call it as a stream (Method::call_stream)"
            ))),
        }
    }

    /// Starts one call of a stream method: its items, not yet computed.
    /// A method of another kind is refused: it answers one output.
    pub fn call_stream(&self, name: &str, payload: &[u8]) -> Result<EncodedItems, CallError> {
        let method = self
            .get(name)
            .ok_or_else(|| CallError::UnknownMethod(name.to_string()))?;
        match method {
            MethodKind::Stream(f) => f(payload),
            MethodKind::Single(_) | MethodKind::Batch(_) | MethodKind::Cancellable(_) => {
                Err(CallError::Failed(format!(
                    "method '{name}' answers one result, not a stream: call it with Method::call"
                )))
            }
        }
    }
}

/// A call's cancellation, as a cancellable method sees it
/// ([`Runnable::cancellable_method`]): it turns once, when the call's caller
/// went away (the HTTP client hung up, the gRPC call was cancelled), and
/// never turns back. Cheap to clone; every clone is the same token.
#[derive(Clone, Default)]
pub struct Cancellation(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    /// Read without the lock by [`Cancellation::is_cancelled`].
    cancelled: AtomicBool,
    /// Held to wait for, and to announce, the turn; holds what runs at
    /// the turn ([`Cancellation::on_cancel`]).
    lock: Mutex<Vec<OnCancel>>,
    turned: Condvar,
}

/// What [`Cancellation::on_cancel`] runs when the token turns.
type OnCancel = Box<dyn FnOnce() + Send>;

/// The error of [`Cancellation::check`]: the caller went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the call was cancelled by its caller")]
pub struct Cancelled;

impl Cancellation {
    /// A token that has not turned.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the call's caller went away.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// `Err(Cancelled)` once the caller went away, for `?` between the
    /// steps of a long computation.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Waits (blocking the thread) until the caller goes away or `limit`
    /// has passed, whichever is first; `true` if it went away. A model
    /// that waits on something slow (a device, a remote) waits here in
    /// slices instead of sleeping, so a cancel wakes it at once.
    pub fn wait_timeout(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_cancelled() {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match self.0.turned.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Runs `f` once when the token turns (at once if it has turned), on
    /// the thread that turns it: the worker's, which serves other calls,
    /// so `f` must be quick and never wait. For a method that cannot poll
    /// the token itself, e.g. one running in an interpreter that `f` can
    /// interrupt (`python/src/host.rs`).
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) {
        let mut hooks = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_cancelled() {
            drop(hooks);
            f();
        } else {
            hooks.push(Box::new(f));
        }
    }

    /// Turns the token: the worker calls this when the caller went away.
    pub fn cancel(&self) {
        // Set under the lock, so a waiter between its check and its wait
        // cannot miss the notification.
        let mut guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.0.cancelled.store(true, Ordering::Release);
        self.0.turned.notify_all();
        let hooks = std::mem::take(&mut *guard);
        drop(guard);
        for f in hooks {
            f();
        }
    }
}

impl fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancellation")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancellable_method_sees_the_token_it_is_called_with() {
        let r = Runnable::new().try_cancellable_method("steps", |n: u32, cancel: &Cancellation| {
            let mut done = 0;
            for _ in 0..n {
                cancel.check()?;
                done += 1;
            }
            Ok::<u32, Cancelled>(done)
        });
        assert!(matches!(r.get("steps"), Some(MethodKind::Cancellable(_))));
        // Called plainly, its token never turns.
        assert_eq!(r.call("steps", b"3").unwrap(), b"3");
        let cancel = Cancellation::new();
        cancel.cancel();
        let err = r.call_cancellable("steps", b"3", &cancel).unwrap_err();
        assert_eq!(
            err,
            CallError::Failed("the call was cancelled by its caller".into())
        );
        // Not a stream.
        assert!(r.call_stream("steps", b"3").is_err());
    }

    #[test]
    fn other_kinds_ignore_the_token() {
        let r = Runnable::new().method("double", |x: u32| x * 2);
        let cancel = Cancellation::new();
        cancel.cancel();
        assert_eq!(r.call_cancellable("double", b"4", &cancel).unwrap(), b"8");
    }

    #[test]
    fn wait_timeout_wakes_when_cancelled_from_another_thread() {
        let cancel = Cancellation::new();
        assert!(!cancel.wait_timeout(Duration::from_millis(1)));
        let other = cancel.clone();
        let waiter = std::thread::spawn(move || other.wait_timeout(Duration::from_secs(600)));
        cancel.cancel();
        assert!(waiter.join().unwrap(), "the waiter saw the cancel");
        assert!(cancel.is_cancelled() && cancel.check().is_err());
    }

    #[test]
    fn on_cancel_runs_once_at_the_turn_or_at_once_when_turned_already() {
        use std::sync::atomic::AtomicUsize;
        let ran = Arc::new(AtomicUsize::new(0));
        let cancel = Cancellation::new();
        let counted = ran.clone();
        // A hook may use the token: it runs outside the token's lock.
        let token = cancel.clone();
        cancel.on_cancel(move || {
            assert!(token.is_cancelled());
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 0, "not before the turn");
        cancel.cancel();
        cancel.cancel();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "once, at the turn");
        let counted = ran.clone();
        cancel.on_cancel(move || {
            counted.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 11, "at once, once turned");
    }
}
