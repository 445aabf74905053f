//! An inference request (`POST /v2/models/{name}/infer`), read into the
//! one array the model takes and the outputs the client wants.
//!
//! The body is a JSON object, optionally followed by binary tensor data
//! (Triton's binary data extension, which `tritonclient` uses by default):
//! an input whose `parameters.binary_data_size` is set takes that many bytes,
//! little-endian, from the data after the JSON, in the order of the inputs.
//! Where the JSON ends is found by reading it, so a body is understood the
//! same with or without the `Inference-Header-Content-Length` header that
//! announces the JSON's length. JSON `data` may be flat or nested; either
//! way it is read as tiffin's `/predict` reads nested lists
//! ([`NumpyNdarray::parse`]) and converted the same way, so an image gives
//! the model the same bits through either route.
//!
//! Everything is checked before the model runs: one input, with the name
//! and datatype the model declares, a shape whose element count matches the
//! data and that the model accepts (400 naming both shapes), known output
//! names, and no stray bytes.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tiffin_service::{NdArray, NdData, NumpyNdarray};

use crate::{Datatype, Model, OipError};

/// One output a client asked for, and whether it wants it in binary form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The output's name.
    pub name: String,
    /// Send its data as binary after the JSON (`binary_data`).
    pub binary: bool,
}

/// A request, checked against its model.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The client's `id`, echoed in the answer.
    pub id: Option<String>,
    /// The model's input, of the model's dtype and an accepted shape.
    pub input: NdArray,
    /// The outputs to answer with, in order.
    pub outputs: Vec<Wanted>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    inputs: Vec<InputHeader<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputHeader>>,
}

#[derive(Deserialize)]
struct InputHeader<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputHeader {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// A boolean parameter: absent is `None`; anything but a JSON boolean is an error.
fn flag(parameters: Option<&Map<String, Value>>, key: &str) -> Result<Option<bool>, OipError> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(OipError::bad(format!(
            "parameter '{key}' must be a boolean, received {other}"
        ))),
    }
}

/// Splits a body into its JSON object and the binary data after it.
fn split(body: &[u8]) -> Result<(&str, &[u8]), OipError> {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>();
    let json = match stream.next() {
        Some(Ok(raw)) => raw.get(),
        Some(Err(e)) => {
            return Err(OipError::bad(format!(
                "the request is not a JSON inference request: {e}"
            )));
        }
        None => return Err(OipError::bad("the request body is empty")),
    };
    let end = stream.byte_offset();
    Ok((json, body.get(end..).unwrap_or_default()))
}

/// Checks an `Inference-Header-Content-Length` value against `body`: a
/// byte count within the body, at which the request's JSON ends.
pub fn check_header_length(body: &[u8], value: &str) -> Result<(), OipError> {
    let length: usize = value.trim().parse().map_err(|_| {
        OipError::bad(format!(
            "Inference-Header-Content-Length must be a byte count, received {value:?}"
        ))
    })?;
    if length > body.len() {
        return Err(OipError::bad(format!(
            "Inference-Header-Content-Length is {length}, past the body's {} bytes",
            body.len()
        )));
    }
    let end = body.len() - split(body)?.1.len();
    if end != length {
        return Err(OipError::bad(format!(
            "Inference-Header-Content-Length is {length}, but the request's JSON ends after {end} bytes"
        )));
    }
    Ok(())
}

/// The element count of `shape`, every dimension checked.
fn element_count(name: &str, shape: &[i64]) -> Result<(Vec<usize>, usize), OipError> {
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            OipError::bad(format!(
                "input '{name}' has shape {shape:?}: a dimension is negative"
            ))
        })?;
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| OipError::bad(format!("input '{name}' has shape {shape:?}: too large")))?;
    Ok((dims, count))
}

/// Little-endian elements of `datatype` from `bytes`.
fn from_le(datatype: Datatype, bytes: &[u8]) -> Option<NdData> {
    fn read<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .filter_map(|c| <[u8; N]>::try_from(c).ok().map(f))
            .collect()
    }
    Some(match datatype {
        Datatype::Fp32 => NdData::Float32(read(bytes, f32::from_le_bytes)),
        Datatype::Fp64 => NdData::Float64(read(bytes, f64::from_le_bytes)),
        Datatype::Int32 => NdData::Int32(read(bytes, i32::from_le_bytes)),
        Datatype::Int64 => NdData::Int64(read(bytes, i64::from_le_bytes)),
        _ => return None,
    })
}

