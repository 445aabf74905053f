//! The ONNX runnable (`tiffin-onnx`) on the committed digits model
//! (`models/digits/digits.onnx`, made by `models/train.py`): what it reads
//! from the file, that a batch answers exactly what each call gets alone,
//! that the held-out images are classified as scikit-learn classified them,
//! and that a missing file, a file that is not ONNX and an operator tract
//! lacks each stop the load with a message naming the file and the problem.
//! Then the zero-code service, `tiffin serve-http --model PATH.onnx`, over
//! real HTTP: NumpyNdarray JSON in, the outputs out, batched calls answered
//! as alone, bad arrays refused with the shapes named, and a bad model file
//! refused at start with one message.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

use tiffin_onnx::{OnnxError, OnnxModel, RUN_METHOD, inspect, runnable};
use tiffin_service::image::decode_image;
use tiffin_service::{DType, NdArray, NdData, NumpyNdarray};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn digits() -> OnnxModel {
    OnnxModel::load(&repo("models/digits/digits.onnx")).expect("the committed model loads")
}

/// The held-out images, as `[1, 64]` float32 arrays, with their labels.
fn held_out() -> Vec<(NdArray, i64)> {
    let labels = std::fs::read_to_string(repo("models/digits/test/labels.csv")).unwrap();
    labels
        .lines()
        .skip(1)
        .map(|line| {
            let (file, label) = line.split_once(',').unwrap();
            let png = std::fs::read(repo("models/digits/test").join(file)).unwrap();
            let gray = decode_image(&png).unwrap().to_luma8();
            let pixels: Vec<f32> = gray.as_raw().iter().map(|&p| f32::from(p)).collect();
            let array = NdArray::new(vec![1, 64], NdData::Float32(pixels)).unwrap();
            (array, label.parse().unwrap())
        })
        .collect()
}

fn output<'a>(outputs: &'a [(String, NdArray)], name: &str) -> &'a NdArray {
    &outputs.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn the_model_declares_its_input_and_outputs() {
    let info = inspect(&repo("models/digits/digits.onnx")).unwrap();
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(info.inputs[0].name, "pixels");
    assert_eq!(info.inputs[0].dtype, "float32");
    assert_eq!(info.inputs[0].shape, vec![None, Some(64)]);
    let outputs: Vec<(&str, &str, &[Option<usize>])> = info
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.dtype.as_str(), o.shape.as_slice()))
        .collect();
    assert_eq!(
        outputs,
        vec![
            ("probabilities", "float32", &[None, Some(10)][..]),
            ("label", "int64", &[None][..]),
        ]
    );
    let spec = info.input_spec().unwrap();
    assert_eq!(spec.dtype, DType::Float32);
}

#[test]
fn the_held_out_images_are_classified_as_at_training() {
    let model = digits();
    let data = held_out();
    let correct = data
        .iter()
        .filter(|(x, y)| {
            let out = model.run(x.clone()).unwrap();
            output(&out, "label").data() == &NdData::Int64(vec![*y])
        })
        .count();
    let accuracy = correct as f64 / data.len() as f64;
    // models/digits/metrics.json: 0.977778 (352 of 360) with scikit-learn.
    assert_eq!(correct, 352, "accuracy {accuracy}");
}

/// The same names, shapes and bits: tiffin evaluates tract's reductions one
/// row at a time at a fixed alignment (`onnx/src/rows.rs`), so a row's place
/// in a batch cannot change how its sums are rounded.
fn same_answer(batched: &[(String, NdArray)], alone: &[(String, NdArray)], what: &str) {
    assert_eq!(batched.len(), alone.len(), "{what}");
    for ((bn, b), (an, a)) in batched.iter().zip(alone) {
        assert_eq!(bn, an, "{what}");
        assert_eq!(b.shape(), a.shape(), "{what}: {bn}");
        match (b.data(), a.data()) {
            (NdData::Float32(x), NdData::Float32(y)) => {
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(x), bits(y), "{what}: {bn} {x:?} vs {y:?}");
            }
            (x, y) => assert_eq!(x, y, "{what}: {bn}"),
        }
    }
}

