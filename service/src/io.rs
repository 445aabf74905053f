//! IO descriptors: how an API's request body becomes the value its handler
//! takes, and how the handler's value becomes the response body (BentoML's
//! `bentoml.io.Text`, `JSON` and `File`).

use bytes::Bytes;
use serde::Serialize;

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
