//! The Open Inference Protocol (KServe "v2", issue 26) on `tiffin serve-http
//! --model models/digits/digits.onnx` and `tiffin serve-grpc --model ...`,
//! proven with clients that are not ours: tritonclient (HTTP with JSON and
//! with binary tensors, gRPC with `raw_input_contents`, its asyncio clients
//! under load) and KServe's SDK (REST, and gRPC with typed `contents`), each
//! run from tests/fixtures/oip/ with the venv scripts/setup/26-oip makes; and
//! schemathesis fed the protocol's own OpenAPI document
//! (oip/spec/open_inference_rest.yaml). Every classification is compared,
//! label and probability bits, with what tiffin's own `/predict` answers for
//! the same image. The scripts were first proven against KServe's own server
//! (tests/fixtures/oip/check_reference.sh), so a failure here is tiffin's.
//!
//! tritonclient sends its JSON bodies without a `Content-Type` (and binary
//! ones with only `Inference-Header-Content-Length`): the scripts send what
//! the clients send, unchanged.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tiffin_service::image::decode_image;

const INFER: &str = "/v2/models/digits/infer";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn model_arg() -> String {
    repo("models/digits/digits.onnx").display().to_string()
}

/// The venv's python (scripts/setup/26-oip); a missing venv fails the test.
fn oip_python() -> PathBuf {
    venv_tool("target/pyvenv-oip/bin/python", "scripts/setup/26-oip")
}

/// Runs `tests/fixtures/oip/<name>` with `args` and returns the JSON document
/// it printed last; a failed run fails the test with its stderr and the logs
/// of `servers`.
fn script(name: &str, args: &[&str], servers: &[&Server]) -> Value {
    let mut cmd = Command::new(oip_python());
    cmd.arg(repo("tests/fixtures/oip").join(name))
        .args(args)
        .current_dir(repo(""));
    let out = run_with_timeout(&mut cmd, Duration::from_secs(900));
    let logs: Vec<String> = servers.iter().map(|s| log_tail(s, 30)).collect();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{name} {args:?} failed ({:?})\nstderr:\n{}\nserver logs:\n{}",
        out.status,
        out.stderr,
        logs.join("\n---\n")
    );
    let last = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {}", out.stdout))
}

/// The last `lines` lines of a server's log (a whole one holds a line per
/// request, hundreds here).
fn log_tail(server: &Server, lines: usize) -> String {
    let log = server.log();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn serve_http() -> Server {
    Launch::http(&["--model", &model_arg()]).start()
}

/// `tiffin serve-grpc --model ...`, once its health service says SERVING.
fn serve_grpc() -> Server {
    let server = launch_grpc(&["--model", &model_arg()]).start();
    runtime().block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
    });
    server
}

/// The held-out images in labels.csv's order, as tests/it/onnx.rs builds
/// them: each PNG's gray bytes widened to f32.
fn held_out() -> Vec<Vec<f32>> {
    let labels = std::fs::read_to_string(repo("models/digits/test/labels.csv")).unwrap();
    labels
        .lines()
        .skip(1)
        .map(|line| {
            let (file, _) = line.split_once(',').unwrap();
            let png = std::fs::read(repo("models/digits/test").join(file)).unwrap();
            let gray = decode_image(&png).unwrap().to_luma8();
            gray.as_raw().iter().map(|&p| f32::from(p)).collect()
        })
        .collect()
}

fn row_json(row: &[f32]) -> String {
    let nums: Vec<String> = row.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", nums.join(","))
}

/// A float32 as the scripts print it: its bit pattern, 8 hex digits.
fn bits(value: &Value) -> String {
    let f = value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"));
    format!("{:08x}", (f as f32).to_bits())
}

/// One image's answer: its label and its ten probabilities' bits.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    label: i64,
    probabilities: Vec<String>,
}

/// What tiffin's own `POST /predict` answers for each held-out image, alone.
fn predict_answers(server: &Server) -> Vec<Answer> {
    held_out()
        .iter()
        .map(|row| {
            let body = format!("[{}]", row_json(row));
            let r = server.post("/predict", "application/json", body.as_bytes());
            assert_eq!(r.status, 200, "/predict: {}", r.text());
            let answer = r.json();
            Answer {
                label: answer["label"][0].as_i64().expect("a label"),
                probabilities: answer["probabilities"][0]
                    .as_array()
                    .expect("probabilities")
                    .iter()
                    .map(bits)
                    .collect(),
            }
        })
        .collect()
}

