//! The Open Inference Protocol (KServe "v2", spoken by Triton, KServe,
//! MLServer and others; `oip/spec/`) over a tiffin service.
//!
//! The protocol names models, not APIs. A service declares the models it
//! serves as [`ModelCard`]s (`tiffin_service::model_card`), and
//! [`serve_model`] adds the model's inference route,
//! `POST /v2/models/{name}[/versions/{version}]/infer`, as ordinary APIs of
//! the service. So an inference request is batched, bounded by the traffic
//! timeout and deadlines, logged and metered (`endpoint` is the route) like
//! every other call, and the gRPC front door's `ModelInfer` runs the same
//! API. What the `GET` routes answer (health, metadata, readiness, the
//! repository index) is rendered by [`metadata`] from the cards, and which
//! route a path names is decided once by [`path::parse`].
//!
//! Layers, each pure: [`datatype`] (the protocol's element types),
//! [`request`] (a body, JSON or JSON plus binary tensor data, checked
//! against the model), [`response`] (the answer in either form),
//! [`metadata`] and [`path`]. No I/O happens here.

pub mod datatype;
pub mod metadata;
pub mod path;
pub mod request;
pub mod response;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tiffin_service::{
    ApiError, IoKind, IoSpec, ModelCard, NdArray, NdSpec, RawIo, Service, TensorCard,
};

pub use datatype::Datatype;
pub use request::{InferRequest, Wanted};

/// Why a request cannot be answered: a status and a message, sent as
/// `{"error": message}` as the protocol asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OipError {
    /// The HTTP status (400 for a bad request, 404 for an unknown model).
    pub status: u16,
    /// What is wrong, naming the input, output or model concerned.
    pub message: String,
}

impl OipError {
    /// 400: the request cannot be read or does not fit the model.
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// 404: no such model or version.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
        }
    }

    /// 500: the answer cannot be built.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
        }
    }
}

impl From<OipError> for ApiError {
    fn from(e: OipError) -> Self {
        ApiError::new(e.status, e.message)
    }
}

/// Why a model cannot be served over the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The protocol's inference takes exactly one input here.
    #[error(
        "model '{model}' has {count} inputs; serving over the Open Inference Protocol takes one"
    )]
    Inputs {
        /// The model.
        model: String,
        /// How many inputs it has.
        count: usize,
    },
    /// The input's element type has no protocol datatype tiffin can read.
    #[error(
        "model '{model}': input '{input}' has element type '{dtype}', which tiffin cannot read"
    )]
    Dtype {
        /// The model.
        model: String,
        /// The input.
        input: String,
        /// Its element type.
        dtype: String,
    },
}

/// A model as requests to it are checked: its card, its one input and
/// what that input accepts.
#[derive(Debug, Clone)]
pub struct Model {
    /// What the service declares.
    pub card: ModelCard,
    /// The input every request must name.
    pub input: TensorCard,
    /// The input's datatype.
    pub input_type: Datatype,
    /// The dtype and shape the input is held to.
    pub spec: NdSpec,
}

impl Model {
    /// The model of `card`, if the protocol can serve it.
    pub fn new(card: ModelCard) -> Result<Self, ModelError> {
        let [input] = card.inputs.as_slice() else {
            return Err(ModelError::Inputs {
                model: card.name.clone(),
                count: card.inputs.len(),
            });
        };
        let dtype_error = || ModelError::Dtype {
            model: card.name.clone(),
            input: input.name.clone(),
            dtype: input.dtype.clone(),
        };
        let input_type = Datatype::from_numpy(&input.dtype).ok_or_else(dtype_error)?;
        let dtype = input_type.dtype().ok_or_else(dtype_error)?;
        let input = input.clone();
        let spec = NdSpec {
            dtype,
            shape: input.shape.clone(),
        };
        Ok(Self {
            card,
            input,
            input_type,
            spec,
        })
    }

    /// The output names, for messages.
    pub fn output_names(&self) -> String {
        let names: Vec<&str> = self.card.outputs.iter().map(|o| o.name.as_str()).collect();
        names.join(", ")
    }

    /// Reads a request body and answers it with `run`.
    pub async fn infer<F, Fut>(
        &self,
        body: Bytes,
        run: &F,
    ) -> Result<tiffin_service::Answer, ApiError>
    where
        F: Fn(NdArray) -> Fut,
        Fut: Future<Output = Result<Vec<(String, NdArray)>, ApiError>>,
    {
        let request = request::parse(self, &body)?;
        let outputs = run(request.input).await?;
        let answer = response::encode(
            &self.card.name,
            &self.card.version,
            request.id.as_deref(),
            &outputs,
            &request.outputs,
        )?;
        Ok(answer)
    }
}

/// The API names and routes of `card`'s inference: unversioned, then with its version.
pub fn infer_routes(card: &ModelCard) -> [(String, String); 2] {
    [
        (
            format!("v2_{}_infer", card.name),
            path::infer(&card.name, None),
        ),
        (
            format!("v2_{}_{}_infer", card.name, card.version),
            path::infer(&card.name, Some(&card.version)),
        ),
    ]
}

fn io() -> RawIo {
    let json = IoSpec {
        media_type: IoKind::Json.mime().to_string(),
        schema: serde_json::json!({
            "type": "object",
            "description": "an Open Inference Protocol inference request or response \
                            (JSON, or JSON followed by binary tensor data)",
        }),
        bentoml: serde_json::json!({
            "id": "bentoml.io.JSON",
            "args": { "has_pydantic_model": false, "has_json_encoder": false },
        }),
        example: None,
    };
    RawIo {
        input: IoKind::Json,
        output: IoKind::Json,
        input_spec: json.clone(),
        output_spec: json,
        // Binary tensor data comes as application/octet-stream, or with no type.
        accepts_any_content_type: true,
    }
}

/// Declares `card` on `service` and adds its inference routes, which run
/// `run` on each request's input (see the crate docs).
pub fn serve_model<F, Fut>(service: Service, card: ModelCard, run: F) -> Result<Service, ModelError>
where
    F: Fn(NdArray) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<(String, NdArray)>, ApiError>> + Send + 'static,
{
    let model = Arc::new(Model::new(card.clone())?);
    let run = Arc::new(run);
    let mut service = service.model(card.clone());
    for (name, route) in infer_routes(&card) {
        let (model, run) = (Arc::clone(&model), Arc::clone(&run));
        service = service.raw_api(&name, Some(&route), io(), move |body, _content_type| {
            let (model, run) = (Arc::clone(&model), Arc::clone(&run));
            Box::pin(async move { model.infer(body, &*run).await })
        });
    }
    Ok(service)
}

#[cfg(test)]
mod tests;
