//! A service whose code is not Rust: its shape, as the other language's
//! process describes it, and how that description becomes a [`Service`].
//!
//! A Python service file is imported by a Python process, which prints a
//! [`Description`] as JSON (`python/tiffin/_describe.py`). The supervisor,
//! which runs no Python, builds its [`Service`] from it with handlers that
//! are never called ([`Description::skeleton`]): it needs only the names of
//! the runners and APIs. Each worker builds the same service with the
//! handlers and runnables of its interpreter ([`Description::build`]), so
//! every process agrees on names, routes and the documentation's specs.

use bytes::Bytes;
use serde::Deserialize;

use crate::BoxFuture;
use crate::error::ApiError;
use crate::io::{IoKind, IoSpec};
use crate::runnable::Runnable;
use crate::runner::Runner;
use crate::service::{Answer, AnswerItems, RawIo, Service};
use crate::stream::StreamFormat;

/// A service as another language's process describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// The service's name (`service_name` label).
    pub name: String,
    /// Its version, if it has one.
    #[serde(default)]
    pub version: Option<String>,
    /// Its runners, in declaration order.
    pub runners: Vec<RunnerDescription>,
    /// Its APIs, in declaration order.
    pub apis: Vec<ApiDescription>,
}

/// One runner of a [`Description`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerDescription {
    /// The runner's name (`runner_name` label).
    pub name: String,
    /// Its methods.
    pub methods: Vec<MethodDescription>,
    /// `bentoml.Runner(max_batch_size=...)`: set in code, it wins over the
    /// configuration, as in BentoML (`first_not_none(code, config)`).
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    /// `bentoml.Runner(max_latency_ms=...)`, likewise.
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
}

/// One method of a [`RunnerDescription`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodDescription {
    /// The method's name.
    pub name: String,
    /// Whether calls may be batched (the worker's dispatcher groups them).
    pub batchable: bool,
    /// Whether it answers a stream of items (a Python generator), served
    /// as `Runnable::raw_stream_method` and called with `call_stream`.
    #[serde(default)]
    pub stream: bool,
}

/// One API of a [`Description`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDescription {
    /// The API's name.
    pub name: String,
    /// The path it is served at, if not `/<name>`.
    #[serde(default)]
    pub route: Option<String>,
    /// The request body.
    pub input: BodyDescription,
    /// The answer's body.
    pub output: BodyDescription,
    /// How the API's answer streams, when it is a stream of items (a
    /// Python generator handler); absent for an API that answers one body.
    #[serde(default)]
    pub stream: Option<StreamedAs>,
}

/// How a described streaming API writes its items (the serialised form of
/// [`StreamFormat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamedAs {
    /// Server-Sent Events ([`StreamFormat::EventStream`]).
    Sse,
    /// Newline-delimited JSON ([`StreamFormat::JsonLines`]).
    Ndjson,
}

impl StreamedAs {
    /// The format the API server writes the items in.
    pub fn format(self) -> StreamFormat {
        match self {
            StreamedAs::Sse => StreamFormat::EventStream,
            StreamedAs::Ndjson => StreamFormat::JsonLines,
        }
    }
}

/// One side of an [`ApiDescription`]: the body's kind and what the
/// documentation publishes about it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyDescription {
    /// `text`, `json` or `bytes`: which content types the front door lets
    /// through and what content type an answer has.
    pub kind: BodyKind,
    /// The media type published (`*/*` for any).
    pub media_type: String,
    /// An OpenAPI 3.0 schema object.
    pub schema: serde_json::Value,
    /// BentoML's descriptor spec (`{"id": "bentoml.io.Text"}`).
    pub bentoml: serde_json::Value,
    /// An example body, if any.
    #[serde(default)]
    pub example: Option<serde_json::Value>,
    /// For a request body: whether the handler takes any content type
    /// (BentoML's descriptors read any body; the front door then skips its 415).
    #[serde(default)]
    pub any_content_type: bool,
}

/// The kinds a described body can have (the serialised form of [`IoKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// `text/plain`.
    Text,
    /// `application/json`.
    Json,
    /// Anything else (images, files, multipart bodies).
    Bytes,
}

impl BodyDescription {
    fn kind(&self) -> IoKind {
        match self.kind {
            BodyKind::Text => IoKind::Text,
            BodyKind::Json => IoKind::Json,
            BodyKind::Bytes => IoKind::Bytes,
        }
    }

    fn spec(&self) -> IoSpec {
        IoSpec {
            media_type: self.media_type.clone(),
            schema: self.schema.clone(),
            bentoml: self.bentoml.clone(),
            example: self.example.clone(),
        }
    }
}

/// The erased handler of a described API: raw body and content type in,
/// raw answer out.
pub type ApiHandler = Box<
    dyn Fn(Bytes, Option<String>) -> BoxFuture<Result<Answer, ApiError>> + Send + Sync + 'static,
>;

/// The erased handler of a described streaming API: raw body and content
/// type in, the items written in the API's format out.
pub type StreamApiHandler = Box<
    dyn Fn(Bytes, Option<String>) -> BoxFuture<Result<AnswerItems, ApiError>>
        + Send
        + Sync
        + 'static,
