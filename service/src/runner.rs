//! A [`Runner`]: how to load a [`Runnable`] in a runner worker, and how an
//! API handler calls it through the transport its API server installed.
//!
//! A handler calls a runner through a typed [`Method`] handle obtained once,
//! when the service is built:
//!
//! ```
//! use tiffin_service::{Json, Runnable, Runner, Service, Text};
//!
//! let nltk = Runner::new("nltk", || Runnable::new().method("is_positive", |t: String| !t.is_empty()));
//! let is_positive = nltk.method::<String, bool>("is_positive");
//! let service = Service::new("sentiment")
//!     .runner(&nltk)
//!     .api("analysis", Text, Json, move |text: String| {
//!         let call = is_positive.call(text); // the future borrows nothing
//!         async move { Ok(serde_json::json!({ "is_positive": call.await? })) }
//!     });
//! assert_eq!(service.apis()[0].route(), "/analysis");
//! ```
//!
//! What travels is the runner's name, the method's name and the encoded
//! input (`codec.rs`), so the API server neither knows nor cares what
//! language the runnable is written in.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use futures::stream::{BoxStream, Stream};
use parking_lot::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BoxFuture;
use crate::codec;
use crate::error::{CallError, RunnerError};
use crate::runnable::Runnable;
/// The encoded items of a streamed call as they arrive in the API server:
/// each `Ok` is one item; an `Err` ends the stream (before any item: the
/// call failed; after some: it failed part-way, and says so).
pub type EncodedStream = BoxStream<'static, Result<Vec<u8>, CallError>>;

/// How an API-server process reaches a runner's workers; installed by the API server.
#[doc(hidden)]
pub trait RunnerTransport: Send + Sync {
    /// Sends one call with a JSON payload and waits for the JSON result.
    fn call(&self, method: &str, payload: Vec<u8>) -> BoxFuture<Result<Vec<u8>, CallError>>;

    /// Starts one call of a stream method; items are pulled as the stream
    /// is polled, and dropping the stream cancels the call. A transport
    /// that cannot stream answers one error saying so.
    fn call_stream(&self, method: &str, payload: Vec<u8>) -> EncodedStream {
        let _ = payload;
        let refused = CallError::Failed(format!(
            "this runner's transport cannot stream (method '{method}'); see docs/streaming.md"
        ));
        Box::pin(futures::stream::once(async move { Err(refused) }))
    }
}

type LoadFn = dyn Fn() -> Result<Runnable, String> + Send + Sync;

struct RunnerInner {
    name: String,
    load: Box<LoadFn>,
    transport: OnceLock<Arc<dyn RunnerTransport>>,
    /// Every method name a handle was made for, each stored once for the
    /// life of the process (see [`Runner`]).
    methods: Mutex<Vec<&'static str>>,
}

impl RunnerInner {
    /// `name`, stored once: the same name always gives the same `&str`, so
    /// making handles in a loop stores nothing new.
    fn intern(&self, name: &str) -> &'static str {
        let mut methods = self.methods.lock();
        if let Some(known) = methods.iter().find(|m| **m == name) {
            return known;
        }
        let stored: &'static str = Box::leak(name.into());
        methods.push(stored);
        stored
    }
}

/// A named runner: how to load its [`Runnable`] (in a worker) and how to call
/// it (from an API handler).
///
/// A runner lives as long as the process, like the service that names it
/// (every process builds its service once, at start-up), so it is stored
/// once and never freed: a `Runner` and its [`Method`] handles are `Copy`,
/// and a handler's future can own one without a clone or a reference count.
#[derive(Clone, Copy)]
pub struct Runner {
    inner: &'static RunnerInner,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Runner {
    /// A runner named `name` whose workers build their model with `load`.
    pub fn new<F>(name: &str, load: F) -> Self
    where
        F: Fn() -> Runnable + Send + Sync + 'static,
    {
        Self::try_new(name, move || Ok(load()))
    }

    /// Like [`Runner::new`] for a loader that can fail (the worker exits with the message).
    pub fn try_new<F>(name: &str, load: F) -> Self
    where
        F: Fn() -> Result<Runnable, String> + Send + Sync + 'static,
    {
        let inner = RunnerInner {
            name: name.to_string(),
            load: Box::new(load),
            transport: OnceLock::new(),
            methods: Mutex::new(Vec::new()),
        };
        Self {
            inner: Box::leak(Box::new(inner)),
        }
    }

    /// The runner's name (`runner_name` label).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Builds the runnable; called once in each runner worker.
    pub fn load(&self) -> Result<Runnable, String> {
        (self.inner.load)()
    }

    /// Installs the transport that calls travel through; the API server does
    /// this once at start-up. Plumbing, not part of a service's API.
    #[doc(hidden)]
    pub fn connect(&self, transport: Arc<dyn RunnerTransport>) -> bool {
        self.inner.transport.set(transport).is_ok()
    }

    /// A typed handle to the method `name` taking `I` and answering `O`,
    /// obtained once when the service is built. It is `Copy`, and its
    /// [`Method::call`] returns a `'static` future, so a handler needs no
    /// clone of anything.
    pub fn method<I, O>(&self, name: &str) -> Method<I, O>
    where
        I: Serialize,
        O: DeserializeOwned + Send + 'static,
    {
        Method {
            runner: self.inner,
            name: self.inner.intern(name),
            types: PhantomData,
        }
    }

