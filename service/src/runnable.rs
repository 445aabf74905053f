//! A [`Runnable`]: the loaded model, as a table of named methods that take
//! and return encoded values (JSON, or a raw string: `codec.rs`). Built once in each runner worker by [`crate::Runner::load`].

use std::collections::HashMap;
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
    /// An empty runnable; add methods with [`Runnable::method`] and [`Runnable::batch_method`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a non-batchable method taking one `I` and returning one `O`.
    pub fn method<I, O, E, F>(mut self, name: &str, f: F) -> Self
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
        self.methods
            .insert(name.to_string(), MethodKind::Single(Arc::new(call)));
        self
    }

    /// Adds a batchable method: it receives every input of a batch and must
    /// return exactly one output per input, in order. Inputs are a list, so
    /// the batch dimension is always 0 (BentoML's default `batch_dim`).
    pub fn batch_method<I, O, E, F>(mut self, name: &str, f: F) -> Self
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
        self.methods
            .insert(name.to_string(), MethodKind::Batch(Arc::new(call)));
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
