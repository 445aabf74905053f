//! Bearer tokens on the APIs (`api_server.auth.*`, read and checked by
//! `tiffin_config::AuthConfig::load`): which routes need a token, whether a
//! request's token is one of ours and may call what it asks for, and how a
//! refusal is answered and counted. Both front doors ask the same
//! questions: HTTP in `http.rs` (`App::refusal`, before the handler and
//! before the body is read), gRPC in `grpc/auth.rs` (a tower layer for the
//! token, then `permit` once the call's message names its API).
//!
//! # What each route needs
//!
//! | route | needs |
//! |---|---|
//! | probes: `/livez`, `/healthz`, `/readyz`, `/v2/health/live`, `/v2/health/ready`, gRPC's `grpc.health.v1.Health` | nothing |
//! | `/docs.json` (and `/schema.json`, `/schema`), the Swagger UI (`/`, its assets), gRPC reflection | nothing with `public_docs: true`, else any valid token |
//! | an API | a token for every API, or one listing it |
//! | anything else, `/metrics` included | any valid token |
//!
//! An unknown path needs a token too: without one a client learns nothing
//! of the routes (401, not 404).
//!
//! # Refusals
//!
//! RFC 6750's answers, each with a JSON body `{"error": "..."}` that never
//! repeats the token, and counted in
//! `tiffin_api_server_auth_failures_total{endpoint, reason}`:
//!
//! | reason | status | `WWW-Authenticate` | gRPC |
//! |---|---|---|---|
//! | `missing`: no `Authorization: Bearer` | 401 | `Bearer realm="tiffin"` | `UNAUTHENTICATED` |
//! | `invalid`: not one of our tokens | 401 | `…, error="invalid_token"` | `UNAUTHENTICATED` |
//! | `forbidden`: a token limited to other APIs | 403 | `…, error="insufficient_scope"` | `PERMISSION_DENIED` |
//! | `query`: an `access_token` or `token` query parameter | 400 | `…, error="invalid_request"` | — |
//!
//! A token in the URL ends up in proxies' and browsers' histories, so it is
//! refused even beside a good header (RFC 6750 §2.3 lets a server refuse it;
//! §3.1 names the answer).
//!
//! # Comparing tokens
//!
//! Each token is kept as its SHA-256 digest, and a presented token is
//! hashed once and compared with every digest in constant time (`subtle`),
//! without stopping at a match: how long the check takes says neither how
//! much of a token was right, nor its length, nor which entry matched.

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use tiffin_config::{AuthConfig, TokenEntry};
use tiffin_metrics::{Counter, Registry};
use tiffin_service::Service;

use crate::ApiServerError;
use crate::endpoint_label::OTHER_ENDPOINT;
use crate::route::{GrpcMethod, OipRoute, Route};

/// The counter of refusals, in the aggregated `/metrics`.
pub(crate) const FAILURES: &str = "tiffin_api_server_auth_failures_total";

/// The realm every challenge names.
const CHALLENGE: &str = "Bearer realm=\"tiffin\"";

/// What a route asks of a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need<'a> {
    /// Nothing: probes, and the docs with `public_docs`.
    Open,
    /// Any valid token.
    AnyToken,
    /// A token that may call the API of this name.
    Api(&'a str),
}

/// What `route` needs (see the module docs); `public_docs` is the key's value.
pub(crate) fn need(route: Route<'_>, public_docs: bool) -> Need<'_> {
    let docs = if public_docs {
        Need::Open
    } else {
        Need::AnyToken
    };
    match route {
        Route::Live
        | Route::Ready
        | Route::Oip(OipRoute::Live | OipRoute::Ready)
        | Route::Grpc(GrpcMethod::HealthCheck | GrpcMethod::HealthWatch) => Need::Open,
        Route::Docs | Route::DocsPage | Route::DocsAsset(_) => docs,
        Route::Grpc(GrpcMethod::Reflection) => docs,
        Route::Api(api) => Need::Api(&api.name),
        _ => Need::AnyToken,
    }
}

/// Why a request was refused (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No bearer token.
    Missing,
    /// A token that is none of ours.
    Invalid,
    /// A token limited to other APIs.
    Forbidden,
    /// A token in the query string.
    Query,
}

