//! Cross-origin resource sharing for the HTTP front door
//! (`api_server.http.cors.*`), with BentoML 1.2's keys, types and defaults
//! (`bentoml/_internal/configuration/v1/__init__.py` and
//! `default_configuration.yaml`): off, and every other key unset.
//!
//! BentoML passes the keys, without their `access_control_` prefix, to
//! Starlette's `CORSMiddleware`, so an unset key means Starlette's default:
//! no origin, methods `GET`, no extra request header, no credentials, no
//! exposed header, preflight answers cached for 600 s. A list key may be
//! written as one string or as a list of strings, as BentoML allows.
//!
//! Every value ends up in a response header, so each is checked at start
//! (printable ASCII; methods and header names are HTTP tokens; the origin
//! regex compiles): a bad one stops the start naming its key instead of
//! failing requests later.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::validate::int_range;

/// Longest `access_control_max_age`, in seconds: one day (Firefox's cap;
/// Chromium caps at two hours).
pub const MAX_CORS_MAX_AGE: u64 = 86_400;

/// Starlette's `max_age` when the key is unset.
pub const DEFAULT_CORS_MAX_AGE: u64 = 600;

/// One string or a list of strings (`access_control_allow_origins: "*"` or
/// `[https://a.example, https://b.example]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `api_server.http.cors.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Whether CORS headers are sent and preflights answered (default false).
    pub enabled: bool,
    /// Origins allowed to read responses, exactly as browsers send them
    /// (`https://app.example:8443`), or `*` for any.
    pub access_control_allow_origins: Option<OneOrMany>,
    /// A regular expression an origin must match in full to be allowed
    /// (Python's `re.fullmatch`), besides the listed origins.
    pub access_control_allow_origin_regex: Option<String>,
    /// Whether `Access-Control-Allow-Credentials: true` is sent (default false).
    pub access_control_allow_credentials: Option<bool>,
    /// Request headers a preflight may ask for, or `*` for any; the
    /// CORS-safelisted ones (`Accept`, `Accept-Language`, `Content-Language`,
    /// `Content-Type`) are always allowed.
    pub access_control_allow_headers: Option<OneOrMany>,
    /// Methods a preflight may ask for, or `*` for any (default `GET`).
    pub access_control_allow_methods: Option<OneOrMany>,
    /// Seconds a browser may cache a preflight answer (default 600; 0 to
    /// [`MAX_CORS_MAX_AGE`]).
    pub access_control_max_age: Option<u64>,
    /// Response headers a page's script may read (`Access-Control-Expose-Headers`).
    pub access_control_expose_headers: Option<OneOrMany>,
}

impl CorsConfig {
    /// The allowed origins (empty when unset).
    pub fn allow_origins(&self) -> Vec<String> {
        list(&self.access_control_allow_origins)
    }

    /// The allowed methods (`GET` when unset, as Starlette).
    pub fn allow_methods(&self) -> Vec<String> {
        match &self.access_control_allow_methods {
            None => vec!["GET".to_owned()],
            Some(v) => v.to_vec(),
        }
    }

    /// The allowed request headers (empty when unset).
    pub fn allow_headers(&self) -> Vec<String> {
        list(&self.access_control_allow_headers)
    }

    /// The exposed response headers (empty when unset).
    pub fn expose_headers(&self) -> Vec<String> {
        list(&self.access_control_expose_headers)
    }

    /// Whether credentials are allowed (false when unset).
    pub fn allow_credentials(&self) -> bool {
        self.access_control_allow_credentials.unwrap_or(false)
    }

    /// The preflight cache time in seconds ([`DEFAULT_CORS_MAX_AGE`] when unset).
    pub fn max_age(&self) -> u64 {
        self.access_control_max_age.unwrap_or(DEFAULT_CORS_MAX_AGE)
    }

    /// Checks every value at start (see the module docs), naming the key.
    pub(crate) fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        // BentoML refuses this too ("To enable cors, access_control_allow_origin must be set").
        if self.enabled && self.access_control_allow_origins.is_none() {
            return Err(ConfigError::invalid(
                key("access_control_allow_origins"),
                format!("must be set when {prefix}.enabled is true (a list of origins, or '*')"),
            ));
        }
        for origin in self.allow_origins() {
            header_text(&key("access_control_allow_origins"), &origin)?;
        }
        for method in &self.allow_methods() {
            token(&key("access_control_allow_methods"), method)?;
        }
        for name in &self.allow_headers() {
            token(&key("access_control_allow_headers"), name)?;
        }
        for name in &self.expose_headers() {
            token(&key("access_control_expose_headers"), name)?;
        }
        if let Some(age) = self.access_control_max_age {
            int_range(&key("access_control_max_age"), age, 0, MAX_CORS_MAX_AGE)?;
        }
        if let Some(re) = &self.access_control_allow_origin_regex {
            regex::Regex::new(re).map_err(|e| {
                ConfigError::invalid(
                    key("access_control_allow_origin_regex"),
                    format!("not a regular expression: {e}"),
                )
            })?;
        }
        Ok(())
    }
}

fn list(v: &Option<OneOrMany>) -> Vec<String> {
    v.as_ref().map(OneOrMany::to_vec).unwrap_or_default()
}

/// Non-empty printable ASCII (what a header value may hold).
fn header_text(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ConfigError::invalid(
            key,
            format!("{value:?} is not printable ASCII text"),
        ));
    }
    Ok(())
}

/// An HTTP token (RFC 9110 `tchar`s), or `*`: a method or a header name.
fn token(key: &str, value: &str) -> Result<(), ConfigError> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if value.is_empty() || !value.bytes().all(tchar) {
        return Err(ConfigError::invalid(
            key,
            format!("{value:?} is not an HTTP method or header name"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> CorsConfig {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn off_by_default_with_starlettes_defaults() {
        let c = CorsConfig::default();
        assert!(!c.enabled);
        assert!(c.allow_origins().is_empty());
        assert_eq!(c.allow_methods(), ["GET"]);
        assert_eq!(c.max_age(), 600);
        assert!(!c.allow_credentials());
        assert!(c.validate("cors").is_ok());
    }

    #[test]
    fn a_list_key_takes_a_string_or_a_list() {
        let one = parse("access_control_allow_origins: '*'");
        assert_eq!(one.allow_origins(), ["*"]);
        let many = parse("access_control_allow_methods: [GET, POST]");
        assert_eq!(many.allow_methods(), ["GET", "POST"]);
    }

    #[test]
    fn enabled_needs_origins() {
        let err = parse("enabled: true")
            .validate("api_server.http.cors")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("api_server.http.cors.access_control_allow_origins"),
            "{err}"
        );
        assert!(
            parse("{enabled: true, access_control_allow_origins: '*'}")
                .validate("api_server.http.cors")
                .is_ok()
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "access_control_allow_methods: ['PO ST']",
                "access_control_allow_methods",
            ),
            (
                "access_control_allow_headers: 'x-a\u{e9}'",
                "access_control_allow_headers",
            ),
            ("access_control_max_age: 86401", "access_control_max_age"),
            (
                "access_control_allow_origin_regex: 'https://(a'",
                "access_control_allow_origin_regex",
            ),
            (
                "access_control_allow_origins: ['']",
                "access_control_allow_origins",
            ),
        ];
        for (yaml, key) in cases {
            let err = parse(yaml).validate("api_server.http.cors").unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("api_server.http.cors.{key}")),
                "{yaml}: {err}"
            );
        }
    }
}
