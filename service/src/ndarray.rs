//! N-dimensional arrays as APIs and runners exchange them (BentoML's
//! `bentoml.io.NumpyNdarray`).
//!
//! Over HTTP an array is BentoML's JSON form: nested lists, `[[1, 2], [3, 4]]`
//! is shape `[2, 2]`. [`NumpyNdarray`] reads such a body with a streaming
//! visitor straight into one flat vector (no `serde_json::Value` tree, so a
//! body of a million numbers costs 8 bytes a number), checks that it is
//! rectangular, and infers the dtype as numpy's `np.array(json)` would: all
//! integers give `int64`, any fraction or exponent gives `float64`.
//!
//! What an API expects is an [`NdSpec`] (dtype and shape, `None` for a
//! dimension of any size, like BentoML's `NumpyNdarray(dtype=..., shape=(-1, 64),
//! enforce_shape=True, enforce_dtype=True)`); [`NdSpec::check`] casts and
//! answers 400 naming the expected and the received shape or dtype. Between
//! an API server and a runner worker an [`NdArray`] travels as its serde
//! form (shape, dtype, flat data), which is what a runnable's method takes.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Deserializer, Serialize};

use bytes::Bytes;

use crate::error::ApiError;
use crate::io::{IoDescriptor, IoKind, IoSpec};

/// The element type of an array (the numpy names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// `float32`.
    Float32,
    /// `float64`.
    Float64,
    /// `int32`.
    Int32,
    /// `int64`.
    Int64,
}

impl DType {
    /// The numpy name (`float32`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float64 => "float64",
            DType::Int32 => "int32",
            DType::Int64 => "int64",
        }
    }

    /// Parses a numpy name; `None` for names tiffin does not carry.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "float32" | "float" => Some(DType::Float32),
            "float64" | "double" => Some(DType::Float64),
            "int32" => Some(DType::Int32),
            "int64" => Some(DType::Int64),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The elements of an array, flat, in row-major order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NdData {
    /// `float32` elements.
    Float32(Vec<f32>),
    /// `float64` elements.
    Float64(Vec<f64>),
    /// `int32` elements.
    Int32(Vec<i32>),
    /// `int64` elements.
    Int64(Vec<i64>),
}

impl NdData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            NdData::Float32(_) => DType::Float32,
            NdData::Float64(_) => DType::Float64,
            NdData::Int32(_) => DType::Int32,
            NdData::Int64(_) => DType::Int64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            NdData::Float32(v) => v.len(),
            NdData::Float64(v) => v.len(),
            NdData::Int32(v) => v.len(),
            NdData::Int64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why an [`NdArray`] could not be built or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdError {
    /// The shape's element count differs from the data's.
    #[error("shape {shape:?} holds {expected} elements but {actual} were given")]
    Size {
        /// The shape asked for.
        shape: Vec<usize>,
        /// Its element count.
        expected: usize,
        /// The data's element count.
        actual: usize,
    },
    /// A value cannot be represented in the target dtype without loss.
    #[error("cannot convert {from} to {to} without loss")]
    Cast {
        /// The array's dtype.
        from: DType,
        /// The dtype asked for.
        to: DType,
    },
}

