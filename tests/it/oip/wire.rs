//! The protocol's REST wire format asked directly, byte for byte, where a
//! client library would hide it: the errors and their statuses, the request
//! id and requested outputs, Triton's binary tensor data extension both
//! ways, tritonclient's own request bodies replayed as wrk or oha send them,
//! the repository index, and the metric family every infer is counted in.

use super::*;

fn infer_body(id: Option<&str>, rows: &[&[f32]], parameters: Value, outputs: Value) -> String {
    let data: Vec<String> = rows
        .iter()
        .map(|r| row_json(r).trim_matches(['[', ']']).to_string())
        .collect();
    let mut body = json!({
        "inputs": [{
            "name": "pixels",
            "shape": [rows.len(), 64],
            "datatype": "FP32",
            "data": [],
        }],
        "parameters": parameters,
        "outputs": outputs,
    });
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    // The numbers as tiffin's `/predict` body has them (`0`, `16`), not
    // serde's f64 rendering.
    body.to_string()
        .replace("\"data\":[]", &format!("\"data\":[{}]", data.join(",")))
}

fn post_json(addr: &str, path: &str, body: &str) -> Response {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("POST")
}

/// The output named `name` of a JSON infer answer.
fn output_named(answer: &Value, name: &str) -> Value {
    answer["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {answer}"))
        .clone()
}

/// The `error` string of a JSON error answer.
fn error_of(r: &Response, what: &str) -> String {
    let body: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {}", r.text()));
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error string: {body}"))
        .to_string()
}

/// Whether `text` writes `shape` in any of the usual ways.
fn names_shape(text: &str, shape: &[i64]) -> bool {
    let parts: Vec<String> = shape.iter().map(i64::to_string).collect();
    [", ", ","].iter().any(|sep| {
        let inner = parts.join(sep);
        text.contains(&format!("[{inner}]")) || text.contains(&format!("({inner})"))
    })
}

const BAD_SHAPE: &str =
    r#"{"inputs":[{"name":"pixels","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#;

/// A good one-row infer body (JSON).
fn good_body() -> String {
    infer_body(None, &[&held_out()[0]], json!({}), json!([]))
}

/// tritonclient's binary body for one row (bodies.py), written under `out`.
fn tritonclient_binary_body(out: &str) -> Vec<u8> {
    let bodies = script(
        "bodies.py",
        &["--images", "models/digits/test", "--out", out],
        &[],
    );
    std::fs::read(bodies["binary"]["path"].as_str().expect("path")).unwrap()
}

/// The bad requests of the contract sent to `addr`: (what, answer, the
/// status the contract gives it).
fn error_cases(addr: &str, binary: &[u8]) -> Vec<(&'static str, Response, u16)> {
    let good = good_body();
    let bad_type = good.replace("\"FP32\"", "\"FP99\"");
    let past = (binary.len() + 1).to_string();
    let get = |path: &str| http(addr, "GET", path, &[], b"").expect("GET");
    vec![
        ("wrong shape", post_json(addr, INFER, BAD_SHAPE), 400),
        (
            "unknown model",
            post_json(addr, "/v2/models/no-such-model/infer", &good),
            404,
        ),
        (
            "unknown model's metadata",
            get("/v2/models/no-such-model"),
            404,
        ),
        ("bad datatype", post_json(addr, INFER, &bad_type), 400),
        (
            "malformed JSON",
            post_json(addr, INFER, r#"{"inputs": ["#),
            400,
        ),
        (
            "binary header length past the body",
            http(
                addr,
                "POST",
                INFER,
                &[
                    ("Inference-Header-Content-Length", &past),
                    ("Content-Type", "application/octet-stream"),
                ],
                binary,
            )
            .expect("POST"),
            400,
        ),
    ]
}

/// One error case answered as the contract says: its status and a JSON
/// `{"error": "..."}`; the wrong shape's error names both shapes.
fn assert_error_case(what: &str, r: &Response, status: u16) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let error = error_of(r, what);
    assert!(!error.is_empty(), "{what}");
    if what == "wrong shape" {
        assert!(
            names_shape(&error, &[-1, 64]) && names_shape(&error, &[1, 3]),
            "the wrong-shape error names both shapes: {error}"
        );
    }
}

