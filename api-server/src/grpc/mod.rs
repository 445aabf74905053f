//! The gRPC front door: BentoML's `bentoml.grpc.v1.BentoService` (`Call`,
//! `ServiceMetadata`), the standard `grpc.health.v1.Health` service, and
//! server reflection when `api_server.grpc.reflection.enabled`.
//!
//! `Call` maps the request's content onto the API's body exactly as the HTTP
//! front door would receive it (`text` → UTF-8 text, `json` → JSON text,
//! `serialized_bytes` → the raw body), runs the same handler, and maps the
//! result back to the API's output kind. Errors become gRPC status codes
//! (see [`code_for_http_status`]); each call is recorded in the API-server
//! metric families with `endpoint="/<api_name>"` and the status mapped back
//! to HTTP the way BentoML's gRPC interceptor does (see [`http_status_for_code`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost_types::value::Kind;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_health::ServingStatus;

use tiffin_service::{Api, ApiError, IoKind};

use crate::core::{Core, Flow, inherit_listener};
use crate::{ApiServerArgs, ApiServerError};

/// Code generated from `proto/bentoml/grpc/v1/service.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("bentoml.grpc.v1");

    /// The encoded `FileDescriptorSet` of the proto and its imports, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/bentoml_v1_descriptor.bin"));
}

use proto::bento_service_server::{BentoService, BentoServiceServer};
use proto::service_metadata_response::{DescriptorMetadata, InferenceApi};
use proto::{ServiceMetadataRequest, ServiceMetadataResponse, request, response};

/// Fully qualified name of the BentoML service, as health checks name it.
pub const SERVICE_NAME: &str = "bentoml.grpc.v1.BentoService";

/// How often readiness (every runner has a live worker) is re-checked for health.
const HEALTH_POLL: Duration = Duration::from_millis(50);

/// The gRPC status for an HTTP-style status from a handler, following
/// BentoML's `http_status_to_grpc_status_map` (plus 404 → `NOT_FOUND` and
/// other 4xx → `INVALID_ARGUMENT`); anything else is `UNKNOWN`, as in BentoML.
pub fn code_for_http_status(status: u16) -> Code {
    match status {
        200 => Code::Ok,
        400 | 413 | 415 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        422 => Code::FailedPrecondition,
        429 | 502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        500 => Code::Internal,
        405..=499 => Code::InvalidArgument,
        _ => Code::Unknown,
    }
}

/// The `http_response_code` label value for a gRPC status code: BentoML's
/// `to_http_status` (the inverse of its HTTP → gRPC map, 500 for codes not
/// in it), extended with `NOT_FOUND` → 404, which BentoML never emits.
pub fn http_status_for_code(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound | Code::Unimplemented => 404,
        Code::FailedPrecondition => 422,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        _ => 500,
    }
}

/// The `oneof content` field name of a request content.
fn request_field(content: &request::Content) -> &'static str {
    match content {
        request::Content::Ndarray(_) => "ndarray",
        request::Content::Dataframe(_) => "dataframe",
        request::Content::Series(_) => "series",
        request::Content::File(_) => "file",
        request::Content::Text(_) => "text",
        request::Content::Json(_) => "json",
        request::Content::Multipart(_) => "multipart",
        request::Content::SerializedBytes(_) => "serialized_bytes",
    }
}

/// The content field that carries an API input or output of `kind`.
fn field_for(kind: IoKind) -> &'static str {
    match kind {
        IoKind::Text => "text",
        IoKind::Json => "json",
        IoKind::Bytes => "serialized_bytes",
    }
}

/// BentoML's descriptor id for an IO kind.
fn descriptor_id(kind: IoKind) -> &'static str {
    match kind {
        IoKind::Text => "bentoml.io.Text",
        IoKind::Json => "bentoml.io.JSON",
        IoKind::Bytes => "bentoml.io.File",
    }
}

