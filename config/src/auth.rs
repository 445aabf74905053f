//! Bearer tokens on the APIs (`api_server.auth.*`): where the tokens are
//! read from, and the rule for the documentation. BentoML has no such keys
//! (it leaves access control to an ingress); these are tiffin's own.
//!
//! Auth is on when `tokens_file` or `tokens_env` is set. A token is never a
//! configuration value or a command-line flag (both end up in process
//! listings, shell history and the effective configuration every child
//! receives): the configuration names only *where* the tokens are, and
//! [`AuthConfig::load`] reads them at start. The supervisor calls it before
//! it spawns anything, so a missing file, an unset variable, an empty set, a
//! short token or an API name the service does not have stops
//! `tiffin serve-http` with a message naming the key; every API server
//! reads the tokens again when it starts, from the same sources.
//!
//! # Format
//!
//! One entry per line: `TOKEN` (every API) or `TOKEN API[,API...]` (only
//! those APIs, by name); blank lines and lines starting with `#` are
//! skipped. In `tokens_env`'s variable, entries may also be separated by
//! `;` (one line is easier to pass through a secret store).
//!
//! Error messages name the key, the file or variable and the line, never
//! the token itself.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Shortest token accepted: 16 characters. Shorter secrets can be guessed
/// by a client that simply tries them.
pub const MIN_TOKEN_LEN: usize = 16;

/// Longest token accepted, in bytes; a header line longer than this is not
/// a token anyone generated.
pub const MAX_TOKEN_LEN: usize = 4096;

/// `api_server.auth.*` (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A file of token entries (`api_server.auth.tokens_file`; default
    /// unset). Written out as `null` when unset.
    pub tokens_file: Option<PathBuf>,
    /// The name of an environment variable holding token entries
    /// (`api_server.auth.tokens_env`; default unset).
    pub tokens_env: Option<String>,
    /// Whether `/docs.json`, the Swagger UI and gRPC reflection stay open
    /// to callers without a token when auth is on
    /// (`api_server.auth.public_docs`, default false: they need any valid
    /// token).
    pub public_docs: bool,
}

/// One token and the APIs it may call.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// The secret as the client sends it after `Bearer `.
    pub token: String,
    /// The API names it is limited to; `None`: every API.
    pub apis: Option<Vec<String>>,
}

/// Never prints the token, so an entry can be logged or asserted on.
impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &"<redacted>")
            .field("apis", &self.apis)
            .finish()
    }
}

const FILE_KEY: &str = "api_server.auth.tokens_file";
const ENV_KEY: &str = "api_server.auth.tokens_env";

impl AuthConfig {
    /// Whether auth is on: a source of tokens is configured.
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.tokens_env.is_some()
    }

    /// Checks the keys themselves (not the tokens, which [`AuthConfig::load`] reads).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(path) = &self.tokens_file
            && path.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(FILE_KEY, "must not be empty"));
        }
        if let Some(name) = &self.tokens_env
            && (name.is_empty() || name.contains(['=', '\0']))
        {
            return Err(ConfigError::invalid(
                ENV_KEY,
                format!("must be the name of an environment variable, got {name:?}"),
            ));
        }
        Ok(())
    }

    /// Reads every token from the configured file and variable and checks
    /// them against the service's API names (`apis`); `None` when auth is
    /// off. Each configured source must hold at least one entry.
    pub fn load(&self, apis: &[&str]) -> Result<Option<Vec<TokenEntry>>, ConfigError> {
        self.load_with(apis, |name| std::env::var(name))
    }

    /// [`AuthConfig::load`] with the environment read through `var`.
    fn load_with(
        &self,
        apis: &[&str],
        var: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<Option<Vec<TokenEntry>>, ConfigError> {
        if !self.enabled() {
            return Ok(None);
        }
        let mut entries = Vec::new();
        let mut seen = HashMap::new();
        if let Some(path) = &self.tokens_file {
            let shown = format!("'{}'", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(FILE_KEY, format!("cannot read the file {shown}: {e}"))
            })?;
            let source = Source {
                key: FILE_KEY,
                name: format!("file {shown}"),
                unit: "line",
            };
            source.parse(&text, &['\n'], apis, &mut seen, &mut entries)?;
        }
        if let Some(name) = &self.tokens_env {
            let text = match var(name) {
                Ok(text) => text,
                Err(std::env::VarError::NotPresent) => {
                    return Err(ConfigError::invalid(
                        ENV_KEY,
                        format!("the environment variable '{name}' is not set"),
                    ));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(ConfigError::invalid(
                        ENV_KEY,
                        format!("the environment variable '{name}' is not UTF-8 text"),
                    ));
                }
            };
            let source = Source {
                key: ENV_KEY,
                name: format!("environment variable '{name}'"),
                unit: "entry",
            };
            source.parse(&text, &['\n', ';'], apis, &mut seen, &mut entries)?;
        }
        Ok(Some(entries))
    }
}

