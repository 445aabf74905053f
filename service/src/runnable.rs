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
//! | [`Runnable::raw_method`], [`Runnable::raw_batch_method`] | encoded bytes in and out | either |
//!
//! Every form ends in a [`MethodKind`] over encoded bytes: the typed ones
//! decode and encode around the user's function, the raw ones are for a
//! model that is not Rust code. A caller never sees the kind: it sends one
//! input and gets one output, and the worker's dispatcher forms batches.

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

/// A named method of a [`Runnable`], and how it is invoked: calls of a
/// `Batch` method may be grouped by the worker's dispatcher.
#[derive(Clone)]
pub enum MethodKind {
    /// One input, one output.
    Single(Arc<SingleFn>),
    /// A batch of inputs in, the same number of outputs out, in order.
    Batch(Arc<BatchFn>),
}

impl fmt::Debug for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MethodKind::Single(_) => "Single",
            MethodKind::Batch(_) => "Batch",
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

    /// Looks a method up by name.
    pub fn get(&self, name: &str) -> Option<&MethodKind> {
        self.methods.get(name)
    }

    /// Names and kinds of every method.
    pub fn methods(&self) -> impl Iterator<Item = (&str, &MethodKind)> {
        self.methods.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Runs one call of a method synchronously (batchable methods get a batch of one).
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
        }
    }
}
