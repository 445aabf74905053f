//! `tiffin serve-grpc`: the BentoML v1 gRPC service, health, reflection and
//! metrics, checked with a tonic client and with a client that is not ours
//! (Python grpcio, types discovered through reflection; see tests/grpc_client.py).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tiffin_api_server::grpc::proto::bento_service_client::BentoServiceClient;
use tiffin_api_server::grpc::proto::{Request, ServiceMetadataRequest, request, response};
use tiffin_api_server::prost_types::value::Kind;
use tiffin_api_server::tonic::{self, Code, transport::Channel};
use tiffin_api_server::tonic_health::pb::health_check_response::ServingStatus;

/// Python packages the grpcio client needs; keep in step with scripts/test.
const PY_PACKAGES: &[&str] = &[
    "grpcio==1.71.0",
    "grpcio-reflection==1.71.0",
    "grpcio-health-checking==1.71.0",
    "protobuf==5.29.3",
];

/// The JSON content of a response as serde JSON.
fn json_of(resp: tiffin_api_server::grpc::proto::Response) -> serde_json::Value {
    match resp.content {
        Some(response::Content::Json(v)) => {
            tiffin_api_server::grpc::value_to_json(v).expect("valid JSON value")
        }
        other => panic!("expected json content, got {other:?}"),
    }
}

async fn expect_code(
    client: &mut BentoServiceClient<Channel>,
    req: Request,
    code: Code,
    needle: &str,
) {
    let what = format!("{req:?}");
    match client.call(req).await {
        Ok(r) => panic!("{what}: expected {code:?}, got {:?}", r.into_inner()),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {}", s.message());
            assert!(
                s.message().contains(needle),
                "{what}: message {:?} should mention {needle:?}",
                s.message()
            );
        }
    }
}

fn scrape(port: u16) -> Exposition {
    let r = http(&format!("127.0.0.1:{port}"), "GET", "/", &[], b"").expect("GET metrics port /");
    assert_eq!(r.status, 200, "metrics port: {}", r.text());
    parse_exposition(&r.text())
}

fn requests(e: &Exposition, endpoint: &str, code: &str) -> f64 {
    e.sum(
        "bentoml_api_server_request_total",
        &[("endpoint", endpoint), ("http_response_code", code)],
    )
}

