//! The Open Inference Protocol over gRPC: `inference.GRPCInferenceService`
//! (`oip/spec/open_inference_grpc.proto`), on the same port as BentoML's
//! service.
//!
//! `ModelInfer` runs the very API that answers `POST
//! /v2/models/{name}[/versions/{v}]/infer` over HTTP: the call is turned into
//! that route's body (a JSON header and binary tensor data, typed `contents`
//! written out little-endian as `raw_input_contents` are), answered by the
//! API with every output in binary form, and the answer's tensors become
//! `raw_output_contents`. So both front doors check requests alike, batch
//! together, and are metered under the same `endpoint` (the route). The
//! health and metadata calls give what `api-server/src/oip.rs` gives HTTP.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use tonic::{Code, Request, Response, Status};

use super::proto::inference::{
    self as pb, grpc_inference_service_server::GrpcInferenceService,
    model_infer_response::InferOutputTensor, model_metadata_response::TensorMetadata,
};
use super::status::{code_for_http_status, http_status_for_code};
use crate::route::{OipRoute, Route};
use crate::state::ServerState;
use tiffin_oip::Datatype;
use tiffin_oip::response::HEADER_LENGTH;
use tiffin_service::{ModelCard, TensorCard};

/// The service (see the module docs).
pub(super) struct Inference {
    pub(super) state: Arc<ServerState>,
}

/// A model's version as a gRPC request names it: empty is none.
fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

/// NOT_FOUND for model `name` at `version`, naming the served ones.
fn no_model(state: &ServerState, name: &str, version: Option<&str>) -> Status {
    let path = tiffin_oip::path::infer(name, version);
    Status::not_found(crate::oip::no_model(state, &path))
}

/// The card of model `name` at `version` (any when empty), or NOT_FOUND.
fn card<'a>(state: &'a ServerState, name: &str, v: &str) -> Result<&'a ModelCard, Status> {
    state
        .routes
        .model(name, version(v))
        .ok_or_else(|| no_model(state, name, version(v)))
}

fn tensors(list: &[TensorCard]) -> Vec<TensorMetadata> {
    list.iter()
        .map(|t| TensorMetadata {
            name: t.name.clone(),
            datatype: tiffin_oip::metadata::datatype(t).to_string(),
            shape: tiffin_oip::metadata::shape(t),
        })
        .collect()
}

/// Appends each of `values` as `bytes` writes it.
fn put<T: Copy, const N: usize>(out: &mut Vec<u8>, values: &[T], bytes: impl Fn(T) -> [u8; N]) {
    values
        .iter()
        .for_each(|&v| out.extend_from_slice(&bytes(v)));
}

/// Typed `contents` as the little-endian bytes `raw_input_contents` would
/// carry for `datatype` (`BYTES`: each element after its 4-byte length).
/// The protocol carries the narrow integer types in the 32-bit fields, so
/// they are narrowed here as a client widened them.
fn contents_bytes(datatype: &str, c: &pb::InferTensorContents) -> Vec<u8> {
    let mut out = Vec::new();
    let o = &mut out;
    match Datatype::parse(datatype) {
        Some(Datatype::Bool) => put(o, &c.bool_contents, |b| [u8::from(b)]),
        Some(Datatype::Int8) => put(o, &c.int_contents, |x| (x as i8).to_le_bytes()),
        Some(Datatype::Int16) => put(o, &c.int_contents, |x| (x as i16).to_le_bytes()),
        Some(Datatype::Int32) => put(o, &c.int_contents, i32::to_le_bytes),
        Some(Datatype::Int64) => put(o, &c.int64_contents, i64::to_le_bytes),
        Some(Datatype::Uint8) => put(o, &c.uint_contents, |x| (x as u8).to_le_bytes()),
        Some(Datatype::Uint16) => put(o, &c.uint_contents, |x| (x as u16).to_le_bytes()),
        Some(Datatype::Uint32) => put(o, &c.uint_contents, u32::to_le_bytes),
        Some(Datatype::Uint64) => put(o, &c.uint64_contents, u64::to_le_bytes),
        Some(Datatype::Fp32) => put(o, &c.fp32_contents, f32::to_le_bytes),
        Some(Datatype::Fp64) => put(o, &c.fp64_contents, f64::to_le_bytes),
        Some(Datatype::Bytes) => c.bytes_contents.iter().for_each(|b| {
            o.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
            o.extend_from_slice(b);
        }),
        // FP16 has no typed field, and an unknown datatype is refused by the route.
        Some(Datatype::Fp16) | None => {}
    }
    out
}