#[test]
fn a_batch_answers_what_each_call_gets_alone() {
    let model = digits();
    let data: Vec<NdArray> = held_out().into_iter().take(24).map(|(x, _)| x).collect();
    // Calls of 1, 2 and 3 rows, and a whole-batch run through the runnable.
    let mut calls: Vec<NdArray> = Vec::new();
    let mut rows = data
        .chunks(1)
        .take(4)
        .map(<[NdArray]>::to_vec)
        .collect::<Vec<_>>();
    rows.extend(data[4..].chunks(2).take(4).map(<[NdArray]>::to_vec));
    rows.extend(data[12..].chunks(3).map(<[NdArray]>::to_vec));
    for group in rows {
        let n = group.len();
        let mut pixels = Vec::new();
        for a in group {
            if let NdData::Float32(v) = a.into_parts().1 {
                pixels.extend(v);
            }
        }
        calls.push(NdArray::new(vec![n, 64], NdData::Float32(pixels)).unwrap());
    }
    let alone: Vec<_> = calls
        .iter()
        .map(|c| model.run(c.clone()).unwrap())
        .collect();
    let batched = model.run_batch(calls.clone()).unwrap();
    assert_eq!(batched.len(), calls.len());
    for (i, (b, a)) in batched.iter().zip(&alone).enumerate() {
        same_answer(b, a, &format!("call {i}"));
        assert_eq!(output(b, "label").shape()[0], calls[i].shape()[0]);
    }
    // The same through the runnable's batch method, as a worker runs it.
    let runnable = runnable(digits());
    let tiffin_service::MethodKind::Batch(batch) = runnable.get(RUN_METHOD).unwrap() else {
        panic!("the ONNX method is batchable");
    };
    let payloads: Vec<Vec<u8>> = calls
        .iter()
        .map(|c| serde_json::to_vec(c).unwrap())
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let answers = batch(&refs).unwrap();
    for (answer, a) in answers.iter().zip(&alone) {
        let got: Vec<(String, NdArray)> = serde_json::from_slice(answer).unwrap();
        same_answer(&got, a, "through the runnable");
    }
}

#[test]
fn every_held_out_image_gets_its_alone_bits_at_any_place_in_a_batch() {
    let model = digits();
    let images: Vec<NdArray> = held_out().into_iter().map(|(x, _)| x).collect();
    assert_eq!(images.len(), 360, "every held-out image");
    let alone: Vec<_> = images
        .iter()
        .map(|x| model.run(x.clone()).unwrap())
        .collect();
    // Each image at every offset 0..8 of a batch of all of them (rows sat 8
    // apart at one alignment before `onnx/src/rows.rs`), and in batches of
    // every size from 2 to 33.
    for shift in 0..8 {
        let mut order: Vec<usize> = (0..images.len()).collect();
        order.rotate_left(shift);
        let batch: Vec<NdArray> = order.iter().map(|&i| images[i].clone()).collect();
        let answers = model.run_batch(batch).unwrap();
        for (answer, &i) in answers.iter().zip(&order) {
            same_answer(answer, &alone[i], &format!("image {i} shifted by {shift}"));
        }
    }
    for size in 2..=33 {
        for (k, chunk) in images.chunks(size).enumerate() {
            let answers = model.run_batch(chunk.to_vec()).unwrap();
            for (j, answer) in answers.iter().enumerate() {
                let i = k * size + j;
                same_answer(
                    answer,
                    &alone[i],
                    &format!("image {i} in a batch of {size}"),
                );
            }
        }
    }
}

