//! An inference answer: the outputs a client asked for, as JSON `data` or
//! as binary data after the JSON (Triton's binary data extension, with the
//! JSON's length in `Inference-Header-Content-Length`).
//!
//! JSON numbers are written as tiffin's `/predict` writes them (serde's
//! shortest round-trip form of each element's own type), so a float32
//! probability read back as float32 has the same bits by either route;
//! binary data is the elements' little-endian bytes.

use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use tiffin_service::{Answer, NdArray, NdData};

use crate::request::Wanted;
use crate::{Datatype, OipError};

/// The header that gives the JSON part's length in bytes when binary data follows.
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

#[derive(Serialize)]
struct Response<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<Output<'a>>,
}

#[derive(Serialize)]
struct Output<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Flat<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// An array's elements as one flat JSON list.
struct Flat<'a>(&'a NdData);

impl Serialize for Flat<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn all<S: Serializer, T: Serialize>(s: S, v: &[T]) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for x in v {
                seq.serialize_element(x)?;
            }
            seq.end()
        }
        match self.0 {
            NdData::Float32(v) => all(s, v),
            NdData::Float64(v) => all(s, v),
            NdData::Int32(v) => all(s, v),
            NdData::Int64(v) => all(s, v),
        }
    }
}

fn push_le(out: &mut Vec<u8>, data: &NdData) {
    match data {
        NdData::Float32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NdData::Float64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NdData::Int32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NdData::Int64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
}

fn byte_len(data: &NdData) -> usize {
    let elem = Datatype::of(data.dtype()).size().unwrap_or(1);
    data.len().saturating_mul(elem)
}

/// The answer of model `name` (version `version`) to request `id`: the
/// `wanted` outputs from the model's `outputs`.
pub fn encode(
    name: &str,
    version: &str,
    id: Option<&str>,
    outputs: &[(String, NdArray)],
    wanted: &[Wanted],
) -> Result<Answer, OipError> {
    let mut chosen = Vec::with_capacity(wanted.len());
    for w in wanted {
        let (_, array) = outputs
            .iter()
            .find(|(n, _)| *n == w.name)
            .ok_or_else(|| OipError::internal(format!("the model gave no output '{}'", w.name)))?;
        chosen.push((w, array));
    }
    let response = Response {
        model_name: name,
        model_version: version,
        id,
        outputs: chosen
            .iter()
            .map(|(w, array)| Output {
                name: &w.name,
                datatype: Datatype::of(array.dtype()).as_str(),
                shape: array.shape(),
                parameters: w.binary.then(|| BinarySize {
                    binary_data_size: byte_len(array.data()),
                }),
                data: (!w.binary).then(|| Flat(array.data())),
            })
            .collect(),
    };
    let mut body = serde_json::to_vec(&response)
        .map_err(|e| OipError::internal(format!("cannot encode the answer: {e}")))?;
    let json_len = body.len();
    let binary: Vec<&NdArray> = chosen
        .iter()
        .filter(|(w, _)| w.binary)
        .map(|(_, a)| *a)
        .collect();
    let mut answer = Answer::from(Bytes::new());
    if binary.is_empty() {
        answer.content_type = Some("application/json".into());
    } else {
        body.reserve(binary.iter().map(|a| byte_len(a.data())).sum());
        for array in binary {
            push_le(&mut body, array.data());
        }
        answer.content_type = Some("application/octet-stream".into());
        answer
            .headers
            .push((HEADER_LENGTH.to_string(), json_len.to_string()));
    }
    answer.body = Bytes::from(body);
    Ok(answer)
}