/// The HTTP route's body for a gRPC inference request.
fn rest_body(req: &pb::ModelInferRequest) -> Result<Vec<u8>, Status> {
    if !req.raw_input_contents.is_empty() && req.raw_input_contents.len() != req.inputs.len() {
        return Err(Status::invalid_argument(format!(
            "{} raw_input_contents for {} inputs: give one per input or none",
            req.raw_input_contents.len(),
            req.inputs.len()
        )));
    }
    let mut data = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.iter().enumerate() {
        let bytes = match (req.raw_input_contents.get(i), &input.contents) {
            (Some(raw), None) => raw.to_vec(),
            (None, Some(contents)) => contents_bytes(&input.datatype, contents),
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(format!(
                    "input '{}' has both contents and raw_input_contents",
                    input.name
                )));
            }
            (None, None) => {
                return Err(Status::invalid_argument(format!(
                    "input '{}' has neither contents nor raw_input_contents",
                    input.name
                )));
            }
        };
        data.push(bytes);
    }
    let inputs: Vec<_> = req
        .inputs
        .iter()
        .zip(&data)
        .map(|(input, bytes)| {
            json!({
                "name": input.name,
                "shape": input.shape,
                "datatype": input.datatype,
                "parameters": { "binary_data_size": bytes.len() },
            })
        })
        .collect();
    let mut header = json!({ "inputs": inputs, "parameters": { "binary_data_output": true } });
    if !req.id.is_empty() {
        header["id"] = json!(req.id);
    }
    if !req.outputs.is_empty() {
        let outputs: Vec<_> = req
            .outputs
            .iter()
            .map(|o| json!({ "name": o.name, "parameters": { "binary_data": true } }))
            .collect();
        header["outputs"] = json!(outputs);
    }
    let mut body = serde_json::to_vec(&header)
        .map_err(|e| Status::internal(format!("cannot encode the request: {e}")))?;
    for bytes in data {
        body.extend_from_slice(&bytes);
    }
    Ok(body)
}

#[derive(Deserialize)]
struct AnswerHeader {
    model_name: String,
    model_version: String,
    #[serde(default)]
    id: Option<String>,
    outputs: Vec<AnswerOutput>,
}

#[derive(Deserialize)]
struct AnswerOutput {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    parameters: AnswerSize,
}

#[derive(Deserialize)]
struct AnswerSize {
    binary_data_size: usize,
}

/// The gRPC response for the HTTP route's binary answer.
fn grpc_answer(answer: &tiffin_service::Answer) -> Result<pb::ModelInferResponse, Status> {
    let broken =
        |why: String| Status::internal(format!("the inference answer is unreadable: {why}"));
    let json_len: usize = answer
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(HEADER_LENGTH))
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| broken(format!("no {HEADER_LENGTH}")))?;
    let (json, mut binary) = answer
        .body
        .split_at_checked(json_len)
        .ok_or_else(|| broken("a header past the body".into()))?;
    let header: AnswerHeader = serde_json::from_slice(json).map_err(|e| broken(e.to_string()))?;
    let mut outputs = Vec::with_capacity(header.outputs.len());
    let mut raw = Vec::with_capacity(header.outputs.len());
    for o in header.outputs {
        let (bytes, rest) = binary
            .split_at_checked(o.parameters.binary_data_size)
            .ok_or_else(|| broken(format!("output '{}' past the body", o.name)))?;
        binary = rest;
        raw.push(bytes.to_vec());
        outputs.push(InferOutputTensor {
            name: o.name,
            datatype: o.datatype,
            shape: o.shape,
            parameters: Default::default(),
            contents: None,
        });
    }
    Ok(pb::ModelInferResponse {
        model_name: header.model_name,
        model_version: header.model_version,
        id: header.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    })
}