/// Reads `body` as a request to `model`.
pub fn parse(model: &Model, body: &[u8]) -> Result<InferRequest, OipError> {
    // JSON alone, the common case of JSON tensors, is read in one pass; a
    // body with binary data after its JSON (or any error, to name it) is
    // split first.
    let whole = std::str::from_utf8(body)
        .ok()
        .and_then(|text| serde_json::from_str::<Header<'_>>(text).ok());
    let (header, mut binary) = match whole {
        Some(header) => (header, &[][..]),
        None => {
            let (json, binary) = split(body)?;
            let header: Header<'_> = serde_json::from_str(json).map_err(|e| {
                OipError::bad(format!("the request is not a valid inference request: {e}"))
            })?;
            (header, binary)
        }
    };
    let [input] = header.inputs.as_slice() else {
        return Err(OipError::bad(format!(
            "model '{}' takes one input ('{}'), received {}",
            model.card.name,
            model.input.name,
            header.inputs.len()
        )));
    };
    if input.name != model.input.name {
        return Err(OipError::bad(format!(
            "model '{}' has no input '{}'; its input is '{}'",
            model.card.name, input.name, model.input.name
        )));
    }
    let datatype = Datatype::parse(&input.datatype).ok_or_else(|| {
        OipError::bad(format!(
            "input '{}' has datatype '{}', which the protocol does not define",
            input.name, input.datatype
        ))
    })?;
    if datatype != model.input_type {
        return Err(OipError::bad(format!(
            "input '{}' takes {}, received {datatype}",
            input.name, model.input_type
        )));
    }
    let (dims, count) = element_count(&input.name, &input.shape)?;
    let binary_size = match input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"))
    {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    OipError::bad(format!(
                        "input '{}': binary_data_size must be a byte count, received {v}",
                        input.name
                    ))
                })?,
        ),
    };
    let data = match (binary_size, input.data) {
        (Some(_), Some(_)) => {
            return Err(OipError::bad(format!(
                "input '{}' has both JSON data and binary_data_size",
                input.name
            )));
        }
        (Some(size), None) => {
            let elem = datatype.size().unwrap_or(1);
            if Some(size) != count.checked_mul(elem) {
                return Err(OipError::bad(format!(
                    "input '{}' of shape {:?} and datatype {datatype} needs {} bytes, binary_data_size says {size}",
                    input.name,
                    input.shape,
                    count.saturating_mul(elem)
                )));
            }
            let Some(bytes) = binary.get(..size) else {
                return Err(OipError::bad(format!(
                    "input '{}' claims {size} bytes of binary data, the body has {} after its JSON",
                    input.name,
                    binary.len()
                )));
            };
            binary = binary.get(size..).unwrap_or_default();
            from_le(datatype, bytes).ok_or_else(|| {
                OipError::bad(format!(
                    "input '{}': {datatype} is not supported",
                    input.name
                ))
            })?
        }
        (None, Some(raw)) => {
            let array = NumpyNdarray::parse(raw.get().as_bytes())
                .map_err(|e| OipError::bad(format!("input '{}': {}", input.name, e.message)))?;
            let dtype = model.spec.dtype;
            let array = array.cast(dtype).map_err(|_| {
                OipError::bad(format!(
                    "input '{}' of datatype {datatype} holds values that are not {datatype}",
                    input.name
                ))
            })?;
            array.into_parts().1
        }
        (None, None) => {
            return Err(OipError::bad(format!(
                "input '{}' has neither data nor binary_data_size",
                input.name
            )));
        }
    };
    if !binary.iter().all(u8::is_ascii_whitespace) {
        return Err(OipError::bad(format!(
            "{} bytes after the request's JSON belong to no input",
            binary.len()
        )));
    }
    if data.len() != count {
        return Err(OipError::bad(format!(
            "input '{}' has shape {:?} ({count} elements) but {} values",
            input.name,
            input.shape,
            data.len()
        )));
    }
    let array = NdArray::new(dims, data).map_err(|e| OipError::bad(e.to_string()))?;
    let input = model
        .spec
        .check(array)
        .map_err(|e| OipError::bad(format!("input '{}': {}", model.input.name, e.message)))?;

    let all_binary = flag(header.parameters.as_ref(), "binary_data_output")?.unwrap_or(false);
    // No outputs named (absent, or `[]` as tritonclient sends): all of them.
    let outputs = match header.outputs.filter(|asked| !asked.is_empty()) {
        None => model
            .card
            .outputs
            .iter()
            .map(|o| Wanted {
                name: o.name.clone(),
                binary: all_binary,
            })
            .collect(),
        Some(asked) => asked
            .into_iter()
            .map(|o| {
                if !model.card.outputs.iter().any(|m| m.name == o.name) {
                    return Err(OipError::bad(format!(
                        "model '{}' has no output '{}'; its outputs are {}",
                        model.card.name,
                        o.name,
                        model.output_names()
                    )));
                }
                let binary = flag(o.parameters.as_ref(), "binary_data")?.unwrap_or(all_binary);
                Ok(Wanted {
                    name: o.name,
                    binary,
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(InferRequest {
        id: header.id,
        input,
        outputs,
    })
}