#[test]
fn inputs_of_the_wrong_shape_or_dtype_are_refused_naming_both() {
    let model = digits();
    let e = model
        .run(NumpyNdarray::parse(b"[[1, 2, 3]]").unwrap())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "expected an array of shape (-1, 64), received shape (1, 3)"
    );
    // Integers widen to the model's float32, as numpy would.
    let ints = format!("[[{}]]", vec!["0"; 64].join(","));
    assert!(
        model
            .run(NumpyNdarray::parse(ints.as_bytes()).unwrap())
            .is_ok()
    );
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiffin-onnx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn bad_files_are_refused_naming_the_file_and_the_problem() {
    let missing = repo("models/digits/no-such-model.onnx");
    let e = OnnxModel::load(&missing).unwrap_err();
    assert!(matches!(e, OnnxError::Read { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("no-such-model.onnx") && text.contains("No such file"),
        "{text}"
    );

    let csv = repo("models/digits/test/labels.csv");
    let e = OnnxModel::load(&csv).unwrap_err();
    assert!(matches!(e, OnnxError::NotOnnx { .. }), "{e:?}");
    assert!(
        e.to_string().contains("labels.csv is not an ONNX model"),
        "{e}"
    );

    let model = std::fs::read(repo("models/digits/digits.onnx")).unwrap();
    let truncated = temp_file("truncated.onnx", &model[..model.len() / 2]);
    let e = OnnxModel::load(&truncated).unwrap_err();
    assert!(matches!(e, OnnxError::NotOnnx { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("truncated.onnx is not an ONNX model"),
        "{e}"
    );

    let e = OnnxModel::load(&repo("models/testdata/unsupported-op.onnx")).unwrap_err();
    assert!(matches!(e, OnnxError::Unsupported { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("unsupported-op.onnx") && text.contains("TiffinNoSuchOperator"),
        "{text}"
    );
}

/// The JSON body of one call: `rows` held-out images as nested lists.
fn ndarray_body(rows: &[NdArray]) -> String {
    let lists: Vec<String> = rows
        .iter()
        .map(|a| {
            let NdData::Float32(v) = a.data() else {
                unreachable!()
            };
            let nums: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
            format!("[{}]", nums.join(","))
        })
        .collect();
    format!("[{}]", lists.join(","))
}

#[test]
fn serve_http_model_answers_ndarray_json_with_the_outputs() {
    let model = repo("models/digits/digits.onnx");
    let server = Launch::http(&["--model", model.to_str().unwrap()]).start();
    let data = held_out();
    let rows: Vec<NdArray> = data.iter().take(3).map(|(x, _)| x.clone()).collect();
    let r = server.post(
        "/predict",
        "application/json",
        ndarray_body(&rows).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    let labels: Vec<i64> = answer["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let alone = digits();
    let expected: Vec<i64> = rows
        .iter()
        .map(
            |x| match output(&alone.run(x.clone()).unwrap(), "label").data() {
                NdData::Int64(v) => v[0],
                _ => unreachable!(),
            },
        )
        .collect();
    assert_eq!(labels, expected);
    assert_eq!(answer["probabilities"].as_array().unwrap().len(), 3);
    // One runner named after the model; batching on by default.
    let status = status_json(&server);
    let runners: Vec<String> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["runner"].as_str().map(str::to_string))
        .collect();
    assert_eq!(runners, vec!["digits".to_string()], "{status}");
    // Many concurrent calls of one row each: every answer is the one the
    // same row gets alone, whatever batch it ran in.
    concurrent_clients(8, 10, |c, i| {
        let k = (c * 10 + i) % data.len();
        let body = ndarray_body(std::slice::from_ref(&data[k].0));
        let r = http(
            &server.addr,
            "POST",
            "/predict",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let want = match output(&alone.run(data[k].0.clone()).unwrap(), "label").data() {
            NdData::Int64(v) => v[0],
            _ => unreachable!(),
        };
        assert_eq!(r.json()["label"][0].as_i64(), Some(want));
    });
    let metrics = server.metrics();
    assert!(
        metrics.contains("bentoml_runner_adaptive_batch_size"),
        "batching metrics are exported"
    );
}

#[test]
fn serve_http_model_refuses_bad_arrays_naming_the_shapes_and_keeps_serving() {
    let model = repo("models/digits/digits.onnx");
    let server = Launch::http(&["--model", model.to_str().unwrap()]).start();
    let good = format!("[[{}]]", vec!["0"; 64].join(","));
    for (body, want) in [
        (
            "[[1, 2, 3]]".to_string(),
            "expected an array of shape (-1, 64), received shape (1, 3)",
        ),
        (
            format!("[{}]", vec!["0"; 64].join(",")),
            "expected an array of shape (-1, 64), received shape (64,)",
        ),
        ("[[1, 2], [3]]".to_string(), "ragged array"),
        ("[\"seven\"]".to_string(), "not an array of numbers"),
        ("{\"x\": 1".to_string(), "not an array of numbers"),
    ] {
        let r = server.post("/predict", "application/json", body.as_bytes());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(want), "{body}: {error}");
        let r = server.post("/predict", "application/json", good.as_bytes());
        assert_eq!(r.status, 200, "after {body}: {}", r.text());
    }
}

fn serve_exits_with(model: &Path) -> String {
    let out = Command::new(tiffin_bin())
        .args([
            "serve-http",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--model",
        ])
        .arg(model)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "serving {} must fail",
        model.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_http_model_with_a_bad_file_stops_with_one_message_naming_it() {
    let missing = serve_exits_with(&repo("models/none.onnx"));
    assert!(
        missing.contains("none.onnx") && missing.contains("No such file"),
        "{missing}"
    );
    let not_onnx = serve_exits_with(&repo("models/digits/test/labels.csv"));
    assert!(
        not_onnx.contains("labels.csv is not an ONNX model"),
        "{not_onnx}"
    );
    let op = serve_exits_with(&repo("models/testdata/unsupported-op.onnx"));
    assert!(op.contains("TiffinNoSuchOperator"), "{op}");
    assert_eq!(op.matches("error:").count(), 1, "{op}");
}

#[test]
fn a_model_file_broken_after_start_stops_the_workers_restarts_once_reported() {
    // Served from a copy, which is then damaged: the runner worker that is
    // restarted fails to load it, and the crash-loop stop ends the service
    // with one error naming the file instead of restarting forever.
    let dir = std::env::temp_dir().join(format!("tiffin-onnx-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("digits.onnx");
    std::fs::copy(repo("models/digits/digits.onnx"), &copy).unwrap();
    let mut server = Launch::http(&["--model", copy.to_str().unwrap()])
        .env("TIFFIN_CONFIG_OPTIONS", "runners.max_failed_starts=2")
        .start();
    std::fs::write(&copy, b"this is no longer a model").unwrap();
    let runner = child_pids(&server, "runner");
    assert_eq!(runner.len(), 1);
    // SAFETY: kill(2) on a runner worker of the server this test started.
    unsafe {
        libc::kill(runner[0] as i32, libc::SIGKILL);
    }
    assert!(
        eventually(Duration::from_secs(30), || server
            .child
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "the supervisor must stop; log:\n{}",
        server.log()
    );
    let status = server.child.wait().unwrap();
    assert!(!status.success());
    let log = server.log();
    assert!(log.contains("digits.onnx is not an ONNX model"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_grpc_model_takes_bentomls_ndarray_message_and_names_bad_shapes() {
    use tiffin_api_server::grpc::proto::bento_service_client::BentoServiceClient;
    use tiffin_api_server::grpc::proto::nd_array::DType as PbDType;
    use tiffin_api_server::grpc::proto::{
        NdArray as PbNdArray, Request, ServiceMetadataRequest, request, response,
    };
    use tiffin_api_server::tonic::Code;

    let model = repo("models/digits/digits.onnx");
    let server = launch_grpc(&["--model", model.to_str().unwrap()]).start();
    let data = held_out();
    let rows: Vec<NdArray> = data.iter().take(4).map(|(x, _)| x.clone()).collect();
    let alone = digits();
    let expected: Vec<i64> = rows
        .iter()
        .map(
            |x| match output(&alone.run(x.clone()).unwrap(), "label").data() {
                NdData::Int64(v) => v[0],
                _ => unreachable!(),
            },
        )
        .collect();
    let values: Vec<f32> = rows
        .iter()
        .flat_map(|a| match a.data() {
            NdData::Float32(v) => v.clone(),
            _ => unreachable!(),
        })
        .collect();
    let ndarray = |shape: Vec<i32>, float_values: Vec<f32>| Request {
        api_name: "predict".into(),
        content: Some(request::Content::Ndarray(PbNdArray {
            dtype: PbDType::DtypeFloat as i32,
            shape,
            float_values,
            ..Default::default()
        })),
    };
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
        let mut client = BentoServiceClient::new(ch);

        // ServiceMetadata says what the model takes.
        let meta = client
            .service_metadata(ServiceMetadataRequest {})
            .await
            .expect("metadata")
            .into_inner();
        let api = meta
            .apis
            .iter()
            .find(|a| a.name == "predict")
            .expect("predict");
        let input = api.input.as_ref().expect("input");
        assert_eq!(
            input.descriptor_id.as_deref(),
            Some("bentoml.io.NumpyNdarray")
        );
        let attributes = format!("{:?}", input.attributes);
        assert!(attributes.contains("ndarray"), "{attributes}");

        let resp = client
            .call(ndarray(vec![4, 64], values.clone()))
            .await
            .unwrap_or_else(|s| panic!("predict: {s:?}\nlog:\n{}", server.log()))
            .into_inner();
        // Two outputs: a JSON object of them, as over HTTP.
        let answer = match resp.content {
            Some(response::Content::Json(v)) => {
                tiffin_api_server::grpc::value_to_json(v).expect("json")
            }
            other => panic!("expected json, got {other:?}"),
        };
        let labels: Vec<i64> = answer["label"]
            .as_array()
            .expect("label")
            .iter()
            .filter_map(|v| v.as_i64())
            .collect();
        assert_eq!(labels, expected, "{answer}");

        // Wrong shape: INVALID_ARGUMENT naming both; values that do not fill
        // the shape: why; and the server keeps serving.
        let err = client
            .call(ndarray(vec![4, 16], values.clone()[..64].to_vec()))
            .await
            .expect_err("wrong shape");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message()
                .contains("expected an array of shape (-1, 64), received shape (4, 16)"),
            "{}",
            err.message()
        );
        let err = client
            .call(ndarray(vec![4, 64], values[..10].to_vec()))
            .await
            .expect_err("short values");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("not a valid array"),
            "{}",
            err.message()
        );
        let resp = client
            .call(ndarray(vec![1, 64], values[..64].to_vec()))
            .await
            .expect("still serving");
        assert!(resp.into_inner().content.is_some());
    });
}