>;

/// How a described runner's workers load it.
pub type RunnableLoader = Box<dyn Fn() -> Result<Runnable, String> + Send + Sync + 'static>;

impl Description {
    /// Parses the JSON a describing process printed.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The service with every handler and loader answering that it is not
    /// served here: for the supervisor, which only needs the names.
    pub fn skeleton(&self) -> Service {
        self.build(
            |_| {
                Box::new(|_, _| {
                    Box::pin(async { Err(ApiError::internal("not served by this process")) })
                })
            },
            |_| Box::new(|| Err("not loaded by this process".to_string())),
        )
    }

    /// The service with the handler `api` makes for each API and the loader
    /// `runner` makes for each runner. A streaming API's handler answers
    /// that it is not served here: [`Description::build_streaming`] serves
    /// those too.
    pub fn build(
        &self,
        api: impl Fn(&ApiDescription) -> ApiHandler,
        runner: impl Fn(&RunnerDescription) -> RunnableLoader,
    ) -> Service {
        self.build_streaming(api, |_| refused_stream(), runner)
    }

    /// Like [`Description::build`], with the handler `stream_api` makes
    /// for each streaming API (one whose [`ApiDescription::stream`] is set).
    pub fn build_streaming(
        &self,
        api: impl Fn(&ApiDescription) -> ApiHandler,
        stream_api: impl Fn(&ApiDescription) -> StreamApiHandler,
        runner: impl Fn(&RunnerDescription) -> RunnableLoader,
    ) -> Service {
        let mut service = Service::new(&self.name);
        if let Some(v) = &self.version {
            service = service.version(v);
        }
        for r in &self.runners {
            let load = runner(r);
            service = service.runner(&Runner::try_new(&r.name, load));
        }
        for a in &self.apis {
            let io = RawIo {
                input: a.input.kind(),
                output: a.output.kind(),
                input_spec: a.input.spec(),
                output_spec: a.output.spec(),
                accepts_any_content_type: a.input.any_content_type,
            };
            service = match a.stream {
                Some(streamed) => service.raw_stream_api(
                    &a.name,
                    a.route.as_deref(),
                    io,
                    streamed.format(),
                    stream_api(a),
                ),
                None => service.raw_api(&a.name, a.route.as_deref(), io, api(a)),
            };
        }
        service
    }
}

/// A streaming API's handler in a process that does not serve it.
fn refused_stream() -> StreamApiHandler {
    Box::new(|_, _| Box::pin(async { Err(ApiError::internal("not served by this process")) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIBED: &str = r#"{
        "name": "sentiment", "version": null,
        "runners": [{"name": "vader", "methods": [{"name": "is_positive", "batchable": false}]}],
        "apis": [{"name": "analysis", "route": "v1/analysis",
                  "input": {"kind": "text", "media_type": "text/plain", "schema": {"type": "string"},
                            "bentoml": {"id": "bentoml.io.Text"}},
                  "output": {"kind": "json", "media_type": "application/json", "schema": {},
                             "bentoml": {"id": "bentoml.io.JSON"}}}]
    }"#;

    #[test]
    fn a_description_becomes_a_service_with_its_names_routes_and_kinds() {
        let d = Description::from_json(DESCRIBED).expect("parses");
        let s = d.skeleton();
        assert_eq!(s.name, "sentiment");
        assert_eq!(s.runners()[0].name(), "vader");
        let api = &s.apis()[0];
        assert_eq!(
            (api.name.as_str(), api.route()),
            ("analysis", "/v1/analysis".into())
        );
        assert_eq!((api.input, api.output), (IoKind::Text, IoKind::Json));
        assert_eq!(api.input_spec.bentoml["id"], "bentoml.io.Text");
    }

    #[test]
    fn a_described_stream_api_streams_in_its_format_and_methods_say_they_stream() {
        let described = DESCRIBED
            .replace(
                r#""batchable": false"#,
                r#""batchable": false, "stream": true"#,
            )
            .replace(
                r#""route": "v1/analysis","#,
                r#""route": "v1/analysis", "stream": "ndjson","#,
            );
        let d = Description::from_json(&described).expect("parses");
        assert!(d.runners[0].methods[0].stream);
        let s = d.skeleton();
        let api = &s.apis()[0];
        assert_eq!(api.stream_format(), Some(StreamFormat::JsonLines));
        assert_eq!(api.output_spec.media_type, "application/x-ndjson");
        assert_eq!(api.route(), "/v1/analysis");
        let plain = Description::from_json(DESCRIBED).expect("parses");
        assert!(!plain.runners[0].methods[0].stream);
        assert_eq!(plain.skeleton().apis()[0].stream_format(), None);
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused_naming_them() {
        let e = Description::from_json(r#"{"name":"x","runners":[],"apis":[],"extra":1}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("extra"), "{e}");
        let e = Description::from_json(&DESCRIBED.replace(r#""kind": "text""#, r#""kind": "xml""#))
            .expect_err("unknown kind");
        assert!(e.to_string().contains("xml"), "{e}");
    }
}
