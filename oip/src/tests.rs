//! The protocol's requests and answers, read and written without a server.

use tiffin_service::{DType, ModelCard, NdArray, NdData, TensorCard};

use crate::request::{Wanted, parse};
use crate::response::{HEADER_LENGTH, encode};
use crate::{Model, ModelError};

fn card() -> ModelCard {
    let t = |name: &str, dtype: &str, shape: Vec<Option<usize>>| TensorCard {
        name: name.into(),
        dtype: dtype.into(),
        shape,
    };
    ModelCard {
        name: "digits".into(),
        version: "1".into(),
        platform: "onnx".into(),
        inputs: vec![t("pixels", "float32", vec![None, Some(4)])],
        outputs: vec![
            t("probabilities", "float32", vec![None, Some(2)]),
            t("label", "int64", vec![None]),
        ],
    }
}

fn model() -> Model {
    Model::new(card()).unwrap()
}

fn error(body: &[u8]) -> String {
    let e = parse(&model(), body).unwrap_err();
    assert_eq!(e.status, 400, "{e}");
    e.message
}

fn binary_request(values: &[f32], extra: &[u8]) -> Vec<u8> {
    let header = serde_json::json!({
        "inputs": [{ "name": "pixels", "shape": [1, values.len()], "datatype": "FP32",
                     "parameters": { "binary_data_size": values.len() * 4 } }],
    });
    let mut body = serde_json::to_vec(&header).unwrap();
    values
        .iter()
        .for_each(|v| body.extend_from_slice(&v.to_le_bytes()));
    body.extend_from_slice(extra);
    body
}

#[test]
fn json_data_flat_or_nested_reads_as_predict_reads_it() {
    let flat = br#"{"id":"r1","inputs":[{"name":"pixels","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,5,6,7,8.5]}]}"#;
    let nested = br#"{"inputs":[{"name":"pixels","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[5,6,7,8.5]]}]}"#;
    let a = parse(&model(), flat).unwrap();
    let b = parse(&model(), nested).unwrap();
    assert_eq!(a.id.as_deref(), Some("r1"));
    assert_eq!(a.input, b.input);
    let want = NdArray::new(
        vec![2, 4],
        NdData::Float32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.5]),
    )
    .unwrap();
    assert_eq!(a.input, want);
    // No outputs asked for: all of them, as JSON.
    let names: Vec<_> = a
        .outputs
        .iter()
        .map(|w| (w.name.as_str(), w.binary))
        .collect();
    assert_eq!(names, [("probabilities", false), ("label", false)]);
}

#[test]
fn binary_tensor_data_reads_the_same_bits_as_json() {
    let values = [0.1f32, 16.0, 3.25, -0.0];
    let request = parse(&model(), &binary_request(&values, b"")).unwrap();
    assert_eq!(request.input.data(), &NdData::Float32(values.to_vec()));
    assert_eq!(request.input.dtype(), DType::Float32);
}

#[test]
fn requested_outputs_and_their_binary_flags_are_kept_in_order() {
    let body = br#"{"parameters":{"binary_data_output":true},"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"label","parameters":{"binary_data":false}},{"name":"probabilities"}]}"#;
    let request = parse(&model(), body).unwrap();
    assert_eq!(
        request.outputs,
        [
            Wanted {
                name: "label".into(),
                binary: false
            },
            Wanted {
                name: "probabilities".into(),
                binary: true
            },
        ]
    );
}

