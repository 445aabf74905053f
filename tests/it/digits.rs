//! `digits_classifier` through the real HTTP API: the 360 held-out PNGs
//! (`models/digits/test/`, never seen in training) sent as multipart uploads
//! classify with accuracy ≥ 0.95; the README's curl line works as written;
//! raw PNG bodies work too; and every kind of bad upload gets its status
//! and a reason while the server keeps serving.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A `multipart/form-data` body with one file field, as browsers and curl
/// build it.
fn form(field: &str, filename: &str, content_type: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "------------------------tiffin7d1b";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
         filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn held_out() -> Vec<(Vec<u8>, i64)> {
    let labels = std::fs::read_to_string(repo("models/digits/test/labels.csv")).unwrap();
    labels
        .lines()
        .skip(1)
        .map(|line| {
            let (file, label) = line.split_once(',').unwrap();
            let png = std::fs::read(repo("models/digits/test").join(file)).unwrap();
            (png, label.parse().unwrap())
        })
        .collect()
}

fn start() -> Server {
    Launch::http(&["digits_classifier"]).start()
}

#[test]
fn held_out_pngs_uploaded_over_http_are_classified_with_accuracy_above_095() {
    let server = start();
    let data = held_out();
    assert_eq!(data.len(), 360);
    let correct = AtomicUsize::new(0);
    // Eight clients at once, so the runner's batches hold several uploads.
    concurrent_clients(8, data.len() / 8, |c, i| {
        let (png, label) = &data[i * 8 + c];
        let (ct, body) = form("image", "digit.png", "image/png", png);
        let r = server.post("/predict", &ct, &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        let digit = answer["digit"].as_i64().unwrap();
        let probs = answer["probabilities"].as_array().unwrap();
        assert_eq!(probs.len(), 10);
        let sum: f64 = probs.iter().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        if digit == *label {
            correct.fetch_add(1, Ordering::Relaxed);
        }
    });
    let accuracy = correct.load(Ordering::Relaxed) as f64 / data.len() as f64;
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy}");
    // The held-out set was scored in training at 352/360; the API's
    // decoding must not lose any of that.
    assert_eq!(correct.load(Ordering::Relaxed), 352);
}

/// The bits of the `probabilities` of a `/predict` answer (f32 values, as
/// the service computes them).
fn probability_bits(r: &Response) -> Vec<u32> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["probabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("no probabilities: {}", r.text()))
        .iter()
        .map(|p| (p.as_f64().expect("a number") as f32).to_bits())
        .collect()
}

/// `(count, sum)` of the digits runner's batch-size histogram: batches run,
/// calls they held.
fn batches(server: &Server) -> (f64, f64) {
    let expo = parse_exposition(&server.metrics());
    let labels = [("runner_name", "digits_clf"), ("method_name", "run")];
    (
        expo.sum("bentoml_runner_adaptive_batch_size_count", &labels),
        expo.sum("bentoml_runner_adaptive_batch_size_sum", &labels),
    )
}

#[test]
fn every_held_out_image_gets_the_same_probability_bits_batched_over_http_as_alone() {
    let server = start();
    let data = held_out();
    assert_eq!(data.len(), 360);
    let predict = |png: &[u8]| {
        let (ct, body) = form("image", "digit.png", "image/png", png);
        server.post("/predict", &ct, &body)
    };
    // Alone: one request at a time, so every call is a batch of its own.
    let alone: Vec<Vec<u32>> = data
        .iter()
        .map(|(png, _)| probability_bits(&predict(png)))
        .collect();
    assert_eq!(
        batches(&server),
        (360.0, 360.0),
        "one call a batch while alone"
    );
    // Together: 24 clients at once; the runner stacks their calls.
    const CLIENTS: usize = 24;
    concurrent_clients(CLIENTS, data.len() / CLIENTS, |c, i| {
        let n = i * CLIENTS + c;
        assert_eq!(
            probability_bits(&predict(&data[n].0)),
            alone[n],
            "held-out image {n}: batched bits differ from alone"
        );
    });
    let (count, sum) = batches(&server);
    let (count, sum) = (count - 360.0, sum - 360.0);
    eprintln!(
        "360 concurrent uploads in {count} batches, mean size {:.2}",
        sum / count
    );
    assert_eq!(sum, 360.0, "every call went through one batch");
    assert!(
        count < 360.0,
        "no batch held more than one call, so nothing was compared batched"
    );
}

#[test]
fn the_readme_curl_line_classifies_the_sample_digits() {
    let curl = require_tool("curl");
    let server = start();
    let url = format!("{}/predict", server.addr);
    for k in [0, 3, 7] {
        let sample = repo(&format!("models/digits/samples/digit-{k}.png"));
        let out = Command::new(&curl)
            .args(["-sS", "--max-time", "30", "-X", "POST", "-F"])
            .arg(format!("image=@{}", sample.display()))
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(answer["digit"], k, "{answer}");
    }
    // A raw PNG body, no form: the same answer.
    let png = std::fs::read(repo("models/digits/samples/digit-7.png")).unwrap();
    let r = server.post("/predict", "image/png", &png);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["digit"], 7);
    // Dark ink on white: the API inverts a light background.
    let img = tiffin_service::image::decode_image(&png)
        .unwrap()
        .to_luma8();
    let inverted = image_inverted(&img);
    let r = server.post("/predict", "image/png", &inverted);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["digit"], 7);
}

