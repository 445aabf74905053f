//! BentoML's gRPC contents and the bodies an API handler takes, both ways.
//!
//! A `Call` carries its input in one field of `oneof content`; this module
//! turns it into exactly the body (and `Content-Type`) the HTTP front door
//! would hand the same API, so one handler serves both doors:
//!
//! | field              | API input (its BentoML descriptor)   | body                              |
//! |--------------------|--------------------------------------|-----------------------------------|
//! | `serialized_bytes` | any                                  | the bytes, no content type        |
//! | `text`             | `Text`                               | UTF-8 text                        |
//! | `json`             | `JSON` and `NumpyNdarray`            | JSON text                         |
//! | `ndarray`          | `NumpyNdarray`                       | nested lists (JSON)               |
//! | `file`             | `File`, `Image` and raw bytes        | the bytes; `kind` as content type |
//! | `multipart`        | `File`, `Image`                      | a `multipart/form-data` body      |
//!
//! `dataframe` and `series` are refused: tiffin has no table descriptor.
//! The answer goes back in the field of the API's output descriptor:
//! `NumpyNdarray` → `ndarray` (in the dtype the descriptor declares, else
//! the one the values have), `Image` and `File` → `file` (with the mime
//! type as `kind`), `Text` → `text`, `JSON` → `json`, anything else →
//! `serialized_bytes`. Every refusal is `INVALID_ARGUMENT` naming the field
//! and what the API takes.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;
use prost_types::value::Kind;
use tiffin_service::{Api, DType, IoKind, IoSpec, NdArray, NdData, NumpyNdarray};
use tonic::Status;

use super::proto::nd_array::DType as PbDType;
use super::proto::service_metadata_response::DescriptorMetadata;
use super::proto::{self, part, request, response};

/// BentoML's descriptor ids, as `IoSpec::bentoml` names them.
const NDARRAY: &str = "bentoml.io.NumpyNdarray";
const IMAGE: &str = "bentoml.io.Image";
const FILE: &str = "bentoml.io.File";

/// The most elements a `multipart` content may carry (as HTTP's forms).
const MAX_FIELDS: usize = tiffin_service::multipart::MAX_PARTS;

/// The BentoML descriptor id a side of an API publishes.
fn descriptor(spec: &IoSpec) -> &str {
    spec.bentoml["id"].as_str().unwrap_or(FILE)
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

/// The content field that carries a side of an API described by `spec`.
fn field_for(spec: &IoSpec, kind: IoKind) -> &'static str {
    match descriptor(spec) {
        NDARRAY => "ndarray",
        IMAGE | FILE if kind == IoKind::Bytes => "file",
        _ => match kind {
            IoKind::Text => "text",
            IoKind::Json => "json",
            IoKind::Bytes => "serialized_bytes",
        },
    }
}