/// An n-dimensional array: a shape and its row-major elements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NdArray {
    shape: Vec<usize>,
    data: NdData,
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl NdArray {
    /// An array of `shape` holding `data`; the element counts must agree.
    pub fn new(shape: Vec<usize>, data: NdData) -> Result<Self, NdError> {
        let expected = element_count(&shape).unwrap_or(usize::MAX);
        if expected != data.len() {
            return Err(NdError::Size {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements.
    pub fn data(&self) -> &NdData {
        &self.data
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Shape and elements, by value.
    pub fn into_parts(self) -> (Vec<usize>, NdData) {
        (self.shape, self.data)
    }

    /// The same values as `to`. Integers widen to floats (as numpy's
    /// `np.array(obj, dtype=...)` does); floats never become integers, and
    /// an `int64` outside `int32` is refused rather than wrapped.
    pub fn cast(self, to: DType) -> Result<Self, NdError> {
        let from = self.dtype();
        if from == to {
            return Ok(self);
        }
        let lossy = || NdError::Cast { from, to };
        let data = match (self.data, to) {
            (NdData::Float64(v), DType::Float32) => {
                NdData::Float32(v.into_iter().map(|x| x as f32).collect())
            }
            (NdData::Float32(v), DType::Float64) => {
                NdData::Float64(v.into_iter().map(f64::from).collect())
            }
            (NdData::Int64(v), DType::Float32) => {
                NdData::Float32(v.into_iter().map(|x| x as f32).collect())
            }
            (NdData::Int64(v), DType::Float64) => {
                NdData::Float64(v.into_iter().map(|x| x as f64).collect())
            }
            (NdData::Int32(v), DType::Float32) => {
                NdData::Float32(v.into_iter().map(|x| x as f32).collect())
            }
            (NdData::Int32(v), DType::Float64) => {
                NdData::Float64(v.into_iter().map(f64::from).collect())
            }
            (NdData::Int32(v), DType::Int64) => {
                NdData::Int64(v.into_iter().map(i64::from).collect())
            }
            (NdData::Int64(v), DType::Int32) => NdData::Int32(
                v.into_iter()
                    .map(|x| i32::try_from(x).map_err(|_| lossy()))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(lossy()),
        };
        Ok(Self {
            shape: self.shape,
            data,
        })
    }
}

/// Renders a shape the way numpy prints one, with `-1` for any size.
pub fn shape_string(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or_else(|| "-1".to_string(), |n| n.to_string()))
        .collect();
    if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    }
}

fn known(shape: &[usize]) -> Vec<Option<usize>> {
    shape.iter().copied().map(Some).collect()
}

/// What an API expects of an array: its dtype, and its shape with `None`
/// for a dimension of any size (BentoML's `-1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NdSpec {
    /// Expected element type; integers given for a float type are converted.
    pub dtype: DType,
    /// Expected shape; `None` matches any size.
    pub shape: Vec<Option<usize>>,
}

impl NdSpec {
    /// What the documentation says of a `NumpyNdarray` body held to this
    /// spec: BentoML's descriptor with `dtype`, `shape` (`-1` for any size)
    /// and both enforced, as `NumpyNdarray(dtype=..., shape=...,
    /// enforce_dtype=True, enforce_shape=True).to_spec()` writes it.
    pub fn io_spec(&self) -> IoSpec {
        let shape: Vec<i64> = self
            .shape
            .iter()
            .map(|d| d.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)))
            .collect();
        let mut spec = NumpyNdarray::spec();
        spec.schema["description"] = serde_json::json!(format!(
            "an array of {} of shape {} as nested lists",
            self.dtype,
            shape_string(&self.shape)
        ));
        spec.bentoml["args"] = serde_json::json!({
            "dtype": self.dtype.as_str(),
            "shape": shape,
            "enforce_dtype": true,
            "enforce_shape": true,
        });
        spec
    }

    /// Checks `array` against the spec and converts it to the spec's dtype;
    /// 400 naming what was expected and what was received otherwise.
    pub fn check(&self, array: NdArray) -> Result<NdArray, ApiError> {
        let fits = array.shape.len() == self.shape.len()
            && array
                .shape
                .iter()
                .zip(&self.shape)
                .all(|(got, want)| want.is_none_or(|w| w == *got));
        if !fits {
            return Err(ApiError::bad_request(format!(
                "expected an array of shape {}, received shape {}",
                shape_string(&self.shape),
                shape_string(&known(&array.shape)),
            )));
        }
        let from = array.dtype();
        array.cast(self.dtype).map_err(|_| {
            ApiError::bad_request(format!(
                "expected dtype {}, received {from} (an array of shape {})",
                self.dtype,
                shape_string(&self.shape),
            ))
        })
    }
}

/// `application/json` nested lists as an [`NdArray`], and back (BentoML's
/// `bentoml.io.NumpyNdarray`). See the module docs for the dtype inferred.
#[derive(Debug, Clone, Copy, Default)]
pub struct NumpyNdarray;

/// Reads nested JSON lists into a flat vector, recording the shape.
struct Reader {
    /// The length of the lists at each depth, once one is seen.
    shape: Vec<Option<usize>>,
    /// Set once the first innermost list is seen (its depth).
    leaf_depth: Option<usize>,
    ints: Vec<i64>,
    floats: Option<Vec<f64>>,
}

impl Reader {
    fn push_int(&mut self, v: i64) {
        match &mut self.floats {
            Some(f) => f.push(v as f64),
            None => self.ints.push(v),
        }
    }

    fn push_float(&mut self, v: f64) {
        let floats = self
            .floats
            .get_or_insert_with(|| self.ints.drain(..).map(|x| x as f64).collect());
        floats.push(v);
    }
}

/// One list at `depth` (0 is the outermost).
struct Level<'a> {
    reader: &'a mut Reader,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a list of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth;
        let reader = self.reader;
        if reader.leaf_depth.is_some_and(|leaf| depth >= leaf) {
            return Err(de::Error::custom(format!(
                "ragged array: a list at depth {depth} where numbers were expected"
            )));
        }
        let mut n = 0usize;
        while seq
            .next_element_seed(Level {
                reader: &mut *reader,
                depth: depth + 1,
            })?
            .is_some()
        {
            n += 1;
        }
        if n == 0 && reader.leaf_depth.is_none() {
            reader.leaf_depth = Some(depth + 1);
        }
        if reader.shape.len() <= depth {
            reader.shape.resize(depth + 1, None);
        }
        match reader.shape[depth] {
            Some(want) if want != n => Err(de::Error::custom(format!(
                "ragged array: a list of {n} at depth {depth} where the first had {want}"
            ))),
            Some(_) => Ok(()),
            None => {
                reader.shape[depth] = Some(n);
                Ok(())
            }
        }
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.leaf(E::custom)?;
        self.reader.push_int(v);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(i) => self.visit_i64(i),
            Err(_) => self.visit_f64(v as f64),
        }
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.leaf(E::custom)?;
        self.reader.push_float(v);
        Ok(())
    }
}

