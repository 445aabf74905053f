//! A [`Service`]: a name, its runners, and its APIs, each API an erased
//! handler from request body to response body.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::BoxFuture;
use crate::error::ApiError;
use crate::io::{IoDescriptor, IoKind, IoSpec};
use crate::model_card::ModelCard;
use crate::runner::Runner;
use crate::stream::StreamFormat;
use futures::{StreamExt, TryStreamExt};

type HandlerFn = dyn Fn(Bytes, Option<String>) -> BoxFuture<Result<Answer, ApiError>> + Send + Sync;

/// The items of a streaming API's answer, each already written in its
/// [`StreamFormat`]; an `Err` is the last.
pub type AnswerItems = futures::stream::BoxStream<'static, Result<Bytes, ApiError>>;

type StreamHandlerFn =
    dyn Fn(Bytes, Option<String>) -> BoxFuture<Result<AnswerItems, ApiError>> + Send + Sync;

/// What an API's handler answers: one body, or a stream of items.
#[derive(Clone)]
enum Handler {
    Whole(Arc<HandlerFn>),
    Stream(StreamFormat, Arc<StreamHandlerFn>),
}

/// What an API answers: the body, and what a handler not written in Rust
/// may set about the response (BentoML's `ctx.response.status_code` and
/// `headers`, a `File(mime_type=...)` answer's type). A Rust handler's
/// answer is its encoded body with the output descriptor's content type.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The encoded body.
    pub body: Bytes,
    /// The HTTP status of a successful answer (200 unless set).
    pub status: u16,
    /// The content type, if not the output descriptor's.
    pub content_type: Option<String>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl From<Bytes> for Answer {
    fn from(body: Bytes) -> Self {
        Answer {
            body,
            status: 200,
            content_type: None,
            headers: Vec::new(),
        }
    }
}

/// One API endpoint of a service, served at `/<name>`.
#[derive(Clone)]
pub struct Api {
    /// API name; the route is `/<name>`.
    pub name: String,
    /// Input body kind.
    pub input: IoKind,
    /// Output body kind.
    pub output: IoKind,
    /// What the documentation publishes about the request body.
    pub input_spec: IoSpec,
    /// What the documentation publishes about a successful response body.
    pub output_spec: IoSpec,
    /// Whether the request's content type is left to the handler to judge
    /// (a Python descriptor, which, as BentoML's, reads any body) instead of
    /// being checked against `input` (415 otherwise).
    pub accepts_any_content_type: bool,
    /// The path it is served at: `/<name>` unless set otherwise (BentoML's
    /// `@svc.api(route=...)`).
    path: String,
    handler: Handler,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api").field("name", &self.name).finish()
    }
}

impl Api {
    /// The route path: `/<name>`, or the route the API was declared with.
    pub fn route(&self) -> String {
        self.path.clone()
    }

    /// Runs the handler on a raw body (already checked for content type and size).
    pub fn handle(&self, body: Bytes) -> BoxFuture<Result<Bytes, ApiError>> {
        self.handle_typed(body, None)
    }

    /// Like [`Api::handle`], with the request's `Content-Type` for inputs
    /// that need it (multipart bodies, images).
    pub fn handle_typed(
        &self,
        body: Bytes,
        content_type: Option<&str>,
    ) -> BoxFuture<Result<Bytes, ApiError>> {
        let answer = self.answer(body, content_type);
        Box::pin(async move { answer.await.map(|a| a.body) })
    }

    /// Like [`Api::handle_typed`], with what the handler set about the
    /// response besides its body (the HTTP front door sends all of it).
    /// A streaming API ([`Service::stream_api`]) is refused here with 501:
    /// its answer is many items ([`Api::answer_stream`]), which only the
    /// HTTP front door writes so far.
    pub fn answer(
        &self,
        body: Bytes,
        content_type: Option<&str>,
    ) -> BoxFuture<Result<Answer, ApiError>> {
        match &self.handler {
            Handler::Whole(handler) => handler(body, content_type.map(str::to_string)),
            Handler::Stream(..) => {
                let refused = ApiError::new(
                    501,
                    format!(
                        "/{} answers a stream, which this front door cannot send yet (docs/streaming.md)",
                        self.name
                    ),
                );
                Box::pin(async move { Err(refused) })
            }
        }
    }

