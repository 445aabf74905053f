//! Prometheus's web configuration file, for scrape endpoints.
//!
//! Every official Prometheus exporter reads the same file
//! (prometheus/exporter-toolkit, `docs/web-configuration.md`), and a
//! Prometheus `scrape_config` with `scheme: https`, `tls_config` and
//! `basic_auth` is written against it. tiffin reads it for its metrics
//! endpoints so those scrape configs work unchanged:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt, e.g. from `htpasswd -nBC 10 ""`
//! ```
//!
//! What rustls cannot honour is refused by name rather than ignored:
//! TLS 1.0 and 1.1, chosen cipher suites and curves, client certificates
//! that are requested but not verified, and allowed SANs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use parking_lot::Mutex;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::{Alpn, ClientAuth, Named, TlsError, TlsFiles};

/// The parts of the file tiffin uses.
#[derive(Debug, Default)]
pub struct WebConfig {
    /// TLS for the scrape endpoint, when `tls_server_config` is given.
    pub tls: Option<TlsFiles>,
    /// The users who may scrape, when `basic_auth_users` is given.
    pub basic_auth: Option<Arc<BasicAuth>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsServerConfig>,
    http_server_config: Option<HttpServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl WebConfig {
    /// Reads the web configuration file `file`.
    pub fn load(file: &Named) -> Result<WebConfig, TlsError> {
        let text = std::fs::read_to_string(&file.path).map_err(|cause| TlsError::Read {
            file: file.clone(),
            cause,
        })?;
        let bad = |reason: String| TlsError::Content {
            file: file.clone(),
            reason,
        };
        let parsed: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| bad(e.to_string()))?
        };
        let base = file.path.parent().unwrap_or(Path::new("."));
        let http2 = match parsed.http_server_config {
            Some(h) => {
                if !h.headers.is_empty() {
                    return Err(bad(
                        "http_server_config.headers is not supported by tiffin".into()
                    ));
                }
                h.http2.unwrap_or(true)
            }
            None => true,
        };
        let tls = match parsed.tls_server_config {
            Some(t) => Some(tls_files(t, base, http2).map_err(bad)?),
            None => None,
        };
        let basic_auth = if parsed.basic_auth_users.is_empty() {
            None
        } else {
            for (user, hash) in &parsed.basic_auth_users {
                if hash.parse::<bcrypt::HashParts>().is_err() {
                    return Err(bad(format!(
                        "basic_auth_users.{user} is not a bcrypt hash (make one with `htpasswd -nBC 10 \"\"` or Python's bcrypt)"
                    )));
                }
            }
            Some(Arc::new(BasicAuth {
                users: parsed.basic_auth_users,
                accepted: Mutex::new(Vec::new()),
            }))
        };
        Ok(WebConfig { tls, basic_auth })
    }
}