/// A refused request: why, and the API it asked for (when that was the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Why.
    pub reason: Reason,
    /// The API a `Forbidden` token asked for.
    pub api: Option<String>,
}

impl Refusal {
    fn new(reason: Reason) -> Self {
        Refusal { reason, api: None }
    }

    /// The `reason` label.
    pub fn label(&self) -> &'static str {
        match self.reason {
            Reason::Missing => "missing",
            Reason::Invalid => "invalid",
            Reason::Forbidden => "forbidden",
            Reason::Query => "query",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self.reason {
            Reason::Missing | Reason::Invalid => 401,
            Reason::Forbidden => 403,
            Reason::Query => 400,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    pub fn challenge(&self) -> &'static str {
        match self.reason {
            Reason::Missing => CHALLENGE,
            Reason::Invalid => "Bearer realm=\"tiffin\", error=\"invalid_token\"",
            Reason::Forbidden => "Bearer realm=\"tiffin\", error=\"insufficient_scope\"",
            Reason::Query => "Bearer realm=\"tiffin\", error=\"invalid_request\"",
        }
    }

    /// The error message (never the token).
    pub fn message(&self) -> String {
        match self.reason {
            Reason::Missing => "a bearer token is needed: send the header \
                 'Authorization: Bearer <token>' (api_server.auth)"
                .to_owned(),
            Reason::Invalid => "the bearer token is not valid".to_owned(),
            Reason::Forbidden => format!(
                "this bearer token may not call the API '{}'",
                self.api.as_deref().unwrap_or("")
            ),
            Reason::Query => "a token is accepted only in the Authorization header, \
                 never in the query string (access_token or token parameter)"
                .to_owned(),
        }
    }

    /// The gRPC status of the refusal (`query` cannot happen over gRPC).
    pub fn grpc_status(&self) -> tonic::Status {
        let message = match self.reason {
            Reason::Missing => "a bearer token is needed: send the metadata \
                 'authorization: Bearer <token>' (api_server.auth)"
                .to_owned(),
            _ => self.message(),
        };
        match self.reason {
            Reason::Forbidden => tonic::Status::permission_denied(message),
            Reason::Query => tonic::Status::invalid_argument(message),
            Reason::Missing | Reason::Invalid => tonic::Status::unauthenticated(message),
        }
    }
}

/// What a valid token was: its entry in the table, which [`Auth::permit`]
/// reads for the APIs it may call. Over gRPC it travels from the tower
/// layer to the service in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant(usize);

/// One token of the table.
struct Entry {
    digest: [u8; 32],
    apis: Option<Vec<String>>,
}

/// The tokens, the docs rule and the refusal counter of an API server with auth on.
pub(crate) struct Auth {
    entries: Vec<Entry>,
    public_docs: bool,
    failures: Option<Counter>,
}

impl Auth {
    /// Reads the tokens `config` names for `service` (`None`: auth is off)
    /// and registers the refusal counter in `registry` (none when metrics
    /// are disabled).
    pub fn start(
        config: &AuthConfig,
        service: &Service,
        registry: Option<&Registry>,
    ) -> Result<Option<Auth>, ApiServerError> {
        let apis: Vec<&str> = service.apis().iter().map(|a| a.name.as_str()).collect();
        let loaded = config.load(&apis);
        let Some(entries) = loaded.map_err(|e| ApiServerError::Config(e.to_string()))? else {
            return Ok(None);
        };
        let failures = registry
            .map(|r| {
                r.counter(
                    FAILURES,
                    "Requests refused by bearer-token authentication (api_server.auth), \
                     by endpoint and reason (missing, invalid, forbidden, query)",
                    &["endpoint", "reason"],
                )
            })
            .transpose()?;
        Ok(Some(Auth::new(&entries, config.public_docs, failures)))
    }