    /// Calls `method` by name and decodes its result: the untyped form of
    /// [`Runner::method`], for code that learns method names at run time.
    /// The name is not stored (a handle's is), so names that vary from call
    /// to call cost nothing that lasts.
    pub async fn call<I: Serialize, O: DeserializeOwned + Send + 'static>(
        &self,
        method: &str,
        input: I,
    ) -> Result<O, RunnerError> {
        self.inner.call(method, &input).await
    }
}

impl Runner {
    /// Calls `method` with a payload already encoded by the caller, and
    /// answers the method's encoded output: for handlers that are not Rust
    /// code (a Python handler calling a Python runnable), whose payloads the
    /// runner's codec never sees. Plumbing, not part of a service's API.
    #[doc(hidden)]
    pub fn call_raw(
        &self,
        method: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, RunnerError>> + Send + 'static + use<> {
        let sent = match self.inner.transport.get() {
            None => Err(RunnerError::NotConnected(self.inner.name.clone())),
            Some(transport) => Ok(transport.call(method, payload)),
        };
        async move { Ok(sent?.await?) }
    }
}

impl Runner {
    /// Starts a call of the stream method `method` with a payload already
    /// encoded by the caller: the stream form of [`Runner::call_raw`] (a
    /// Python handler iterating a Python runnable's generator). Items are
    /// pulled as the stream is polled, and dropping it cancels the call, as
    /// [`Method::call_stream`]'s. Plumbing, not part of a service's API.
    #[doc(hidden)]
    pub fn call_stream_raw(
        &self,
        method: &str,
        payload: Vec<u8>,
    ) -> BoxStream<'static, Result<Vec<u8>, RunnerError>> {
        match self.inner.transport.get() {
            None => {
                let e = RunnerError::NotConnected(self.inner.name.clone());
                futures::stream::once(async move { Err(e) }).boxed()
            }
            Some(transport) => transport
                .call_stream(method, payload)
                .map(|item| item.map_err(RunnerError::from))
                .boxed(),
        }
    }
}

impl RunnerInner {
    /// Encodes `input` and hands it to the transport now, so the future it
    /// returns borrows nothing; decodes the answer when it comes.
    fn call<I: Serialize, O: DeserializeOwned + Send + 'static>(
        &self,
        method: &str,
        input: &I,
    ) -> impl Future<Output = Result<O, RunnerError>> + Send + 'static + use<I, O> {
        let sent = match self.transport.get() {
            None => Err(RunnerError::NotConnected(self.name.clone())),
            Some(transport) => codec::encode(input)
                .map_err(|e| RunnerError::Codec(e.to_string()))
                .map(|payload| transport.call(method, payload)),
        };
        async move {
            let out = sent?.await?;
            codec::decode_owned(out).map_err(|e| RunnerError::Codec(e.to_string()))
        }
    }
}

/// A typed handle to one method of a runner: [`Runner::method`] makes it.
pub struct Method<I, O> {
    runner: &'static RunnerInner,
    name: &'static str,
    /// `fn(I) -> O`: the handle neither owns an `I` nor an `O`, so it is
    /// `Send`, `Sync` and `Copy` whatever they are.
    types: PhantomData<fn(I) -> O>,
}

impl<I, O> Clone for Method<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for Method<I, O> {}

impl<I, O> fmt::Debug for Method<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Method")
            .field("runner", &self.runner.name)
            .field("name", &self.name)
            .finish()
    }
}

impl<I: Serialize, O: DeserializeOwned + Send + 'static> Method<I, O> {
    /// The method's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Calls the method on a worker of the runner. The input is encoded
    /// now, so the returned future borrows nothing (`use<I, O>`: it does not
    /// capture `&self`'s lifetime): a handler can call through a captured
    /// handle and return the future.
    pub fn call(
        &self,
        input: I,
    ) -> impl Future<Output = Result<O, RunnerError>> + Send + 'static + use<I, O> {
        self.runner.call(self.name, &input)
    }

    /// Calls a stream method ([`Runnable::stream_method`]) on a worker of
    /// the runner: its outputs, each as soon as the worker sends it. The
    /// input is encoded now and the stream borrows nothing. The worker
    /// computes ahead of what was taken by a bounded window only, so a slow
    /// reader slows the model instead of filling memory; dropping the
    /// stream cancels the call (the worker stops at its next item). An
    /// `Err` item is the last.
    pub fn call_stream(
        &self,
        input: I,
    ) -> impl Stream<Item = Result<O, RunnerError>> + Send + 'static + use<I, O> {
        let started = match self.runner.transport.get() {
            None => Err(RunnerError::NotConnected(self.runner.name.clone())),
            Some(transport) => codec::encode(&input)
                .map_err(|e| RunnerError::Codec(e.to_string()))
                .map(|payload| transport.call_stream(self.name, payload)),
        };
        let items: BoxStream<'static, Result<Vec<u8>, RunnerError>> = match started {
            Ok(items) => items.map(|item| item.map_err(RunnerError::from)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        };
        items.map(|item| {
            item.and_then(|out| {
                codec::decode_owned(out).map_err(|e| RunnerError::Codec(e.to_string()))
            })
        })
    }
}
