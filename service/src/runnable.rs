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
//! | [`Runnable::stream_method`] | `Fn(I) -> impl IntoIterator<Item = O>` | stream |
//! | [`Runnable::try_stream_method`] | `Fn(I) -> Result<impl IntoIterator<Item = Result<O, E>>, E>` | stream |
//! | [`Runnable::raw_method`], [`Runnable::raw_batch_method`], [`Runnable::raw_stream_method`] | encoded bytes in and out | any |
//!
//! Every form ends in a [`MethodKind`] over encoded bytes: the typed ones
//! decode and encode around the user's function, the raw ones are for a
//! model that is not Rust code. A caller never sees a batch: it sends one
//! input and gets one output, and the worker's dispatcher forms batches.
//! A stream method is the one kind a caller must know: it answers a
//! sequence of outputs, pulled one at a time by the worker as the caller
//! takes them (`Method::call_stream`, docs/streaming.md), so it cannot be
//! called as a one-output method, nor a one-output method as a stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::CallError;

type SingleFn = dyn Fn(&[u8]) -> Result<Vec<u8>, CallError> + Send + Sync;
type BatchFn = dyn Fn(&[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> + Send + Sync;
type StreamFn = dyn Fn(&[u8]) -> Result<EncodedItems, CallError> + Send + Sync;

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
}

impl fmt::Debug for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MethodKind::Single(_) => "Single",
            MethodKind::Batch(_) => "Batch",
            MethodKind::Stream(_) => "Stream",
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
        let method = self
            .get(name)
            .ok_or_else(|| CallError::UnknownMethod(name.to_string()))?;
        match method {
            MethodKind::Single(f) => f(payload),
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
            MethodKind::Single(_) | MethodKind::Batch(_) => Err(CallError::Failed(format!(
                "method '{name}' answers one result, not a stream: call it with Method::call"
            ))),
        }
    }
}