/// What `ServiceMetadata` says about a side of an API: BentoML's
/// descriptor id, its mime type and its content field.
pub(super) fn describe(spec: &IoSpec, kind: IoKind) -> DescriptorMetadata {
    let attributes = serde_json::json!({
        "mime_type": spec.media_type,
        "content_field": field_for(spec, kind),
    });
    let fields = match json_to_value(attributes).kind {
        Some(Kind::StructValue(s)) => s.fields,
        _ => Default::default(),
    };
    DescriptorMetadata {
        descriptor_id: Some(descriptor(spec).to_string()),
        attributes: Some(prost_types::Struct { fields }),
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

/// The client's error: content `field` is not `what` it should be.
fn invalid(field: &str, what: &str, error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("content field '{field}' is not {what}: {error}"))
}

fn json_body(field: &str, v: prost_types::Value) -> Result<Bytes, Status> {
    let json = value_to_json(v).map_err(|e| invalid(field, "valid", e))?;
    serde_json::to_vec(&json)
        .map(Bytes::from)
        .map_err(|e| invalid(field, "valid", e))
}

/// An `NDArray` message as an array: `shape` (empty: one dimension of all
/// the values), the values field `dtype` names (unspecified: the one field
/// that has values). `uint32` values are widened to `int64`; `bool` and
/// `string` arrays, and `uint64` values past `i64`, are refused.
pub(super) fn ndarray_from_proto(nd: proto::NdArray) -> Result<NdArray, String> {
    let dtype = PbDType::try_from(nd.dtype).map_err(|_| format!("unknown dtype {}", nd.dtype))?;
    let dtype = match dtype {
        PbDType::DtypeUnspecified => {
            let filled: Vec<PbDType> = [
                (!nd.float_values.is_empty(), PbDType::DtypeFloat),
                (!nd.double_values.is_empty(), PbDType::DtypeDouble),
                (!nd.int32_values.is_empty(), PbDType::DtypeInt32),
                (!nd.int64_values.is_empty(), PbDType::DtypeInt64),
                (!nd.uint32_values.is_empty(), PbDType::DtypeUint32),
                (!nd.uint64_values.is_empty(), PbDType::DtypeUint64),
                (!nd.bool_values.is_empty(), PbDType::DtypeBool),
                (!nd.string_values.is_empty(), PbDType::DtypeString),
            ]
            .into_iter()
            .filter_map(|(has, d)| has.then_some(d))
            .collect();
            match filled.as_slice() {
                [] => PbDType::DtypeDouble,
                [one] => *one,
                _ => {
                    return Err("dtype is unspecified and more than one values field is set".into());
                }
            }
        }
        other => other,
    };
    let data = match dtype {
        PbDType::DtypeFloat => NdData::Float32(nd.float_values),
        PbDType::DtypeDouble => NdData::Float64(nd.double_values),
        PbDType::DtypeInt32 => NdData::Int32(nd.int32_values),
        PbDType::DtypeInt64 => NdData::Int64(nd.int64_values),
        PbDType::DtypeUint32 => {
            NdData::Int64(nd.uint32_values.into_iter().map(i64::from).collect())
        }
        PbDType::DtypeUint64 => NdData::Int64(
            nd.uint64_values
                .into_iter()
                .map(|v| i64::try_from(v).map_err(|_| format!("uint64 value {v} exceeds int64")))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(format!(
                "dtype {} is not supported; tiffin carries DTYPE_FLOAT, DTYPE_DOUBLE, \
                 DTYPE_INT32, DTYPE_INT64 (and DTYPE_UINT32/UINT64 as int64)",
                other.as_str_name()
            ));
        }
    };
    let shape = if nd.shape.is_empty() {
        vec![data.len()]
    } else {
        nd.shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d} in shape")))
            .collect::<Result<_, _>>()?
    };
    NdArray::new(shape, data).map_err(|e| e.to_string())
}

/// An array as an `NDArray` message.
pub(super) fn ndarray_to_proto(array: NdArray) -> Result<proto::NdArray, String> {
    let (shape, data) = array.into_parts();
    let shape = shape
        .into_iter()
        .map(|d| i32::try_from(d).map_err(|_| format!("dimension {d} exceeds int32")))
        .collect::<Result<_, _>>()?;
    let mut nd = proto::NdArray {
        shape,
        ..Default::default()
    };
    // Each dtype has its own values field; the others stay empty.
    fn fill<T>(field: &mut Vec<T>, values: Vec<T>, dtype: PbDType) -> PbDType {
        *field = values;
        dtype
    }
    nd.dtype = match data {
        NdData::Float32(v) => fill(&mut nd.float_values, v, PbDType::DtypeFloat),
        NdData::Float64(v) => fill(&mut nd.double_values, v, PbDType::DtypeDouble),
        NdData::Int32(v) => fill(&mut nd.int32_values, v, PbDType::DtypeInt32),
        NdData::Int64(v) => fill(&mut nd.int64_values, v, PbDType::DtypeInt64),
    } as i32;
    Ok(nd)
}

fn ndarray_body(field: &str, nd: proto::NdArray) -> Result<Bytes, Status> {
    let array = ndarray_from_proto(nd).map_err(|e| invalid(field, "a valid array", e))?;
    NumpyNdarray::render(&array)
        .map(Bytes::from)
        .map_err(|e| Status::invalid_argument(e.message))
}

/// A `File`'s `kind` as a content type, when it is a media type.
fn file_type(kind: Option<&str>) -> Option<String> {
    kind.filter(|k| k.contains('/')).map(str::to_string)
}

