//! CORS for the HTTP front door (`api_server.http.cors.*`): what BentoML
//! gets from Starlette's `CORSMiddleware`, which it installs outside every
//! other middleware (`bentoml/_internal/server/http_app.py`).
//!
//! Why it sits where it does: a browser sends a *preflight* (`OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) before a cross-origin
//! `POST` with a JSON body. The preflight is answered here, from the
//! configuration alone, before routing: it never reaches an API handler or a
//! runner, is not counted in the request metrics (as in BentoML, where the
//! middleware is outermost) and is not subject to the concurrency limit.
//! Every other response to a request with an allowed `Origin` gets
//! `Access-Control-Allow-Origin` (and the credentials and exposed-headers
//! headers when configured), error answers included, so a page can read
//! why its call failed. A disallowed origin gets no allow header, and the
//! browser hides the answer from the page.
//!
//! The rules are Starlette's (`starlette/middleware/cors.py`): `*` in the
//! origins allows any origin (answered `*`, or the origin itself when
//! credentials are allowed or the request carries a cookie, with
//! `Vary: Origin`); a listed origin or a full match of the origin regex is
//! echoed; methods and request headers are compared with the configured
//! lists (the CORS-safelisted headers are always allowed); a preflight that
//! fails any check answers 400 `Disallowed CORS origin, method, headers`
//! naming the checks that failed.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};
use regex::Regex;
use tiffin_config::CorsConfig;

/// Every method `*` stands for (Starlette's `ALL_METHODS`).
const ALL_METHODS: &[&str] = &["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];
/// Request headers a preflight may always ask for (Starlette's `SAFELISTED_HEADERS`).
const SAFELISTED_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "content-language",
    "content-type",
];

/// A CORS policy built once from the configuration.
#[derive(Debug)]
pub(crate) struct Cors {
    allow_all_origins: bool,
    origins: Vec<String>,
    origin_regex: Option<Regex>,
    methods: Vec<String>,
    allow_all_headers: bool,
    /// Lower-case allowed request headers, the safelisted ones included.
    headers: Vec<String>,
    credentials: bool,
    /// Preflight answers name the origin rather than `*`.
    explicit_origin: bool,
    allow_methods_value: HeaderValue,
    allow_headers_value: Option<HeaderValue>,
    max_age_value: HeaderValue,
    expose_value: Option<HeaderValue>,
}

/// Why the CORS configuration cannot be applied (the configuration's own
/// check rejects these at start; this is the API server's guard).
#[derive(Debug, thiserror::Error)]
#[error("api_server.http.cors: {0}")]
pub(crate) struct CorsError(String);

fn value(text: &str) -> Result<HeaderValue, CorsError> {
    HeaderValue::from_str(text).map_err(|_| CorsError(format!("{text:?} is not a header value")))
}

/// What a request asks of the CORS layer.
pub(crate) enum CorsRequest {
    /// No `Origin` header: not a cross-origin request; nothing to do.
    SameOrigin,
    /// A preflight: answer it with this response and do nothing else.
    Preflight(Response<Full<Bytes>>),
    /// A cross-origin request: serve it, then [`Cors::decorate`] the answer.
    CrossOrigin {
        /// The request's `Origin`.
        origin: HeaderValue,
        /// Whether it carried a `Cookie` header.
        has_cookie: bool,
    },
}