/// Where entries come from, as errors name it.
struct Source {
    /// The dotted key that names the source.
    key: &'static str,
    /// `file '...'` or `environment variable '...'`.
    name: String,
    /// What its parts are called: `line` (a file) or `entry` (a variable).
    unit: &'static str,
}

impl Source {
    /// Parses the entries of `text`, split at `separators`, into `entries`;
    /// `seen` maps every token read so far to where it was, so a token
    /// given twice is refused (its two scopes would be ambiguous).
    fn parse(
        &self,
        text: &str,
        separators: &[char],
        apis: &[&str],
        seen: &mut HashMap<String, String>,
        entries: &mut Vec<TokenEntry>,
    ) -> Result<(), ConfigError> {
        let before = entries.len();
        for (i, raw) in text.split(separators).enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{} {} {}", self.name, self.unit, i + 1);
            let entry = parse_entry(line, apis).map_err(|e| self.error(&at, &e))?;
            if let Some(first) = seen.insert(entry.token.clone(), at.clone()) {
                return Err(self.error(&at, &format!("repeats the token of {first}")));
            }
            entries.push(entry);
        }
        if entries.len() == before {
            return Err(ConfigError::invalid(
                self.key,
                format!("the {} holds no token", self.name),
            ));
        }
        Ok(())
    }

    fn error(&self, at: &str, reason: &str) -> ConfigError {
        ConfigError::invalid(self.key, format!("{at}: {reason}"))
    }
}