fn image_inverted(img: &tiffin_service::image::image::GrayImage) -> Vec<u8> {
    let mut inv = img.clone();
    for p in inv.pixels_mut() {
        p.0[0] = 255 - p.0[0];
    }
    let dynamic = tiffin_service::image::DynamicImage::ImageLuma8(inv);
    let mut out = std::io::Cursor::new(Vec::new());
    dynamic
        .write_to(&mut out, tiffin_service::image::image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[test]
fn bad_uploads_get_their_status_and_reason_and_the_server_keeps_serving() {
    let server = start();
    let png = std::fs::read(repo("models/digits/samples/digit-3.png")).unwrap();
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        {
            let (ct, b) = form("image", "notes.txt", "text/plain", b"not an image at all");
            ("text in the form", ct, b, 400, "not a PNG or JPEG")
        },
        {
            let (ct, b) = form("image", "cut.png", "image/png", &png[..png.len() / 2]);
            ("truncated PNG", ct, b, 400, "cannot decode the image")
        },
        (
            "no image field",
            "multipart/form-data; boundary=zz".into(),
            b"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
              --zz\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n--zz--\r\n"
                .to_vec(),
            400,
            "no field 'image' and no file part (fields: a, b)",
        ),
        (
            "no boundary",
            "multipart/form-data".into(),
            b"--x\r\n".to_vec(),
            400,
            "boundary",
        ),
        (
            "garbled form",
            "multipart/form-data; boundary=zz".into(),
            b"--zz\r\nContent-Disposition: form-data; name=\"image\"\r\n".to_vec(),
            400,
            "multipart",
        ),
        (
            "text body",
            "text/plain".into(),
            b"7".to_vec(),
            415,
            "unsupported content type",
        ),
        (
            "GIF body",
            "image/gif".into(),
            b"GIF89a\x08\x00\x08\x00\x00\x00\x00;".to_vec(),
            400,
            "PNG or JPEG",
        ),
    ];
    for (what, ct, body, status, reason) in cases {
        let r = server.post("/predict", &ct, &body);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(reason), "{what}: {error}");
        // Still serving.
        let r = server.post("/predict", "image/png", &png);
        assert_eq!(r.status, 200, "after {what}: {}", r.text());
    }
    // A PNG that announces a 100000 x 100000 image is refused from its header.
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let r = server.post("/predict", "image/png", &huge);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(server.get("/readyz").status, 200);
}

#[test]
fn held_out_pngs_sent_over_grpc_as_file_and_multipart_contents_are_classified() {
    use std::collections::HashMap;
    use tiffin_api_server::grpc::proto::bento_service_client::BentoServiceClient;
    use tiffin_api_server::grpc::proto::{File, Multipart, Part, Request, part, request};
    use tiffin_api_server::tonic::Code;

    let server = launch_grpc(&["digits_classifier"]).start();
    let data = held_out();
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
        let mut client = BentoServiceClient::new(ch);
        let digit = |resp: tiffin_api_server::grpc::proto::Response| match resp.content {
            Some(tiffin_api_server::grpc::proto::response::Content::Json(v)) => {
                tiffin_api_server::grpc::value_to_json(v).expect("json")["digit"].as_i64()
            }
            other => panic!("expected json content, got {other:?}"),
        };
        let file = |png: &[u8]| File {
            kind: Some("image/png".into()),
            content: png.to_vec(),
        };
        let mut correct = 0;
        let sample: Vec<&(Vec<u8>, i64)> = data.iter().step_by(3).collect();
        for (i, (png, label)) in sample.iter().enumerate() {
            // Every other one as a form, as `curl -F image=@...` over HTTP.
            let content = if i % 2 == 0 {
                request::Content::File(file(png))
            } else {
                let mut fields = HashMap::new();
                fields.insert(
                    "image".to_string(),
                    Part {
                        representation: Some(part::Representation::File(file(png))),
                    },
                );
                request::Content::Multipart(Multipart { fields })
            };
            let resp = client
                .call(Request {
                    api_name: "predict".into(),
                    content: Some(content),
                })
                .await
                .unwrap_or_else(|s| panic!("predict: {s:?}\nlog:\n{}", server.log()))
                .into_inner();
            if digit(resp) == Some(*label) {
                correct += 1;
            }
        }
        let accuracy = f64::from(correct) / sample.len() as f64;
        eprintln!(
            "gRPC accuracy on {} held-out images: {accuracy:.3}",
            sample.len()
        );
        assert!(accuracy >= 0.95, "accuracy {accuracy}");

        // An undecodable file, and a form without the image: INVALID_ARGUMENT, and why.
        let err = client
            .call(Request {
                api_name: "predict".into(),
                content: Some(request::Content::File(file(b"not a png"))),
            })
            .await
            .expect_err("garbage image");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("not a PNG or JPEG image"),
            "{}",
            err.message()
        );
        let mut fields = HashMap::new();
        fields.insert(
            "caption".to_string(),
            Part {
                representation: Some(part::Representation::Text("a seven".into())),
            },
        );
        fields.insert(
            "note".to_string(),
            Part {
                representation: Some(part::Representation::Text("x".into())),
            },
        );
        let err = client
            .call(Request {
                api_name: "predict".into(),
                content: Some(request::Content::Multipart(Multipart { fields })),
            })
            .await
            .expect_err("form without image");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("no field 'image'"),
            "{}",
            err.message()
        );
        // And it keeps serving.
        let resp = client
            .call(Request {
                api_name: "predict".into(),
                content: Some(request::Content::File(file(&data[0].0))),
            })
            .await
            .expect("still serving")
            .into_inner();
        assert_eq!(digit(resp), Some(data[0].1));
    });
}
