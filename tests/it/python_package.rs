//! The Python package beyond the fixture suite of `python.rs`: its own unit
//! tests (`python/tests/`: batching along `batch_dim`, the `bentoml.io`
//! descriptors, `bentoml.metrics` label checks, unsupported names), run with
//! `unittest` against the wheel `scripts/test` installed into
//! `target/pyvenv-python` (the code a user's `pip install` gets); gRPC; bad
//! locators; and the Rust machinery's limits (a request's deadline,
//! hung-worker detection) applied to a Python runner.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn the_python_packages_unit_tests_pass_against_the_installed_wheel() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = venv_tool(
        "target/pyvenv-python/bin/python",
        "scripts/setup/25-python, then scripts/wheel --install target/pyvenv-python",
    );
    let f = run_with_timeout(
        Command::new(&python)
            .args(["-m", "unittest", "discover", "-s", "python/tests", "-v"])
            .current_dir(root),
        Duration::from_secs(120),
    );
    let ran = f
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        f.status.is_some_and(|s| s.success()) && ran >= 16,
        "unittest: {:?}, {ran} tests\n{}",
        f.status,
        f.stderr
    );
}

/// `tiffin serve-grpc` of a Python service: BentoML's `BentoService/Call`
/// reaches the Python handler and its runner like an HTTP request does, and
/// an API the file does not declare is NOT_FOUND.
#[test]
fn a_python_service_answers_bentomls_grpc_call() {
    use tiffin_api_server::grpc::proto::bento_service_client::BentoServiceClient;
    use tiffin_api_server::grpc::proto::response;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tiffin = python_tiffin();
    let locator = root.join("tests/fixtures/python_abi/service.py:svc");
    let server = launch_grpc(&[locator.to_str().expect("utf-8 path")])
        .bin(tiffin)
        .start();
    runtime().block_on(async {
        let ch = channel(&server.addr).await;
        wait_serving(&server, &ch).await;
        let mut client = BentoServiceClient::new(ch);
        let resp = client
            .call(text_request("echo", "grpc"))
            .await
            .unwrap_or_else(|s| panic!("echo: {s:?}\nlog:\n{}", server.log()))
            .into_inner();
        let Some(response::Content::Json(v)) = resp.content else {
            panic!("expected JSON content, got {:?}", resp.content);
        };
        let answer = tiffin_api_server::grpc::value_to_json(v).expect("valid JSON value");
        assert_eq!(answer["reversed"], "cprg", "{answer}");
        let missing = client
            .call(text_request("no_such_api", "x"))
            .await
            .expect_err("an unknown API is refused");
        assert_eq!(
            missing.code(),
            tiffin_api_server::tonic::Code::NotFound,
            "{missing:?}"
        );
    });
}

/// One wrong start: the binary, its environment, the locator, what the error must name.
type BadStart<'a> = (&'a Path, Vec<(&'a str, &'a str)>, String, &'a str);

