//! ONNX models as tiffin runnables: a model file loaded with `tract-onnx`
//! (pure Rust: no system library, nothing downloaded at build or run time)
//! in each runner worker, and batched along dimension 0.
//!
//! Why tract: ONNX Runtime's Rust bindings (`ort`) need a prebuilt native
//! library fetched at build time, which a machine that only reaches package
//! registries cannot get; tract compiles from crates.io alone and covers the
//! standard operator set (`MatMul`, `Gemm`, `Conv`, `Relu`, `Softmax`, ...),
//! though not every `ai.onnx.ml` operator (see `models/train.py`).
//!
//! [`OnnxModel::load`] does everything that can fail once, when the worker
//! starts: read the file, decode the protobuf, translate every node to a
//! tract operator, infer types and optimise. A missing file, a file that is
//! not ONNX and an operator tract lacks are three [`OnnxError`]s, each
//! naming the file, so the worker's start fails with that message (and the
//! supervisor's crash-loop stop, `runners.max_failed_starts`, reports it
//! once instead of restarting forever).
//!
//! A model served here has exactly one input. [`runnable`] gives it one
//! batchable method, [`RUN_METHOD`]: each call is an [`NdArray`] whose first
//! dimension counts rows, a batch of calls is concatenated along that
//! dimension into one tensor, run once, and every output is split back by
//! row counts, so a call gets the same answer batched as alone, to the bit
//! (the model is row-wise, and `rows` keeps tract's sums from depending on
//! where a row sits; `tests/it/onnx.rs` checks it). [`serve`] builds the zero-code
//! service of `tiffin serve-http --model`.

mod rows;
pub mod serve;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tiffin_service::serde::{Deserialize, Serialize};
use tiffin_service::{DType, NdArray, NdData, NdSpec, Runnable};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_hir::infer::Factoid;

