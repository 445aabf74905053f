//! BentoML 1.2's own Python client (bentoml==1.2.20, pydantic==2.7.4 in
//! target/pyvenv-frontdoor; scripts/setup/20-frontdoor), unchanged,
//! discovers tiffin from `/docs.json` and calls every API of the built-in
//! services, getting the model's answers (tests/bentoml_client.py).

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The venv scripts/setup/20-frontdoor makes; a missing one fails the test.
fn frontdoor_python() -> PathBuf {
    let python =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv-frontdoor/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup/20-frontdoor (scripts/test runs it)",
        python.display()
    );
    python
}

/// Runs tests/bentoml_client.py against `server` and returns what it printed.
fn bentoml_client(server: &Server, calls: &Value, bad_calls: &Value) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bentoml_client.py");
    let mut cmd = Command::new(frontdoor_python());
    cmd.arg(script)
        .arg(format!("http://{}", server.addr))
        .arg(calls.to_string())
        .arg(bad_calls.to_string())
        // BentoML writes its home (~/bentoml) on import; keep it out of the user's.
        .env(
            "BENTOML_HOME",
            std::env::temp_dir().join("tiffin-bentoml-home"),
        );
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.is_some_and(|s| s.success()),
        "bentoml client failed ({:?})\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
        out.status,
        out.stdout,
        out.stderr,
        server.log()
    );
    let last = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

/// Every flavour of the client got `expected` for `api`.
fn assert_answers(seen: &Value, api: &str, expected: &Value) {
    for flavour in ["answers", "attribute_answers", "async_answers"] {
        assert_eq!(
            &seen[flavour][api], expected,
            "{flavour} of {api}: {seen:#}"
        );
    }
}

#[test]
fn bentoml_client_discovers_and_calls_sentiment_analyzer() {
    let server = Launch::http(&["sentiment_analyzer", "--api-workers", "1"]).start();
    let seen = bentoml_client(
        &server,
        &json!({ "analysis": [
            "I love this product! It is wonderful and works great.",
            "This is terrible. I hate it, the worst purchase ever.",
        ]}),
        &json!({}),
    );
    assert_eq!(seen["title"], "sentiment_analyzer");
    assert_eq!(seen["endpoints"], json!(["analysis"]));
    assert_eq!(seen["routes"]["analysis"], "analysis");
    assert_eq!(seen["descriptors"]["analysis"], json!(["Text", "JSON"]));
    assert_answers(
        &seen,
        "analysis",
        &json!([{ "is_positive": true }, { "is_positive": false }]),
    );
}

#[test]
fn bentoml_client_discovers_and_calls_iris_classifier() {
    let server = Launch::http(&["iris_classifier", "--api-workers", "1"]).start();
    // Rows 1, 51 and 101 of the Iris data (builtins/src/iris.csv), one of each class.
    let rows = json!([
        [5.1, 3.5, 1.4, 0.2],
        [7.0, 3.2, 4.7, 1.4],
        [6.3, 3.3, 6.0, 2.5]
    ]);
    let seen = bentoml_client(
        &server,
        &json!({ "classify": [rows, [5.9, 3.0, 5.1, 1.8]] }),
        &json!({ "classify": [{ "rows": "not rows" }, [[1.0, 2.0]]] }),
    );
    assert_eq!(seen["title"], "iris_classifier");
    assert_eq!(seen["endpoints"], json!(["classify"]));
    assert_eq!(seen["descriptors"]["classify"], json!(["JSON", "JSON"]));
    assert_answers(
        &seen,
        "classify",
        &json!([["setosa", "versicolor", "virginica"], ["virginica"]]),
    );
    // The server's refusals reach the client as BentoML errors with the status.
    for error in seen["errors"]["classify"].as_array().into_iter().flatten() {
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains("400"), "{seen:#}");
    }
    assert_eq!(seen["errors"]["classify"].as_array().map(Vec::len), Some(2));
}
