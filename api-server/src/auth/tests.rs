use hyper::header::HeaderValue;
use tiffin_service::{Service, Text};

use super::*;
use crate::route::Routes;

const EVERY: &str = "every-api-token-0123456789";
const ECHO_ONLY: &str = "echo-only-token-0123456789";
const SECOND_EVERY: &str = "second-every-api-token-42";

fn service() -> Service {
    let echo = |text: String| async move { Ok(text) };
    Service::new("s")
        .api("echo", Text, Text, echo)
        .api("analysis", Text, Text, echo)
}

fn entries() -> Vec<TokenEntry> {
    vec![
        TokenEntry {
            token: EVERY.to_owned(),
            apis: None,
        },
        TokenEntry {
            token: ECHO_ONLY.to_owned(),
            apis: Some(vec!["echo".to_owned()]),
        },
        TokenEntry {
            token: SECOND_EVERY.to_owned(),
            apis: None,
        },
    ]
}

fn auth(public_docs: bool) -> Auth {
    Auth::new(&entries(), public_docs, None)
}

fn headers(authorization: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = authorization {
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn decide_path(
    auth: &Auth,
    path: &str,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Result<Option<Grant>, Refusal> {
    let service = service();
    let routes = Routes::new(service.apis(), service.models());
    let need = auth.need(routes.resolve(path));
    auth.decide(need, &headers(authorization), query)
}

fn reason(result: Result<Option<Grant>, Refusal>) -> Option<Reason> {
    result.err().map(|r| r.reason)
}

#[test]
fn probes_are_open_docs_follow_public_docs_and_everything_else_needs_a_token() {
    let service = service();
    let routes = Routes::new(service.apis(), service.models());
    for path in [
        "/livez",
        "/healthz",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    ] {
        assert_eq!(need(routes.resolve(path), false), Need::Open, "{path}");
    }
    let docs = [
        "/docs.json",
        "/schema.json",
        "/",
        "/static_content/swagger-ui.css",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ];
    for path in docs {
        assert_eq!(need(routes.resolve(path), true), Need::Open, "{path}");
        assert_eq!(need(routes.resolve(path), false), Need::AnyToken, "{path}");
    }
    for path in [
        "/metrics",
        "/v2",
        "/nothing-here",
        "/bentoml.grpc.v1.BentoService/Call",
        "/inference.GRPCInferenceService/ServerLive",
    ] {
        assert_eq!(need(routes.resolve(path), true), Need::AnyToken, "{path}");
    }
    assert_eq!(need(routes.resolve("/echo"), true), Need::Api("echo"));
}

#[test]
fn a_request_without_a_bearer_token_is_missing_and_a_wrong_one_invalid() {
    let auth = auth(false);
    assert_eq!(
        reason(decide_path(&auth, "/echo", None, None)),
        Some(Reason::Missing)
    );
    let basic = Some("Basic dXNlcjpwYXNz");
    assert_eq!(
        reason(decide_path(&auth, "/echo", basic, None)),
        Some(Reason::Missing)
    );
    for wrong in [
        "Bearer every-api-token-012345678",
        "Bearer every-api-token-01234567890",
        "Bearer ",
        "Bearer x",
    ] {
        assert_eq!(
            reason(decide_path(&auth, "/echo", Some(wrong), None)),
            Some(Reason::Invalid),
            "{wrong}"
        );
    }
}

#[test]
fn the_right_token_is_found_whichever_entry_it_is_and_the_scheme_is_case_insensitive() {
    let auth = auth(false);
    for (header, entry) in [
        (format!("Bearer {EVERY}"), 0),
        (format!("bearer {ECHO_ONLY}"), 1),
        (format!("BEARER   {SECOND_EVERY}  "), 2),
    ] {
        assert_eq!(
            decide_path(&auth, "/echo", Some(&header), None),
            Ok(Some(Grant(entry))),
            "{header}"
        );
    }
    assert_eq!(auth.find(b"not a token at all"), None);
}

#[test]
fn a_token_limited_to_other_apis_is_forbidden_and_the_refusal_names_the_api() {
    let auth = auth(false);
    let scoped = format!("Bearer {ECHO_ONLY}");
    assert!(decide_path(&auth, "/echo", Some(&scoped), None).is_ok());
    let refusal = decide_path(&auth, "/analysis", Some(&scoped), None).unwrap_err();
    assert_eq!(refusal.reason, Reason::Forbidden);
    assert_eq!(refusal.status(), 403);
    assert!(refusal.message().contains("'analysis'"), "{refusal:?}");
    // Routes that are no API take any valid token, a limited one too.
    assert!(decide_path(&auth, "/metrics", Some(&scoped), None).is_ok());
    assert!(decide_path(&auth, "/docs.json", Some(&scoped), None).is_ok());
    // gRPC decides the API once the message is read.
    assert_eq!(auth.permit(Some(Grant(1)), "echo"), Ok(()));
    assert_eq!(
        auth.permit(Some(Grant(1)), "analysis")
            .map_err(|r| r.reason),
        Err(Reason::Forbidden)
    );
    assert_eq!(auth.permit(Some(Grant(0)), "analysis"), Ok(()));
    assert!(auth.permit(None, "echo").is_err(), "no grant, no API");
}

#[test]
fn a_token_in_the_query_string_is_refused_even_beside_a_good_header() {
    let auth = auth(false);
    let good = format!("Bearer {EVERY}");
    for query in [
        "access_token=x",
        "a=1&token=x",
        "access%5Ftoken=x",
        "token",
        "TOKEN=x&access_token",
    ] {
        assert_eq!(
            reason(decide_path(&auth, "/echo", Some(&good), Some(query))),
            Some(Reason::Query),
            "{query}"
        );
    }
    for query in [
        "tokens=x",
        "x=token",
        "a=access_token",
        "%zz=1",
        "my_token=1",
    ] {
        assert!(
            decide_path(&auth, "/echo", Some(&good), Some(query)).is_ok(),
            "{query}"
        );
    }
    // Probes stay open whatever their query says.
    assert_eq!(
        decide_path(&auth, "/livez", None, Some("token=x")),
        Ok(None)
    );
}

#[test]
fn refusals_have_rfc_6750_statuses_and_challenges_and_never_carry_a_token() {
    let cases = [
        (Reason::Missing, 401, "Bearer realm=\"tiffin\"", "missing"),
        (
            Reason::Invalid,
            401,
            "Bearer realm=\"tiffin\", error=\"invalid_token\"",
            "invalid",
        ),
        (
            Reason::Forbidden,
            403,
            "Bearer realm=\"tiffin\", error=\"insufficient_scope\"",
            "forbidden",
        ),
        (
            Reason::Query,
            400,
            "Bearer realm=\"tiffin\", error=\"invalid_request\"",
            "query",
        ),
    ];
    for (reason, status, challenge, label) in cases {
        let refusal = Refusal {
            reason,
            api: Some("echo".to_owned()),
        };
        assert_eq!(refusal.status(), status);
        assert_eq!(refusal.challenge(), challenge);
        assert_eq!(refusal.label(), label);
        for token in [EVERY, ECHO_ONLY, SECOND_EVERY] {
            assert!(!refusal.message().contains(token));
            assert!(!refusal.grpc_status().message().contains(token));
        }
    }
    let code = |reason| Refusal::new(reason).grpc_status().code();
    assert_eq!(code(Reason::Missing), tonic::Code::Unauthenticated);
    assert_eq!(code(Reason::Invalid), tonic::Code::Unauthenticated);
    assert_eq!(code(Reason::Forbidden), tonic::Code::PermissionDenied);
}

#[test]
fn refusals_are_counted_by_endpoint_and_reason_with_unknown_paths_sharing_one_label() {
    let registry = Registry::new();
    let failures = registry
        .counter(FAILURES, "refusals", &["endpoint", "reason"])
        .unwrap();
    let auth = Auth::new(&entries(), false, Some(failures.clone()));
    let service = service();
    let routes = Routes::new(service.apis(), service.models());
    let missing = Refusal::new(Reason::Missing);
    auth.count(&missing, routes.resolve("/echo"), "/echo");
    auth.count(&missing, routes.resolve("/echo"), "/echo");
    auth.count(&missing, routes.resolve("/wp-login.php"), "/wp-login.php");
    auth.count(
        &Refusal::new(Reason::Invalid),
        routes.resolve("/bentoml.grpc.v1.BentoService/Call"),
        "/bentoml.grpc.v1.BentoService/Call",
    );
    assert_eq!(failures.labels(&["/echo", "missing"]).get(), 2.0);
    assert_eq!(failures.labels(&[OTHER_ENDPOINT, "missing"]).get(), 1.0);
    assert_eq!(
        failures
            .labels(&["/bentoml.grpc.v1.BentoService/Call", "invalid"])
            .get(),
        1.0
    );
}