fn tls_files(t: TlsServerConfig, base: &Path, http2: bool) -> Result<TlsFiles, String> {
    let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let (Some(cert), Some(key)) = (t.cert_file, t.key_file) else {
        return Err("tls_server_config needs both cert_file and key_file".into());
    };
    if !t.cipher_suites.is_empty() || !t.curve_preferences.is_empty() {
        return Err(
            "tls_server_config.cipher_suites and curve_preferences are not supported: rustls offers only its own safe suites and curves"
                .into(),
        );
    }
    if !t.client_allowed_sans.is_empty() {
        return Err("tls_server_config.client_allowed_sans is not supported by tiffin".into());
    }
    let _ = t.prefer_server_cipher_suites;
    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("NoClientCert") => ClientAuth::None,
        Some("VerifyClientCertIfGiven") => ClientAuth::Optional,
        Some("RequireAndVerifyClientCert") => ClientAuth::Required,
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(format!(
                "tls_server_config.client_auth_type {other} accepts certificates without checking them, which tiffin does not do; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ));
        }
        Some(other) => {
            return Err(format!(
                "tls_server_config.client_auth_type '{other}' is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ));
        }
    };
    let version = |key: &str, v: &Option<String>| match v.as_deref() {
        None | Some("TLS12") => Ok(false),
        Some("TLS13") => Ok(true),
        Some(other) => Err(format!(
            "tls_server_config.{key} '{other}' is not supported: tiffin serves TLS12 and TLS13"
        )),
    };
    let only_tls13 = version("min_version", &t.min_version)?;
    if !version("max_version", &t.max_version)? && t.max_version.is_some() && only_tls13 {
        return Err("tls_server_config.max_version is below min_version".into());
    }
    if t.max_version.as_deref() == Some("TLS12") {
        return Err(
            "tls_server_config.max_version TLS12 is not supported: TLS 1.3 is always offered"
                .into(),
        );
    }
    Ok(TlsFiles {
        cert: Named::new("tls_server_config.cert_file", at(cert)),
        key: Named::new("tls_server_config.key_file", at(key)),
        password: None,
        ca: t
            .client_ca_file
            .map(|p| Named::new("tls_server_config.client_ca_file", at(p))),
        client_auth,
        alpn: if http2 { Alpn::Http } else { Alpn::Http1 },
        only_tls13,
    })
}

/// The users of `basic_auth_users`, and the check of an `Authorization`
/// header against them.
///
/// bcrypt is slow on purpose (tens of milliseconds at cost 10), so, as the
/// exporter-toolkit does, credentials that passed once are remembered (in
/// memory, compared in constant time) and a scrape every few seconds costs
/// one hash, not one per scrape.
#[derive(Debug)]
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    accepted: Mutex<Vec<(String, Vec<u8>)>>,
}

/// How many accepted credentials are remembered.
const REMEMBERED: usize = 16;

/// The `WWW-Authenticate` value of a refused scrape.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"tiffin metrics\"";

impl BasicAuth {
    /// Whether the `Authorization` header value `header` names a user and
    /// password of the file. Blocking (bcrypt): call it off the I/O threads.
    pub fn allows(&self, header: Option<&[u8]>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        if self.remembered(&user, &password) {
            return true;
        }
        let ok = match self.users.get(&user) {
            Some(hash) => bcrypt::verify(&password, hash).unwrap_or(false),
            None => {
                // Spend the same time for an unknown user as for a known one,
                // so timing does not tell which users exist.
                let _ = bcrypt::verify(&password, DUMMY_HASH);
                false
            }
        };
        if ok {
            let mut accepted = self.accepted.lock();
            if accepted.len() >= REMEMBERED {
                accepted.remove(0);
            }
            accepted.push((user, password));
        }
        ok
    }

    /// [`allows`](Self::allows) on the blocking pool, for a front door's
    /// I/O threads (the supervisor has only one): bcrypt is slow on purpose.
    /// A check that cannot run (the pool is gone) refuses.
    pub async fn allows_off_thread(self: &Arc<Self>, header: Option<Vec<u8>>) -> bool {
        let users = Arc::clone(self);
        tokio::task::spawn_blocking(move || users.allows(header.as_deref()))
            .await
            .unwrap_or(false)
    }

    fn remembered(&self, user: &str, password: &[u8]) -> bool {
        let accepted = self.accepted.lock();
        let mut found = subtle::Choice::from(0);
        for (u, p) in accepted.iter() {
            found |= u.as_bytes().ct_eq(user.as_bytes()) & p.ct_eq(password);
        }
        found.into()
    }
}

/// A bcrypt hash (cost 10) of a password nobody has, for unknown users.
const DUMMY_HASH: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

/// `user` and `password` from a `Basic` authorization header.
fn parse_basic(header: &[u8]) -> Option<(String, Vec<u8>)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    fn write(dir: &Path, text: &str) -> Named {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("web.yml");
        std::fs::write(&path, text).unwrap();
        Named::new("--web.config.file", path)
    }

    fn dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tiffin-webconfig-{name}-{}", std::process::id()))
    }

    #[test]
    fn basic_auth_users_are_checked_against_their_bcrypt_hashes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let d = dir("users");
        let config = WebConfig::load(&write(
            &d,
            &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        ))
        .unwrap();
        let auth = config.basic_auth.unwrap();
        assert!(config.tls.is_none());
        assert!(auth.allows(Some(&header("prom", "s3cret"))));
        // Remembered, and still right.
        assert!(auth.allows(Some(&header("prom", "s3cret"))));
        assert!(!auth.allows(Some(&header("prom", "wrong"))));
        assert!(!auth.allows(Some(&header("nobody", "s3cret"))));
        assert!(!auth.allows(None));
        assert!(!auth.allows(Some(b"Bearer abc")));
        assert!(!auth.allows(Some(b"Basic !!!not-base64")));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn tls_paths_are_relative_to_the_file_and_client_auth_types_map_onto_rustls() {
        let d = dir("tls");
        let config = WebConfig::load(&write(
            &d,
            "tls_server_config:\n  cert_file: a.crt\n  key_file: /abs/a.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n",
        ))
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert.path, d.join("a.crt"));
        assert_eq!(tls.key.path, PathBuf::from("/abs/a.key"));
        assert_eq!(tls.ca.unwrap().path, d.join("ca.crt"));
        assert_eq!(tls.client_auth, ClientAuth::Required);
        assert!(tls.only_tls13);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn what_rustls_cannot_honour_is_refused_by_name() {
        let d = dir("refused");
        for (text, says) in [
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n",
                "min_version 'TLS11'",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "cipher_suites",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
                "RequestClientCert",
            ),
            (
                "tls_server_config:\n  cert_file: a\n",
                "both cert_file and key_file",
            ),
            (
                "basic_auth_users:\n  prom: plaintext\n",
                "basic_auth_users.prom is not a bcrypt hash",
            ),
            (
                "basic_auth_user:\n  prom: x\n",
                "unknown field `basic_auth_user`",
            ),
        ] {
            let err = WebConfig::load(&write(&d, text)).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
            assert!(err.starts_with("--web.config.file ("), "{err}");
        }
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn the_dummy_hash_is_a_valid_bcrypt_hash() {
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
    }
}