#[test]
fn infer_errors_are_json_with_the_status_the_protocol_gives_and_the_server_keeps_serving() {
    let server = serve_http();
    let out = scratch("bodies-errors");
    let binary = tritonclient_binary_body(&out);
    let good = good_body();
    for (what, r, status) in error_cases(&server.addr, &binary) {
        assert_error_case(what, &r, status);
        let again = post_json(&server.addr, INFER, &good);
        assert_eq!(again.status, 200, "after {what}: {}", again.text());
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// A JSON infer of `rows` with an id and `outputs` naming only `label`:
/// the id echoed, the model named, `label` alone, with `want`'s labels.
fn assert_id_and_label_only(addr: &str, rows: &[&[f32]], want: &[Answer]) {
    let body = infer_body(
        Some("oip-id-7"),
        rows,
        json!({}),
        json!([{"name": "label"}]),
    );
    let r = post_json(addr, INFER, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["id"], "oip-id-7", "{answer}");
    assert_eq!(answer["model_name"], "digits", "{answer}");
    let outputs = answer["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1, "only the output asked for: {answer}");
    assert_eq!(outputs[0]["name"], "label");
    assert_eq!(outputs[0]["datatype"], "INT64");
    assert_eq!(shape(&outputs[0]["shape"]), vec![rows.len() as i64]);
    let labels: Vec<i64> = want.iter().map(|a| a.label).collect();
    assert_eq!(outputs[0]["data"], json!(labels));
}

#[test]
fn the_request_id_is_echoed_and_requested_outputs_are_honoured() {
    let server = serve_http();
    let images = held_out();
    let want = &predict_answers_of(&server, &images[..3]);
    let rows: Vec<&[f32]> = images[..3].iter().map(Vec::as_slice).collect();
    assert_id_and_label_only(&server.addr, &rows, want);

    // Both outputs when none is asked for, in the model's order, on the
    // versioned route too, and the model's version in the answer.
    let version = assert_digits_metadata(&server.get("/v2/models/digits").json());
    let path = format!("/v2/models/digits/versions/{version}/infer");
    let r = post_json(
        &server.addr,
        &path,
        &infer_body(None, &rows, json!({}), json!([])),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["model_version"], json!(version), "{answer}");
    let names: Vec<&str> = answer["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names, vec!["probabilities", "label"]);
    let probs: Vec<String> = answer["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(bits)
        .collect();
    let want_probs: Vec<String> = want.iter().flat_map(|a| a.probabilities.clone()).collect();
    assert_eq!(probs, want_probs, "the probabilities /predict answers");
}

/// `/predict`'s answers for `rows`, each alone.
fn predict_answers_of(server: &Server, rows: &[Vec<f32>]) -> Vec<Answer> {
    let all = predict_answers(server);
    let images = held_out();
    rows.iter()
        .map(|row| {
            let i = images
                .iter()
                .position(|r| r == row)
                .expect("a held-out row");
            all[i].clone()
        })
        .collect()
}

/// Each output of a binary-data answer: its name, and its bytes where it
/// came as binary data (`None`: its data is in the JSON header).
type BinaryOutputs = Vec<(String, Option<Vec<u8>>)>;

/// A binary-data answer split into its JSON header and each output's bytes.
fn split_binary(r: &Response) -> (Value, BinaryOutputs) {
    let length: usize = r
        .header("Inference-Header-Content-Length")
        .unwrap_or_else(|| panic!("no Inference-Header-Content-Length: {:?}", r.headers))
        .parse()
        .expect("a length");
    let header: Value = serde_json::from_slice(&r.body[..length]).expect("a JSON header");
    let mut rest = &r.body[length..];
    let mut outputs = Vec::new();
    for output in header["outputs"].as_array().expect("outputs") {
        let name = output["name"].as_str().expect("name").to_string();
        match output["parameters"]["binary_data_size"].as_u64() {
            Some(size) => {
                let (bytes, tail) = rest.split_at(size as usize);
                outputs.push((name, Some(bytes.to_vec())));
                rest = tail;
            }
            None => outputs.push((name, None)),
        }
    }
    assert!(rest.is_empty(), "{} bytes past the outputs", rest.len());
    (header, outputs)
}

fn f32_bits(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks_exact(4)
        .map(|c| format!("{:08x}", u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

fn i64s(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn binary_tensor_outputs_carry_the_bits_predict_answers() {
    let server = serve_http();
    let images = held_out();
    let want = &predict_answers_of(&server, &images[..2]);
    let rows: Vec<&[f32]> = images[..2].iter().map(Vec::as_slice).collect();
    assert_binary_outputs(&server.addr, &rows, want);
}

/// `rows` asked with every output binary (`binary_data_output`), then with
/// `binary_data` on `probabilities` alone: the bytes carry `want`'s bits,
/// and an output not asked binary stays JSON.
fn assert_binary_outputs(addr: &str, rows: &[&[f32]], want: &[Answer]) {
    let want_probs: Vec<String> = want.iter().flat_map(|a| a.probabilities.clone()).collect();
    let want_labels: Vec<i64> = want.iter().map(|a| a.label).collect();

    // Every output binary (`binary_data_output`).
    let body = infer_body(None, rows, json!({"binary_data_output": true}), json!([]));
    let r = post_json(addr, INFER, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let (header, outputs) = split_binary(&r);
    assert_eq!(outputs.len(), 2, "{header}");
    for (name, bytes) in outputs {
        let bytes = bytes.unwrap_or_else(|| panic!("{name} binary: {header}"));
        match name.as_str() {
            "probabilities" => assert_eq!(f32_bits(&bytes), want_probs),
            "label" => assert_eq!(i64s(&bytes), want_labels),
            other => panic!("an output the model lacks: {other}"),
        }
    }

    // Only the output that asks (`binary_data` on it): the other stays JSON.
    let outputs_asked = json!([
        {"name": "probabilities", "parameters": {"binary_data": true}},
        {"name": "label", "parameters": {"binary_data": false}},
    ]);
    let r = post_json(
        addr,
        INFER,
        &infer_body(None, rows, json!({}), outputs_asked),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (header, outputs) = split_binary(&r);
    let probs = outputs
        .iter()
        .find(|(n, _)| n == "probabilities")
        .expect("probabilities");
    assert_eq!(f32_bits(probs.1.as_deref().expect("binary")), want_probs);
    let label = header["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["name"] == "label")
        .expect("label");
    assert_eq!(label["data"], json!(want_labels), "{header}");
}

fn scratch(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("tiffin-oip-{name}-{}", std::process::id()))
        .display()
        .to_string()
}

#[test]
fn tritonclient_request_bodies_replay_as_wrk_sends_them() {
    let server = serve_http();
    let want = predict_answers_of(&server, &held_out()[..1]);
    let out = scratch("bodies");
    assert_bodies_replay(&server.addr, &want[0], &out);
    let _ = std::fs::remove_dir_all(&out);
}

/// bodies.py's binary and JSON bodies (written under `out`) POSTed to
/// `addr` with the headers it names, as wrk or oha would: each answers
/// `want`, in the encoding it asked.
fn assert_bodies_replay(addr: &str, want: &Answer, out: &str) {
    let bodies = script(
        "bodies.py",
        &["--images", "models/digits/test", "--out", out],
        &[],
    );
    assert_eq!(bodies["route"], INFER);
    for kind in ["binary", "json"] {
        let body = std::fs::read(bodies[kind]["path"].as_str().expect("path")).unwrap();
        let headers: Vec<(String, String)> = bodies[kind]["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("a value").to_string()))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = http(addr, "POST", INFER, &headers, &body).expect("POST");
        assert_eq!(r.status, 200, "{kind}: {}", r.text());
        // Both bodies ask each output in the encoding they carry.
        let (label, probabilities) = if kind == "binary" {
            let (_, outputs) = split_binary(&r);
            let get = |n: &str| {
                outputs
                    .iter()
                    .find(|(name, _)| name == n)
                    .and_then(|(_, b)| b.clone())
                    .unwrap_or_else(|| panic!("{n} binary"))
            };
            (i64s(&get("label"))[0], f32_bits(&get("probabilities")))
        } else {
            let answer = r.json();
            let output = |n: &str| output_named(&answer, n);
            (
                output("label")["data"][0].as_i64().expect("label"),
                output("probabilities")["data"]
                    .as_array()
                    .expect("data")
                    .iter()
                    .map(bits)
                    .collect(),
            )
        };
        assert_eq!(
            Answer {
                label,
                probabilities
            },
            *want,
            "{kind}"
        );
    }
}

#[test]
fn the_repository_index_lists_the_served_model() {
    let server = serve_http();
    let r = post_json(&server.addr, "/v2/repository/index", "{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let index = r.json();
    let digits = index
        .as_array()
        .unwrap_or_else(|| panic!("an array of models: {index}"))
        .iter()
        .find(|m| m["name"] == "digits")
        .unwrap_or_else(|| panic!("digits is listed: {index}"));
    if let Some(state) = digits.get("state") {
        assert_eq!(state, "READY", "{index}");
    }
}

#[test]
fn every_infer_is_counted_under_its_route_in_bentoml_request_total() {
    let server = serve_http();
    let good = good_body();
    for _ in 0..5 {
        let r = post_json(&server.addr, INFER, &good);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(post_json(&server.addr, INFER, BAD_SHAPE).status, 400);
    let count = |code: &str| {
        parse_exposition(&server.metrics()).sum(
            "bentoml_api_server_request_total",
            &[("endpoint", INFER), ("http_response_code", code)],
        )
    };
    let counted = eventually(Duration::from_secs(20), || {
        count("200") == 5.0 && count("400") == 1.0
    });
    assert!(
        counted,
        "5 answered 200 and 1 answered 400 under endpoint={INFER}; /metrics:\n{}",
        server.metrics()
    );
}

#[path = "reference.rs"]
mod reference;
