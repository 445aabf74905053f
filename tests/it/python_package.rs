//! The Python package's own unit tests (`python/tests/`: batching along
//! `batch_dim`, the `bentoml.io` descriptors, `bentoml.metrics` label checks,
//! unsupported names), run with `unittest` against the wheel `scripts/test`
//! installed into `target/pyvenv-python`: the code a user's `pip install` gets.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn the_python_packages_unit_tests_pass_against_the_installed_wheel() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/pyvenv-python/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/setup/25-python and scripts/wheel --install target/pyvenv-python make it",
        python.display()
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
    let tiffin = root.join("target/pyvenv-python/bin/tiffin");
    assert!(
        tiffin.is_file(),
        "{} is missing: scripts/wheel --install target/pyvenv-python makes it",
        tiffin.display()
    );
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
    let venv_tiffin = root.join("target/pyvenv-python/bin/tiffin");
    assert!(
        venv_tiffin.is_file(),
        "{} is missing: scripts/wheel --install target/pyvenv-python makes it",
        venv_tiffin.display()
    );
    let fixture = root.join("tests/fixtures/python_abi/service.py");
    let fixture = fixture.to_str().expect("utf-8 path");
    let no_tiffin = root.join("target/pyvenv/bin/python");
    assert!(
        no_tiffin.is_file(),
        "{} is missing: scripts/test makes it",
        no_tiffin.display()
    );
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