/// The batchable method of an ONNX runnable.
pub const RUN_METHOD: &str = "run";

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file cannot be read (missing, unreadable).
    #[error("cannot read ONNX model {path}: {source}")]
    Read {
        /// The model file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model.
    #[error("{path} is not an ONNX model: {reason}")]
    NotOnnx {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The model is ONNX but cannot be served (an operator tract lacks,
    /// types that cannot be inferred, more than one input, ...).
    #[error("cannot serve ONNX model {path}: {reason}")]
    Unsupported {
        /// The model file.
        path: PathBuf,
        /// tract's explanation, outermost context first.
        reason: String,
    },
    /// A call's input does not fit the model.
    #[error("{0}")]
    BadInput(String),
    /// The model failed while running.
    #[error("the model failed: {0}")]
    Run(String),
}

/// One input or output of a model, as read from the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "tiffin_service::serde")]
pub struct TensorInfo {
    /// The ONNX value name.
    pub name: String,
    /// The element type, or the ONNX name of one tiffin does not carry.
    pub dtype: String,
    /// The shape; `None` for a dimension of any size (a symbol such as `N`).
    pub shape: Vec<Option<usize>>,
}

impl TensorInfo {
    /// The element type as an [`NdArray`] dtype, if tiffin carries it.
    pub fn dtype(&self) -> Option<DType> {
        DType::parse(&self.dtype)
    }
}

/// What a model file declares: its single input and its outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "tiffin_service::serde")]
pub struct ModelInfo {
    /// The inputs (a servable model has exactly one).
    pub inputs: Vec<TensorInfo>,
    /// The outputs, in the model's order.
    pub outputs: Vec<TensorInfo>,
}

impl ModelInfo {
    /// What a call must send: the single input's dtype and shape.
    pub fn input_spec(&self) -> Option<NdSpec> {
        let input = self.inputs.first()?;
        Some(NdSpec {
            dtype: input.dtype()?,
            shape: input.shape.clone(),
        })
    }
}

fn dtype_name(dt: DatumType) -> String {
    match dt {
        DatumType::F32 => "float32".into(),
        DatumType::F64 => "float64".into(),
        DatumType::I32 => "int32".into(),
        DatumType::I64 => "int64".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn typed_info(model: &TypedModel, outlets: &[OutletId]) -> TractResult<Vec<TensorInfo>> {
    outlets
        .iter()
        .map(|&o| {
            let fact = model.outlet_fact(o)?;
            let name = model
                .outlet_label(o)
                .map(str::to_string)
                .unwrap_or_else(|| model.node(o.node).name.clone());
            Ok(TensorInfo {
                name,
                dtype: dtype_name(fact.datum_type),
                shape: fact.shape.iter().map(|d| d.as_usize()).collect(),
            })
        })
        .collect()
}

fn proto_model(path: &Path, bytes: &[u8]) -> Result<tract_onnx::pb::ModelProto, OnnxError> {
    let not_onnx = |reason: String| OnnxError::NotOnnx {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = bytes;
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut reader)
        .map_err(|e| not_onnx(format!("the protobuf does not decode: {e:#}")))?;
    // Almost any byte string decodes as *some* protobuf; an ONNX model
    // has an IR version and a graph with at least one node.
    if proto.ir_version <= 0 {
        return Err(not_onnx("it has no ONNX IR version".into()));
    }
    match &proto.graph {
        Some(g) if !g.node.is_empty() => Ok(proto),
        _ => Err(not_onnx("it has no graph of nodes".into())),
    }
}

/// The typed model of a file's bytes: every operator translated, types inferred.
fn typed_model(path: &Path, bytes: &[u8]) -> Result<TypedModel, OnnxError> {
    let proto = proto_model(path, bytes)?;
    let unsupported = |e: TractError| OnnxError::Unsupported {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .map_err(unsupported)?;
    let inputs = model.input_outlets().map_err(unsupported)?.len();
    if inputs != 1 {
        return Err(OnnxError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("it has {inputs} inputs; tiffin serves models with exactly one"),
        });
    }
    // The declared element type must be known before typing; a missing one
    // is an input tiffin cannot build (dimensions may stay symbolic).
    let fact = model.input_fact(0).map_err(unsupported)?;
    if fact.datum_type.concretize().is_none() {
        return Err(OnnxError::Unsupported {
            path: path.to_path_buf(),
            reason: "its input has no declared element type".into(),
        });
    }
    model.into_typed().map_err(unsupported)
}

fn read(path: &Path) -> Result<Vec<u8>, OnnxError> {
    std::fs::read(path).map_err(|source| OnnxError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads what a model file declares without preparing it to run (cheap
/// enough for every API server and the model store).
pub fn inspect(path: &Path) -> Result<ModelInfo, OnnxError> {
    inspect_bytes(path, &read(path)?)
}

/// [`inspect`] for bytes already in memory; `path` only names them in errors.
pub fn inspect_bytes(path: &Path, bytes: &[u8]) -> Result<ModelInfo, OnnxError> {
    let model = typed_model(path, bytes)?;
    let info = |outlets: TractResult<&[OutletId]>| {
        outlets
            .and_then(|o| typed_info(&model, o))
            .map_err(|e| OnnxError::Unsupported {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })
    };
    let inputs = info(model.input_outlets())?;
    let outputs = info(model.output_outlets())?;
    let info = ModelInfo { inputs, outputs };
    if info.input_spec().is_none() {
        return Err(OnnxError::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "its input has element type {}; tiffin carries float32, float64, int32 and int64",
                info.inputs[0].dtype
            ),
        });
    }
    Ok(info)
}

/// A model ready to run: optimised once, shared by every call of a worker.
pub struct OnnxModel {
    path: PathBuf,
    info: ModelInfo,
    input: NdSpec,
    plan: Arc<TypedRunnableModel>,
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

/// One call's answer: every output of the model, by name, in its order.
pub type Outputs = Vec<(String, NdArray)>;

fn to_tensor(array: NdArray) -> Result<Tensor, OnnxError> {
    let (shape, data) = array.into_parts();
    let bad = |e: TractError| OnnxError::BadInput(format!("{e:#}"));
    match data {
        NdData::Float32(v) => Tensor::from_shape(&shape, &v).map_err(bad),
        NdData::Float64(v) => Tensor::from_shape(&shape, &v).map_err(bad),
        NdData::Int32(v) => Tensor::from_shape(&shape, &v).map_err(bad),
        NdData::Int64(v) => Tensor::from_shape(&shape, &v).map_err(bad),
    }
}

fn from_tensor(name: &str, t: &Tensor) -> Result<NdArray, OnnxError> {
    let shape = t.shape().to_vec();
    let fail = |e: TractError| OnnxError::Run(format!("output {name}: {e:#}"));
    let view = t.try_as_plain_ram().map_err(fail)?;
    let data = match t.datum_type() {
        DatumType::F32 => NdData::Float32(view.as_slice::<f32>().map_err(fail)?.to_vec()),
        DatumType::F64 => NdData::Float64(view.as_slice::<f64>().map_err(fail)?.to_vec()),
        DatumType::I32 => NdData::Int32(view.as_slice::<i32>().map_err(fail)?.to_vec()),
        DatumType::I64 => NdData::Int64(view.as_slice::<i64>().map_err(fail)?.to_vec()),
        other => {
            return Err(OnnxError::Run(format!(
                "output {name} has element type {other:?}, which tiffin does not carry"
            )));
        }
    };
    NdArray::new(shape, data).map_err(|e| OnnxError::Run(format!("output {name}: {e}")))
}

impl OnnxModel {
    /// Loads and prepares the model at `path` (see the module docs for the errors).
    pub fn load(path: &Path) -> Result<Self, OnnxError> {
        Self::load_bytes(path, &read(path)?)
    }

    /// [`OnnxModel::load`] for bytes already in memory (a model compiled
    /// into the binary); `path` only names them in errors.
    pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Self, OnnxError> {
        let info = inspect_bytes(path, bytes)?;
        let input = info.input_spec().ok_or_else(|| OnnxError::Unsupported {
            path: path.to_path_buf(),
            reason: "its input's element type is not carried".into(),
        })?;
        let unsupported = |e: TractError| OnnxError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let mut optimized = typed_model(path, bytes)?
            .into_optimized()
            .map_err(unsupported)?;
        // A batched call must get the bits it gets alone (see `rows`).
        rows::make_row_exact(&mut optimized);
        let plan = optimized.into_runnable().map_err(unsupported)?;
        Ok(Self {
            path: path.to_path_buf(),
            info,
            input,
            plan,
        })
    }

    /// What the file declares.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The file the model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The single input's dtype and shape.
    pub fn input_spec(&self) -> &NdSpec {
        &self.input
    }

    /// Checks one call's input: the model's dtype (integers widen to floats)
    /// and shape, any size along a dimension the model leaves open.
    pub fn check(&self, input: NdArray) -> Result<NdArray, OnnxError> {
        self.input
            .check(input)
            .map_err(|e| OnnxError::BadInput(e.message))
    }

    /// Runs one input through the model.
    pub fn run(&self, input: NdArray) -> Result<Outputs, OnnxError> {
        let input = self.check(input)?;
        let outputs = self
            .plan
            .run(tvec!(to_tensor(input)?.into()))
            .map_err(|e| OnnxError::Run(format!("{e:#}")))?;
        self.info
            .outputs
            .iter()
            .zip(outputs.iter())
            .map(|(info, t)| Ok((info.name.clone(), from_tensor(&info.name, t)?)))
            .collect()
    }

    /// Runs many calls as one tensor: inputs are concatenated along
    /// dimension 0, run once, and every output is split back by each call's
    /// row count. A model whose first input dimension is fixed runs the
    /// calls one by one instead.
    pub fn run_batch(&self, inputs: Vec<NdArray>) -> Result<Vec<Outputs>, OnnxError> {
        let batchable = matches!(self.input.shape.first(), Some(None));
        if inputs.len() <= 1 || !batchable {
            return inputs.into_iter().map(|i| self.run(i)).collect();
        }
        let inputs = inputs
            .into_iter()
            .map(|i| self.check(i))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<usize> = inputs.iter().map(|a| a.shape()[0]).collect();
        let total: usize = rows.iter().sum();
        let mut shape = inputs[0].shape().to_vec();
        shape[0] = total;
        let data = concat(inputs, self.input.dtype)?;
        let joined = NdArray::new(shape, data).map_err(|e| OnnxError::Run(e.to_string()))?;
        let outputs = self.run(joined)?;
        let mut answers: Vec<Outputs> = rows.iter().map(|_| Vec::new()).collect();
        for (name, array) in outputs {
            if array.shape().first() != Some(&total) {
                return Err(OnnxError::Run(format!(
                    "output {name} has shape {:?}, not {total} rows: it is not batched \
                     along dimension 0",
                    array.shape()
                )));
            }
            for (answer, part) in answers.iter_mut().zip(split(array, &rows)?) {
                answer.push((name.clone(), part));
            }
        }
        Ok(answers)
    }
}

/// Concatenates arrays of one dtype (already checked) along dimension 0.
fn concat(inputs: Vec<NdArray>, dtype: DType) -> Result<NdData, OnnxError> {
    fn join<T>(inputs: Vec<NdArray>, take: impl Fn(NdData) -> Option<Vec<T>>) -> Option<Vec<T>> {
        let mut out = Vec::new();
        for a in inputs {
            out.extend(take(a.into_parts().1)?);
        }
        Some(out)
    }
    // One arm a dtype: each takes that variant's vector out of every input.
    macro_rules! join_as {
        ($variant:ident) => {
            join(inputs, |d| match d {
                NdData::$variant(v) => Some(v),
                _ => None,
            })
            .map(NdData::$variant)
        };
    }
    let joined = match dtype {
        DType::Float32 => join_as!(Float32),
        DType::Float64 => join_as!(Float64),
        DType::Int32 => join_as!(Int32),
        DType::Int64 => join_as!(Int64),
    };
    joined.ok_or_else(|| OnnxError::Run("a batch mixes element types".into()))
}

/// Splits an array along dimension 0 into pieces of `rows` rows.
fn split(array: NdArray, rows: &[usize]) -> Result<Vec<NdArray>, OnnxError> {
    let (shape, data) = array.into_parts();
    let stride: usize = shape[1..].iter().product();
    fn pieces<T: Clone>(v: &[T], rows: &[usize], stride: usize) -> Vec<Vec<T>> {
        let mut at = 0;
        rows.iter()
            .map(|&r| {
                let piece = v[at..at + r * stride].to_vec();
                at += r * stride;
                piece
            })
            .collect()
    }
    let datas: Vec<NdData> = match &data {
        NdData::Float32(v) => pieces(v, rows, stride)
            .into_iter()
            .map(NdData::Float32)
            .collect(),
        NdData::Float64(v) => pieces(v, rows, stride)
            .into_iter()
            .map(NdData::Float64)
            .collect(),
        NdData::Int32(v) => pieces(v, rows, stride)
            .into_iter()
            .map(NdData::Int32)
            .collect(),
        NdData::Int64(v) => pieces(v, rows, stride)
            .into_iter()
            .map(NdData::Int64)
            .collect(),
    };
    datas
        .into_iter()
        .zip(rows)
        .map(|(d, &r)| {
            let mut s = shape.clone();
            s[0] = r;
            NdArray::new(s, d).map_err(|e| OnnxError::Run(e.to_string()))
        })
        .collect()
}

/// The runnable of a loaded model: one batchable method, [`RUN_METHOD`],
/// taking an [`NdArray`] and answering [`Outputs`].
pub fn runnable(model: OnnxModel) -> Runnable {
    let model = Arc::new(model);
    Runnable::new().try_batch_method(RUN_METHOD, move |inputs: Vec<NdArray>| {
        model.run_batch(inputs)
    })
}