/// The answers of one pass of classify.py (`single` or `batched`).
fn pass_answers(run: &Value, pass: &str) -> Vec<Answer> {
    let labels = run[pass]["labels"].as_array().expect("labels");
    let probabilities = run[pass]["probabilities"]
        .as_array()
        .expect("probabilities");
    labels
        .iter()
        .zip(probabilities)
        .map(|(label, probs)| Answer {
            label: label.as_i64().expect("a label"),
            probabilities: probs
                .as_array()
                .expect("a row")
                .iter()
                .map(|b| b.as_str().expect("hex").to_string())
                .collect(),
        })
        .collect()
}

/// A shape as numbers, whether the answer wrote them as numbers or, as
/// protobuf's JSON mapping writes an int64, as strings.
fn shape(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a shape: {value}"))
        .iter()
        .map(|d| match d {
            Value::String(s) => s.parse().expect("a dimension"),
            other => other.as_i64().expect("a dimension"),
        })
        .collect()
}

fn tensors(value: &Value) -> Vec<(String, String, Vec<i64>)> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("tensors: {value}"))
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["datatype"].as_str().expect("datatype").to_string(),
                shape(&t["shape"]),
            )
        })
        .collect()
}

/// The model metadata of the contract: `digits`, at least one version,
/// `pixels` FP32 [-1, 64] in, `probabilities` FP32 [-1, 10] and `label`
/// INT64 [-1] out. Returns the first version.
fn assert_digits_metadata(metadata: &Value) -> String {
    assert_eq!(metadata["name"], "digits", "{metadata}");
    let t = |n: &str, d: &str, s: &[i64]| (n.to_string(), d.to_string(), s.to_vec());
    assert_eq!(
        tensors(&metadata["inputs"]),
        vec![t("pixels", "FP32", &[-1, 64])],
        "{metadata}"
    );
    assert_eq!(
        tensors(&metadata["outputs"]),
        vec![
            t("probabilities", "FP32", &[-1, 10]),
            t("label", "INT64", &[-1])
        ],
        "{metadata}"
    );
    let versions = metadata["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("the metadata lists its versions: {metadata}"));
    versions
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("at least one version: {metadata}"))
        .to_string()
}

/// Equal answers, or the first image that differs (not 360 of them).
fn assert_same_answers(got: &[Answer], want: &[Answer], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: how many answers");
    if let Some((i, (g, w))) = got.iter().zip(want).enumerate().find(|(_, (g, w))| g != w) {
        panic!("{what}: image {i} answered {g:?}, /predict answered {w:?}");
    }
}

/// classify.py's document for `client` against `url` (`extra`: more of its
/// flags).
fn classify(client: &str, url: &str, extra: &[&str], servers: &[&Server]) -> Value {
    let mut args = vec![
        "--url",
        url,
        "--client",
        client,
        "--images",
        "models/digits/test",
    ];
    args.extend_from_slice(extra);
    script("classify.py", &args, servers)
}

