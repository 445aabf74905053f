//! Embedded runners (`runners.<name>.embedded`, issue 28): the runnable runs
//! inside every API server, with the runner's metrics, batching, deadlines
//! and failure handling intact, and what cannot apply refused clearly.

use std::time::Duration;

use crate::common::*;

fn custom_embedded(api_workers: &str, options: &str) -> Server {
    Launch::http(&["--api-workers", api_workers])
        .bin(example_bin("custom_service"))
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            &format!("runners.calc.embedded=true {options}"),
        )
        .start()
}

fn post_json(server: &Server, path: &str, body: &str) -> Response {
    server.post(path, "application/json", body.as_bytes())
}

#[test]
fn an_embedded_runner_starts_no_worker_and_answers_with_the_runners_metrics() {
    let server = custom_embedded("2", "");
    let r = post_json(&server, "/double", "21");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], 42.0);
    // The supervisor started the API servers and the other runner's worker
    // only: no process for calc.
    let status = status_json(&server);
    let workers = status["workers"].as_array().expect("workers list");
    let roles: Vec<_> = workers.iter().map(worker_role).collect();
    assert!(
        roles
            .iter()
            .all(|(_, runner, _)| runner.as_deref() != Some("calc")),
        "{roles:?}"
    );
    assert_eq!(
        roles
            .iter()
            .filter(|(role, _, _)| role == "api-server")
            .count(),
        2
    );
    assert!(
        roles
            .iter()
            .any(|(_, runner, _)| runner.as_deref() == Some("flaky"))
    );
    // BentoML's runner families, from inside the API server.
    let labels = [
        ("runner_name", "calc"),
        ("endpoint", "/double"),
        ("http_response_code", "200"),
    ];
    wait_metric(
        &server,
        "bentoml_runner_request_total",
        &labels,
        1.0,
        "the embedded call counted once",
    );
    assert_eq!(
        metric(
            &server,
            "bentoml_runner_request_duration_seconds_count",
            &[("runner_name", "calc")]
        ),
        1.0
    );
}

#[test]
fn tiffin_scale_refuses_an_embedded_runner_and_says_what_to_do() {
    let server = custom_embedded("1", "");
    let out = server.cli(&["scale", "calc", "3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runner 'calc' is embedded (runners.calc.embedded: true)")
            && err.contains("tiffin scale api-server N"),
        "{err}"
    );
    // The other runner still scales.
    let out = server.cli(&["scale", "flaky", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn autoscaling_an_embedded_runner_is_refused_at_start_naming_the_key() {
    let out = std::process::Command::new(example_bin("custom_service"))
        .args(["serve-http", "--port", "0"])
        .env(
            "TIFFIN_CONFIG_OPTIONS",
            "runners.calc.embedded=true runners.calc.autoscaling.enabled=true",
        )
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "invalid value for 'runners.calc.embedded': an embedded runner runs in every API server"
        ),
        "{err}"
    );
}

#[test]
fn a_panicking_embedded_model_is_a_500_for_its_call_and_the_api_server_lives_on() {
    let server = custom_embedded("1", "");
    let pids_before = server.children();
    let r = server.post_text("/panic", "boom");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("the model panicked"), "{}", r.text());
    // The same process answers the next call.
    let r = post_json(&server, "/double", "2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.children(), pids_before, "no process was replaced");
    let failed = [
        ("runner_name", "calc"),
        ("endpoint", "/panic"),
        ("http_response_code", "500"),
    ];
    wait_metric(
        &server,
        "bentoml_runner_request_total",
        &failed,
        1.0,
        "the panicked call counted as a 500",
    );
}

#[test]
fn a_panicking_model_in_a_worker_process_is_a_500_and_the_worker_lives_on() {
    let server = Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .start();
    let workers_before = child_pids(&server, "calc");
    let r = server.post_text("/panic", "boom");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("the model panicked"), "{}", r.text());
    assert_eq!(post_json(&server, "/double", "2").status, 200);
    assert_eq!(child_pids(&server, "calc"), workers_before);
}

#[test]
fn a_hung_embedded_model_leaves_probes_and_metrics_answering() {
    let server = custom_embedded("1", "");
    let addr = server.addr.clone();
    // A call that holds the model for 10 s (the fixture's longest).
    let slow = std::thread::spawn(move || {
        http(
            &addr,
            "POST",
            "/slow",
            &[("Content-Type", "application/json")],
            b"10000",
        )
    });
    wait_metric(
        &server,
        "bentoml_runner_request_in_progress",
        &[("runner_name", "calc")],
        1.0,
        "the slow call running in the embedded runner",
    );
    // While it runs: probes, metrics and other calls are answered.
    assert_eq!(server.get("/livez").status, 200);
    assert_eq!(server.get("/readyz").status, 200);
    assert!(
        server
            .metrics()
            .contains("bentoml_runner_request_in_progress")
    );
    assert_eq!(post_json(&server, "/double", "4").json()["result"], 8.0);
    let r = slow.join().expect("thread").expect("an answer");
    assert_eq!(r.status, 200);
}

#[test]
fn an_embedded_call_is_bounded_by_the_traffic_timeout() {
    let server = custom_embedded("1", "api_server.traffic.timeout=1");
    let r = post_json(&server, "/slow", "5000");
    assert_eq!(r.status, 504, "{}", r.text());
    // The service is not stuck behind it.
    let ok = eventually(Duration::from_secs(20), || {
        post_json(&server, "/double", "1").status == 200
    });
    assert!(ok);
}