    /// How a streaming API writes its items; `None` for an API that
    /// answers one body.
    pub fn stream_format(&self) -> Option<StreamFormat> {
        match &self.handler {
            Handler::Whole(_) => None,
            Handler::Stream(format, _) => Some(*format),
        }
    }

    /// Runs a streaming API's handler: its items, each written in the
    /// API's [`StreamFormat`]. An API that answers one body is refused
    /// (500: the caller should have asked [`Api::stream_format`]).
    pub fn answer_stream(
        &self,
        body: Bytes,
        content_type: Option<&str>,
    ) -> BoxFuture<Result<AnswerItems, ApiError>> {
        match &self.handler {
            Handler::Stream(_, handler) => handler(body, content_type.map(str::to_string)),
            Handler::Whole(_) => {
                let refused =
                    ApiError::internal(format!("/{} answers one body, not a stream", self.name));
                Box::pin(async move { Err(refused) })
            }
        }
    }
}

/// The body kinds and published specs of a [`Service::raw_api`].
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct RawIo {
    /// Input body kind (what content types the front door lets through).
    pub input: IoKind,
    /// Output body kind (the answer's content type).
    pub output: IoKind,
    /// What the documentation publishes about the request body.
    pub input_spec: IoSpec,
    /// What the documentation publishes about the answer.
    pub output_spec: IoSpec,
    /// Whether any request content type reaches the handler ([`Api::accepts_any_content_type`]).
    pub accepts_any_content_type: bool,
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
    models: Vec<ModelCard>,
}