/// A `multipart` content as the `multipart/form-data` body HTTP would
/// carry: one part per field, in name order, files with the field's name
/// as file name. Returns the body and its content type.
pub(super) fn form_body(fields: HashMap<String, proto::Part>) -> Result<(Bytes, String), Status> {
    if fields.len() > MAX_FIELDS {
        return Err(Status::invalid_argument(format!(
            "content field 'multipart' has more than {MAX_FIELDS} fields"
        )));
    }
    let mut parts = Vec::with_capacity(fields.len());
    let mut names: Vec<&String> = fields.keys().collect();
    names.sort_unstable();
    for name in names {
        if name.is_empty() || name.bytes().any(|b| b == b'"' || b == b'\r' || b == b'\n') {
            return Err(Status::invalid_argument(format!(
                "multipart field name {name:?} is empty or has a quote or line break"
            )));
        }
        let field = format!("multipart field '{name}'");
        let (file, content_type, data) = match fields[name].representation.clone() {
            Some(part::Representation::File(f)) => (
                true,
                file_type(f.kind.as_deref()).unwrap_or_else(|| "application/octet-stream".into()),
                Bytes::from(f.content),
            ),
            Some(part::Representation::SerializedBytes(b)) => {
                (true, "application/octet-stream".into(), Bytes::from(b))
            }
            Some(part::Representation::Text(t)) => {
                (false, "text/plain; charset=utf-8".into(), Bytes::from(t))
            }
            Some(part::Representation::Json(v)) => {
                (false, "application/json".into(), json_body(&field, v)?)
            }
            Some(part::Representation::Ndarray(nd)) => {
                (false, "application/json".into(), ndarray_body(&field, nd)?)
            }
            Some(part::Representation::Dataframe(_) | part::Representation::Series(_)) => {
                return Err(Status::invalid_argument(format!(
                    "{field}: dataframe and series are not supported"
                )));
            }
            None => return Err(Status::invalid_argument(format!("{field} has no value"))),
        };
        parts.push((name.as_str(), file, content_type, data));
    }
    // A boundary that occurs in no part (RFC 2046 §5.1.1).
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let boundary = (0..8u64)
        .map(|i| format!("tiffin-grpc-{:016x}", seed.wrapping_add(i)))
        .find(|b| {
            !parts
                .iter()
                .any(|(_, _, _, d)| d.windows(b.len()).any(|w| w == b.as_bytes()))
        })
        .ok_or_else(|| Status::invalid_argument("no multipart boundary fits these parts"))?;
    let mut body = Vec::new();
    for (name, file, content_type, data) in &parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let filename = if *file {
            format!("; filename=\"{name}\"")
        } else {
            String::new()
        };
        body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{name}\"{filename}\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((
        Bytes::from(body),
        format!("multipart/form-data; boundary={boundary}"),
    ))
}

/// The body (and content type) an API receives for a request content, or
/// why there is none (see the module docs).
pub(super) fn request_body(
    api: &Api,
    content: Option<request::Content>,
) -> Result<(Bytes, Option<String>), Status> {
    let takes = descriptor(&api.input_spec);
    let accepted = field_for(&api.input_spec, api.input);
    let Some(content) = content else {
        return Err(Status::invalid_argument(format!(
            "request for API '{}' has no content; set '{accepted}' or 'serialized_bytes'",
            api.name
        )));
    };
    let field = request_field(&content);
    let files = matches!(takes, IMAGE | FILE) && api.input == IoKind::Bytes;
    match content {
        request::Content::SerializedBytes(b) => Ok((Bytes::from(b), None)),
        request::Content::Text(s) if api.input == IoKind::Text => Ok((Bytes::from(s), None)),
        request::Content::Json(v) if api.input == IoKind::Json => Ok((json_body(field, v)?, None)),
        request::Content::Ndarray(nd) if takes == NDARRAY => Ok((ndarray_body(field, nd)?, None)),
        request::Content::File(f) if api.input == IoKind::Bytes => {
            Ok((Bytes::from(f.content), file_type(f.kind.as_deref())))
        }
        request::Content::Multipart(m) if files => {
            let (body, content_type) = form_body(m.fields)?;
            Ok((body, Some(content_type)))
        }
        request::Content::Dataframe(_) | request::Content::Series(_) => {
            Err(Status::invalid_argument(format!(
                "content field '{field}' is not supported (tiffin has no table descriptor); \
                 API '{}' takes '{accepted}' or 'serialized_bytes'",
                api.name
            )))
        }
        _ => Err(Status::invalid_argument(format!(
            "content field '{field}' does not match API '{}', which takes {takes}; \
             set '{accepted}' or 'serialized_bytes'",
            api.name
        ))),
    }
}

/// The dtype a `NumpyNdarray` descriptor declares (`args.dtype`), if any.
fn declared_dtype(spec: &IoSpec) -> Option<DType> {
    spec.bentoml["args"]["dtype"]
        .as_str()
        .and_then(DType::parse)
}