#[test]
fn an_embedded_batchable_method_goes_through_the_api_servers_batcher_with_the_same_answers() {
    let texts: Vec<String> = (0..24)
        .map(|i| format!("question {i} about {}", i * 7))
        .collect();
    let answers = |server: &Server| -> Vec<serde_json::Value> {
        let mut out = vec![serde_json::Value::Null; texts.len()];
        let results = std::sync::Mutex::new(&mut out);
        concurrent_clients(8, 3, |c, i| {
            let k = c * 3 + i;
            let r = server.post_text("/embed", &texts[k]);
            assert_eq!(r.status, 200, "{}", r.text());
            results.lock().expect("lock")[k] = r.json()["embedding"].clone();
        });
        out
    };
    let hop = Launch::http(&[])
        .bin(example_bin("embedding_service"))
        .start();
    let by_worker = answers(&hop);
    drop(hop);
    let embedded = Launch::http(&["--api-workers", "2"])
        .bin(example_bin("embedding_service"))
        .env("TIFFIN_CONFIG_OPTIONS", "runners.embedder.embedded=true")
        .start();
    // Equal within the fixture's float tolerance: a batch of 6 or more rows
    // takes the blocked matrix product (tests/it/batching.rs), and which
    // batch a call lands in differs between runs.
    for (k, (got, want)) in answers(&embedded).iter().zip(&by_worker).enumerate() {
        let (got, want) = (
            got.as_array().expect("array"),
            want.as_array().expect("array"),
        );
        assert_eq!(got.len(), want.len());
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a.as_f64().unwrap_or(f64::NAN) - b.as_f64().unwrap_or(f64::NAN)).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-5, "text {k}: embedded answer off by {diff}");
    }
    // Every call was one row of a batch of the API servers' own batchers.
    let labels = [("runner_name", "embedder"), ("method_name", "embed")];
    assert_eq!(
        metric(&embedded, "bentoml_runner_adaptive_batch_size_sum", &labels),
        texts.len() as f64
    );
    let status = status_json(&embedded);
    let roles: Vec<_> = status["workers"]
        .as_array()
        .expect("workers list")
        .iter()
        .map(worker_role)
        .collect();
    assert!(
        roles.iter().all(|(role, _, _)| role == "api-server"),
        "{roles:?}"
    );
}

#[test]
fn a_cheap_embedded_method_moves_to_the_io_thread_with_the_same_answers_and_metrics() {
    let server = custom_embedded("1", "");
    // A streak of cheap calls on the model thread earns `double` the I/O
    // thread (runner-worker/src/embedded.rs): about 256 calls, more on a
    // machine busy enough to slow some; bounded at 4,000.
    let needles = ["a cheap method: its calls run on the caller", "double"];
    let moved = |server: &Server| {
        server
            .log()
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
    };
    let mut calls = 0;
    while !(calls >= 300 && moved(&server)) {
        assert!(
            calls < 4000,
            "double never moved to the I/O thread; log:\n{}",
            server.log()
        );
        for i in calls..calls + 100 {
            let r = post_json(&server, "/double", &i.to_string());
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["result"], f64::from(2 * i));
        }
        calls += 100;
    }
    // The calls after it ran there, answered and counted the same.
    for i in calls..calls + 100 {
        let r = post_json(&server, "/double", &i.to_string());
        assert_eq!(r.json()["result"], f64::from(2 * i));
    }
    calls += 100;
    wait_metric(
        &server,
        "bentoml_runner_request_total",
        &[("runner_name", "calc"), ("endpoint", "/double")],
        f64::from(calls),
        "every call counted, on either thread",
    );
}

#[test]
fn an_embedded_call_whose_client_hangs_up_is_cancelled_and_stops() {
    let server = Launch::http(&["--api-workers", "1"])
        .bin(example_bin("custom_service"))
        .env("TIFFIN_CONFIG_OPTIONS", "runners.busy.embedded=true")
        .start();
    // A 60-second cancellable call (the fixture's `work`: 10 ms steps),
    // on a connection the test drops while the call runs.
    let body = r#"{"ms": 60000}"#;
    let mut conn = std::net::TcpStream::connect(&server.addr).expect("connects");
    std::io::Write::write_all(
        &mut conn,
        format!(
            "POST /work HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\nx-request-id: embedded-cancel\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .expect("the request is sent");
    let in_progress = [("runner_name", "busy")];
    wait_metric(
        &server,
        "bentoml_runner_request_in_progress",
        &in_progress,
        1.0,
        "the embedded call running",
    );
    drop(conn);
    let cancelled = "tiffin_runner_calls_cancelled_total";
    wait_metric(
        &server,
        cancelled,
        &[("runner_name", "busy"), ("stage", "running")],
        1.0,
        "the running embedded call cancelled",
    );
    wait_metric(
        &server,
        "bentoml_runner_request_in_progress",
        &in_progress,
        0.0,
        "the method returned",
    );
    wait_log_line(
        &server,
        &["call cancelled by its caller", "embedded-cancel"],
    );
    // It stopped: far fewer than its 6,000 steps, and none after.
    let done = |server: &Server| {
        let r = post_json(server, "/work_done", "null");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["steps"].as_f64().expect("a count of steps")
    };
    let steps = done(&server);
    assert!(steps < 6000.0, "{steps}");
    assert_eq!(done(&server), steps, "no step after the cancel");
}