/// One non-blank, non-comment entry: `TOKEN` or `TOKEN API[,API...]`.
/// Errors never quote the token.
fn parse_entry(line: &str, apis: &[&str]) -> Result<TokenEntry, String> {
    let (token, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(t, r)| (t, r.trim()));
    if !token.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err("the token must be printable ASCII without spaces".to_owned());
    }
    let len = token.len();
    if len < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is {len} characters long; at least {MIN_TOKEN_LEN} are needed"
        ));
    }
    if len > MAX_TOKEN_LEN {
        return Err(format!(
            "the token is {len} characters long; at most {MAX_TOKEN_LEN} are accepted"
        ));
    }
    if rest.is_empty() {
        return Ok(TokenEntry {
            token: token.to_owned(),
            apis: None,
        });
    }
    let mut names = Vec::new();
    for name in rest.split(',').map(str::trim) {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!(
                "the APIs after the token must be names separated by commas, got {rest:?}"
            ));
        }
        if !apis.contains(&name) {
            let known = if apis.is_empty() {
                "it has no APIs".to_owned()
            } else {
                format!("its APIs: {}", apis.join(", "))
            };
            return Err(format!("'{name}' is not an API of this service ({known})"));
        }
        names.push(name.to_owned());
    }
    Ok(TokenEntry {
        token: token.to_owned(),
        apis: Some(names),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const APIS: &[&str] = &["analysis", "echo"];
    const GOOD: &str = "0123456789abcdef";

    /// A file of `text` under the temp directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("tiffin-auth-{}-{name}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn from_env(text: Option<&str>) -> Result<Option<Vec<TokenEntry>>, ConfigError> {
        let config = AuthConfig {
            tokens_env: Some("TOKENS".to_owned()),
            ..AuthConfig::default()
        };
        config.load_with(APIS, |_| {
            text.map(str::to_owned)
                .ok_or(std::env::VarError::NotPresent)
        })
    }

    fn env_error(text: &str) -> String {
        from_env(Some(text)).unwrap_err().to_string()
    }

    #[test]
    fn off_unless_a_source_is_set() {
        let off = AuthConfig::default();
        assert!(!off.enabled());
        assert_eq!(off.load(APIS).unwrap(), None);
        assert!(off.validate().is_ok());
    }

    #[test]
    fn a_file_holds_tokens_for_every_api_or_for_some_with_comments_skipped() {
        let file = TempFile::new(
            "good",
            &format!("# ops\n\n{GOOD}\n  {GOOD}-two analysis, echo\n{GOOD}-3 echo\n"),
        );
        let config = AuthConfig {
            tokens_file: Some(file.0.clone()),
            ..AuthConfig::default()
        };
        let entries = config.load(APIS).unwrap().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].token, GOOD);
        assert_eq!(entries[0].apis, None);
        assert_eq!(entries[1].token, format!("{GOOD}-two"));
        assert_eq!(
            entries[1].apis.as_deref(),
            Some(&["analysis".to_owned(), "echo".to_owned()][..])
        );
        assert_eq!(entries[2].apis.as_deref(), Some(&["echo".to_owned()][..]));
        assert!(!format!("{entries:?}").contains(GOOD), "Debug hides tokens");
    }

    #[test]
    fn a_variable_separates_entries_by_newlines_or_semicolons() {
        let entries = from_env(Some(&format!("{GOOD} echo;{GOOD}-b\n{GOOD}-c")))
            .unwrap()
            .unwrap();
        let tokens: Vec<&str> = entries.iter().map(|e| e.token.as_str()).collect();
        assert_eq!(
            tokens,
            [GOOD.to_owned(), format!("{GOOD}-b"), format!("{GOOD}-c")]
        );
    }

    #[test]
    fn bad_sources_and_entries_name_the_key_and_never_the_token() {
        let short = "shortsecret";
        let cases = [
            (env_error(short), "at least 16"),
            (
                env_error(&format!("{GOOD} analyse")),
                "'analyse' is not an API",
            ),
            (env_error("# nothing but a comment;"), "holds no token"),
            (
                env_error(&format!("{GOOD};{GOOD} echo")),
                "repeats the token of",
            ),
            (
                env_error(&format!("{GOOD} echo,,analysis")),
                "separated by commas",
            ),
            (env_error("tab\u{7}-is-not-printable"), "printable ASCII"),
            (
                from_env(None).unwrap_err().to_string(),
                "'TOKENS' is not set",
            ),
        ];
        for (message, needle) in cases {
            assert!(
                message.starts_with("invalid value for 'api_server.auth.tokens_env': "),
                "{message}"
            );
            assert!(message.contains(needle), "{message} should say {needle:?}");
            assert!(
                !message.contains(short) && !message.contains(GOOD),
                "{message}"
            );
        }
        assert!(env_error(&format!("{GOOD} analyse")).contains("its APIs: analysis, echo"));
    }

    #[test]
    fn a_missing_or_empty_file_names_the_key_and_the_path() {
        let missing = AuthConfig {
            tokens_file: Some(PathBuf::from("/nonexistent/tiffin-tokens")),
            ..AuthConfig::default()
        };
        let message = missing.load(APIS).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "invalid value for 'api_server.auth.tokens_file': cannot read the file '/nonexistent/tiffin-tokens'"
            ),
            "{message}"
        );
        let empty = TempFile::new("empty", "\n# none yet\n");
        let config = AuthConfig {
            tokens_file: Some(empty.0.clone()),
            ..AuthConfig::default()
        };
        let message = config.load(APIS).unwrap_err().to_string();
        assert!(message.contains("holds no token"), "{message}");
        let line = TempFile::new("line", &format!("{GOOD}\n\nshort\n"));
        let config = AuthConfig {
            tokens_file: Some(line.0.clone()),
            ..AuthConfig::default()
        };
        let message = config.load(APIS).unwrap_err().to_string();
        assert!(
            message.contains("line 3: the token is 5 characters"),
            "{message}"
        );
    }

    #[test]
    fn the_keys_themselves_are_checked() {
        let bad_env = AuthConfig {
            tokens_env: Some("A=B".to_owned()),
            ..AuthConfig::default()
        };
        assert!(
            bad_env
                .validate()
                .unwrap_err()
                .to_string()
                .contains("tokens_env")
        );
        let empty_file = AuthConfig {
            tokens_file: Some(PathBuf::new()),
            ..AuthConfig::default()
        };
        assert!(
            empty_file
                .validate()
                .unwrap_err()
                .to_string()
                .contains("tokens_file")
        );
    }
}