/// The response content for an API's answer body (see the module docs).
pub(super) fn response_content(api: &Api, out: Bytes) -> Result<response::Content, Status> {
    let internal = |what: String| Status::internal(format!("API '{}' {what}", api.name));
    let gives = descriptor(&api.output_spec);
    Ok(match (gives, api.output) {
        (NDARRAY, _) => {
            let mut array = NumpyNdarray::parse(&out)
                .map_err(|e| internal(format!("returned an invalid array: {}", e.message)))?;
            if let Some(dtype) = declared_dtype(&api.output_spec) {
                array = array
                    .cast(dtype)
                    .map_err(|e| internal(format!("returned an array not of {dtype}: {e}")))?;
            }
            response::Content::Ndarray(
                ndarray_to_proto(array).map_err(|e| internal(format!("returned {e}")))?,
            )
        }
        (IMAGE | FILE, IoKind::Bytes) => response::Content::File(proto::File {
            kind: api.output_spec.bentoml["args"]["mime_type"]
                .as_str()
                .map(str::to_string),
            content: out.to_vec(),
        }),
        (_, IoKind::Text) => response::Content::Text(
            String::from_utf8(out.to_vec())
                .map_err(|e| internal(format!("returned invalid UTF-8: {e}")))?,
        ),
        (_, IoKind::Json) => {
            let json: serde_json::Value = serde_json::from_slice(&out)
                .map_err(|e| internal(format!("returned invalid JSON: {e}")))?;
            response::Content::Json(json_to_value(json))
        }
        (_, IoKind::Bytes) => response::Content::SerializedBytes(out.to_vec()),
    })
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
    fn ndarrays_round_trip_and_their_dtype_is_read_from_the_values_when_unspecified() {
        let nd = proto::NdArray {
            dtype: PbDType::DtypeFloat as i32,
            shape: vec![2, 2],
            float_values: vec![1.5, -2.0, 0.1, 3.0],
            ..Default::default()
        };
        let array = ndarray_from_proto(nd.clone()).unwrap();
        assert_eq!(array.shape(), &[2, 2]);
        assert_eq!(array.dtype(), DType::Float32);
        assert_eq!(ndarray_to_proto(array).unwrap(), nd);

        let unspecified = proto::NdArray {
            int64_values: vec![1, 2, 3],
            ..Default::default()
        };
        let array = ndarray_from_proto(unspecified).unwrap();
        assert_eq!(array.shape(), &[3], "no shape: one dimension of all values");
        assert_eq!(array.dtype(), DType::Int64);
        let widened = ndarray_from_proto(proto::NdArray {
            dtype: PbDType::DtypeUint32 as i32,
            uint32_values: vec![4_000_000_000],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(widened.data(), &NdData::Int64(vec![4_000_000_000]));
    }

    #[test]
    fn bad_ndarrays_are_refused_naming_why() {
        let err = |nd: proto::NdArray| ndarray_from_proto(nd).unwrap_err();
        let e = err(proto::NdArray {
            dtype: PbDType::DtypeFloat as i32,
            shape: vec![2, 3],
            float_values: vec![1.0; 5],
            ..Default::default()
        });
        assert!(e.contains('5') && e.contains('6'), "{e}");
        let e = err(proto::NdArray {
            dtype: PbDType::DtypeBool as i32,
            bool_values: vec![true],
            ..Default::default()
        });
        assert!(e.contains("DTYPE_BOOL"), "{e}");
        let e = err(proto::NdArray {
            shape: vec![-1],
            double_values: vec![1.0],
            ..Default::default()
        });
        assert!(e.contains("negative"), "{e}");
        let e = err(proto::NdArray {
            float_values: vec![1.0],
            int32_values: vec![1],
            ..Default::default()
        });
        assert!(e.contains("more than one"), "{e}");
        let e = err(proto::NdArray {
            dtype: 99,
            ..Default::default()
        });
        assert!(e.contains("99"), "{e}");
    }

    #[test]
    fn a_multipart_content_becomes_a_form_that_the_http_parser_reads_back() {
        let mut fields = HashMap::new();
        fields.insert(
            "image".to_string(),
            proto::Part {
                representation: Some(part::Representation::File(proto::File {
                    kind: Some("image/png".into()),
                    content: b"\x89PNG--not-a-boundary\r\n".to_vec(),
                })),
            },
        );
        fields.insert(
            "note".to_string(),
            proto::Part {
                representation: Some(part::Representation::Text("hello".into())),
            },
        );
        let (body, content_type) = form_body(fields).unwrap();
        let parts = tiffin_service::multipart::parse(&content_type, body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name.as_deref(), Some("image"));
        assert_eq!(parts[0].filename.as_deref(), Some("image"));
        assert_eq!(parts[0].content_type.as_deref(), Some("image/png"));
        assert_eq!(&parts[0].data[..], b"\x89PNG--not-a-boundary\r\n");
        assert_eq!(parts[1].name.as_deref(), Some("note"));
        assert_eq!(parts[1].filename, None);
        assert_eq!(&parts[1].data[..], b"hello");

        let mut bad = HashMap::new();
        bad.insert(
            "a\"b".to_string(),
            proto::Part {
                representation: Some(part::Representation::Text("x".into())),
            },
        );
        assert!(form_body(bad).is_err());
    }
}
