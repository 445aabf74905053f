//! OpenTelemetry tracing (issue 13, item 5) on the real binary, checked by a
//! receiver that is not ours: `tests/otlp_receiver.py` decodes tiffin's
//! OTLP/HTTP exports with the official `opentelemetry-proto` package
//! (installed by `scripts/setup/21-otel`). One request to
//! `iris_classifier` must give one trace, continuing the client's
//! `traceparent`, in which the API server's spans (request, runner call)
//! are parents of the runner worker's (call, batch with `batch.size`), two
//! processes apart.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// The receiver process and the spans it printed.
struct Receiver {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        Self::start_with(&[])
    }

    /// The receiver speaking OTLP/gRPC (the collector's TraceService).
    fn start_grpc() -> Receiver {
        Self::start_with(&["--grpc"])
    }

    fn start_with(args: &[&str]) -> Receiver {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("target/pyvenv-otel/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup/21-otel",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("tests/otlp_receiver.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("receiver did not say its port: {first:?}"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for line in lines {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Receiver {
            child,
            _stdin: stdin,
            port,
            spans,
        }
    }

    fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch(receiver: &Receiver, rate: &str) -> Server {
    Launch::http(&["iris_classifier"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            &format!(
                "tracing.exporter_type=otlp tracing.sample_rate={rate} tracing.otlp.protocol=http \
                 tracing.otlp.endpoint=http://127.0.0.1:{}/v1/traces tracing.timeout=5",
                receiver.port
            ),
        )
        .start()
}

#[test]
fn otlp_over_grpc_exports_the_same_trace_from_both_processes() {
    let receiver = Receiver::start_grpc();
    let server = Launch::http(&["iris_classifier"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            &format!(
                "tracing.exporter_type=otlp tracing.sample_rate=1.0 tracing.otlp.protocol=grpc \
                 tracing.otlp.endpoint=http://127.0.0.1:{} tracing.timeout=5",
                receiver.port
            ),
        )
        .start();
    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    classify(
        &server,
        &[("traceparent", &format!("00-{trace}-00f067aa0ba902b8-01"))],
    );
    let spans = spans_of(&receiver, &server, trace, 4);
    let by_name = |name: &str| named(&spans, name);
    let request = by_name("POST /classify");
    let worker = by_name("iris_clf.predict");
    assert_eq!(
        by_name("runner iris_clf.predict")["parent_span_id"],
        request["span_id"]
    );
    assert!(process(&request).starts_with("api_server:"), "{request:#}");
    assert!(
        process(&worker).starts_with("runner:iris_clf:"),
        "{worker:#}"
    );
    for s in &spans {
        assert_eq!(s["content_type"], "application/grpc", "{s:#}");
    }
}

fn classify(server: &Server, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let r = http(
        &server.addr,
        "POST",
        "/classify",
        &all,
        b"[[5.1,3.5,1.4,0.2]]",
    )
    .expect("POST");
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

/// Waits (at most WAIT) until the receiver has at least `n` spans of
/// `trace`, and returns them.
fn spans_of(receiver: &Receiver, server: &Server, trace: &str, n: usize) -> Vec<Value> {
    let mut spans = Vec::new();
    let ok = eventually(WAIT, || {
        spans = receiver
            .spans()
            .into_iter()
            .filter(|s| s["trace_id"] == trace)
            .collect();
        spans.len() >= n
    });
    assert!(
        ok,
        "spans of {trace}: {spans:#?}\nall: {:#?}\nlog:\n{}",
        receiver.spans(),
        server.log()
    );
    spans
}

/// The span called `name` among `spans`.
fn named(spans: &[Value], name: &str) -> Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
        .clone()
}

fn process(span: &Value) -> &str {
    span["resource"]["tiffin.process"].as_str().unwrap_or("")
}

#[test]
fn one_request_is_one_trace_across_the_api_server_and_the_runner_worker() {
    let receiver = Receiver::start();
    let server = launch(&receiver, "1.0");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let r = classify(
        &server,
        &[("traceparent", &format!("00-{trace}-{client_span}-01"))],
    );
    assert_eq!(r.header("x-request-id"), Some(trace));

    // Request, runner call, the worker's call and its batch.
    let spans = spans_of(&receiver, &server, trace, 4);
    let find = |name: &str| named(&spans, name);
    let request = find("POST /classify");
    let call = find("runner iris_clf.predict");
    let worker = find("iris_clf.predict");
    let batch = find("batch iris_clf.predict");

    // The client's span is the parent of the API server's, which is the
    // parent of its runner call, whose context crossed the IPC hop.
    assert_eq!(request["parent_span_id"], client_span, "{request:#}");
    assert_eq!(call["parent_span_id"], request["span_id"], "{call:#}");
    assert_eq!(worker["parent_span_id"], call["span_id"], "{worker:#}");
    assert_eq!(batch["parent_span_id"], worker["span_id"], "{batch:#}");
    assert_eq!(batch["attributes"]["batch.size"], 1, "{batch:#}");
    assert_eq!(batch["links"][0]["span_id"], worker["span_id"], "{batch:#}");
    assert_eq!(
        request["attributes"]["http.response.status_code"], 200,
        "{request:#}"
    );
    assert_eq!(request["attributes"]["tiffin.request_id"], trace);

    // Two processes: the API server's spans and the worker's.
    assert!(process(&request).starts_with("api_server:"), "{request:#}");
    assert_eq!(process(&call), process(&request));
    assert!(
        process(&worker).starts_with("runner:iris_clf:"),
        "{worker:#}"
    );
    assert_eq!(process(&batch), process(&worker));
    assert_ne!(
        request["resource"]["process.pid"],
        worker["resource"]["process.pid"]
    );
    for s in &spans {
        assert_eq!(s["resource"]["service.name"], "iris_classifier", "{s:#}");
        assert_eq!(s["content_type"], "application/x-protobuf");
    }
    // OTLP span kinds: server 2, client 3, internal 1.
    assert_eq!(request["kind"], 2);
    assert_eq!(call["kind"], 3);
    assert_eq!(worker["kind"], 2);
    assert_eq!(batch["kind"], 1);

    // Without a traceparent, the request starts a new trace (rate 1.0), and
    // its request id is that trace's id.
    let r = classify(&server, &[]);
    let id = r.header("x-request-id").expect("id").to_string();
    let ok = eventually(WAIT, || {
        receiver
            .spans()
            .iter()
            .filter(|s| s["trace_id"] == id.as_str())
            .count()
            >= 4
    });
    assert!(ok, "no trace {id}: {:#?}", receiver.spans());
    // The access log shows the trace and the request span.
    let request = receiver
        .spans()
        .into_iter()
        .find(|s| s["trace_id"] == id.as_str() && s["name"] == "POST /classify")
        .expect("request span");
    let span_id = request["span_id"].as_str().unwrap_or_default().to_string();
    let logged = eventually(WAIT, || {
        server.log().contains(&format!(
            "(trace={id},span={span_id},sampled=1,request_id={id})"
        ))
    });
    assert!(logged, "access line of {id}/{span_id}:\n{}", server.log());
}

#[test]
fn one_grpc_call_is_one_trace_across_the_api_server_and_the_runner_worker() {
    use tiffin_api_server::grpc::proto::bento_service_client::BentoServiceClient;
    use tiffin_api_server::prost_types::{ListValue, Value as PbValue, value::Kind};

    let receiver = Receiver::start();
    let server = launch_grpc(&["iris_classifier"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            &format!(
                "tracing.exporter_type=otlp tracing.sample_rate=1.0 tracing.otlp.protocol=http \
                 tracing.otlp.endpoint=http://127.0.0.1:{}/v1/traces tracing.timeout=5",
                receiver.port
            ),
        )
        .start();
    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let client_span = "10f067aa0ba902b8";
    let number = |x: f64| PbValue {
        kind: Some(Kind::NumberValue(x)),
    };
    let row = PbValue {
        kind: Some(Kind::ListValue(ListValue {
            values: [5.1, 3.5, 1.4, 0.2].map(number).to_vec(),
        })),
    };
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
        let mut req = tonic_request(json_request(
            "classify",
            Kind::ListValue(ListValue { values: vec![row] }),
        ));
        req.metadata_mut().insert(
            "traceparent",
            format!("00-{trace}-{client_span}-01")
                .parse()
                .expect("ascii"),
        );
        let resp = BentoServiceClient::new(ch)
            .call(req)
            .await
            .unwrap_or_else(|s| panic!("classify: {s:?}\nlog:\n{}", server.log()));
        assert_eq!(
            resp.metadata()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some(trace)
        );
    });

    let spans = spans_of(&receiver, &server, trace, 4);
    let find = |name: &str| named(&spans, name);
    let rpc = find("bentoml.grpc.v1.BentoService/Call");
    let call = find("runner iris_clf.predict");
    let worker = find("iris_clf.predict");
    assert_eq!(rpc["parent_span_id"], client_span, "{rpc:#}");
    assert_eq!(call["parent_span_id"], rpc["span_id"], "{call:#}");
    assert_eq!(worker["parent_span_id"], call["span_id"], "{worker:#}");
    assert_eq!(rpc["kind"], 2);
    assert_eq!(rpc["attributes"]["rpc.system"], "grpc", "{rpc:#}");
    assert_eq!(
        rpc["attributes"]["rpc.service"], "bentoml.grpc.v1.BentoService",
        "{rpc:#}"
    );
    assert_eq!(rpc["attributes"]["rpc.method"], "Call", "{rpc:#}");
    assert_eq!(rpc["attributes"]["rpc.grpc.status_code"], 0, "{rpc:#}");
    assert!(process(&rpc).starts_with("api_server:"), "{rpc:#}");
    assert!(
        process(&worker).starts_with("runner:iris_clf:"),
        "{worker:#}"
    );
}

#[test]
fn an_unsampled_request_exports_nothing_and_keeps_the_clients_ids() {
    let receiver = Receiver::start();
    // Rate 0: only sampled parents are followed.
    let server = launch(&receiver, "0");
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    classify(
        &server,
        &[(
            "traceparent",
            &format!("00-{unsampled}-b7ad6b7169203331-00"),
        )],
    );
    let sampled = "1af7651916cd43dd8448eb211c80319c";
    classify(
        &server,
        &[("traceparent", &format!("00-{sampled}-b7ad6b7169203331-01"))],
    );
    let ok = eventually(WAIT, || {
        receiver
            .spans()
            .iter()
            .filter(|s| s["trace_id"] == sampled)
            .count()
            >= 4
    });
    assert!(
        ok,
        "sampled parent not followed: {:#?}\n{}",
        receiver.spans(),
        server.log()
    );
    // Exports are in order per process; the sampled trace came later.
    assert!(
        !receiver.spans().iter().any(|s| s["trace_id"] == unsampled),
        "unsampled trace exported: {:#?}",
        receiver.spans()
    );
}

#[test]
fn a_bad_tracing_key_is_refused_at_start_naming_it() {
    for (options, key) in [
        ("tracing.exporter_type=zipkin", "tracing.exporter_type"),
        (
            "tracing.exporter_type=otlp tracing.sample_rate=1.5",
            "tracing.sample_rate",
        ),
        (
            "tracing.exporter_type=otlp tracing.timeout=0",
            "tracing.timeout",
        ),
        ("tracing.otlp.protocol=udp", "tracing.otlp.protocol"),
    ] {
        let out = Command::new(tiffin_bin())
            .args(["serve-http", "echo", "--port", "0"])
            .env("TIFFIN_CONFIG_OPTIONS", options)
            .stdin(Stdio::null())
            .output()
            .expect("run tiffin");
        assert!(!out.status.success(), "{options} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{options}: {err}");
    }
    let _ = std::io::stderr().flush();
}