#[test]
fn tonic_client_calls_apis_health_metadata_and_metrics() {
    let mport = free_port();
    let mut server = launch_grpc(&["--metrics-port", &mport.to_string()])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "api_server.grpc.metrics.host=127.0.0.1",
        )
        .start();
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
        assert_eq!(
            health(&ch, "bentoml.grpc.v1.BentoService").await.ok(),
            Some(ServingStatus::Serving as i32)
        );
        let mut client = BentoServiceClient::new(ch.clone());

        for _ in 0..3 {
            let resp = client
                .call(text_request("analysis", "I love this product!"))
                .await
                .unwrap_or_else(|s| panic!("analysis: {s:?}\nlog:\n{}", server.log()))
                .into_inner();
            assert_eq!(json_of(resp), serde_json::json!({ "is_positive": true }));
        }
        let resp = client
            .call(Request {
                api_name: "analysis".into(),
                content: Some(request::Content::SerializedBytes(
                    b"This is awful, I hate it.".to_vec(),
                )),
            })
            .await
            .expect("serialized_bytes call")
            .into_inner();
        assert_eq!(json_of(resp), serde_json::json!({ "is_positive": false }));

        let meta = client
            .service_metadata(ServiceMetadataRequest {})
            .await
            .expect("ServiceMetadata")
            .into_inner();
        assert_eq!(meta.name, "sentiment_analyzer");
        let api = meta
            .apis
            .iter()
            .find(|a| a.name == "analysis")
            .expect("analysis listed");
        assert_eq!(
            api.input.as_ref().and_then(|d| d.descriptor_id.as_deref()),
            Some("bentoml.io.Text")
        );
        assert_eq!(
            api.output.as_ref().and_then(|d| d.descriptor_id.as_deref()),
            Some("bentoml.io.JSON")
        );

        expect_code(
            &mut client,
            text_request("nope", "x"),
            Code::NotFound,
            "'nope'",
        )
        .await;
        expect_code(
            &mut client,
            Request {
                api_name: "analysis".into(),
                content: Some(request::Content::Ndarray(Default::default())),
            },
            Code::InvalidArgument,
            "'ndarray'",
        )
        .await;
        expect_code(
            &mut client,
            json_request("analysis", Kind::StringValue("hi".into())),
            Code::InvalidArgument,
            "'json'",
        )
        .await;
    });

    // The aggregate is on the metrics port at `/`, with gRPC calls counted
    // under the API's path and the gRPC code mapped to an HTTP status.
    let e = scrape(mport);
    assert_eq!(requests(&e, "/analysis", "200"), 4.0, "metrics:\n{e:?}");
    assert_eq!(requests(&e, "/analysis", "400"), 2.0);
    assert_eq!(requests(&e, "/nope", "404"), 1.0);
    assert!(
        e.sum(
            "bentoml_api_server_request_duration_seconds_count",
            &[("endpoint", "/analysis")]
        ) >= 6.0
    );
    assert!(
        e.sum(
            "bentoml_runner_request_total",
            &[("runner_name", "nltk_sentiment")]
        ) >= 4.0,
        "runner families are aggregated too"
    );

    // The gRPC port does not serve `/metrics` (it speaks HTTP/2 gRPC only).
    let plain = http(&server.addr, "GET", "/metrics", &[], b"");
    assert!(
        !plain.is_ok_and(|r| r.status == 200 && r.text().contains("bentoml_api_server")),
        "the gRPC port must not serve /metrics"
    );

    // `tiffin status` sees the API server's requests: every `Call` (answered
    // or refused) and nothing else, as the request counter has them; and
    // the runner's calls.
    let status = status_json(&server);
    let served = |role: &str| -> u64 {
        status["workers"]
            .as_array()
            .unwrap_or_else(|| panic!("no workers in {status}"))
            .iter()
            .filter(|w| w["role"] == role)
            .map(|w| w["requests"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(
        served("api-server") as f64,
        e.sum("bentoml_api_server_request_total", &[]),
        "{status:#}"
    );
    assert_eq!(served("api-server"), 7, "{status:#}");
    assert_eq!(
        served("runner") as f64,
        e.sum(
            "bentoml_runner_request_total",
            &[("runner_name", "nltk_sentiment")]
        ),
        "{status:#}"
    );

    let status = server.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "exit {status:?}; log:\n{}", server.log());
    let log = server.log();
    assert!(log.contains("drained; exiting"), "log:\n{log}");
}

#[test]
fn metrics_port_comes_from_config_in_grpc_mode() {
    let mport = free_port();
    let server = launch_grpc_bare(&[])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            &format!("api_server.grpc.metrics.host=127.0.0.1 api_server.grpc.metrics.port={mport}"),
        )
        .start();
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
        let mut client = BentoServiceClient::new(ch);
        client
            .call(text_request("analysis", "great"))
            .await
            .expect("analysis");
    });
    let ok = eventually(Duration::from_secs(5), || {
        requests(&scrape(mport), "/analysis", "200") >= 1.0
    });
    assert!(
        ok,
        "metrics port {mport} never showed the call; log:\n{}",
        server.log()
    );
}

#[test]
fn health_reports_not_serving_until_runners_are_ready() {
    let server = launch_grpc(&[])
        .bin(example_bin("custom_service"))
        .env("CUSTOM_BROKEN_RUNNER", "1")
        // The flaky runner never loads: keep retrying it (the default gives up after 5).
        .env("TIFFIN_CONFIG_OPTIONS", "runners.flaky.max_failed_starts=0")
        .start();
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        let mut client = BentoServiceClient::new(ch.clone());
        // The calc runner comes up; the flaky one never loads.
        let start = Instant::now();
        loop {
            let r = client
                .call(json_request("double", Kind::NumberValue(4.0)))
                .await;
            if let Ok(r) = r {
                // A protobuf number is a double; integral ones come back as JSON integers.
                assert_eq!(json_of(r.into_inner())["result"].as_f64(), Some(8.0));
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "double never worked; log:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            health(&ch, "").await.ok(),
            Some(ServingStatus::NotServing as i32),
            "a runner without workers means NOT_SERVING"
        );
        expect_code(
            &mut client,
            text_request("fail", "x"),
            Code::Internal,
            "model exploded",
        )
        .await;
        expect_code(
            &mut client,
            text_request("broken", "x"),
            Code::Unavailable,
            "flaky",
        )
        .await;
    });
}

/// The venv with grpcio for tests/grpc_client.py: scripts/test creates it;
/// when it is missing (e.g. `cargo nextest run` alone) this creates it, and
/// fails loudly (never skips) when it cannot.
pub(crate) fn python_with_grpcio() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join("pyvenv");
    let python = venv.join("bin").join("python");
    let usable = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import grpc, grpc_reflection, grpc_health.v1, google.protobuf",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if usable(&python) {
        return python;
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    assert!(
        created.as_ref().is_ok_and(|s| s.success()),
        "cannot create {} with `python3 -m venv` ({created:?}); install python3 and \
         python3-venv, or run scripts/test",
        venv.display()
    );
    let pip = Command::new(venv.join("bin").join("pip"))
        .args(["install", "-q"])
        .args(PY_PACKAGES)
        .status();
    assert!(
        pip.as_ref().is_ok_and(|s| s.success()),
        "`pip install {}` into {} failed ({pip:?}); PyPI must be reachable",
        PY_PACKAGES.join(" "),
        venv.display()
    );
    assert!(
        usable(&python),
        "{} still cannot import grpcio after installing it",
        python.display()
    );
    python
}