impl Cors {
    /// The policy, or `None` when CORS is off.
    pub(crate) fn from_config(cfg: &CorsConfig) -> Result<Option<Cors>, CorsError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let origins = cfg.allow_origins();
        let allow_all_origins = origins.iter().any(|o| o == "*");
        let origin_regex = cfg
            .access_control_allow_origin_regex
            .as_deref()
            .map(|re| {
                // Anchored both ends: Python's `re.fullmatch`.
                Regex::new(&format!("^(?:{re})$")).map_err(|e| CorsError(e.to_string()))
            })
            .transpose()?;
        let configured = cfg.allow_methods();
        let methods: Vec<String> = if configured.iter().any(|m| m == "*") {
            ALL_METHODS.iter().map(|m| (*m).to_owned()).collect()
        } else {
            configured
        };
        let configured = cfg.allow_headers();
        let allow_all_headers = configured.iter().any(|h| h == "*");
        let mut headers: Vec<String> = SAFELISTED_HEADERS.iter().map(|h| (*h).to_owned()).collect();
        headers.extend(configured.iter().map(|h| h.to_ascii_lowercase()));
        headers.sort();
        headers.dedup();
        let credentials = cfg.allow_credentials();
        let expose = cfg.expose_headers();
        Ok(Some(Cors {
            allow_all_origins,
            origins,
            origin_regex,
            allow_methods_value: value(&methods.join(", "))?,
            methods,
            allow_headers_value: if allow_all_headers || configured.is_empty() {
                None
            } else {
                Some(value(&headers.join(", "))?)
            },
            allow_all_headers,
            headers,
            credentials,
            explicit_origin: !allow_all_origins || credentials,
            max_age_value: value(&cfg.max_age().to_string())?,
            expose_value: if expose.is_empty() {
                None
            } else {
                Some(value(&expose.join(", "))?)
            },
        }))
    }

    fn allowed_origin(&self, origin: &str) -> bool {
        self.allow_all_origins
            || self.origins.iter().any(|o| o == origin)
            || self
                .origin_regex
                .as_ref()
                .is_some_and(|re| re.is_match(origin))
    }

    /// Classifies a request by its method and headers.
    pub(crate) fn request(&self, method: &Method, headers: &HeaderMap) -> CorsRequest {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return CorsRequest::SameOrigin;
        };
        if method == Method::OPTIONS
            && let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return CorsRequest::Preflight(self.preflight(origin, asked, headers));
        }
        CorsRequest::CrossOrigin {
            origin: origin.clone(),
            has_cookie: headers.contains_key(header::COOKIE),
        }
    }

    fn preflight(
        &self,
        origin: &HeaderValue,
        asked_method: &HeaderValue,
        headers: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        let mut out = HeaderMap::new();
        let mut failures = Vec::new();
        let origin_ok = origin.to_str().is_ok_and(|o| self.allowed_origin(o));
        if self.explicit_origin {
            out.insert(header::VARY, HeaderValue::from_static("Origin"));
            if origin_ok {
                out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            }
        } else {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        if !origin_ok {
            failures.push("origin");
        }
        let method_ok = asked_method
            .to_str()
            .is_ok_and(|m| self.methods.iter().any(|allowed| allowed == m));
        if !method_ok {
            failures.push("method");
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods_value.clone(),
        );
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age_value.clone());
        if let Some(v) = &self.allow_headers_value {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            if self.allow_all_headers {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            } else {
                let all_allowed = asked.to_str().is_ok_and(|list| {
                    list.split(',')
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .all(|h| self.headers.contains(&h))
                });
                if !all_allowed {
                    failures.push("headers");
                }
            }
        }
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let (status, body) = if failures.is_empty() {
            (StatusCode::OK, "OK".to_owned())
        } else {
            (
                StatusCode::BAD_REQUEST,
                format!("Disallowed CORS {}", failures.join(", ")),
            )
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        *resp.headers_mut() = out;
        resp
    }

    /// Adds the CORS headers to the answer of a cross-origin request; an
    /// origin that is not allowed gets none.
    pub(crate) fn decorate(&self, origin: &HeaderValue, has_cookie: bool, out: &mut HeaderMap) {
        if !origin.to_str().is_ok_and(|o| self.allowed_origin(o)) {
            return;
        }
        if self.allow_all_origins && !self.credentials && !has_cookie {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose_value {
            out.insert(
                HeaderName::from_static("access-control-expose-headers"),
                v.clone(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiffin_config::OneOrMany;

    fn cors(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            enabled: true,
            access_control_allow_origins: Some(OneOrMany::Many(
                origins.iter().map(|s| (*s).to_owned()).collect(),
            )),
            access_control_allow_methods: Some(OneOrMany::Many(vec!["GET".into(), "POST".into()])),
            access_control_allow_headers: Some(OneOrMany::One("X-Request-ID".into())),
            access_control_expose_headers: Some(OneOrMany::One("X-Request-ID".into())),
            access_control_max_age: Some(120),
            ..CorsConfig::default()
        }
    }

    fn policy(cfg: &CorsConfig) -> Cors {
        match Cors::from_config(cfg) {
            Ok(Some(c)) => c,
            other => panic!("no policy: {other:?}"),
        }
    }

    fn preflight(
        c: &Cors,
        origin: &str,
        method: &str,
        headers: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            value(origin).unwrap_or(HeaderValue::from_static("x")),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            value(method).unwrap_or(HeaderValue::from_static("x")),
        );
        if let Some(list) = headers {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                value(list).unwrap_or(HeaderValue::from_static("x")),
            );
        }
        match c.request(&Method::OPTIONS, &h) {
            CorsRequest::Preflight(r) => r,
            _ => panic!("not a preflight"),
        }
    }

    fn get(r: &Response<Full<Bytes>>, name: HeaderName) -> Option<&str> {
        r.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn off_unless_enabled() {
        assert!(matches!(
            Cors::from_config(&CorsConfig::default()),
            Ok(None)
        ));
    }

    #[test]
    fn an_allowed_preflight_is_answered_from_the_configuration() {
        let c = policy(&cors(&["https://app.example"]));
        let r = preflight(
            &c,
            "https://app.example",
            "POST",
            Some("content-type, x-request-id"),
        );
        assert_eq!(r.status(), 200);
        assert_eq!(
            get(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://app.example")
        );
        assert_eq!(
            get(&r, header::ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET, POST")
        );
        assert_eq!(get(&r, header::ACCESS_CONTROL_MAX_AGE), Some("120"));
        assert_eq!(
            get(&r, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("accept, accept-language, content-language, content-type, x-request-id")
        );
        assert_eq!(get(&r, header::VARY), Some("Origin"));
    }

    #[test]
    fn a_disallowed_preflight_names_what_failed_and_allows_no_origin() {
        let c = policy(&cors(&["https://app.example"]));
        let r = preflight(&c, "https://evil.example", "DELETE", Some("x-other"));
        assert_eq!(r.status(), 400);
        assert_eq!(get(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
        let r = preflight(&c, "https://app.example", "PUT", None);
        assert_eq!(r.status(), 400);
        assert!(get(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN).is_some());
    }

    #[test]
    fn the_origin_regex_must_match_in_full() {
        let mut cfg = cors(&[]);
        cfg.access_control_allow_origin_regex = Some(r"https://[a-z]+\.example".into());
        let c = policy(&cfg);
        assert_eq!(
            preflight(&c, "https://app.example", "GET", None).status(),
            200
        );
        assert_eq!(
            preflight(&c, "https://app.example.evil", "GET", None).status(),
            400
        );
    }

    #[test]
    fn any_origin_is_answered_star_unless_credentials_or_cookies() {
        let c = policy(&cors(&["*"]));
        let mut out = HeaderMap::new();
        c.decorate(
            &HeaderValue::from_static("https://x.example"),
            false,
            &mut out,
        );
        assert_eq!(
            out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.as_bytes()),
            Some(&b"*"[..])
        );
        assert!(out.get("access-control-expose-headers").is_some());
        let mut out = HeaderMap::new();
        c.decorate(
            &HeaderValue::from_static("https://x.example"),
            true,
            &mut out,
        );
        assert_eq!(
            out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.as_bytes()),
            Some(&b"https://x.example"[..])
        );
    }

    #[test]
    fn a_disallowed_origin_gets_no_header_on_answers() {
        let c = policy(&cors(&["https://app.example"]));
        let mut out = HeaderMap::new();
        c.decorate(
            &HeaderValue::from_static("https://evil.example"),
            false,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn star_methods_and_headers() {
        let mut cfg = cors(&["*"]);
        cfg.access_control_allow_methods = Some(OneOrMany::One("*".into()));
        cfg.access_control_allow_headers = Some(OneOrMany::One("*".into()));
        let c = policy(&cfg);
        let r = preflight(&c, "https://x.example", "PATCH", Some("x-anything"));
        assert_eq!(r.status(), 200);
        assert_eq!(
            get(&r, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("x-anything")
        );
        assert_eq!(get(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    }

    #[test]
    fn requests_without_origin_are_left_alone() {
        let c = policy(&cors(&["*"]));
        assert!(matches!(
            c.request(&Method::POST, &HeaderMap::new()),
            CorsRequest::SameOrigin
        ));
    }
}