    fn new(entries: &[TokenEntry], public_docs: bool, failures: Option<Counter>) -> Auth {
        Auth {
            entries: entries
                .iter()
                .map(|e| Entry {
                    digest: Sha256::digest(e.token.as_bytes()).into(),
                    apis: e.apis.clone(),
                })
                .collect(),
            public_docs,
            failures,
        }
    }

    /// The entry whose token is `presented`, compared with every entry in
    /// constant time (see the module docs).
    fn find(&self, presented: &[u8]) -> Option<Grant> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, entry) in self.entries.iter().enumerate() {
            let same = entry.digest.ct_eq(&digest);
            index.conditional_assign(&(i as u64), same);
            found |= same;
        }
        bool::from(found).then_some(Grant(index as usize))
    }

    /// What `route` needs with this server's docs rule.
    pub fn need<'a>(&self, route: Route<'a>) -> Need<'a> {
        need(route, self.public_docs)
    }

    /// Decides a request that needs `need`, from its headers and its query
    /// string: the grant of its token, `None` for an open route, or why it
    /// is refused. Counts nothing (see [`Auth::count`]).
    pub fn decide(
        &self,
        need: Need<'_>,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Grant>, Refusal> {
        if need == Need::Open {
            return Ok(None);
        }
        if query.is_some_and(has_token_parameter) {
            return Err(Refusal::new(Reason::Query));
        }
        let token = bearer(headers).ok_or(Refusal::new(Reason::Missing))?;
        let grant = self.find(token).ok_or(Refusal::new(Reason::Invalid))?;
        if let Need::Api(api) = need {
            self.permit(Some(grant), api)?;
        }
        Ok(Some(grant))
    }

    /// Decides a request to `path` (which `route` resolved) and counts a
    /// refusal: what both front doors call before anything else.
    pub fn check(
        &self,
        route: Route<'_>,
        path: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Grant>, Refusal> {
        self.decide(self.need(route), headers, query)
            .inspect_err(|refusal| self.count(refusal, route, path))
    }

    /// Whether `grant` may call the API `api`; no grant (which the front
    /// doors never let through to an API) may not.
    pub fn permit(&self, grant: Option<Grant>, api: &str) -> Result<(), Refusal> {
        let allowed = grant
            .and_then(|Grant(i)| self.entries.get(i))
            .is_some_and(|e| {
                e.apis
                    .as_ref()
                    .is_none_or(|apis| apis.iter().any(|a| a == api))
            });
        if allowed {
            Ok(())
        } else {
            Err(Refusal {
                reason: Reason::Forbidden,
                api: Some(api.to_owned()),
            })
        }
    }

    /// Counts `refusal` of a request to `path` (which `route` resolved).
    pub fn count(&self, refusal: &Refusal, route: Route<'_>, path: &str) {
        if let Some(failures) = &self.failures {
            failures
                .labels(&[endpoint(route, path), refusal.label()])
                .inc();
        }
    }
}

/// The `endpoint` label of a refusal: the path of a route this server has
/// (its APIs, fixed paths, gRPC's methods), else [`OTHER_ENDPOINT`], so a
/// scanner without a token cannot grow the number of series.
fn endpoint<'a>(route: Route<'_>, path: &'a str) -> &'a str {
    if route.is_labelled() || matches!(route, Route::Metrics | Route::Grpc(_)) {
        path
    } else {
        OTHER_ENDPOINT
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 9110 §11.1); `None` without one, or with another
/// scheme.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.first() != Some(&b' ') {
        return None;
    }
    Some(token.trim_ascii())
}

/// Whether a query string carries an `access_token` or `token` parameter
/// (its name percent-decoded, so `access%5Ftoken` is one too).
fn has_token_parameter(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let name = percent_decoded(name);
        name == b"access_token" || name == b"token"
    })
}

/// `%XX` escapes of `s` decoded (a malformed one is kept as it is).
fn percent_decoded(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
