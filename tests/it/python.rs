//! Python services (issue 24): BentoML 1.2 service files, one per concern
//! under `tests/fixtures/python/`, served unchanged by the `tiffin` command
//! of the wheel (`target/pyvenv-python/bin/tiffin serve-http FILE.py:svc`;
//! scripts/setup/25-python and `scripts/wheel --install`) over real HTTP:
//! every IO descriptor (Text, JSON with pydantic, NumpyNdarray batched,
//! Image, File, Multipart) and a new-style `@bentoml.service` class, Python
//! exceptions, services that cannot start, a `kill -9` of a Python runner
//! worker under load, and the custom metrics of BentoML's metrics guide
//! summed over several processes. Then each file is served by BentoML
//! 1.2.20 itself (`target/pyvenv-frontdoor`, scripts/setup/20-frontdoor) and
//! by tiffin, both get the same requests, and every answer is compared.
//!
//! Each fixture's requests are one table (`*_cases`) with what tiffin must
//! answer; the comparison tests send the same tables to both servers.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `BentoML`'s own command, 1.2.20 (scripts/setup/20-frontdoor).
fn bentoml_command() -> PathBuf {
    venv_tool(
        "target/pyvenv-frontdoor/bin/bentoml",
        "scripts/setup/20-frontdoor",
    )
}

fn fixture(file: &str) -> PathBuf {
    repo("tests/fixtures/python").join(file)
}

/// A fixture's service: `FILE` (a classic service in its attribute `svc`)
/// or `FILE:Class` (a new-style `@bentoml.service` class), as the file's
/// name and the attribute.
fn service_of(target: &str) -> (&str, &str) {
    target.split_once(':').unwrap_or((target, "svc"))
}

/// `tiffin serve-http tests/fixtures/python/FILE:svc ARGS` (or
/// `FILE:Class`, [`service_of`]) from the wheel's venv.
fn serve(target: &str, args: &[&str]) -> Server {
    let (file, attr) = service_of(target);
    let locator = format!("{}:{attr}", fixture(file).display());
    let mut all = vec![locator.as_str()];
    all.extend_from_slice(args);
    Launch::http(&all).bin(python_tiffin()).start()
}

/// One worker of `tiffin status --json`.
#[derive(Debug, Clone, PartialEq)]
struct Worker {
    /// `api-server` or `runner`.
    role: String,
    runner: Option<String>,
    index: u64,
    pid: u64,
    /// Lower case: `ready`, `starting`, ...
    state: String,
    restarts: u64,
    /// Requests the current process served, as of its last snapshot.
    requests: u64,
}

/// The workers of `server` per `tiffin status --json`, sorted by role and index.
fn workers(server: &Server) -> Vec<Worker> {
    let status = status_json(server);
    let mut workers: Vec<Worker> = status["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers array: {status:#}"))
        .iter()
        .map(|w| {
            let (role, runner, index) = worker_role(w);
            let n = |k: &str| w[k].as_u64().unwrap_or(u64::MAX);
            Worker {
                role,
                runner,
                index,
                pid: n("pid"),
                state: w["state"].as_str().unwrap_or("").to_ascii_lowercase(),
                restarts: n("restarts"),
                requests: n("requests"),
            }
        })
        .collect();
    workers.sort_by(|a, b| (&a.role, &a.runner, a.index).cmp(&(&b.role, &b.runner, b.index)));
    workers
}

/// An HTTP request body and how it is labelled.
struct Body {
    content_type: String,
    bytes: Vec<u8>,
}

fn body(content_type: &str, bytes: impl Into<Vec<u8>>) -> Body {
    Body {
        content_type: content_type.to_string(),
        bytes: bytes.into(),
    }
}

fn text(s: &str) -> Body {
    body("text/plain", s)
}

fn json_body(v: Value) -> Body {
    body("application/json", v.to_string())
}

/// One part of a `multipart/form-data` form: its field name, file name
/// (`None` for a plain value), content type (`None`: no header) and data.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` form as `curl -F` sends it: `-F FIELD=@FILE`
/// gives a file part typed from the file's extension, `-F FIELD=VALUE` a
/// plain part with no type, `-F 'FIELD=VALUE;type=T'` one typed T.
fn form(parts: &[Part]) -> Body {
    let boundary = "------------------------tiffinpythontests";
    let mut bytes = Vec::new();
    for (field, filename, content_type, data) in parts {
        let mut head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"");
        if let Some(f) = filename {
            head.push_str(&format!("; filename=\"{f}\""));
        }
        if let Some(t) = content_type {
            head.push_str(&format!("\r\nContent-Type: {t}"));
        }
        head.push_str("\r\n\r\n");
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body(&format!("multipart/form-data; boundary={boundary}"), bytes)
}