#[test]
fn every_bad_request_is_a_400_naming_what_is_wrong() {
    let cases: [(&[u8], &str); 12] = [
        (b"", "empty"),
        (b"[1, 2", "not a JSON inference request"),
        (br#"{"inputs": 3}"#, "not a valid inference request"),
        (br#"{"inputs":[]}"#, "takes one input ('pixels'), received 0"),
        (
            br#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#,
            "no input 'x'",
        ),
        (
            br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP33","data":[1,2,3,4]}]}"#,
            "'FP33', which the protocol does not define",
        ),
        (
            br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"BOOL","data":[true,true,true,true]}]}"#,
            "takes FP32, received BOOL",
        ),
        (
            br#"{"inputs":[{"name":"pixels","shape":[1,-4],"datatype":"FP32","data":[1,2,3,4]}]}"#,
            "negative",
        ),
        (
            br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3]}]}"#,
            "(4 elements) but 3 values",
        ),
        (
            br#"{"inputs":[{"name":"pixels","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#,
            "expected an array of shape (-1, 4), received shape (1, 3)",
        ),
        (
            br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3,"a"]}]}"#,
            "input 'pixels'",
        ),
        (
            br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"logits"}]}"#,
            "no output 'logits'; its outputs are probabilities, label",
        ),
    ];
    for (body, needle) in cases {
        let message = error(body);
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

#[test]
fn binary_data_that_does_not_fit_its_tensor_is_refused() {
    // More bytes than the inputs claim.
    assert!(error(&binary_request(&[1.0; 4], b"xx")).contains("2 bytes after the request's JSON"));
    // A size that does not match the shape.
    let header = br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":12}}]}"#;
    let mut body = header.to_vec();
    body.extend_from_slice(&[0; 12]);
    assert!(error(&body).contains("needs 16 bytes, binary_data_size says 12"));
    // A size past the body.
    let mut cut = binary_request(&[1.0; 4], b"");
    cut.truncate(cut.len() - 3);
    assert!(error(&cut).contains("claims 16 bytes of binary data, the body has 13"));
    // A size that is not a count.
    let header = br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":"16"}}]}"#;
    assert!(error(header).contains("binary_data_size must be a byte count"));
    // Both JSON data and binary.
    let both = br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3,4],"parameters":{"binary_data_size":16}}]}"#;
    assert!(error(both).contains("both JSON data and binary_data_size"));
    // A binary flag that is not a boolean.
    let flag = br#"{"parameters":{"binary_data_output":1},"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#;
    assert!(error(flag).contains("'binary_data_output' must be a boolean"));
}

fn outputs() -> Vec<(String, NdArray)> {
    vec![
        (
            "probabilities".into(),
            NdArray::new(vec![1, 2], NdData::Float32(vec![0.25, 0.1])).unwrap(),
        ),
        (
            "label".into(),
            NdArray::new(vec![1], NdData::Int64(vec![7])).unwrap(),
        ),
    ]
}

#[test]
fn a_json_answer_echoes_the_id_and_writes_each_output_flat() {
    let wanted = [Wanted {
        name: "label".into(),
        binary: false,
    }];
    let answer = encode("digits", "1", Some("r1"), &outputs(), &wanted).unwrap();
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert!(answer.headers.is_empty());
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "model_name": "digits", "model_version": "1", "id": "r1",
            "outputs": [{ "name": "label", "datatype": "INT64", "shape": [1], "data": [7] }],
        })
    );
}

#[test]
fn a_binary_answer_puts_the_bytes_after_the_json_and_says_where_it_ends() {
    let wanted = [
        Wanted {
            name: "probabilities".into(),
            binary: true,
        },
        Wanted {
            name: "label".into(),
            binary: false,
        },
    ];
    let answer = encode("digits", "1", None, &outputs(), &wanted).unwrap();
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/octet-stream")
    );
    let (key, len) = &answer.headers[0];
    assert_eq!(key, HEADER_LENGTH);
    let len: usize = len.parse().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&answer.body[..len]).unwrap();
    assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert!(json["outputs"][0].get("data").is_none());
    assert_eq!(json["outputs"][1]["data"], serde_json::json!([7]));
    assert!(json.get("id").is_none());
    let mut bytes = 0.25f32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&0.1f32.to_le_bytes());
    assert_eq!(&answer.body[len..], &bytes[..]);
}

#[test]
fn a_model_the_protocol_cannot_serve_is_refused_at_start() {
    let mut two = card();
    two.inputs.push(two.inputs[0].clone());
    assert!(matches!(
        Model::new(two),
        Err(ModelError::Inputs { count: 2, .. })
    ));
    let mut strings = card();
    strings.inputs[0].dtype = "object".into();
    assert!(matches!(Model::new(strings), Err(ModelError::Dtype { .. })));
}

#[test]
fn the_header_length_must_be_where_the_json_ends() {
    use crate::request::check_header_length;
    let body = binary_request(&[1.0; 4], b"");
    let end = body.len() - 16;
    assert!(check_header_length(&body, &end.to_string()).is_ok());
    for (value, needle) in [
        ("x", "must be a byte count"),
        ("100000", "past the body's"),
        ("3", "the request's JSON ends after"),
    ] {
        let e = check_header_length(&body, value).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains(needle),
            "{needle:?} not in {:?}",
            e.message
        );
    }
}

#[test]
fn an_empty_outputs_list_asks_for_every_output() {
    let body = br#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[]}"#;
    assert_eq!(parse(&model(), body).unwrap().outputs.len(), 2);
}
