//! The service model users write: a [`Service`] names its [`Runner`]s and its
//! APIs; a [`Runnable`] holds the model and its named methods.
//!
//! The same `Service` value is built in every process (the binary re-executes
//! itself), but each process uses a different part of it: runner workers call
//! [`Runner::load`] to build the `Runnable`, API servers run the API handlers,
//! and inside an API handler [`Runner::call`] travels over IPC to a worker.
//! Inputs and outputs of runner methods are serde values, carried as JSON so
//! any `Serialize` type (including `serde_json::Value`) works.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::call::CallError;

/// A boxed, sendable future, as stored in handler tables.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

// ---------------------------------------------------------------- errors

/// An error an API handler returns: becomes an HTTP status with a JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Human-readable message, sent as `{"error": message}`.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400: the request body is not acceptable input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    /// 500: the handler or the model failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// 503: the service cannot take the request now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
}

/// Why a runner call from an API handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    /// The call reached a worker and failed there (or could not be delivered).
    #[error(transparent)]
    Call(#[from] CallError),
    /// This process has no connection to the runner (e.g. called inside a runner worker).
    #[error("runner '{0}' is not reachable from this process")]
    NotConnected(String),
    /// The input could not be encoded or the output decoded.
    #[error("runner value conversion failed: {0}")]
    Codec(String),
}

impl From<RunnerError> for ApiError {
    fn from(e: RunnerError) -> Self {
        let status = match &e {
            RunnerError::Call(
                CallError::Overloaded(_) | CallError::Unavailable(_) | CallError::Draining,
            ) => 503,
            RunnerError::NotConnected(_) => 503,
            RunnerError::Call(CallError::BadInput(_)) => 400,
            _ => 500,
        };
        ApiError::new(status, e.to_string())
    }
}

// ---------------------------------------------------------------- runnable

type SingleFn = dyn Fn(&[u8]) -> Result<Vec<u8>, CallError> + Send + Sync;
type BatchFn = dyn Fn(&[&[u8]]) -> Result<Vec<Vec<u8>>, CallError> + Send + Sync;

/// How a method is invoked.
#[derive(Clone)]
pub enum MethodKind {
    /// One input, one output.
    Single(Arc<SingleFn>),
    /// A batch of inputs in, the same number of outputs out, in order.
    Batch(Arc<BatchFn>),
}

/// A named method of a [`Runnable`].
#[derive(Clone)]
pub struct Method {
    /// Whether calls may be grouped into batches by the worker's dispatcher.
    pub batchable: bool,
    /// Batch dimension (informational, as in BentoML; inputs are a list).
    pub batch_dim: usize,
    /// The implementation.
    pub kind: MethodKind,
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Method")
            .field("batchable", &self.batchable)
            .finish()
    }
}

fn decode_input<I: DeserializeOwned>(bytes: &[u8]) -> Result<I, CallError> {
    serde_json::from_slice(bytes).map_err(|e| CallError::BadInput(e.to_string()))
}

fn encode_output<O: Serialize>(out: &O) -> Result<Vec<u8>, CallError> {
    serde_json::to_vec(out).map_err(|e| CallError::Failed(format!("cannot encode output: {e}")))
}

/// A loaded model: a table of named methods, built in the runner worker.
#[derive(Default, Clone, Debug)]
pub struct Runnable {
    methods: HashMap<String, Method>,
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
        self.methods.insert(
            name.to_string(),
            Method {
                batchable: false,
                batch_dim: 0,
                kind: MethodKind::Single(Arc::new(call)),
            },
        );
        self
    }

    /// Adds a batchable method: it receives every input of a batch and must
    /// return exactly one output per input, in order.
    pub fn batch_method<I, O, E, F>(mut self, name: &str, batch_dim: usize, f: F) -> Self
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
        self.methods.insert(
            name.to_string(),
            Method {
                batchable: true,
                batch_dim,
                kind: MethodKind::Batch(Arc::new(call)),
            },
        );
        self
    }

    /// Looks a method up by name.
    pub fn get(&self, name: &str) -> Option<&Method> {
        self.methods.get(name)
    }

    /// Names and specs of every method.
    pub fn methods(&self) -> impl Iterator<Item = (&str, &Method)> {
        self.methods.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Runs one call of a method synchronously (batchable methods get a batch of one).
    pub fn call(&self, name: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        let method = self
            .get(name)
            .ok_or_else(|| CallError::UnknownMethod(name.to_string()))?;
        match &method.kind {
            MethodKind::Single(f) => f(payload),
            MethodKind::Batch(f) => {
                let mut out = f(&[payload])?;
                out.pop()
                    .ok_or_else(|| CallError::Failed("empty batch output".into()))
            }
        }
    }
}

// ---------------------------------------------------------------- runner

