//! Writes the seed corpora under `fuzz/corpus/<target>/`: real frames made by
//! encoding real messages, configurations from the config crate's tests, and
//! request bodies and headers. Every seed is run through its target's checks
//! before it is written.
//!
//! Run it again after a message changes (and `PROTOCOL_VERSION` with it):
//!
//! ```text
//! cd fuzz && CARGO_TARGET_DIR=../target/fuzz cargo run --release --bin gen_corpus
//! ```
//!
//! `DataRequest::Call` is built from JSON, so that an optional field added to
//! it later (absent from the JSON, so `None`) does not stop this from building.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tiffin_ipc::Envelope;
use tiffin_ipc::frame::{DEFAULT_MAX_FRAME, FrameCodec, decode_message};
use tiffin_ipc::proto::{
    CallError, DataRequest, DataResponse, FromSupervisor, Hello, PROTOCOL_VERSION, Role,
    StatusReport, ToSupervisor, WorkerEndpoint, WorkerState, WorkerStatus,
};
use tiffin_metrics::{Format, Registry, Snapshot};
use tokio_util::codec::Encoder;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    frames(&root.join("frame"));
    configs(&root.join("config"));
    bodies(&root.join("io"));
}

/// Writes `bytes` as `dir/name` after checking it with `check`.
fn seed(dir: &Path, name: &str, bytes: &[u8], check: fn(&[u8])) {
    check(bytes);
    fs::create_dir_all(dir).expect("create the corpus directory");
    let path: PathBuf = dir.join(name);
    fs::write(&path, bytes).expect("write a seed");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

/// The frames of `messages`, one after another, as they go over a socket.
fn stream<M: Serialize + DeserializeOwned>(messages: Vec<Envelope<M>>) -> Vec<u8> {
    let mut codec = FrameCodec::<Envelope<M>, Envelope<M>>::new(DEFAULT_MAX_FRAME);
    let mut buf = bytes::BytesMut::new();
    let count = messages.len();
    for message in messages {
        codec.encode(message, &mut buf).expect("encode a frame");
    }
    // Sanity: the frames decode as the type they were made of.
    let mut rest = &buf[..];
    for _ in 0..count {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        decode_message::<Envelope<M>>(&rest[4..4 + len]).expect("a seed frame decodes");
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty());
    buf.to_vec()
}

fn snapshot() -> Snapshot {
    let registry = Registry::new();
    let requests = registry
        .counter(
            "bentoml_api_server_request",
            "Total requests",
            &["endpoint", "http_response_code"],
        )
        .unwrap();
    requests.labels(&["/classify", "200"]).inc_by(3.0);
    requests.labels(&["/classify", "500"]).inc();
    let in_progress = registry
        .gauge(
            "bentoml_api_server_request_in_progress",
            "In progress",
            &["endpoint"],
        )
        .unwrap();
    in_progress.labels(&["/classify"]).set(2.0);
    let duration = registry
        .histogram(
            "bentoml_api_server_request_duration_seconds",
            "Duration",
            &["endpoint"],
            &[0.01, 0.1, 1.0],
        )
        .unwrap();
    duration.labels(&["/classify"]).observe(0.05);
    duration.labels(&["/classify"]).observe(2.0);
    let latency = registry
        .summary("model_latency_seconds", "Latency", &[])
        .unwrap();
    for v in [0.001, 0.02, 0.3] {
        latency.labels(&[]).observe(v);
    }
    registry.snapshot()
}

fn call(method: &str, payload: &[u8]) -> DataRequest {
    serde_json::from_value(serde_json::json!({
        "Call": { "method": method, "payload": payload }
    }))
    .expect("a DataRequest::Call from JSON")
}

fn frames(dir: &Path) {
    let check = tiffin_fuzz::frame;
    let hello = |role| {
        ToSupervisor::Hello(Hello {
            version: PROTOCOL_VERSION,
            role,
            pid: 4242,
        })
    };

    // Control connection, worker/CLI -> supervisor.
    let api_hello = Envelope::Request {
        id: 1,
        body: hello(Role::ApiServer { index: 0 }),
    };
    seed(
        dir,
        "to_supervisor_hello_api",
        &stream(vec![api_hello.clone()]),
        check,
    );
    seed(
        dir,
        "to_supervisor_hello_runner_ready",
        &stream(vec![
            Envelope::Request {
                id: 1,
                body: hello(Role::Runner {
                    name: "nltk_sentiment".into(),
                    index: 1,
                }),
            },
            Envelope::Event(ToSupervisor::Ready {
                socket: Some("/run/tiffin/1/runner-nltk_sentiment-1.sock".into()),
            }),
        ]),
        check,
    );
    seed(
        dir,
        "to_supervisor_snapshot",
        &stream(vec![Envelope::Reply {
            id: 7,
            body: ToSupervisor::Snapshot {
                snapshot: snapshot(),
                requests: 4,
            },
        }]),
        check,
    );
    seed(
        dir,
        "to_supervisor_scrape_status_scale",
        &stream(vec![
            Envelope::Request {
                id: 2,
                body: ToSupervisor::Scrape {
                    format: Format::OpenMetrics,
                },
            },
            Envelope::Request {
                id: 3,
                body: ToSupervisor::Status,
            },
            Envelope::Request {
                id: 4,
                body: ToSupervisor::Scale {
                    target: "api-server".into(),
                    workers: 3,
                },
            },
        ]),
        check,
    );
    seed(
        dir,
        "to_supervisor_cli_hello",
        &stream(vec![Envelope::Request {
            id: 1,
            body: hello(Role::Cli),
        }]),
        check,
    );
    seed(
        dir,
        "to_supervisor_drained",
        &stream(vec![
            Envelope::Event(ToSupervisor::Ready { socket: None }),
            Envelope::Event(ToSupervisor::Drained {
                snapshot: Snapshot::default(),
            }),
        ]),
        check,
    );

    // Control connection, supervisor -> worker/CLI.
    seed(
        dir,
        "from_supervisor_welcome_workers",
        &stream(vec![
            Envelope::Reply {
                id: 1,
                body: FromSupervisor::Welcome {
                    version: PROTOCOL_VERSION,
                },
            },
            Envelope::Event(FromSupervisor::Workers {
                runner: "iris_clf".into(),
                endpoints: vec![
                    WorkerEndpoint {
                        index: 1,
                        socket: "/run/tiffin/1/runner-iris_clf-1.sock".into(),
                        generation: 1,
                    },
                    WorkerEndpoint {
                        index: 2,
                        socket: "/run/tiffin/1/runner-iris_clf-2.sock".into(),
                        generation: 3,
                    },
                ],
            }),
        ]),
        check,
    );
    seed(
        dir,
        "from_supervisor_refused",
        &stream(vec![Envelope::Reply {
            id: 1,
            body: FromSupervisor::Refused {
                reason: "protocol version 1, expected 2".into(),
            },
        }]),
        check,
    );
    seed(
        dir,
        "from_supervisor_snapshot_request_drain",
        &stream(vec![
            Envelope::Request {
                id: 9,
                body: FromSupervisor::SnapshotRequest,
            },
            Envelope::Event(FromSupervisor::Drain),
        ]),
        check,
    );
    seed(
        dir,
        "from_supervisor_scraped",
        &stream(vec![Envelope::Reply {
            id: 2,
            body: FromSupervisor::Scraped {
                body: "# HELP x_total X\n# TYPE x_total counter\nx_total 1\n".into(),
            },
        }]),
        check,
    );
    seed(
        dir,
        "from_supervisor_status_scaled",
        &stream(vec![
            Envelope::Reply {
                id: 3,
                body: FromSupervisor::Status {
                    report: StatusReport {
                        service: "sentiment_analyzer".into(),
                        pid: 100,
                        listen: "0.0.0.0:3000".into(),
                        uptime_secs: 12.5,
                        workers: vec![WorkerStatus {
                            role: Role::ApiServer { index: 0 },
                            pid: 101,
                            state: WorkerState::Ready,
                            uptime_secs: 12.0,
                            restarts: 0,
                            requests: 42,
                        }],
                        autoscaling: Vec::new(),
                    },
                },
            },
            Envelope::Reply {
                id: 4,
                body: FromSupervisor::Scaled {
                    result: Ok("api-server: 1 -> 3 workers".into()),
                },
            },
            Envelope::Reply {
                id: 5,
                body: FromSupervisor::Scaled {
                    result: Err("unknown runner 'nope'".into()),
                },
            },
        ]),
        check,
    );

    // Data connection, API server -> runner worker.
    seed(
        dir,
        "data_request_hello_call",
        &stream(vec![
            Envelope::Request {
                id: 1,
                body: DataRequest::Hello {
                    version: PROTOCOL_VERSION,
                },
            },
            Envelope::Request {
                id: 2,
                body: call("is_positive", br#""I love this""#),
            },
        ]),
        check,
    );
    seed(
        dir,
        "data_request_call_batch",
        &stream(vec![
            Envelope::Request {
                id: 10,
                body: call("classify", b"[[5.1,3.5,1.4,0.2]]"),
            },
            Envelope::Request {
                id: 11,
                body: call("classify", b"[[6.7,3.0,5.2,2.3]]"),
            },
        ]),
        check,
    );

    // Data connection, runner worker -> API server.
    seed(
        dir,
        "data_response_hello_result",
        &stream(vec![
            Envelope::Reply {
                id: 1,
                body: DataResponse::Hello {
                    version: PROTOCOL_VERSION,
                },
            },
            Envelope::Reply {
                id: 2,
                body: DataResponse::Result(Ok(bytes::Bytes::from_static(b"true"))),
            },
        ]),
        check,
    );
    seed(
        dir,
        "data_response_errors_draining",
        &stream(vec![
            Envelope::Reply {
                id: 3,
                body: DataResponse::Result(Err(CallError::BadInput("expected a string".into()))),
            },
            Envelope::Reply {
                id: 4,
                body: DataResponse::Result(Err(CallError::Overloaded("queue full".into()))),
            },
            Envelope::Reply {
                id: 5,
                body: DataResponse::Result(Err(CallError::Draining)),
            },
            Envelope::Event(DataResponse::Draining),
        ]),
        check,
    );

    // Hostile shapes: a header past the limit, a truncated frame, trailing bytes.
    seed(
        dir,
        "oversized_header",
        &[0xff, 0xff, 0xff, 0xff, 0, 1, 2],
        check,
    );
    let mut truncated = stream(vec![api_hello.clone()]);
    truncated.truncate(truncated.len() - 2);
    seed(dir, "truncated_frame", &truncated, check);
    let mut trailing = stream(vec![api_hello]);
    trailing[3] += 1;
    trailing.push(0);
    seed(dir, "trailing_byte", &trailing, check);
}

fn configs(dir: &Path) {
    let check = tiffin_fuzz::config;
    // From config/src/tests.rs (`yaml_file`, `per_runner_overrides`).
    seed(
        dir,
        "full.yaml",
        br#"api_server:
  workers: 2
  graceful_timeout: 5
  http:
    port: 8080
    max_request_size: 1024
  grpc:
    reflection: { enabled: true }
    metrics: { port: 9001 }
  metrics:
    namespace: my_api
    duration:
      min: 0.1
      max: 5.0
      factor: 2.0
runners:
  workers: 3
  batching:
    max_batch_size: 16
  metrics:
    enabled: false
    duration:
      buckets: [0.5, 1, .inf]
  nltk_sentiment:
    workers: 4
    batching:
      enabled: false
"#,
        check,
    );
    seed(
        dir,
        "per_runner.yaml",
        b"runners:\n  workers: 2\n  batching: { enabled: true, max_batch_size: 50, max_latency_ms: 500 }\n  \
          a: { workers: 5, batching: { max_batch_size: 200 } }\n  b: { batching: { enabled: false, max_latency_ms: 20 } }\n  c:\n",
        check,
    );
    seed(
        dir,
        "anchors.yaml",
        b"base: &b { workers: 2 }\napi_server:\n  <<: *b\n  http: { host: \"127.0.0.1\", port: 0 }\n",
        check,
    );
    seed(
        dir,
        "traffic.yaml",
        b"api_server:\n  traffic: { timeout: 2.5, max_concurrency: 8 }\n  http: { header_read_timeout: 1, keepalive_timeout: 0.5 }\n",
        check,
    );
    seed(
        dir,
        "options",
        b"api_server.http.port=3001 runners.workers=2 'api_server.metrics.duration.buckets=[0.1, 1]'",
        check,
    );
    seed(
        dir,
        "options_quoted",
        b"api_server.metrics.namespace=\"my_ns\" runners.iris.batching.max_batch_size=8",
        check,
    );
    // YAML, NUL, then options applied one by one with apply_override.
    seed(
        dir,
        "yaml_then_options",
        b"runners: { iris: { workers: 2 } }\0api_server.http.port=0 runners.iris.workers=x",
        check,
    );
}

fn bodies(dir: &Path) {
    let check = tiffin_fuzz::io;
    seed(
        dir,
        "json_object",
        br#"{"text": "I love this", "n": [1, 2.5, -3e10, null, true]}"#,
        check,
    );
    seed(
        dir,
        "json_nested",
        br#"[[5.1,3.5,1.4,0.2],{"a":{"b":"\u00e9\ud83d\ude00"}}]"#,
        check,
    );
    seed(dir, "text", "I love this \u{1f600}".as_bytes(), check);
    seed(dir, "not_utf8", b"caf\xe9 \xff\xfe", check);
    seed(
        dir,
        "content_type_json",
        b"application/json; charset=utf-8",
        check,
    );
    seed(
        dir,
        "content_type_suffix",
        b"application/vnd.api+json",
        check,
    );
    seed(dir, "content_type_text", b"Text/Plain;charset=UTF-8", check);
    seed(
        dir,
        "accept_openmetrics",
        b"application/openmetrics-text; version=1.0.0, text/plain;version=0.0.4;q=0.5",
        check,
    );
}