impl Service {
    /// A service with no runners and no APIs yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            version: None,
            runners: Vec::new(),
            apis: Vec::new(),
            models: Vec::new(),
        }
    }

    /// Sets the service version (BentoML writes `not available` when unset).
    pub fn version(mut self, version: &str) -> Self {
        self.version = Some(version.to_string());
        self
    }

    /// Adds a runner.
    pub fn runner(mut self, runner: &Runner) -> Self {
        self.runners.push(*runner);
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
        let erased = move |body: Bytes,
                           content_type: Option<String>|
              -> BoxFuture<Result<Answer, ApiError>> {
            let handler = handler.clone();
            Box::pin(async move {
                let value = I::decode_request(body, content_type.as_deref())?;
                let out = handler(value).await?;
                O::encode(out).map(Answer::from)
            })
        };
        self.apis.push(Api {
            name: name.to_string(),
            input: I::KIND,
            output: O::KIND,
            input_spec: I::spec(),
            output_spec: O::spec(),
            accepts_any_content_type: false,
            path: format!("/{name}"),
            handler: Handler::Whole(Arc::new(erased)),
        });
        self
    }

    /// Adds an API that answers a stream of items (docs/streaming.md):
    /// `handler` maps the decoded input to a stream of `T`, typically a
    /// runner's [`Method::call_stream`](crate::Method::call_stream), and
    /// each item is sent to the client as soon as it comes, written as
    /// `format` says. An `Err` item ends the stream: before the first item
    /// it is the request's error status; after, the format's error ending.
    pub fn stream_api<I, T, E, S, F, Fut>(
        mut self,
        name: &str,
        _input: I,
        format: StreamFormat,
        handler: F,
    ) -> Self
    where
        I: IoDescriptor,
        T: serde::Serialize + 'static,
        E: Into<ApiError> + 'static,
        S: futures::Stream<Item = Result<T, E>> + Send + 'static,
        F: Fn(I::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, ApiError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased = move |body: Bytes,
                           content_type: Option<String>|
              -> BoxFuture<Result<AnswerItems, ApiError>> {
            let handler = handler.clone();
            Box::pin(async move {
                let value = I::decode_request(body, content_type.as_deref())?;
                let items = handler(value).await?;
                let written = items
                    .map_err(Into::into)
                    .and_then(move |item| std::future::ready(format.item(&item)));
                Ok(written.boxed())
            })
        };
        let output = match format {
            StreamFormat::JsonLines => IoKind::Json,
            StreamFormat::EventStream => IoKind::Text,
        };
        let mut output_spec = IoSpec::of_kind(output);
        output_spec.media_type = format.content_type().to_string();
        self.apis.push(Api {
            name: name.to_string(),
            input: I::KIND,
            output,
            input_spec: I::spec(),
            output_spec,
            accepts_any_content_type: false,
            path: format!("/{name}"),
            handler: Handler::Stream(format, Arc::new(erased)),
        });
        self
    }

    /// Adds an API whose handler takes the raw body (and its content type)
    /// and answers the raw body and what it sets about the response, for a handler that is not Rust code (a
    /// Python handler decodes with its own descriptors). `route` is the path
    /// it is served at (`None`: `/<name>`); the specs are what the
    /// documentation publishes. Plumbing, not part of a service's API.
    #[doc(hidden)]
    pub fn raw_api<F>(mut self, name: &str, route: Option<&str>, io: RawIo, handler: F) -> Self
    where
        F: Fn(Bytes, Option<String>) -> BoxFuture<Result<Answer, ApiError>> + Send + Sync + 'static,
    {
        let path = match route {
            Some(r) => format!("/{}", r.trim_start_matches('/')),
            None => format!("/{name}"),
        };
        self.apis.push(Api {
            name: name.to_string(),
            input: io.input,
            output: io.output,
            input_spec: io.input_spec,
            output_spec: io.output_spec,
            accepts_any_content_type: io.accepts_any_content_type,
            path,
            handler: Handler::Whole(Arc::new(handler)),
        });
        self
    }

    /// The streaming form of [`Service::raw_api`]: `handler` answers the
    /// items already written in `format` ([`StreamFormat::item`]), for a
    /// handler that is not Rust code (a Python generator). The answer's
    /// published media type is the format's. Plumbing, not part of a
    /// service's API.
    #[doc(hidden)]
    pub fn raw_stream_api<F>(
        mut self,
        name: &str,
        route: Option<&str>,
        io: RawIo,
        format: StreamFormat,
        handler: F,
    ) -> Self
    where
        F: Fn(Bytes, Option<String>) -> BoxFuture<Result<AnswerItems, ApiError>>
            + Send
            + Sync
            + 'static,
    {
        let path = match route {
            Some(r) => format!("/{}", r.trim_start_matches('/')),
            None => format!("/{name}"),
        };
        let mut output_spec = io.output_spec;
        output_spec.media_type = format.content_type().to_string();
        self.apis.push(Api {
            name: name.to_string(),
            input: io.input,
            output: io.output,
            input_spec: io.input_spec,
            output_spec,
            accepts_any_content_type: io.accepts_any_content_type,
            path,
            handler: Handler::Stream(format, Arc::new(handler)),
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

    /// Replaces what the documentation (OpenAPI, gRPC `ServiceMetadata`,
    /// BentoML's clients) says about the request and answer bodies of the
    /// API `name`, for a descriptor whose details are known only at run
    /// time (a model's dtype and shape). Decoding is unchanged. An unknown
    /// `name` changes nothing.
    pub fn describe_api(
        mut self,
        name: &str,
        input: Option<IoSpec>,
        output: Option<IoSpec>,
    ) -> Self {
        if let Some(api) = self.apis.iter_mut().find(|a| a.name == name) {
            if let Some(spec) = input {
                api.input_spec = spec;
            }
            if let Some(spec) = output {
                api.output_spec = spec;
            }
        }
        self
    }

    /// The service's APIs.
    pub fn apis(&self) -> &[Api] {
        &self.apis
    }

    /// Declares a model the service serves (`model_card.rs`): what a
    /// protocol that names models, such as the Open Inference Protocol,
    /// publishes about it.
    pub fn model(mut self, card: ModelCard) -> Self {
        self.models.push(card);
        self
    }

    /// The models the service declares.
    pub fn models(&self) -> &[ModelCard] {
        &self.models
    }

    /// `service_version` label value.
    pub fn version_label(&self) -> &str {
        self.version.as_deref().unwrap_or("not available")
    }
}
