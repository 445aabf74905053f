//! What a service says about the models it serves, for protocols that name
//! models rather than APIs.
//!
//! A BentoML service lists its models (`svc.models`); the Open Inference
//! Protocol (crate `oip/`) asks a server for each model's name, versions,
//! platform and tensors (`GET /v2/models/{name}`), and whether it is ready.
//! A [`ModelCard`] carries exactly that, protocol-neutral: element types are
//! numpy's names (`float32`, `int64`, ...) and a dimension of any size is
//! `None`, as [`NdSpec`](crate::NdSpec) writes shapes. The service only
//! holds the cards; the API server renders them, and the protocol's
//! inference route is an ordinary API of the service, so it is batched,
//! metered and bounded like any other.

/// One tensor a model takes or gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorCard {
    /// The tensor's name in the model.
    pub name: String,
    /// The element type, as numpy names it (`float32`, `int64`, ...).
    pub dtype: String,
    /// The shape; `None` for a dimension of any size.
    pub shape: Vec<Option<usize>>,
}

/// One model a service serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCard {
    /// The model's name (a `--model` file's stem, or its store name).
    pub name: String,
    /// The version served (the store's version, or `1` for a file).
    pub version: String,
    /// What runs it, in the protocol's words (`onnx`, `python`, ...).
    pub platform: String,
    /// Its inputs, in the model's order.
    pub inputs: Vec<TensorCard>,
    /// Its outputs, in the model's order.
    pub outputs: Vec<TensorCard>,
}