/// Converts a `google.protobuf.Value` to JSON. Integral numbers within
/// ±2^53 become JSON integers, so handlers expecting integers get them.
pub fn value_to_json(value: prost_types::Value) -> Result<serde_json::Value, String> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    Ok(match value.kind {
        None => return Err("a google.protobuf.Value has no kind set".into()),
        Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() <= EXACT {
                serde_json::Value::from(n as i64)
            } else {
                serde_json::Number::from_f64(n)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| format!("number {n} cannot be represented in JSON"))?
            }
        }
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values
                .into_iter()
                .map(value_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| value_to_json(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Converts JSON to a `google.protobuf.Value` (numbers become doubles).
pub fn json_to_value(json: serde_json::Value) -> prost_types::Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(prost_types::NullValue::NullValue as i32),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map
                .into_iter()
                .map(|(k, v)| (k, json_to_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn status_from_api_error(e: ApiError) -> Status {
    Status::new(code_for_http_status(e.status), e.message)
}

/// The `BentoService` implementation.
struct Bento {
    core: Arc<Core>,
    metadata: ServiceMetadataResponse,
}

impl Bento {
    /// The request body an API receives for a request content, or why there is none.
    fn body_for(api: &Api, content: Option<request::Content>) -> Result<Bytes, Status> {
        let accepted = field_for(api.input);
        let Some(content) = content else {
            return Err(Status::invalid_argument(format!(
                "request for API '{}' has no content; set '{accepted}' or 'serialized_bytes'",
                api.name
            )));
        };
        let field = request_field(&content);
        match content {
            request::Content::SerializedBytes(b) => Ok(Bytes::from(b)),
            request::Content::Text(s) if api.input == IoKind::Text => Ok(Bytes::from(s)),
            request::Content::Json(v) if api.input == IoKind::Json => {
                let json = value_to_json(v).map_err(|e| {
                    Status::invalid_argument(format!("content field 'json' is not valid: {e}"))
                })?;
                serde_json::to_vec(&json).map(Bytes::from).map_err(|e| {
                    Status::invalid_argument(format!("content field 'json' is not valid: {e}"))
                })
            }
            request::Content::Text(_) | request::Content::Json(_) => {
                Err(Status::invalid_argument(format!(
                    "content field '{field}' does not match API '{}', which takes {}; \
                     set '{accepted}' or 'serialized_bytes'",
                    api.name,
                    descriptor_id(api.input)
                )))
            }
            _ => Err(Status::invalid_argument(format!(
                "content field '{field}' is not supported; API '{}' takes '{accepted}' or \
                 'serialized_bytes'",
                api.name
            ))),
        }
    }

    async fn dispatch(&self, req: proto::Request) -> Result<proto::Response, Status> {
        let Some(api) = self.core.apis.get(&req.api_name) else {
            let mut names: Vec<&str> = self.core.apis.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(Status::not_found(format!(
                "no API named '{}' in service '{}'; available: {}",
                req.api_name,
                self.metadata.name,
                names.join(", ")
            )));
        };
        let body = Self::body_for(api, req.content)?;
        let out = self
            .core
            .within_traffic_limits(api.handle(body))
            .await
            .map_err(status_from_api_error)?;
        let content = match api.output {
            IoKind::Text => {
                response::Content::Text(String::from_utf8(out.to_vec()).map_err(|e| {
                    Status::internal(format!("API '{}' returned invalid UTF-8: {e}", api.name))
                })?)
            }
            IoKind::Json => {
                let json: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
                    Status::internal(format!("API '{}' returned invalid JSON: {e}", api.name))
                })?;
                response::Content::Json(json_to_value(json))
            }
            IoKind::Bytes => response::Content::SerializedBytes(out.to_vec()),
        };
        Ok(proto::Response {
            content: Some(content),
        })
    }
}

#[tonic::async_trait]
impl BentoService for Bento {
    async fn call(
        &self,
        request: Request<proto::Request>,
    ) -> Result<Response<proto::Response>, Status> {
        let req = request.into_inner();
        let path = format!("/{}", req.api_name);
        let known = self.core.apis.contains_key(&req.api_name);
        let endpoint = self.core.endpoint_label(&path, known);
        let started = Instant::now();
        let guard = self.core.metrics.as_ref().map(|m| m.start(endpoint));
        let result = self.dispatch(req).await;
        drop(guard);
        if let Some(m) = &self.core.metrics {
            let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
            m.finish(
                endpoint,
                http_status_for_code(code),
                started.elapsed().as_secs_f64(),
            );
        }
        self.core.requests.fetch_add(1, Ordering::Relaxed);
        result.map(Response::new)
    }

    async fn service_metadata(
        &self,
        _request: Request<ServiceMetadataRequest>,
    ) -> Result<Response<ServiceMetadataResponse>, Status> {
        Ok(Response::new(self.metadata.clone()))
    }
}

fn describe(kind: IoKind) -> DescriptorMetadata {
    let attributes = serde_json::json!({
        "mime_type": kind.mime(),
        "content_field": field_for(kind),
    });
    let fields = match json_to_value(attributes).kind {
        Some(Kind::StructValue(s)) => s.fields,
        _ => Default::default(),
    };
    DescriptorMetadata {
        descriptor_id: Some(descriptor_id(kind).to_string()),
        attributes: Some(prost_types::Struct { fields }),
    }
}

fn metadata(args: &ApiServerArgs) -> ServiceMetadataResponse {
    ServiceMetadataResponse {
        name: args.service.name.clone(),
        apis: args
            .service
            .apis()
            .iter()
            .map(|a| InferenceApi {
                name: a.name.clone(),
                input: Some(describe(a.input)),
                output: Some(describe(a.output)),
                docs: None,
            })
            .collect(),
        docs: format!(
            "{} (version {}), served by tiffin",
            args.service.name,
            args.service.version_label()
        ),
    }
}

/// Keeps the health statuses (overall and [`SERVICE_NAME`]) in step with
/// readiness until `stop` fires, then reports `NOT_SERVING`.
async fn track_health(
    core: Arc<Core>,
    reporter: tonic_health::server::HealthReporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut reported = None;
    loop {
        let status = if *stop.borrow() {
            ServingStatus::NotServing
        } else if core.ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if reported != Some(status) {
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
            reported = Some(status);
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_POLL) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs a gRPC API server until the supervisor asks it to drain or goes away.
pub async fn run(args: ApiServerArgs) -> Result<(), ApiServerError> {
    let listener = inherit_listener(args.listen_fd)?;
    let (core, mut events) = Core::start(&args).await?;
    let core = Arc::new(core);
    let grpc_cfg = &args.config.api_server.grpc;
    let max_message =
        usize::try_from(args.config.api_server.http.max_request_size).unwrap_or(usize::MAX);

    let bento = BentoServiceServer::new(Bento {
        core: core.clone(),
        metadata: metadata(&args),
    })
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);

    let (reporter, health) = tonic_health::server::health_reporter();
    let (stop_health, health_stop) = tokio::sync::watch::channel(false);
    // Not serving until the first readiness check says otherwise.
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    let health_task = tokio::spawn(track_health(core.clone(), reporter, health_stop));

    let (reflection_v1, reflection_v1alpha) = if grpc_cfg.reflection.enabled {
        let builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        (
            Some(builder().build_v1()?),
            Some(builder().build_v1alpha()?),
        )
    } else {
        (None, None)
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let serve = Server::builder()
        .add_service(bento)
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
    tokio::pin!(serve);

    core.announce_ready()?;
    let flow = loop {
        tokio::select! {
            result = &mut serve => {
                result?;
                tracing::warn!("gRPC server stopped by itself; exiting");
                return Ok(());
            }
            event = events.recv() => match core.on_event(event) {
                Flow::Continue => {}
                other => break other,
            },
        }
    };
    if let Flow::Gone = flow {
        return Ok(());
    }
    tracing::info!("draining: no longer accepting, finishing in-flight requests");
    let _ = stop_health.send(true);
    let _ = health_task.await;
    let _ = stop_tx.send(());
    serve.await?;
    core.drained().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_protobuf_values() {
        let json = serde_json::json!({
            "a": [1, 2.5, "x", null, true],
            "b": { "c": -3 },
        });
        let back = value_to_json(json_to_value(json.clone())).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn a_value_without_kind_is_an_error() {
        assert!(value_to_json(prost_types::Value { kind: None }).is_err());
    }

    #[test]
    fn status_mappings_follow_bentoml() {
        assert_eq!(code_for_http_status(400), Code::InvalidArgument);
        assert_eq!(code_for_http_status(500), Code::Internal);
        assert_eq!(code_for_http_status(503), Code::Unavailable);
        assert_eq!(code_for_http_status(404), Code::NotFound);
        for (code, http) in [
            (Code::Ok, 200),
            (Code::InvalidArgument, 400),
            (Code::NotFound, 404),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Unknown, 500),
            (Code::Cancelled, 500),
        ] {
            assert_eq!(http_status_for_code(code), http, "{code:?}");
        }
    }
}