#[test]
fn python_grpcio_client_through_reflection() {
    let python = python_with_grpcio();
    let sentiment = launch_grpc(&["--enable-reflection"]).start();
    let custom = launch_grpc(&["--enable-reflection"])
        .bin(example_bin("custom_service"))
        .env("CUSTOM_BROKEN_RUNNER", "1")
        // The flaky runner never loads: keep retrying it (the default gives up after 5).
        .env("TIFFIN_CONFIG_OPTIONS", "runners.flaky.max_failed_starts=0")
        .start();
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&sentiment.addr).await;
        wait_serving(&sentiment, &ch).await;
        // The custom service is never SERVING (its flaky runner cannot load);
        // wait until its calc runner answers so `fail` reaches the model.
        let mut client = BentoServiceClient::new(channel(&custom.addr).await);
        let start = Instant::now();
        while client
            .call(json_request("double", Kind::NumberValue(1.0)))
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "custom service never answered; log:\n{}",
                custom.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_client.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .args(["--sentiment", &sentiment.addr, "--custom", &custom.addr]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains("ALL CHECKS PASSED"),
        "python grpcio client failed\nstdout:\n{}\nstderr:\n{}\nsentiment log:\n{}\ncustom log:\n{}",
        out.stdout,
        out.stderr,
        sentiment.log(),
        custom.log()
    );
}

/// A `Call` with `x-request-id` metadata.
fn with_id(req: Request, id: &str) -> tonic::Request<Request> {
    let mut req = tonic::Request::new(req);
    req.metadata_mut()
        .insert("x-request-id", id.parse().expect("ascii metadata"));
    req
}

#[test]
fn every_grpc_call_gets_a_request_id_and_an_access_line_and_its_runner_call_carries_the_id() {
    let server = launch_grpc(&[]).bin(example_bin("custom_service")).start();
    let rt = runtime();
    rt.block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
        let mut client = BentoServiceClient::new(ch.clone());

        // The client's id comes back in both headers and names the line.
        let resp = client
            .call(with_id(json_request("double", Kind::NumberValue(21.0)), "grpc-ok-1"))
            .await
            .unwrap_or_else(|s| panic!("double: {s:?}\nlog:\n{}", server.log()));
        for header in ["x-request-id", "x-bentoml-request-id"] {
            assert_eq!(
                resp.metadata().get(header).and_then(|v| v.to_str().ok()),
                Some("grpc-ok-1"),
                "{header}: {:?}",
                resp.metadata()
            );
        }
        let line = access_line(&server, "grpc-ok-1");
        assert!(
            line.contains(
                "(scheme=grpc,method=POST,path=/bentoml.grpc.v1.BentoService/Call,type=application/grpc"
            ) && line.contains("(status=200,grpc_status=0,"),
            "{line}"
        );

        // A failing call: its status carries the id, the line its code, and
        // the runner worker's own line names the request.
        let err = client
            .call(with_id(text_request("fail", "x"), "grpc-doomed-7"))
            .await
            .expect_err("fail must fail");
        assert_eq!(err.code(), Code::Internal, "{err:?}");
        assert!(
            err.message().contains("request id: grpc-doomed-7"),
            "{}",
            err.message()
        );
        assert_eq!(
            err.metadata().get("x-request-id").and_then(|v| v.to_str().ok()),
            Some("grpc-doomed-7"),
            "{:?}",
            err.metadata()
        );
        let line = access_line(&server, "grpc-doomed-7");
        assert!(line.contains("(status=500,grpc_status=13,"), "{line}");
        let ok = eventually(Duration::from_secs(20), || {
            server.log().lines().any(|l| {
                l.starts_with("[runner:")
                    && l.contains("call failed")
                    && l.contains("request_id=grpc-doomed-7")
            })
        });
        assert!(ok, "no runner line naming the request; log:\n{}", server.log());

        // Unknown API: NOT_FOUND, shown as 404. Without an id one is made up.
        let err = client
            .call(text_request("no_such_api", "x"))
            .await
            .expect_err("unknown API");
        assert_eq!(err.code(), Code::NotFound);
        let id = err
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "made-up id {id:?}"
        );
        let line = access_line(&server, &id);
        assert!(line.contains("(status=404,grpc_status=5,"), "{line}");
    });
    // Health checks are probes: polled, never logged.
    assert!(
        !server.log().contains("path=/grpc.health.v1.Health/Check"),
        "{}",
        server.log()
    );
}