/// Every way of naming a Python service wrongly stops `serve-http` at once
/// with one message naming what is wrong: a missing file, a missing
/// attribute, an interpreter that does not exist, one without tiffin.
#[test]
fn bad_locators_and_interpreters_stop_serve_http_naming_what_is_wrong() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv_tiffin = python_tiffin();
    let fixture = root.join("tests/fixtures/python_abi/service.py");
    let fixture = fixture.to_str().expect("utf-8 path");
    let no_tiffin = venv_tool("target/pyvenv/bin/python", "scripts/test");
    let no_tiffin = no_tiffin.to_str().expect("utf-8 path").to_string();
    let cases: [BadStart; 4] = [
        (
            &venv_tiffin,
            vec![],
            "no_such_file.py:svc".to_string(),
            "no service file no_such_file.py",
        ),
        (
            &venv_tiffin,
            vec![],
            format!("{fixture}:nope"),
            "has no attribute 'nope'",
        ),
        (
            &tiffin_bin(),
            vec![("TIFFIN_PYTHON", "/nonexistent/python")],
            format!("{fixture}:svc"),
            "cannot run the Python interpreter /nonexistent/python",
        ),
        (
            &tiffin_bin(),
            // The gRPC tests' venv (scripts/test makes it): a Python without tiffin.
            vec![("TIFFIN_PYTHON", no_tiffin.as_str())],
            format!("{fixture}:svc"),
            "cannot import tiffin: install tiffin's wheel",
        ),
    ];
    for (bin, env, locator, want) in cases {
        let mut cmd = Command::new(bin);
        cmd.args(["serve-http", &locator, "--port", "0"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let f = run_with_timeout(&mut cmd, Duration::from_secs(120));
        assert!(
            f.status.is_some_and(|s| !s.success()) && f.stderr.contains(want),
            "{locator}: want a failure naming {want:?}, got {:?}:\n{}",
            f.status,
            f.stderr
        );
    }
}

fn slow_service(options: &str) -> Server {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tiffin = python_tiffin();
    let locator = root.join("tests/fixtures/python_abi/slow_service.py:svc");
    Launch::http(&[locator.to_str().expect("utf-8 path"), "--api-workers", "1"])
        .bin(tiffin)
        .env("TIFFIN_CONFIG_OPTIONS", options)
        .start()
}

/// `api_server.traffic.timeout` bounds a request whose Python runner call
/// takes longer: 504, and the server goes on answering.
#[test]
fn a_python_runner_call_past_the_requests_deadline_is_a_504_and_serving_goes_on() {
    let server = slow_service("api_server.traffic.timeout=1");
    let late = server.post_text("/slow", "5");
    assert_eq!(late.status, 504, "{}", late.text());
    let quick = eventually(Duration::from_secs(20), || {
        server.post_text("/slow", "0").status == 200
    });
    assert!(quick, "no answer after the 504; log:\n{}", server.log());
}

/// A stopped Python runner worker is taken for hung, replaced and counted,
/// as a Rust one is (`hardening.rs`), while a Python method that merely takes
/// long (here 6 s, twice the hung-worker timeout) is not.
#[test]
fn a_stopped_python_runner_is_replaced_and_a_slow_one_is_not_taken_for_hung() {
    let server = slow_service("supervisor.hung_worker_timeout=3 api_server.traffic.timeout=30");
    let slow = server.post_text("/slow", "6");
    assert_eq!(slow.status, 200, "{}", slow.text());
    let hung = |s: &Server| {
        parse_exposition(&s.metrics()).sum(
            "tiffin_supervisor_worker_hung_total",
            &[("runner_name", "sleeper")],
        )
    };
    assert_eq!(
        hung(&server),
        0.0,
        "a slow Python method was taken for hung"
    );
    let before = child_pids(&server, "__worker runner --runner sleeper");
    assert_eq!(before.len(), 1, "one runner worker: {before:?}");
    send_signal(before[0], libc::SIGSTOP);
    let replaced = eventually(Duration::from_secs(30), || {
        server.post_text("/slow", "0").status == 200
            && !child_pids(&server, "__worker runner --runner sleeper").contains(&before[0])
    });
    assert!(
        replaced,
        "the stopped Python runner was never replaced; log:\n{}",
        server.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || hung(&server) == 1.0),
        "tiffin_supervisor_worker_hung_total is {}",
        hung(&server)
    );
}

/// A Python runner autoscaled with `min_workers: 0` goes to zero when idle,
/// the service stays ready, and its next call starts a Python worker and is
/// answered (the autoscaler is the Rust one; the cold start is an interpreter).
#[test]
fn an_autoscaled_python_runner_goes_to_zero_and_its_next_call_is_answered() {
    let server = slow_service(
        "runners.sleeper.autoscaling.enabled=true runners.sleeper.autoscaling.min_workers=0 \
         runners.sleeper.autoscaling.max_workers=2 runners.sleeper.autoscaling.look_back_s=1 \
         runners.sleeper.autoscaling.downscale_delay_s=1 api_server.traffic.timeout=60",
    );
    let workers = |s: &Server| child_pids(s, "__worker runner --runner sleeper").len();
    assert!(
        eventually(Duration::from_secs(30), || workers(&server) == 0),
        "the idle Python runner never went to zero; log:\n{}",
        server.log()
    );
    assert_eq!(
        server.get("/readyz").status,
        200,
        "zero on purpose is ready"
    );
    let answer = server.post_text("/slow", "0");
    assert_eq!(
        answer.status,
        200,
        "{}\nlog:\n{}",
        answer.text(),
        server.log()
    );
    assert_eq!(answer.json()["slept"], 0.0);
}

/// What a Python handler sets about its answer is checked before it is sent:
/// an invalid status, header name or header value is a 500 naming it (the
/// handler's bug), and a valid one reaches the client.
#[test]
fn invalid_statuses_and_headers_set_by_a_python_handler_are_a_500_naming_them() {
    let server = slow_service("");
    let ok = server.post_text("/answer_as", "201 X-Made yes");
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(ok.header("x-made"), Some("yes"));
    for (sent, names) in [
        ("99 X-Made yes", "invalid status: \"99\""),
        ("200 Bad\tName yes", "invalid header name"),
        ("200 X-Made bad\nvalue", "invalid header value"),
    ] {
        let r = server.post_text("/answer_as", sent);
        assert_eq!(r.status, 500, "{sent:?}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(names), "{sent:?}: {error}");
    }
    assert_eq!(
        server.post_text("/answer_as", "200 X-Made again").status,
        200
    );
}