impl Level<'_> {
    /// A number at this depth: the innermost lists must all be this deep.
    fn leaf<E>(&mut self, err: impl Fn(String) -> E) -> Result<(), E> {
        match self.reader.leaf_depth {
            None => {
                self.reader.leaf_depth = Some(self.depth);
                Ok(())
            }
            Some(d) if d == self.depth => Ok(()),
            Some(d) => Err(err(format!(
                "ragged array: a number at depth {} where lists {} deep were expected",
                self.depth, d
            ))),
        }
    }
}

impl NumpyNdarray {
    /// Parses a JSON body of nested lists (a bare number is a 0-d array).
    pub fn parse(body: &[u8]) -> Result<NdArray, ApiError> {
        let mut reader = Reader {
            shape: Vec::new(),
            leaf_depth: None,
            ints: Vec::new(),
            floats: None,
        };
        let mut de = serde_json::Deserializer::from_slice(body);
        Level {
            reader: &mut reader,
            depth: 0,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| {
            ApiError::bad_request(format!("body is not an array of numbers as JSON: {e}"))
        })?;
        let shape: Vec<usize> = reader.shape.iter().map(|d| d.unwrap_or(0)).collect();
        let data = match reader.floats {
            Some(f) => NdData::Float64(f),
            None => NdData::Int64(reader.ints),
        };
        NdArray::new(shape, data)
            .map_err(|e| ApiError::bad_request(format!("body is not a rectangular array: {e}")))
    }

    /// Renders an array as nested JSON lists.
    pub fn render(array: &NdArray) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(array.data.len() * 8 + 2);
        let mut ser = serde_json::Serializer::new(&mut out);
        let r = match &array.data {
            NdData::Float32(v) => Nested(&array.shape, v).serialize(&mut ser),
            NdData::Float64(v) => Nested(&array.shape, v).serialize(&mut ser),
            NdData::Int32(v) => Nested(&array.shape, v).serialize(&mut ser),
            NdData::Int64(v) => Nested(&array.shape, v).serialize(&mut ser),
        };
        r.map_err(|e| ApiError::internal(format!("cannot encode the output array: {e}")))?;
        Ok(out)
    }
}