impl Inference {
    async fn infer(
        &self,
        route: Route<'_>,
        req: &pb::ModelInferRequest,
    ) -> Result<pb::ModelInferResponse, Status> {
        let Route::Api(api) = route else {
            return Err(no_model(
                &self.state,
                &req.model_name,
                version(&req.model_version),
            ));
        };
        let body = rest_body(req)?;
        let answer = self
            .state
            .traffic
            .within(api.answer(body.into(), Some("application/octet-stream")))
            .await
            .map_err(|e| Status::new(code_for_http_status(e.status), e.message))?;
        grpc_answer(&answer)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.state.ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let req = request.into_inner();
        card(&self.state, &req.name, &req.version)?;
        Ok(Response::new(pb::ModelReadyResponse {
            ready: self.state.ready(),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: tiffin_oip::metadata::SERVER_NAME.into(),
            version: crate::oip::SERVER_VERSION.into(),
            extensions: tiffin_oip::metadata::EXTENSIONS
                .iter()
                .map(|e| (*e).to_string())
                .collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let req = request.into_inner();
        let card = card(&self.state, &req.name, &req.version)?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: card.name.clone(),
            versions: vec![card.version.clone()],
            platform: card.platform.clone(),
            inputs: tensors(&card.inputs),
            outputs: tensors(&card.outputs),
            properties: Default::default(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let (_, extensions, req) = request.into_parts();
        // Metered as HTTP's `POST` to the same route would be.
        let path = tiffin_oip::path::infer(&req.model_name, version(&req.model_version));
        let route = match self.state.routes.resolve(&path) {
            api @ Route::Api(_) => api,
            _ => Route::Oip(OipRoute::NoModel),
        };
        let status = |result: &Result<pb::ModelInferResponse, Status>| {
            http_status_for_code(result.as_ref().map_or_else(Status::code, |_| Code::Ok))
        };
        let result = async {
            super::auth::permit(&self.state, &extensions, route, &path)?;
            self.infer(route, &req).await
        };
        self.state
            .metered(route, &path, result, status)
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        contents: Option<pb::InferTensorContents>,
    ) -> pb::model_infer_request::InferInputTensor {
        pb::model_infer_request::InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![1, 2],
            contents,
            ..Default::default()
        }
    }

    fn refused(req: pb::ModelInferRequest, needle: &str) {
        let e = rest_body(&req).expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains(needle),
            "{needle:?} not in {:?}",
            e.message()
        );
    }

    #[test]
    fn raw_contents_that_do_not_pair_with_the_inputs_are_invalid_arguments() {
        let fp32 = || pb::InferTensorContents {
            fp32_contents: vec![1.0, 2.0],
            ..Default::default()
        };
        refused(
            pb::ModelInferRequest {
                inputs: vec![input(None), input(None)],
                raw_input_contents: vec![vec![0; 8]],
                ..Default::default()
            },
            "1 raw_input_contents for 2 inputs",
        );
        refused(
            pb::ModelInferRequest {
                inputs: vec![input(Some(fp32()))],
                raw_input_contents: vec![vec![0; 8]],
                ..Default::default()
            },
            "both contents and raw_input_contents",
        );
        refused(
            pb::ModelInferRequest {
                inputs: vec![input(None)],
                ..Default::default()
            },
            "neither contents nor raw_input_contents",
        );
    }

    #[test]
    fn typed_contents_become_the_bytes_raw_contents_would_carry() {
        let req = pb::ModelInferRequest {
            inputs: vec![input(Some(pb::InferTensorContents {
                fp32_contents: vec![1.5, -2.0],
                ..Default::default()
            }))],
            ..Default::default()
        };
        let body = rest_body(&req).expect("a body");
        let mut raw = 1.5f32.to_le_bytes().to_vec();
        raw.extend_from_slice(&(-2.0f32).to_le_bytes());
        assert!(body.ends_with(&raw));
        let json_len = body.len() - raw.len();
        let header: serde_json::Value = serde_json::from_slice(&body[..json_len]).expect("JSON");
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["parameters"]["binary_data_output"], true);
    }
}
