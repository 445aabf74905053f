//! The zero-code service of `tiffin serve-http --model PATH` (and
//! `serve-grpc`): one runner named after the model, whose workers each load
//! the file, and one API, `POST /predict`, taking BentoML's `NumpyNdarray`
//! JSON (nested lists).
//!
//! The API server checks every request against the input the model declares
//! (dtype and shape, any size where the model has a symbol such as `N`)
//! before anything reaches a worker, so a wrong shape is a 400 naming both
//! shapes and never costs a runner call. The answer is the model's output
//! as nested lists when it has one output, else a JSON object with one
//! nested list per output name, in the model's order. Batching needs
//! nothing: the runner's method is batchable, and `runners.batching` (on by
//! default) applies.
//!
//! What the documentation publishes (OpenAPI, gRPC `ServiceMetadata`,
//! BentoML's clients) is the model's own: the input as a `NumpyNdarray` of
//! its dtype and shape, enforced, and a single output likewise
//! ([`NdSpec::io_spec`], `Service::describe_api`), so over gRPC a
//! one-output model answers an `ndarray` in its dtype.
//!
//! The model is read in every process that builds the service: the
//! supervisor and API servers only [`inspect`] it (its declared input and
//! outputs), and each runner worker [`OnnxModel::load`]s it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tiffin_service::{
    ApiError, IoDescriptor, IoKind, IoSpec, ModelCard, NdArray, NdSpec, NumpyNdarray, Runner,
    Service, TensorCard,
};

use crate::{ModelInfo, OnnxError, OnnxModel, Outputs, RUN_METHOD, inspect, runnable};

/// The API every model service has.
pub const PREDICT_API: &str = "predict";

/// A model's outputs as JSON: nested lists for a single output, else an
/// object of them by output name.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputsJson;

impl IoDescriptor for OutputsJson {
    type Value = Outputs;
    const KIND: IoKind = IoKind::Json;

    fn decode(body: Bytes) -> Result<Outputs, ApiError> {
        let _ = body;
        Err(ApiError::internal(
            "model outputs are an answer, not a request body",
        ))
    }

    fn encode(value: Outputs) -> Result<Bytes, ApiError> {
        if let [(_, only)] = value.as_slice() {
            return NumpyNdarray::render(only).map(Bytes::from);
        }
        let mut out = b"{".to_vec();
        for (i, (name, array)) in value.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let key = serde_json::to_vec(name)
                .map_err(|e| ApiError::internal(format!("cannot encode output name: {e}")))?;
            out.extend_from_slice(&key);
            out.push(b':');
            out.extend_from_slice(&NumpyNdarray::render(array)?);
        }
        out.push(b'}');
        Ok(Bytes::from(out))
    }

    fn spec() -> IoSpec {
        IoSpec {
            media_type: IoKind::Json.mime().to_string(),
            schema: serde_json::json!({
                "description": "the output as nested lists, or an object of outputs by name",
            }),
            bentoml: serde_json::json!({
                "id": "bentoml.io.JSON",
                "args": { "has_pydantic_model": false, "has_json_encoder": false },
            }),
            example: None,
        }
    }
}

/// The runner and service name for a model file: its file stem, with every
/// character other than ASCII letters, digits and `_` made `_`.
pub fn name_for(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "model".into()
    } else {
        name
    }
}

/// The runner `name` whose workers load the model at `path`.
pub fn runner(name: &str, path: &Path) -> Runner {
    let path: PathBuf = path.to_path_buf();
    Runner::try_new(name, move || {
        OnnxModel::load(&path)
            .map(runnable)
            .map_err(|e| e.to_string())
    })
}

/// What the service says of the model it serves (`ModelCard`): `name` at
/// `version`, on the `onnx` platform, with the tensors `info` declares.
pub fn card(name: &str, version: &str, info: &ModelInfo) -> ModelCard {
    let tensors = |list: &[crate::TensorInfo]| {
        list.iter()
            .map(|t| TensorCard {
                name: t.name.clone(),
                dtype: t.dtype.clone(),
                shape: t.shape.clone(),
            })
            .collect()
    };
    ModelCard {
        name: name.to_string(),
        version: version.to_string(),
        platform: "onnx".into(),
        inputs: tensors(&info.inputs),
        outputs: tensors(&info.outputs),
    }
}

/// The service serving the model at `path` as `name`, version `version`
/// (see the module docs), and what the model declares.
pub fn service(name: &str, version: &str, path: &Path) -> Result<(Service, ModelInfo), OnnxError> {
    let info = inspect(path)?;
    let spec = info.input_spec().ok_or_else(|| OnnxError::Unsupported {
        path: path.to_path_buf(),
        reason: "its input's element type is not carried".into(),
    })?;
    let runner = runner(name, path);
    let run = runner.method::<NdArray, Outputs>(RUN_METHOD);
    let input_doc = spec.io_spec();
    // One output: the answer is that array, a NumpyNdarray of its own (over
    // gRPC an `ndarray` in the model's dtype); several: a JSON object.
    let output_doc = match info.outputs.as_slice() {
        [only] => only.dtype().map(|dtype| {
            NdSpec {
                dtype,
                shape: only.shape.clone(),
            }
            .io_spec()
        }),
        _ => None,
    };
    let service = Service::new(name)
        .runner(&runner)
        .api(
            PREDICT_API,
            NumpyNdarray,
            OutputsJson,
            move |array: NdArray| {
                let call = spec.check(array).map(|input| run.call(input));
                async move { Ok(call?.await?) }
            },
        )
        .describe_api(PREDICT_API, Some(input_doc), output_doc);
    // The same model over the Open Inference Protocol (crate `oip/`): its
    // inference routes are APIs of this service, run by the same runner.
    let service = tiffin_oip::serve_model(
        service,
        card(name, version, &info),
        move |input| async move { Ok(run.call(input).await?) },
    )
    .map_err(|e| OnnxError::Unsupported {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok((service, info))
}