impl IoDescriptor for NumpyNdarray {
    type Value = NdArray;
    const KIND: IoKind = IoKind::Json;

    fn decode(body: Bytes) -> Result<NdArray, ApiError> {
        Self::parse(&body)
    }

    fn encode(value: NdArray) -> Result<Bytes, ApiError> {
        Self::render(&value).map(Bytes::from)
    }

    fn spec() -> IoSpec {
        IoSpec {
            media_type: IoKind::Json.mime().to_string(),
            schema: serde_json::json!({
                "type": "array",
                "items": {},
                "description": "an n-dimensional array as nested lists",
            }),
            bentoml: serde_json::json!({
                "id": "bentoml.io.NumpyNdarray",
                "args": { "dtype": null, "shape": null,
                          "enforce_dtype": false, "enforce_shape": false },
            }),
            example: None,
        }
    }
}

/// `data` (row-major) under `shape`, serialized as nested lists.
struct Nested<'a, T>(&'a [usize], &'a [T]);

impl<T: Serialize> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Nested(shape, data) = *self;
        match shape.split_first() {
            None => match data.first() {
                Some(v) => v.serialize(s),
                None => s.serialize_unit(),
            },
            Some((&n, rest)) => {
                let stride = element_count(rest).unwrap_or(0);
                let mut seq = s.serialize_seq(Some(n))?;
                for i in 0..n {
                    let start = i * stride;
                    seq.serialize_element(&Nested(rest, &data[start..start + stride]))?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_lists_give_shape_and_dtype() {
        let a = NumpyNdarray::parse(b"[[1, 2, 3], [4, 5, 6]]").unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        assert_eq!(a.data(), &NdData::Int64(vec![1, 2, 3, 4, 5, 6]));
        let a = NumpyNdarray::parse(b"[[1, 2.5], [3, 4]]").unwrap();
        assert_eq!(a.data(), &NdData::Float64(vec![1.0, 2.5, 3.0, 4.0]));
        let a = NumpyNdarray::parse(b"7").unwrap();
        assert_eq!(a.shape(), &[] as &[usize]);
        let a = NumpyNdarray::parse(b"[[], []]").unwrap();
        assert_eq!(a.shape(), &[2, 0]);
        assert_eq!(
            NumpyNdarray::render(&NumpyNdarray::parse(b"[[1,2],[3,4]]").unwrap()).unwrap(),
            b"[[1,2],[3,4]]"
        );
    }

    #[test]
    fn ragged_or_non_numeric_bodies_are_refused_with_the_reason() {
        for (body, why) in [
            (&b"[[1, 2], [3]]"[..], "ragged"),
            (b"[[1, 2], 3]", "ragged"),
            (b"[1, [2]]", "ragged"),
            (b"[\"a\"]", "a number or a list"),
            (b"[1, 2", "EOF"),
            (b"{\"a\": 1}", "a number or a list"),
        ] {
            let e = NumpyNdarray::parse(body).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(
                e.message.contains(why),
                "{}: {}",
                String::from_utf8_lossy(body),
                e.message
            );
        }
    }

    #[test]
    fn the_spec_names_expected_and_received_shapes_and_dtypes() {
        let spec = NdSpec {
            dtype: DType::Float32,
            shape: vec![None, Some(4)],
        };
        let ok = spec
            .check(NumpyNdarray::parse(b"[[1,2,3,4]]").unwrap())
            .unwrap();
        assert_eq!(ok.data(), &NdData::Float32(vec![1.0, 2.0, 3.0, 4.0]));
        let e = spec
            .check(NumpyNdarray::parse(b"[[1,2,3]]").unwrap())
            .unwrap_err();
        assert_eq!(
            e.message,
            "expected an array of shape (-1, 4), received shape (1, 3)"
        );
        let ints = NdSpec {
            dtype: DType::Int64,
            shape: vec![Some(2)],
        };
        let e = ints
            .check(NumpyNdarray::parse(b"[1.5, 2]").unwrap())
            .unwrap_err();
        assert!(
            e.message.contains("expected dtype int64, received float64"),
            "{}",
            e.message
        );
    }
}
