//! `/docs.json` and `/schema.json` are an OpenAPI 3.0 document of the
//! service, checked by a maintained validator that is not ours
//! (`openapi-spec-validator`, Python, in target/pyvenv-frontdoor, installed
//! by scripts/setup/20-frontdoor), and carrying BentoML's extensions.

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

/// Runs openapi-spec-validator (OpenAPI 3.0 rules) on `doc`; Err(message) when invalid.
fn validate(doc: &Value) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!(
        "tiffin-openapi-{}-{}.json",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&path, doc.to_string()).expect("write document");
    let script = "import json, sys\n\
        from openapi_spec_validator import validate, OpenAPIV30SpecValidator\n\
        validate(json.load(open(sys.argv[1])), cls=OpenAPIV30SpecValidator)\n\
        print('valid')\n";
    let mut cmd = Command::new(frontdoor_python());
    cmd.arg("-c").arg(script).arg(&path);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let _ = std::fs::remove_file(&path);
    if out.status.is_some_and(|s| s.success()) && out.stdout.contains("valid") {
        Ok(())
    } else {
        Err(format!("{:?}\n{}\n{}", out.status, out.stdout, out.stderr))
    }
}

fn docs(server: &Server) -> Value {
    let r = server.get("/docs.json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let schema = server.get("/schema.json");
    assert_eq!(schema.status, 200);
    assert_eq!(schema.body, r.body, "/schema.json is the same document");
    r.json()
}

fn check_service(service: &str, apis: &[(&str, &str, &str, &str)]) {
    let server = Launch::http(&[service, "--api-workers", "1"]).start();
    let doc = docs(&server);
    if let Err(e) = validate(&doc) {
        panic!("{service}: /docs.json is not valid OpenAPI 3.0: {e}\n{doc:#}");
    }
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0."))
    );
    assert_eq!(doc["info"]["title"], service);
    assert!(doc["info"]["version"].is_string());
    assert!(
        doc["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "Service APIs"))
    );
    for path in ["/livez", "/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            doc["paths"][path]["get"]["tags"],
            json!(["Infrastructure"]),
            "{path}"
        );
    }
    assert_eq!(
        doc["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/Error"
    );
    for (name, in_type, out_type, descriptor) in apis {
        let op = &doc["paths"][format!("/{name}")]["post"];
        assert_eq!(op["x-bentoml-name"], *name, "{op:#}");
        assert_eq!(op["tags"], json!(["Service APIs"]));
        assert!(op["requestBody"]["content"][in_type].is_object(), "{op:#}");
        assert_eq!(
            op["requestBody"]["x-bentoml-io-descriptor"]["id"],
            *descriptor
        );
        assert!(op["responses"]["200"]["content"][out_type].is_object());
        assert_eq!(
            op["responses"]["200"]["x-bentoml-io-descriptor"]["id"],
            "bentoml.io.JSON"
        );
        for status in [
            "400", "404", "408", "413", "415", "429", "500", "503", "504",
        ] {
            assert_eq!(
                op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{name} {status}"
            );
        }
    }
    // The statuses listed are real: a wrong content type answers the documented 415 body.
    let (name, in_type, ..) = apis[0];
    let wrong = if in_type == "text/plain" {
        "application/json"
    } else {
        "text/plain"
    };
    let r = server.post(&format!("/{name}"), wrong, b"x");
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.json()["error"].is_string());
    assert_eq!(
        doc["components"]["schemas"]["Error"]["required"],
        json!(["error"])
    );
}

#[test]
fn sentiment_analyzer_docs_are_valid_openapi_with_bentoml_extensions() {
    check_service(
        "sentiment_analyzer",
        &[(
            "analysis",
            "text/plain",
            "application/json",
            "bentoml.io.Text",
        )],
    );
}

#[test]
fn iris_classifier_docs_are_valid_openapi_with_bentoml_extensions() {
    check_service(
        "iris_classifier",
        &[(
            "classify",
            "application/json",
            "application/json",
            "bentoml.io.JSON",
        )],
    );
}

/// The validator is not a rubber stamp: tiffin's old `/docs.json` shape, and
/// a document with an undeclared status key, are refused.
#[test]
fn the_validator_rejects_invalid_documents() {
    let old = json!({"service": "s", "version": "v", "apis": []});
    assert!(validate(&old).is_err());
    let bad = json!({
        "openapi": "3.0.2",
        "info": {"title": "s", "version": "1"},
        "paths": {"/a": {"post": {"responses": {"twohundred": {"description": "x"}}}}},
    });
    assert!(validate(&bad).is_err());
}
