//! The OpenAPI 3.0 document served at `/docs.json` and `/schema.json`,
//! built from the service's description alone (pure: no I/O, no config).
//!
//! Why this shape: BentoML's Python client (`bentoml.client.Client.from_url`,
//! `bentoml/_internal/client/http.py` in BentoML 1.2) discovers a server from
//! this document and nothing else. It takes the service name from
//! `info.title`, keeps the operations tagged `Service APIs`, and rebuilds
//! each API from three extensions: `x-bentoml-name` on the operation and
//! `x-bentoml-io-descriptor` on the request body and on the `200` response
//! (each descriptor's `to_spec()`, here [`IoSpec::bentoml`]). It also reads
//! the operation's `description`. BentoML's own generator
//! (`bentoml/_internal/service/openapi/__init__.py`) is the model for the
//! rest: the `Infrastructure` tag for probes and metrics, `operationId`
//! `<service>__<api>`, `servers: [{url: "."}]`. It also writes Swagger 2's
//! `consumes`/`produces` inside OpenAPI 3 operations, which a strict
//! validator rejects; they are left out here (the client does not read them).
//!
//! Every status an API can answer is listed with the error body
//! `{"error": "..."}` (`components.schemas.Error`): the front door's own
//! (`api-server/src/http.rs`: 408, 413, 415, and 503 past the connection
//! limit; `traffic.rs`: 429, 504) and
//! the handler's and runner's (`service/src/error.rs`: 400, 500, 503, 504;
//! a handler may answer 404 itself).

use serde_json::{Map, Value, json};
use tiffin_service::{Api, IoSpec, Service};

/// The OpenAPI version written; BentoML 1.2 writes the same.
pub(crate) const OPENAPI_VERSION: &str = "3.0.2";
/// The tag BentoML's client looks for to find the inference APIs.
pub(crate) const APP_TAG: &str = "Service APIs";
/// The tag of probes, metrics and documentation endpoints.
pub(crate) const INFRA_TAG: &str = "Infrastructure";

/// Error statuses of an API route and what each means here.
const API_ERRORS: &[(u16, &str)] = &[
    (
        400,
        "Bad input: the body is not valid for the API (not UTF-8, not JSON, or not the expected shape), or the runner refused it.",
    ),
    (
        404,
        "The handler reported that what was asked for does not exist.",
    ),
    (
        408,
        "The request body did not arrive within `api_server.http.body_read_timeout`.",
    ),
    (
        413,
        "The request body exceeds `api_server.http.max_request_size`.",
    ),
    (
        415,
        "The `Content-Type` is not one the API's input accepts.",
    ),
    (
        429,
        "More than `api_server.traffic.max_concurrency` requests are in flight on this API server.",
    ),
    (
        500,
        "The handler or the model failed; the message says why.",
    ),
    (
        503,
        "No runner worker is available or the runner is overloaded, or this connection is past `api_server.http.max_connections`.",
    ),
    (
        504,
        "The request took longer than `api_server.traffic.timeout`; a runner never starts a call past it.",
    ),
];

/// The OpenAPI 3.0 document for `service`.
pub(crate) fn document(service: &Service) -> Value {
    let mut paths = Map::new();
    for (path, item) in infrastructure_paths() {
        paths.insert(path.to_string(), item);
    }
    for api in service.apis() {
        paths.insert(
            api.route(),
            json!({ "post": api_operation(&service.name, api) }),
        );
    }
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": service.name,
            "description": format!(
                "The HTTP APIs of the `{}` service, served by tiffin. Errors are JSON `{{\"error\": \"...\"}}`.",
                service.name
            ),
            "version": service.version_label(),
        },
        "servers": [{ "url": "." }],
        "tags": [
            { "name": APP_TAG, "description": "BentoML Service API endpoints for inference." },
            { "name": INFRA_TAG, "description": "Probes, metrics and this document." },
        ],
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "description": "The body of every error answer.",
                    "required": ["error"],
                    "properties": {
                        "error": { "type": "string", "description": "What went wrong, for a human." }
                    },
                },
            },
        },
    })
}

/// `content` for a body described by `spec`.
fn content(spec: &IoSpec) -> Value {
    let mut media = Map::new();
    media.insert("schema".into(), spec.schema.clone());
    if let Some(example) = &spec.example {
        media.insert("example".into(), example.clone());
    }
    json!({ spec.media_type.clone(): media })
}

/// A response whose body is the error schema.
fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {
            "application/json": { "schema": { "$ref": "#/components/schemas/Error" } }
        },
    })
}

/// The `post` operation of one API.
fn api_operation(service: &str, api: &Api) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": "Successful Response",
            "content": content(&api.output_spec),
            "x-bentoml-io-descriptor": api.output_spec.bentoml,
        }),
    );
    for (status, description) in API_ERRORS {
        responses.insert(status.to_string(), error_response(description));
    }
    json!({
        "tags": [APP_TAG],
        "summary": format!("{} {} → {}", api.route(), api.input_spec.media_type, api.output_spec.media_type),
        "description": format!("The `{}` API of `{service}`.", api.name),
        "operationId": format!("{service}__{}", api.name),
        "x-bentoml-name": api.name,
        "requestBody": {
            "required": true,
            "content": content(&api.input_spec),
            "x-bentoml-io-descriptor": api.input_spec.bentoml,
        },
        "responses": responses,
    })
}

