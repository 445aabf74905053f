//! IO descriptors: how an API's request body becomes the value its handler
//! takes, and how the handler's value becomes the response body (BentoML's
//! `bentoml.io.Text`, `JSON` and `File`).

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::ApiError;

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

/// What a front door publishes about one side of an API: the OpenAPI
/// document (`/docs.json`) and BentoML's clients read it, nothing decodes
/// with it.
///
/// BentoML's Python client rebuilds each API from `bentoml` (its
/// `io.from_spec` looks the descriptor up by `id` and passes `args` to it),
/// so `bentoml` must name a descriptor BentoML has, with the arguments its
/// `to_spec` writes (`bentoml/_internal/io_descriptors/*.py` in BentoML 1.2).
#[derive(Debug, Clone, PartialEq)]
pub struct IoSpec {
    /// The media type of the body, the key under OpenAPI's `content`
    /// (`*/*` for any).
    pub media_type: String,
    /// An OpenAPI 3.0 schema object for the body.
    pub schema: serde_json::Value,
    /// BentoML's descriptor spec, as its `to_spec()` writes it
    /// (`{"id": "bentoml.io.Text"}`), published as `x-bentoml-io-descriptor`.
    pub bentoml: serde_json::Value,
    /// An example body for documentation and Swagger UI's "Try it out".
    pub example: Option<serde_json::Value>,
}

impl IoSpec {
    /// What the built-in descriptors of `kind` publish: the schemas and
    /// descriptor specs of BentoML's `Text`, `JSON` (no pydantic model) and
    /// `File` (any media type).
    pub fn of_kind(kind: IoKind) -> IoSpec {
        match kind {
            IoKind::Text => IoSpec {
                media_type: kind.mime().to_string(),
                schema: serde_json::json!({ "type": "string" }),
                bentoml: serde_json::json!({ "id": "bentoml.io.Text" }),
                example: None,
            },
            // Any JSON value: the descriptor does not know the shape (BentoML
            // writes `type: object` here; an empty schema is what `Json` takes).
            IoKind::Json => IoSpec {
                media_type: kind.mime().to_string(),
                schema: serde_json::json!({ "description": "any JSON value" }),
                bentoml: serde_json::json!({
                    "id": "bentoml.io.JSON",
                    "args": { "has_pydantic_model": false, "has_json_encoder": false },
                }),
                example: None,
            },
            IoKind::Bytes => IoSpec {
                media_type: "*/*".to_string(),
                schema: serde_json::json!({ "type": "string", "format": "binary" }),
                bentoml: serde_json::json!({
                    "id": "bentoml.io.File",
                    "args": { "kind": "binaryio", "mime_type": null },
                }),
                example: None,
            },
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
    /// Body → value when the request's `Content-Type` matters (a
    /// `multipart/form-data` body needs its boundary); by default the
    /// content type is ignored and [`Self::decode`] runs.
    fn decode_request(body: Bytes, content_type: Option<&str>) -> Result<Self::Value, ApiError> {
        let _ = content_type;
        Self::decode(body)
    }
    /// What the API's documentation says about this body (media type,
    /// schema, BentoML descriptor spec); by default that of [`Self::KIND`].
    /// A descriptor with its own schema or BentoML id overrides it.
    fn spec() -> IoSpec {
        IoSpec::of_kind(Self::KIND)
    }
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

/// `application/json` body decoded straight into `T`, and `T` encoded back
/// (BentoML's `bentoml.io.JSON(pydantic_model=...)`).
///
/// Unlike [`Json`], no `serde_json::Value` tree is built: `serde_json` reads
/// the body into `T` directly, so a body of a million numbers costs what `T`
/// costs (8 bytes a number in a `Vec<f64>`), not a tree node per number.
/// A body that is not JSON answers 400 "body is not valid JSON: ..."; JSON
/// of the wrong shape answers 400 "body does not match the expected input:
/// ..." with serde's message and position. `JsonOf::<T>::new()` (or
/// `JsonOf::default()`) is the value to pass to [`Service::api`](crate::Service::api).
pub struct JsonOf<T>(PhantomData<fn() -> T>);

impl<T> JsonOf<T> {
    /// The descriptor for `T`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for JsonOf<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonOf<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for JsonOf<T> {}

impl<T> fmt::Debug for JsonOf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonOf<{}>", std::any::type_name::<T>())
    }
}

impl IoDescriptor for Text {
    type Value = String;
    const KIND: IoKind = IoKind::Text;
    fn decode(body: Bytes) -> Result<String, ApiError> {
        // `Vec::from` takes over the buffer when the body owns it alone (a
        // body hyper gathered from several reads), copying only otherwise.
        String::from_utf8(Vec::from(body))
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

impl<T> IoDescriptor for JsonOf<T>
where
    T: DeserializeOwned + Serialize + Send + 'static,
{
    type Value = T;
    const KIND: IoKind = IoKind::Json;
    fn decode(body: Bytes) -> Result<T, ApiError> {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            Category::Data => {
                ApiError::bad_request(format!("body does not match the expected input: {e}"))
            }
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request(format!("body is not valid JSON: {e}"))
            }
        })
    }
    fn encode(value: T) -> Result<Bytes, ApiError> {
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