/// How an API-server process reaches a runner's workers; installed by the API server.
pub trait RunnerTransport: Send + Sync {
    /// Sends one call with a JSON payload and waits for the JSON result.
    fn call(&self, method: &str, payload: Vec<u8>) -> BoxFuture<Result<Vec<u8>, CallError>>;
}

type LoadFn = dyn Fn() -> Result<Runnable, String> + Send + Sync;

struct RunnerInner {
    name: String,
    load: Box<LoadFn>,
    transport: OnceLock<Arc<dyn RunnerTransport>>,
}

/// A named runner: how to load its [`Runnable`] (in a worker) and how to call
/// it (from an API handler). Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<RunnerInner>,
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
        Self {
            inner: Arc::new(RunnerInner {
                name: name.to_string(),
                load: Box::new(load),
                transport: OnceLock::new(),
            }),
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

    /// Installs the transport used by [`Runner::call`]; the API server does this once.
    pub fn connect(&self, transport: Arc<dyn RunnerTransport>) -> bool {
        self.inner.transport.set(transport).is_ok()
    }

    /// Calls `method` on a worker of this runner and decodes its result.
    pub async fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        method: &str,
        input: I,
    ) -> Result<O, RunnerError> {
        let transport = self
            .inner
            .transport
            .get()
            .ok_or_else(|| RunnerError::NotConnected(self.inner.name.clone()))?
            .clone();
        let payload = serde_json::to_vec(&input).map_err(|e| RunnerError::Codec(e.to_string()))?;
        let out = transport.call(method, payload).await?;
        serde_json::from_slice(&out).map_err(|e| RunnerError::Codec(e.to_string()))
    }
}

// ---------------------------------------------------------------- io descriptors

/// The kind of body an API takes or returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IoKind {
    /// `text/plain`, UTF-8.
    Text,
    /// `application/json`.
    Json,
    /// `application/octet-stream`.
    Bytes,
}

impl IoKind {
    /// The MIME type of this kind.
    pub fn mime(self) -> &'static str {
        match self {
            IoKind::Text => "text/plain",
            IoKind::Json => "application/json",
            IoKind::Bytes => "application/octet-stream",
        }
    }

    /// Whether a request `Content-Type` is acceptable for this input kind.
    /// A missing content type is accepted; `Bytes` accepts anything.
    pub fn accepts(self, content_type: Option<&str>) -> bool {
        let Some(ct) = content_type else { return true };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match self {
            IoKind::Bytes => true,
            IoKind::Text => essence == "text/plain",
            IoKind::Json => essence == "application/json" || essence.ends_with("+json"),
        }
    }
}

/// Describes an API input or output type: how a body becomes a value and back.
pub trait IoDescriptor: Send + Sync + 'static {
    /// The Rust value handlers see.
    type Value: Send + 'static;
    /// The body kind.
    const KIND: IoKind;
    /// Body → value (400 on failure).
    fn decode(body: Bytes) -> Result<Self::Value, ApiError>;
    /// Value → body.
    fn encode(value: Self::Value) -> Result<Bytes, ApiError>;
}

/// `text/plain` body as a `String` (BentoML's `bentoml.io.Text`).
#[derive(Debug, Clone, Copy)]
pub struct Text;
/// `application/json` body as a `serde_json::Value` (BentoML's `bentoml.io.JSON`).
#[derive(Debug, Clone, Copy)]
pub struct Json;
/// Raw body as `Bytes` (BentoML's `bentoml.io.File`, without multipart).
#[derive(Debug, Clone, Copy)]
pub struct Binary;

impl IoDescriptor for Text {
    type Value = String;
    const KIND: IoKind = IoKind::Text;
    fn decode(body: Bytes) -> Result<String, ApiError> {
        String::from_utf8(body.to_vec())
            .map_err(|e| ApiError::bad_request(format!("body is not valid UTF-8: {e}")))
    }
    fn encode(value: String) -> Result<Bytes, ApiError> {
        Ok(Bytes::from(value))
    }
}

impl IoDescriptor for Json {
    type Value = serde_json::Value;
    const KIND: IoKind = IoKind::Json;
    fn decode(body: Bytes) -> Result<serde_json::Value, ApiError> {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))
    }
    fn encode(value: serde_json::Value) -> Result<Bytes, ApiError> {
        serde_json::to_vec(&value)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(format!("cannot encode JSON output: {e}")))
    }
}

impl IoDescriptor for Binary {
    type Value = Bytes;
    const KIND: IoKind = IoKind::Bytes;
    fn decode(body: Bytes) -> Result<Bytes, ApiError> {
        Ok(body)
    }
    fn encode(value: Bytes) -> Result<Bytes, ApiError> {
        Ok(value)
    }
}

// ---------------------------------------------------------------- service