/// `GET` on an infrastructure endpoint with the given responses.
fn infra_get(description: &str, responses: Value) -> Value {
    json!({
        "get": {
            "tags": [INFRA_TAG],
            "description": description,
            "responses": responses,
        }
    })
}

/// A `200` answered with `ok` in plain text.
fn ok_text() -> Value {
    json!({
        "description": "Successful Response",
        "content": { "text/plain": { "schema": { "type": "string", "example": "ok" } } },
    })
}

/// The probes, `/metrics` and the documentation endpoints.
fn infrastructure_paths() -> Vec<(&'static str, Value)> {
    let metrics_text = json!({ "schema": { "type": "string" } });
    let doc = json!({
        "200": {
            "description": "This document.",
            "content": { "application/json": { "schema": { "type": "object" } } },
        }
    });
    vec![
        (
            "/livez",
            infra_get(
                "Liveness: 200 while the API server process serves requests.",
                json!({ "200": ok_text() }),
            ),
        ),
        (
            "/healthz",
            infra_get(
                "Health check, the same answer as `/livez` (kept for older Kubernetes probes).",
                json!({ "200": ok_text() }),
            ),
        ),
        (
            "/readyz",
            infra_get(
                "Readiness: 200 once every runner has a ready worker, 503 until then.",
                json!({
                    "200": ok_text(),
                    "503": error_response("Some runner has no ready worker yet."),
                }),
            ),
        ),
        (
            "/metrics",
            infra_get(
                "Prometheus metrics of every process of the service: text format 0.0.4, or OpenMetrics 1.0 when `Accept` asks for `application/openmetrics-text`.",
                json!({
                    "200": {
                        "description": "The aggregated exposition.",
                        "content": {
                            "text/plain; version=0.0.4; charset=utf-8": metrics_text.clone(),
                            "application/openmetrics-text; version=1.0.0; charset=utf-8": metrics_text,
                        },
                    },
                    "404": error_response("Metrics are disabled (`api_server.metrics.enabled: false`)."),
                    "503": error_response("The supervisor did not answer the scrape in time."),
                }),
            ),
        ),
        (
            "/docs.json",
            infra_get("This OpenAPI document.", doc.clone()),
        ),
        (
            "/schema.json",
            infra_get("This OpenAPI document (the same as `/docs.json`).", doc),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiffin_service::{ApiError, Binary, Json, Text};

    fn service() -> Service {
        Service::new("svc")
            .version("1.2")
            .api("analysis", Text, Json, |_: String| async {
                Ok::<_, ApiError>(json!({}))
            })
            .api("raw", Binary, Text, |_| async {
                Ok::<_, ApiError>(String::new())
            })
    }

    #[test]
    fn info_tags_and_bentoml_extensions() {
        let doc = document(&service());
        assert_eq!(doc["openapi"], "3.0.2");
        assert_eq!(doc["info"]["title"], "svc");
        assert_eq!(doc["info"]["version"], "1.2");
        let op = &doc["paths"]["/analysis"]["post"];
        assert_eq!(op["tags"], json!(["Service APIs"]));
        assert_eq!(op["x-bentoml-name"], "analysis");
        assert_eq!(op["operationId"], "svc__analysis");
        assert!(op["description"].is_string());
        assert_eq!(
            op["requestBody"]["x-bentoml-io-descriptor"],
            json!({ "id": "bentoml.io.Text" })
        );
        assert_eq!(
            op["requestBody"]["content"]["text/plain"]["schema"]["type"],
            "string"
        );
        let ok = &op["responses"]["200"];
        assert_eq!(ok["x-bentoml-io-descriptor"]["id"], "bentoml.io.JSON");
        assert!(ok["content"]["application/json"].is_object());
        let raw = &doc["paths"]["/raw"]["post"];
        assert_eq!(
            raw["requestBody"]["x-bentoml-io-descriptor"]["id"],
            "bentoml.io.File"
        );
        assert!(raw["requestBody"]["content"]["*/*"].is_object());
    }

    #[test]
    fn every_error_status_uses_the_error_schema() {
        let doc = document(&service());
        let responses = doc["paths"]["/analysis"]["post"]["responses"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for status in [
            "400", "404", "408", "413", "415", "429", "500", "503", "504",
        ] {
            assert_eq!(
                responses[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{status}"
            );
        }
        assert_eq!(
            doc["components"]["schemas"]["Error"]["required"],
            json!(["error"])
        );
    }

    #[test]
    fn infrastructure_endpoints_are_documented_and_not_service_apis() {
        let doc = document(&service());
        for path in [
            "/livez",
            "/healthz",
            "/readyz",
            "/metrics",
            "/docs.json",
            "/schema.json",
        ] {
            assert_eq!(doc["paths"][path]["get"]["tags"], json!(["Infrastructure"]));
        }
        assert_eq!(
            doc["paths"]
                .as_object()
                .map(|p| p.len())
                .unwrap_or_default(),
            8
        );
    }

    #[test]
    fn an_unversioned_service_says_so() {
        let doc = document(&Service::new("bare"));
        assert_eq!(doc["info"]["version"], "not available");
        assert_eq!(doc["paths"].as_object().map(|p| p.len()), Some(6));
    }
}