/// Runs classify.py with `client` against `url` and compares every answer
/// with `/predict`'s on `http`.
fn classify_as_predict_does(client: &str, url: &str, http: &Server, servers: &[&Server]) {
    let want = predict_answers(http);
    let run = classify(client, url, &[], servers);
    let version = assert_digits_metadata(&run["metadata"]);
    assert_eq!(run["version"], json!(version), "classify.py's version");
    assert_same_answers(
        &pass_answers(&run, "single"),
        &want,
        &format!("{client}, one row a request"),
    );
    assert_same_answers(
        &pass_answers(&run, "batched"),
        &want,
        &format!("{client}, 8 rows a request on version {version}"),
    );
    assert_eq!(
        run["ids"]["echoed"], run["ids"]["sent"],
        "{client}: every request id echoed"
    );
    assert_eq!(
        run["label_only"],
        json!(["label"]),
        "{client}: outputs [label] answer label alone"
    );
    // tiffin's answers are the model's: the committed model's 352 of 360.
    let truth: Vec<i64> = run["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["label"].as_i64().expect("label"))
        .collect();
    let right = want
        .iter()
        .zip(&truth)
        .filter(|(a, t)| a.label == **t)
        .count();
    assert_eq!(right, 352, "models/digits/metrics.json: 352 of 360");
}

#[test]
fn triton_http_json_tensors_classify_the_held_out_digits_as_predict_does() {
    let server = serve_http();
    classify_as_predict_does("triton-http-json", &server.addr, &server, &[&server]);
}

#[test]
fn triton_http_binary_tensors_classify_the_held_out_digits_as_predict_does() {
    let server = serve_http();
    classify_as_predict_does("triton-http-binary", &server.addr, &server, &[&server]);
}

#[test]
fn triton_grpc_raw_contents_classify_the_held_out_digits_as_predict_does() {
    let http = serve_http();
    let grpc = serve_grpc();
    classify_as_predict_does("triton-grpc", &grpc.addr, &http, &[&grpc, &http]);
}

#[test]
fn kserve_rest_client_classifies_the_held_out_digits_as_predict_does() {
    let server = serve_http();
    classify_as_predict_does("kserve-rest", &server.addr, &server, &[&server]);
}

#[test]
fn kserve_grpc_typed_contents_classify_the_held_out_digits_as_predict_does() {
    let http = serve_http();
    let grpc = serve_grpc();
    classify_as_predict_does("kserve-grpc", &grpc.addr, &http, &[&grpc, &http]);
}

/// probe.py's answers over `client`: live, ready, the model ready (also on
/// its version), an unknown model not ready, the server's metadata naming
/// the binary tensor extension, and the model's metadata (also on its version).
fn assert_probe(client: &str, server: &Server) {
    let p = script(
        "probe.py",
        &["--url", &server.addr, "--client", client],
        &[server],
    );
    for key in ["live", "ready", "model_ready", "model_ready_versioned"] {
        assert_eq!(p[key], json!(true), "{client}: {key}: {p}");
    }
    assert_ne!(
        p["unknown_model_ready"],
        json!(true),
        "{client}: an unknown model is not ready"
    );
    let meta = &p["server_metadata"];
    assert!(
        meta["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{meta}"
    );
    assert!(meta["version"].is_string(), "{meta}");
    let extensions: Vec<&str> = meta["extensions"]
        .as_array()
        .unwrap_or_else(|| panic!("extensions: {meta}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(extensions.contains(&"binary_tensor_data"), "{meta}");
    let version = assert_digits_metadata(&p["model_metadata"]);
    assert_eq!(
        p["model_metadata_versioned"], p["model_metadata"],
        "{client}: the metadata of version {version} is the model's"
    );
}

#[test]
fn triton_http_client_sees_health_readiness_and_metadata_as_the_protocol_says() {
    let server = serve_http();
    assert_probe("triton-http", &server);
}

#[test]
fn triton_grpc_client_sees_health_readiness_and_metadata_as_the_protocol_says() {
    let server = serve_grpc();
    assert_probe("triton-grpc", &server);
}

/// load.py's levels: each concurrency of 1, 8 and 64 answered every request,
/// each with the bits the same row got alone.
fn assert_load(client: &str, server: &Server) {
    let run = script(
        "load.py",
        &[
            "--url",
            &server.addr,
            "--client",
            client,
            "--images",
            "models/digits/test",
            "--concurrency",
            "1",
            "8",
            "64",
        ],
        &[server],
    );
    let levels = run["levels"].as_array().expect("levels");
    let concurrency: Vec<i64> = levels
        .iter()
        .map(|l| l["concurrency"].as_i64().expect("concurrency"))
        .collect();
    assert_eq!(concurrency, vec![1, 8, 64], "{run}");
    for level in levels {
        assert_eq!(level["errors"], json!(0), "{client}: {level}");
        assert_eq!(level["mismatches"], json!(0), "{client}: {level}");
        assert_eq!(level["ok"], level["requests"], "{client}: {level}");
    }
}

#[test]
fn tritonclient_asyncio_http_at_concurrency_1_8_64_gets_every_answer_right() {
    let server = serve_http();
    assert_load("triton-http-aio", &server);
}

#[test]
fn tritonclient_asyncio_grpc_at_concurrency_1_8_64_gets_every_answer_right() {
    let server = serve_grpc();
    assert_load("triton-grpc-aio", &server);
}

/// schemathesis (`st run`, conformance.py) against the protocol's OpenAPI
/// document, with the checks conformance.py enables and records: no 5xx;
/// status codes, content types, headers and bodies as the document declares;
/// requests the document's schema forbids refused with a 4xx.
#[test]
fn the_rest_surface_passes_schemathesis_against_the_open_inference_spec() {
    let server = serve_http();
    let work = std::env::temp_dir().join(format!("tiffin-oip-conformance-{}", std::process::id()));
    let run = script(
        "conformance.py",
        &[
            "--url",
            &format!("http://{}", server.addr),
            "--spec",
            "oip/spec/open_inference_rest.yaml",
            "--work",
            work.to_str().expect("a UTF-8 path"),
        ],
        &[&server],
    );
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        run["version"].is_string(),
        "run on the versioned routes: {run}"
    );
    assert_eq!(
        run["exit"],
        json!(0),
        "schemathesis with {}:\n{}\nserver log:\n{}",
        run["checks"],
        run["output"].as_str().unwrap_or_default(),
        log_tail(&server, 30)
    );
}

mod deploy;
mod wire;