type HandlerFn = dyn Fn(Bytes) -> BoxFuture<Result<Bytes, ApiError>> + Send + Sync;

/// One API endpoint of a service, served at `/<name>`.
#[derive(Clone)]
pub struct Api {
    /// API name; the route is `/<name>`.
    pub name: String,
    /// Input body kind.
    pub input: IoKind,
    /// Output body kind.
    pub output: IoKind,
    handler: Arc<HandlerFn>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api").field("name", &self.name).finish()
    }
}

impl Api {
    /// The route path, `/<name>`.
    pub fn route(&self) -> String {
        format!("/{}", self.name)
    }

    /// Runs the handler on a raw body (already checked for content type and size).
    pub fn handle(&self, body: Bytes) -> BoxFuture<Result<Bytes, ApiError>> {
        (self.handler)(body)
    }
}

/// A named service: its runners and its APIs.
#[derive(Clone, Debug)]
pub struct Service {
    /// `service_name` label value.
    pub name: String,
    /// `service_version` label value, if any.
    pub version: Option<String>,
    runners: Vec<Runner>,
    apis: Vec<Api>,
}

impl Service {
    /// A service with no runners and no APIs yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            version: None,
            runners: Vec::new(),
            apis: Vec::new(),
        }
    }

    /// Sets the service version (BentoML writes `not available` when unset).
    pub fn version(mut self, version: &str) -> Self {
        self.version = Some(version.to_string());
        self
    }

    /// Adds a runner.
    pub fn runner(mut self, runner: &Runner) -> Self {
        self.runners.push(runner.clone());
        self
    }

    /// Adds an API: `input`/`output` describe the bodies, `handler` maps one to the other.
    pub fn api<I, O, F, Fut>(mut self, name: &str, _input: I, _output: O, handler: F) -> Self
    where
        I: IoDescriptor,
        O: IoDescriptor,
        F: Fn(I::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O::Value, ApiError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased = move |body: Bytes| -> BoxFuture<Result<Bytes, ApiError>> {
            let handler = handler.clone();
            Box::pin(async move {
                let value = I::decode(body)?;
                let out = handler(value).await?;
                O::encode(out)
            })
        };
        self.apis.push(Api {
            name: name.to_string(),
            input: I::KIND,
            output: O::KIND,
            handler: Arc::new(erased),
        });
        self
    }

    /// The service's runners.
    pub fn runners(&self) -> &[Runner] {
        &self.runners
    }

    /// Finds a runner by name.
    pub fn find_runner(&self, name: &str) -> Option<&Runner> {
        self.runners.iter().find(|r| r.name() == name)
    }

    /// The service's APIs.
    pub fn apis(&self) -> &[Api] {
        &self.apis
    }

    /// `service_version` label value.
    pub fn version_label(&self) -> &str {
        self.version.as_deref().unwrap_or("not available")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_round_trips_json_values() {
        let r = Runnable::new().method("double", |x: i64| Ok::<_, String>(x * 2));
        let out = r.call("double", b"21").unwrap();
        assert_eq!(out, b"42");
        assert!(matches!(
            r.call("double", b"\"x\""),
            Err(CallError::BadInput(_))
        ));
        assert!(matches!(
            r.call("nope", b"1"),
            Err(CallError::UnknownMethod(_))
        ));
    }

    #[test]
    fn batch_method_must_return_one_output_per_input() {
        let r = Runnable::new().batch_method("bad", 0, |xs: Vec<i64>| {
            Ok::<_, String>(vec![0i64; xs.len() + 1])
        });
        assert!(matches!(r.call("bad", b"1"), Err(CallError::Failed(_))));
    }

    #[test]
    fn content_type_rules() {
        assert!(IoKind::Text.accepts(Some("text/plain; charset=utf-8")));
        assert!(IoKind::Text.accepts(None));
        assert!(!IoKind::Text.accepts(Some("application/json")));
        assert!(IoKind::Json.accepts(Some("application/json")));
        assert!(!IoKind::Json.accepts(Some("text/plain")));
    }

    #[tokio::test]
    async fn api_handler_decodes_and_encodes() {
        let svc = Service::new("t").api("upper", Text, Text, |s: String| async move {
            Ok(s.to_uppercase())
        });
        let api = &svc.apis()[0];
        assert_eq!(api.route(), "/upper");
        let out = api.handle(Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(&out[..], b"ABC");
        let err = api
            .handle(Bytes::from_static(&[0xff, 0xfe]))
            .await
            .unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[tokio::test]
    async fn calling_an_unconnected_runner_is_an_error_not_a_panic() {
        let r = Runner::new("r", Runnable::new);
        let err = r.call::<_, bool>("m", "x").await.unwrap_err();
        assert_eq!(ApiError::from(err).status, 503);
    }
}