/// A form of one file field, as `curl -F FIELD=@FILENAME` sends it.
fn form_file(field: &str, filename: &str, content_type: &str, data: &[u8]) -> Body {
    form(&[(field, Some(filename), Some(content_type), data)])
}

/// What a request must get from tiffin.
enum Expect {
    /// 200, `text/plain`, exactly this text.
    Text(&'static str),
    /// 200, `application/json`, this JSON value (numbers keep their kind:
    /// `10.0` is not `10`, as for a Python client).
    Json(Value),
    /// This status and a JSON value, with this header.
    JsonWith(u16, (&'static str, &'static str), Value),
    /// 200, this media type, these bytes.
    Bytes(&'static str, Vec<u8>),
    /// 200, this media type, an image of this width and height.
    Image(&'static str, u32, u32),
    /// This status, with a JSON `{"error": ...}` naming every needle.
    Error(u16, &'static [&'static str]),
}

/// One request of a fixture's table, with what tiffin must answer.
struct Case {
    path: &'static str,
    body: Body,
    expect: Expect,
}

fn case(path: &'static str, body: Body, expect: Expect) -> Case {
    Case { path, body, expect }
}

fn media_type(r: &Response) -> String {
    let ct = r.header("content-type").unwrap_or_default();
    ct.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A body for a failure message: text as text, anything else by its size.
fn shown(r: &Response) -> String {
    match std::str::from_utf8(&r.body) {
        Ok(t) if !t.contains('\0') => format!("{t:?} ({})", media_type(r)),
        _ => format!("<{} bytes of {}>", r.body.len(), media_type(r)),
    }
}

fn send(addr: &str, c: &Case) -> Response {
    http(
        addr,
        "POST",
        c.path,
        &[("Content-Type", &c.body.content_type)],
        &c.body.bytes,
    )
    .unwrap_or_else(|e| panic!("POST {} to {addr}: {e}", c.path))
}

/// Sends every case to `server` and checks its answer.
fn check_cases(server: &Server, cases: &[Case]) {
    for c in cases {
        let r = send(&server.addr, c);
        let what = format!("POST {} answered {} {}", c.path, r.status, shown(&r));
        let log = || server.log();
        let ok_as = |media: &str| {
            assert_eq!(r.status, 200, "{what}\nlog:\n{}", log());
            assert_eq!(media_type(&r), media, "{what}: {:?}", r.headers);
        };
        match &c.expect {
            Expect::Text(t) => {
                ok_as("text/plain");
                assert_eq!(r.text(), *t, "{what}");
            }
            Expect::Json(v) => {
                ok_as("application/json");
                assert_eq!(&r.json(), v, "{what}");
            }
            Expect::JsonWith(status, (name, value), v) => {
                assert_eq!(r.status, *status, "{what}\nlog:\n{}", log());
                assert_eq!(media_type(&r), "application/json", "{what}");
                assert_eq!(r.header(name), Some(*value), "{what}: {:?}", r.headers);
                assert_eq!(&r.json(), v, "{what}");
            }
            Expect::Bytes(media, b) => {
                ok_as(media);
                assert_eq!(&r.body, b, "{what}");
            }
            Expect::Image(media, width, height) => {
                ok_as(media);
                let img = tiffin_service::image::decode_image(&r.body)
                    .unwrap_or_else(|e| panic!("{what}: not an image: {e}"));
                assert_eq!((img.width(), img.height()), (*width, *height), "{what}");
            }
            Expect::Error(status, needles) => {
                assert_eq!(r.status, *status, "{what}\nlog:\n{}", log());
                let message = r.json()["error"].as_str().map(str::to_string);
                let message = message.unwrap_or_else(|| panic!("{what}: no \"error\" string"));
                for n in *needles {
                    assert!(message.contains(n), "{what}: {n:?} not named");
                }
            }
        }
    }
}

fn text_cases() -> Vec<Case> {
    vec![
        case("/shout", text("héllo wörld"), Expect::Text("HÉLLO WÖRLD!")),
        case("/shout", text(""), Expect::Text("!")),
        case("/reverse", text("héllo wörld"), Expect::Text("dlröw olléh")),
        case("/words", text("one two  three"), Expect::Text("3 words")),
    ]
}

fn json_cases() -> Vec<Case> {
    let order = |quantity: Value| json!({"item": "tea", "quantity": quantity, "unit_price": 2.5});
    vec![
        case(
            "/price",
            json_body(order(json!(4))),
            Expect::Json(
                json!({"item": "tea", "total": 10.0, "lines": ["tea x4", "tea x4", "tea x4"]}),
            ),
        ),
        case(
            "/price",
            json_body(order(json!(1))),
            Expect::Json(json!({"item": "tea", "total": 2.5, "lines": ["tea x1"]})),
        ),
        case(
            "/price",
            json_body(order(json!("four"))),
            Expect::Error(400, &["quantity"]),
        ),
        case(
            "/price",
            json_body(json!({"item": "tea", "unit_price": 2.5})),
            Expect::Error(400, &["quantity"]),
        ),
        case(
            "/keys",
            json_body(json!({"b": 1, "a": [1, 2], "nested": {"x": null}})),
            Expect::Json(json!({"keys": ["a", "b", "nested"], "count": 3, "nested": {"x": null}})),
        ),
        case(
            "/keys",
            body("application/json", "not json"),
            Expect::Error(400, &[]),
        ),
        case(
            "/ratio",
            json_body(json!({"a": 1, "b": 4})),
            Expect::Json(json!({"ratio": 0.25})),
        ),
        // NaN is not JSON: answering it would send a body no JSON parser
        // reads; BentoML's encoder (allow_nan=False) makes it a 500.
        case(
            "/ratio",
            json_body(json!({"a": 1, "b": 0})),
            Expect::Error(500, &[]),
        ),
    ]
}

fn ndarray_cases() -> Vec<Case> {
    vec![
        case(
            "/apply",
            json_body(json!([[1, 2, 3], [0.1, 0.5, -1]])),
            // float32 arithmetic, then numpy's tolist: 0.1f32 * 2 + 1 is not 1.2.
            Expect::Json(json!([[3.0, 5.0, 7.0], [1.2000000476837158, 2.0, -1.0]])),
        ),
        case(
            "/apply",
            json_body(json!([[0, 0, 0]])),
            Expect::Json(json!([[1.0, 1.0, 1.0]])),
        ),
        // A flat row is reshaped to the declared shape (-1, 3), as BentoML
        // does when the shape is not enforced, so the runnable gets one row.
        case(
            "/apply",
            json_body(json!([1, 2, 3])),
            Expect::Json(json!([[3.0, 5.0, 7.0]])),
        ),
    ]
}

/// A 5×3 RGB PNG whose pixel (x, y) is (50x, 100y, 200).
fn png() -> Vec<u8> {
    use tiffin_service::image::image::{ImageFormat, Rgb, RgbImage};
    let img = RgbImage::from_fn(5, 3, |x, y| Rgb([(x * 50) as u8, (y * 100) as u8, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("encode PNG");
    out.into_inner()
}

fn image_cases() -> Vec<Case> {
    let described = || {
        Expect::Json(json!({
            "format": "PNG", "mode": "RGB", "size": [5, 3],
            "first_pixel": [0, 0, 200], "last_pixel": [200, 200, 200],
        }))
    };
    vec![
        case(
            "/describe",
            form_file("image", "pixels.png", "image/png", &png()),
            described(),
        ),
        case("/describe", body("image/png", png()), described()),
        // BentoML's Image() answers JPEG (its default mime_type).
        case(
            "/mirror",
            body("image/png", png()),
            Expect::Image("image/jpeg", 5, 3),
        ),
        case(
            "/describe",
            body("image/png", "not a png"),
            Expect::Error(400, &[]),
        ),
    ]
}

fn file_cases() -> Vec<Case> {
    let data = b"abc\x00\xff\x10".to_vec();
    let digest = |size: u64, sha256: &str| Expect::Json(json!({"size": size, "sha256": sha256}));
    let six = "eea49bc810bff50dd5efa4051972a1f410e063bd2b8f1190a63dab50c84d3356";
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let octets = |b: &[u8]| body("application/octet-stream", b);
    vec![
        case(
            "/reverse_bytes",
            octets(&data),
            Expect::Bytes("application/octet-stream", b"\x10\xff\x00cba".to_vec()),
        ),
        case("/digest", octets(&data), digest(6, six)),
        case(
            "/digest",
            form_file("file", "data.bin", "application/octet-stream", &data),
            digest(6, six),
        ),
        case("/digest", octets(b""), digest(0, empty)),
        // File(mime_type=...) labels the answer so.
        case(
            "/csv_summary",
            octets(&data),
            Expect::Bytes("text/csv", b"size,first\n6,61\n".to_vec()),
        ),
    ]
}

fn multipart_cases() -> Vec<Case> {
    let png = png();
    let answer = || Expect::Json(json!({"caption": "HELLO", "size": [5, 3], "meta": {"a": 1}}));
    let with_meta = |meta_type: Option<&str>| {
        form(&[
            ("caption", None, None, b"hello"),
            ("image", Some("pixels.png"), Some("image/png"), &png),
            ("meta", None, meta_type, br#"{"a": 1}"#),
        ])
    };
    vec![
        case("/caption", with_meta(Some("application/json")), answer()),
        case("/caption", with_meta(None), answer()),
    ]
}

fn newstyle_cases() -> Vec<Case> {
    let json = |v: Value| json_body(v);
    vec![
        case(
            "/greet",
            json(json!({"name": "ada"})),
            Expect::Text("hello, ada"),
        ),
        case(
            "/affine",
            json(json!({"values": [1, 2.5]})),
            Expect::Json(json!([3.0, 6.0])),
        ),
        case(
            "/affine",
            json(json!({"values": [1, 2.5], "factor": 3})),
            Expect::Json(json!([4.0, 8.5])),
        ),
        case(
            "/double",
            json(json!({"rows": [[1, 2], [3, 4]]})),
            Expect::Json(json!([[2, 4], [6, 8]])),
        ),
        case(
            "/affine",
            json(json!({"values": "x"})),
            Expect::Error(400, &["values"]),
        ),
        case("/greet", json(json!({})), Expect::Error(400, &["name"])),
    ]
}

fn context_cases() -> Vec<Case> {
    vec![case(
        "/create",
        text("tea"),
        Expect::JsonWith(201, ("location", "/items/tea"), json!({"created": "tea"})),
    )]
}

fn failing_cases() -> Vec<Case> {
    let division = |n: i64, d: i64| json_body(json!({"numerator": n, "denominator": d}));
    vec![
        case(
            "/parse",
            text("x1"),
            Expect::Error(500, &["ValueError: not a number: 'x1'"]),
        ),
        case("/parse", text("21"), Expect::Text("42")),
        // The good division first: on fresh clones BentoML 1.2.20 twice
        // answered 500 to it right after its runner raised (the cause is
        // BentoML's, not yet found); every answer is still compared.
        case(
            "/divide",
            division(1, 4),
            Expect::Json(json!({"quotient": 0.25})),
        ),
        case(
            "/divide",
            division(1, 0),
            Expect::Error(500, &["ZeroDivisionError", "division by zero"]),
        ),
    ]
}

fn metrics_cases() -> Vec<Case> {
    let answer = |positive: bool| Expect::Json(json!({"is_positive": positive}));
    vec![
        case("/analysis", text("I love this, it is great"), answer(true)),
        case("/analysis", text("awful and sad"), answer(false)),
        case("/analysis", text("nothing to say"), answer(false)),
    ]
}

#[test]
fn text_goes_in_and_out_of_def_and_async_handlers_and_a_runner() {
    let server = serve("text_service.py", &["--api-workers", "1"]);
    check_cases(&server, &text_cases());
}

#[test]
fn json_with_a_pydantic_model_answers_and_a_bad_body_is_a_400_naming_the_field() {
    let server = serve("json_service.py", &["--api-workers", "1"]);
    check_cases(&server, &json_cases());
}

#[test]
fn an_image_is_taken_as_a_multipart_upload_or_a_raw_png_and_one_returned_is_a_jpeg() {
    let server = serve("image_service.py", &["--api-workers", "1"]);
    check_cases(&server, &image_cases());
}

#[test]
fn a_file_is_taken_as_octet_stream_or_an_upload_and_answered_as_bytes_of_its_mime_type() {
    let server = serve("file_service.py", &["--api-workers", "1"]);
    check_cases(&server, &file_cases());
}

#[test]
fn a_multipart_form_gives_the_handler_each_field_decoded_by_its_descriptor() {
    let server = serve("multipart_service.py", &["--api-workers", "1"]);
    check_cases(&server, &multipart_cases());
    // A form without one of the fields is the client's error, naming it.
    let caption_only = form(&[("caption", None, None, b"hello")]);
    let no_image = [case(
        "/caption",
        caption_only,
        Expect::Error(400, &["image"]),
    )];
    check_cases(&server, &no_image);
}

#[test]
fn a_new_style_service_class_answers_each_api_method_with_its_parameters_from_a_json_object() {
    let server = serve("newstyle_service.py:Calculator", &["--api-workers", "1"]);
    check_cases(&server, &newstyle_cases());
}

#[test]
fn a_handler_sets_its_answers_status_and_headers_through_the_request_context() {
    let server = serve("context_service.py", &["--api-workers", "1"]);
    check_cases(&server, &context_cases());
}

#[test]
fn a_runnable_without_cpu_multi_threading_runs_one_call_at_a_time() {
    let server = serve("threading_service.py", &["--api-workers", "1"]);
    let most = Mutex::new(Vec::new());
    concurrent_clients(8, 5, |c, i| {
        let r = server.post_text("/work", "20");
        assert_eq!(r.status, 200, "client {c} call {i}: {}", r.text());
        most.lock().unwrap().push(r.json()["most_at_once"].clone());
    });
    let most = most.into_inner().unwrap();
    assert!(
        most.iter().all(|m| m == &json!(1)),
        "calls ran at once in the one runner worker: {most:?}"
    );
}

#[test]
fn a_batchable_ndarray_runnable_gets_concurrent_calls_batched_and_each_caller_its_own_rows() {
    let server = serve("ndarray_service.py", &["--api-workers", "1"]);
    // Calls of 1 to 3 rows, each row naming its client and request.
    concurrent_clients(16, 12, |c, i| {
        let rows: Vec<[f64; 3]> = (0..1 + (c + i) % 3)
            .map(|k| [c as f64, i as f64, k as f64 - 1.5])
            .collect();
        let r = server.post(
            "/apply",
            "application/json",
            json!(rows).to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "client {c} call {i}: {}", r.text());
        let got: Vec<Vec<f64>> = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("client {c} call {i}: {e}: {}", r.text()));
        let want: Vec<Vec<f64>> = rows
            .iter()
            .map(|row| row.iter().map(|x| x * 2.0 + 1.0).collect())
            .collect();
        assert_eq!(got, want, "client {c} call {i}");
    });
    let expo = parse_exposition(&server.metrics());
    let labels = [("runner_name", "affine"), ("method_name", "apply")];
    let items = expo.sum("bentoml_runner_adaptive_batch_size_sum", &labels);
    let batches = expo.sum("bentoml_runner_adaptive_batch_size_count", &labels);
    // A batch's size is the number of calls in it, as BentoML 1.2.20
    // observes it (`len(params_list)`, bentoml/_internal/server/runner_app.py),
    // not their rows: every call went through one batch, and fewer batches
    // than calls means some batch held more than one.
    let calls = (16 * 12) as f64;
    assert_eq!(items, calls, "calls batched; {batches} batches");
    assert!(
        batches < calls,
        "no batch held more than one call: {batches} batches of {calls} calls"
    );
    check_cases(&server, &ndarray_cases());
}

#[test]
fn a_python_exception_in_a_handler_or_a_runnable_is_a_500_with_its_message_and_serving_goes_on() {
    let server = serve("failing_service.py", &["--api-workers", "1"]);
    let before = workers(&server);
    check_cases(&server, &failing_cases());
    // The handler's exception is the whole message, as the contract says.
    let r = server.post_text("/parse", "x1");
    assert_eq!(r.json(), json!({"error": "ValueError: not a number: 'x1'"}));
    check_cases(&server, &failing_cases());

    // The same processes still serve: none died, none was restarted.
    let after = workers(&server);
    let pids = |workers: &[Worker]| {
        workers
            .iter()
            .map(|w| (w.role.clone(), w.index, w.pid, w.restarts))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pids(&after),
        pids(&before),
        "workers changed:\n{after:?}\nlog:\n{}",
        server.log()
    );
    // Each failure counted like any other: the table twice and one more /parse.
    for (endpoint, code, want) in [
        ("/parse", "500", 3.0),
        ("/parse", "200", 2.0),
        ("/divide", "500", 2.0),
        ("/divide", "200", 2.0),
    ] {
        let labels = [("endpoint", endpoint), ("http_response_code", code)];
        let what = format!("{code}s of {endpoint}");
        wait_metric(
            &server,
            "bentoml_api_server_request_total",
            &labels,
            want,
            &what,
        );
    }
}

/// The number of the first line of `file` containing `needle`.
fn line_of(file: &str, needle: &str) -> usize {
    let source = std::fs::read_to_string(fixture(file)).expect("read fixture");
    source
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in {file}"))
        + 1
}

/// `tiffin serve-http FILE:svc` must exit non-zero (within a bound) with a
/// stderr naming the file, the line of `needle` and `message`.
fn start_fails_naming_the_line(file: &str, needle: &str, message: &str) {
    let line = line_of(file, needle);
    let locator = format!("{}:svc", fixture(file).display());
    let mut cmd = Command::new(python_tiffin());
    cmd.args(["serve-http", &locator, "--host", "127.0.0.1", "--port", "0"])
        .args(["--api-workers", "1"])
        .env("TIFFIN_LOG", "info")
        .env_remove("TIFFIN_CONFIG")
        .env_remove("TIFFIN_CONFIG_OPTIONS");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    let shown = format!("status {:?}; stderr:\n{}", out.status, out.stderr);
    let status = out
        .status
        .unwrap_or_else(|| panic!("still serving; {shown}"));
    assert!(!status.success(), "{shown}");
    let named = format!("{file}\", line {line}");
    assert!(out.stderr.contains(&named), "{named:?} not named; {shown}");
    assert!(
        out.stderr.contains(message),
        "{message:?} not named; {shown}"
    );
}

#[test]
fn a_service_file_that_fails_at_import_stops_serve_http_naming_the_file_and_line() {
    start_fails_naming_the_line(
        "import_error_service.py",
        "import tiffin_fixture_dependency_that_is_not_installed",
        "No module named 'tiffin_fixture_dependency_that_is_not_installed'",
    );
}

#[test]
fn a_runnable_whose_init_raises_stops_serve_http_naming_the_file_and_line() {
    start_fails_naming_the_line(
        "init_error_service.py",
        "raise FileNotFoundError",
        "FileNotFoundError: model weights not found: /nonexistent/model.bin",
    );
}

/// The custom families of tests/fixtures/python/metrics_service.py in one
/// scrape: (`polarity_total` over both polarities, `inference_total`,
/// `inference_duration_count`).
fn custom_totals(expo: &Exposition) -> (f64, f64, f64) {
    (
        expo.sum("polarity_total", &[]),
        expo.sum("inference_total", &[("model_version", "1")]),
        expo.sum(
            "inference_duration_count",
            &[
                ("model_version", "1"),
                ("runnable_cls", "WordCountRunnable"),
            ],
        ),
    )
}

/// Sets its flag when dropped, even by a panic's unwinding.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

const POSITIVE: &str = "I love it, a great and wonderful thing";
const NEGATIVE: &str = "this is awful, I hate it";

#[test]
fn a_killed_python_runner_worker_is_restarted_and_custom_counters_never_go_backwards() {
    let server = serve(
        "metrics_service.py",
        &["--api-workers", "1", "--runner-workers", "2"],
    );
    let stop = AtomicBool::new(false);
    let ok = AtomicU64::new(0);
    let statuses = Mutex::new(Vec::<u16>::new());
    let scrapes = Mutex::new(Vec::<(f64, f64, f64)>::new());
    const CLIENTS: usize = 4;
    let (victim, pre, ok_at_kill) = std::thread::scope(|s| {
        // However the test ends, the clients and the scraper stop.
        let _stop = StopOnDrop(&stop);
        for c in 0..CLIENTS {
            let (stop, ok, statuses, server) = (&stop, &ok, &statuses, &server);
            s.spawn(move || {
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let r =
                        server.post_text("/analysis", if i % 2 == 0 { POSITIVE } else { NEGATIVE });
                    if r.status == 200 {
                        assert_eq!(r.json(), json!({"is_positive": i % 2 == 0}));
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    statuses.lock().unwrap().push(r.status);
                    i += 1;
                }
            });
        }
        // A scrape every few answers, through the kill and the restart.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let next = ok.load(Ordering::Relaxed) + 5;
                eventually(EVENT_WITHIN, || {
                    stop.load(Ordering::Relaxed) || ok.load(Ordering::Relaxed) >= next
                });
                let totals = custom_totals(&parse_exposition(&server.metrics()));
                scrapes.lock().unwrap().push(totals);
            }
        });
        let served = |n: u64| eventually(EVENT_WITHIN, || ok.load(Ordering::Relaxed) >= n);
        assert!(
            served(40),
            "no load before the kill; log:\n{}",
            server.log()
        );
        let runner = |workers: Vec<Worker>| {
            workers.into_iter().find(|w| {
                w.role == "runner" && w.runner.as_deref() == Some("word_count") && w.index == 1
            })
        };
        let before = runner(workers(&server));
        let victim = before
            .map(|w| w.pid)
            .unwrap_or_else(|| panic!("no runner word_count:1 in status; log:\n{}", server.log()));
        let cmdline = std::fs::read(format!("/proc/{victim}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            cmdline.contains("__worker runner") && cmdline.contains("metrics_service.py"),
            "not the Python runner worker of the service: {cmdline}"
        );
        // What both runner workers had counted, then the kill; from here on
        // an answer's call ran on a live worker, but for the calls in flight
        // on the victim (one a client at most).
        let pre = custom_totals(&parse_exposition(&server.metrics()));
        assert!(pre.1 > 0.0, "no inference_total before the kill: {pre:?}");
        send_signal(victim as u32, libc::SIGKILL);
        let ok_at_kill = ok.load(Ordering::Relaxed);
        let mut now = None;
        let restarted = eventually(EVENT_WITHIN, || {
            now = runner(workers(&server));
            now.as_ref()
                .is_some_and(|w| w.pid != victim && w.state == "ready" && w.restarts == 1)
        });
        // Load goes on after the restart too.
        let after_restart = ok.load(Ordering::Relaxed) + 40;
        let served_after = restarted && served(after_restart);
        stop.store(true, Ordering::Relaxed);
        assert!(
            restarted,
            "runner 1 not restarted (pid {victim} killed): {now:?}\nlog:\n{}",
            server.log()
        );
        assert!(
            served_after,
            "no load after the restart; log:\n{}",
            server.log()
        );
        (victim, pre, ok_at_kill)
    });
    assert!(
        !alive(victim as u32),
        "killed worker {victim} is still alive"
    );

    let statuses = statuses.into_inner().unwrap();
    let refused: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    // A call on the killed worker cannot be answered: the runner is
    // unavailable (503, service/src/error.rs), never anything else.
    assert!(
        refused.iter().all(|s| **s == 503),
        "answers other than 200 and 503: {refused:?}"
    );
    let scrapes = scrapes.into_inner().unwrap();
    assert!(scrapes.len() >= 2, "scrapes: {scrapes:?}");
    for pair in scrapes.windows(2) {
        let ((p0, i0, h0), (p1, i1, h1)) = (pair[0], pair[1]);
        assert!(
            p1 >= p0 && i1 >= i0 && h1 >= h0,
            "a counter went backwards: {pair:?}"
        );
    }
    // The API server was not killed: its counter saw every answer.
    let ok = ok.into_inner() as f64;
    let labels: [(&str, &str); 0] = [];
    wait_metric(
        &server,
        "polarity_total",
        &labels,
        ok,
        "polarity_total after the load",
    );
    // The runner counters kept what the killed worker had counted and
    // count what the live workers did since.
    let (_, inferences, observed) = custom_totals(&parse_exposition(&server.metrics()));
    let since = ok - ok_at_kill as f64 - CLIENTS as f64;
    for (what, total, before) in [
        ("inference_total", inferences, pre.1),
        ("inference_duration_count", observed, pre.2),
    ] {
        assert!(
            total >= before + since,
            "{what}: {before} before the kill, {since}+ calls since, {total} now; scrapes: {scrapes:?}"
        );
    }
    eprintln!(
        "{} answers ({} refused with 503), {} scrapes; inference_total {} before the kill, {inferences} after",
        statuses.len(),
        refused.len(),
        scrapes.len(),
        pre.1
    );
}

#[test]
fn custom_metrics_sum_exactly_over_two_api_servers_and_three_runner_workers_and_pass_promtool() {
    let server = serve(
        "metrics_service.py",
        &["--api-workers", "2", "--runner-workers", "3"],
    );
    settle(&server, 8);
    const CLIENTS: usize = 6;
    const EACH: usize = 10;
    concurrent_clients(CLIENTS, EACH, |c, i| {
        let positive = (c + i) % 3 == 0;
        let r = server.post_text("/analysis", if positive { POSITIVE } else { NEGATIVE });
        assert_eq!(r.status, 200, "{}\nlog:\n{}", r.text(), server.log());
        assert_eq!(r.json(), json!({"is_positive": positive}));
    });
    let n = (CLIENTS * EACH) as f64;
    let positives = (0..CLIENTS)
        .flat_map(|c| (0..EACH).map(move |i| c + i))
        .filter(|k| k % 3 == 0)
        .count() as f64;
    // The label values are Python's str() of what the handler passed, as in BentoML.
    let by = |p: &'static str| [("polarity", p)];
    wait_metric(
        &server,
        "polarity_total",
        &by("True"),
        positives,
        "positive answers",
    );
    wait_metric(
        &server,
        "polarity_total",
        &by("False"),
        n - positives,
        "negative answers",
    );
    wait_metric(
        &server,
        "inference_total",
        &[("model_version", "1")],
        n,
        "runner calls",
    );
    let text = server.metrics();
    let expo = parse_exposition(&text);
    assert_eq!(custom_totals(&expo), (n, n, n), "custom totals");
    let buckets = [
        ("model_version", "1"),
        ("runnable_cls", "WordCountRunnable"),
        ("le", "+Inf"),
    ];
    assert_eq!(expo.sum("inference_duration_bucket", &buckets), n);
    promtool_check(&text);

    // The sums are over processes: both API servers and more than one runner worker served.
    let workers = workers(&server);
    let served = |role: &str| {
        workers
            .iter()
            .filter(|w| w.role == role && w.requests > 0)
            .count()
    };
    assert_eq!(
        served("api-server"),
        2,
        "API servers that served: {workers:?}"
    );
    assert!(
        served("runner") >= 2,
        "runner workers that served: {workers:?}"
    );
}

/// `bentoml serve-http FILE:svc` of BentoML 1.2.20, run in the fixtures'
/// directory as a user runs it beside their service file; stopped (its
/// whole process group: the circus arbiter and its workers) on drop.
struct Bento {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Bento {
    fn start(target: &str) -> Bento {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let (file, attr) = service_of(target);
        // `serve-http` serves a classic service; a new-style class is served
        // by `serve` with its own worker count (one, by default).
        let (command, workers): (&str, &[&str]) = if attr == "svc" {
            ("serve-http", &["--api-workers", "1"])
        } else {
            ("serve", &[])
        };
        let mut child = Command::new(bentoml_command())
            .args([command, &format!("{file}:{attr}"), "--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(workers)
            .current_dir(repo("tests/fixtures/python"))
            // BentoML writes its home (~/bentoml) on start; keep it out of the user's.
            .env(
                "BENTOML_HOME",
                std::env::temp_dir().join("tiffin-bentoml-home"),
            )
            .env("BENTOML_DO_NOT_TRACK", "True")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn bentoml");
        let log = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for pipe in pipes {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let mut bento = Bento {
            child,
            addr: format!("127.0.0.1:{port}"),
            log,
        };
        // A BentoML that exits (a missing package, a bad file) fails the
        // test at once instead of at the end of the bound.
        // BentoML's API workers share the port and each answers /readyz for
        // itself: several 200s in a row, each on a fresh connection, before
        // any worker that is still connecting to its runners can take a
        // compared request (one CI run got a 500 from such a worker).
        let mut exited = None;
        let mut streak = 0;
        let ready = eventually(Duration::from_secs(180), || {
            if let Ok(Some(status)) = bento.child.try_wait() {
                exited = Some(status);
                return true;
            }
            match http(&bento.addr, "GET", "/readyz", &[], b"") {
                Ok(r) if r.status == 200 => streak += 1,
                _ => streak = 0,
            }
            streak >= 8
        });
        assert!(
            ready && exited.is_none(),
            "bentoml never ready (exited: {exited:?}); log:\n{}",
            bento.log.lock().unwrap()
        );
        bento
    }
}

impl Drop for Bento {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) on the process group of a child this test spawned
        // (process_group(0) made it the group's leader) and has not reaped.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let exited = eventually(Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        // SAFETY: as above; the group's stragglers, if any, are ours.
        unsafe { libc::kill(group, libc::SIGKILL) };
        if !exited {
            let _ = self.child.wait();
        }
    }
}

/// Serves `target` ([`service_of`]) under BentoML 1.2.20 and under tiffin,
/// sends both every case, and compares the answers: the status, media type
/// and any header the case expects; for a success the body (JSON by value,
/// so spacing and key order may differ but `10.0` is not `10`; anything
/// else byte for byte); for a failure that each
/// client error's body names what the case's needles name. The bodies of
/// failures differ by design: tiffin sends `{"error": "<Type>: <message>"}`
/// (issue 24), BentoML a JSON string of its own words, and for a 500 not the
/// exception at all (it points to its logs).
fn same_answers(target: &str, cases: &[Case]) {
    let bento = Bento::start(target);
    let server = serve(target, &["--api-workers", "1"]);
    for c in cases {
        let (ours, theirs) = (send(&server.addr, c), send(&bento.addr, c));
        let what = format!(
            "POST {}: tiffin {} {}, BentoML {} {}",
            c.path,
            ours.status,
            shown(&ours),
            theirs.status,
            shown(&theirs)
        );
        assert_eq!(ours.status, theirs.status, "{what}");
        assert_eq!(media_type(&ours), media_type(&theirs), "{what}");
        if let Expect::JsonWith(_, (name, _), _) = &c.expect {
            assert_eq!(ours.header(name), theirs.header(name), "{name}: {what}");
        }
        if (200..300).contains(&ours.status) {
            if media_type(&ours) == "application/json" {
                assert_eq!(ours.json(), theirs.json(), "{what}");
            } else {
                assert_eq!(ours.body, theirs.body, "{what}");
            }
        } else if let (true, Expect::Error(_, needles)) = (ours.status < 500, &c.expect) {
            for n in *needles {
                let named = ours.text().contains(n) && theirs.text().contains(n);
                assert!(named, "{n:?} not named by both: {what}");
            }
        }
    }
}

#[test]
fn bentoml_and_tiffin_answer_the_text_service_alike() {
    same_answers("text_service.py", &text_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_json_service_alike() {
    same_answers("json_service.py", &json_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_ndarray_service_alike() {
    same_answers("ndarray_service.py", &ndarray_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_image_service_alike() {
    same_answers("image_service.py", &image_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_file_service_alike() {
    same_answers("file_service.py", &file_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_context_service_alike() {
    same_answers("context_service.py", &context_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_failing_service_alike() {
    same_answers("failing_service.py", &failing_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_metrics_service_alike() {
    same_answers("metrics_service.py", &metrics_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_multipart_service_alike() {
    same_answers("multipart_service.py", &multipart_cases());
}

#[test]
fn bentoml_and_tiffin_answer_the_new_style_service_alike() {
    same_answers("newstyle_service.py:Calculator", &newstyle_cases());
}
