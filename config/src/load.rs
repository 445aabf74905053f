//! Loading: YAML file, then `TIFFIN_CONFIG_OPTIONS`, then command-line overrides, then typed checks.
//!
//! Everything is merged as a `serde_yaml_ng::Value` tree first; the tree is then
//! deserialized once through `serde_path_to_error`, so a wrong key or value is
//! reported with its full dotted path whichever layer it came from. The
//! `runners:` section is read apart (`runners.rs`), because a runner's own
//! section is merged over the shared one before it is read.
//!
//! A value that a later layer replaces is checked too: the merged tree with
//! the replaced value put back must pass, or the error names the key, the
//! source that set the bad value and the one that overrides it. Otherwise a
//! typo in the file would lie in wait, silently, until the day the flag that
//! hides it is dropped.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_path_to_error::Segment;
use serde_yaml_ng::{Mapping, Value};

use crate::{
    ApiServerConfig, Config, ConfigError, LoggingConfig, RunnersConfig, SupervisorConfig,
    TracingConfig,
};

/// Environment variable holding the configuration file path (read by the CLI, not by this crate).
pub const CONFIG_ENV: &str = "TIFFIN_CONFIG";

/// Environment variable holding `dotted.key=value` overrides (read by the CLI, not by this crate).
pub const OPTIONS_ENV: &str = "TIFFIN_CONFIG_OPTIONS";

/// How errors name overrides that came from command-line flags.
pub const CLI_ORIGIN: &str = "command-line option";

impl Config {
    /// Loads the YAML `file` (if any), then applies `options`, the text of `TIFFIN_CONFIG_OPTIONS`.
    pub fn load(file: Option<&Path>, options: Option<&str>) -> Result<Config, ConfigError> {
        Config::from_sources(file, options, &[])
    }

    /// Like [`Config::load`], then applies command-line `(key, value)` overrides, which win over everything.
    pub fn from_sources(
        file: Option<&Path>,
        options: Option<&str>,
        cli_overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let (mut tree, file_origin) = match file {
            Some(path) => (read_file(path)?, file_origin(path)),
            None => (Value::Mapping(Mapping::new()), String::new()),
        };
        let mut overrides: Vec<Override> = Vec::new();
        if let Some(options) = options {
            for (key, value) in parse_options(options)? {
                overrides.push(Override {
                    origin: OPTIONS_ENV,
                    key,
                    value,
                });
            }
        }
        for (key, value) in cli_overrides {
            overrides.push(Override {
                origin: CLI_ORIGIN,
                key: key.clone(),
                value: value.clone(),
            });
        }
        // BentoML's rule: an `api_server.ssl.*` setting given from the
        // environment or the command line turns TLS on, unless it says otherwise.
        let ssl_origin = overrides
            .iter()
            .find(|o| o.key.starts_with("api_server.ssl."))
            .map(|o| o.origin);
        if let Some(origin) = ssl_origin
            && !overrides.iter().any(|o| o.key == "api_server.ssl.enabled")
        {
            overrides.push(Override {
                origin,
                key: "api_server.ssl.enabled".into(),
                value: "true".into(),
            });
        }
        let mut replaced = Vec::new();
        for (by, o) in overrides.iter().enumerate() {
            if let Some((path, value)) = replaced_by(&tree, &o.key) {
                replaced.push(Replaced { path, value, by });
            }
            set_in_tree(&mut tree, &o.key, &o.value, o.origin)?;
        }
        let config = from_tree(&tree)?;
        for r in replaced {
            check_replaced(&tree, &r, &overrides, &file_origin)?;
        }
        Ok(config)
    }

    /// Parses configuration from YAML text (empty text gives the defaults).
    pub fn from_yaml_str(yaml: &str) -> Result<Config, ConfigError> {
        from_tree(&parse_yaml(yaml, "configuration text")?)
    }

    /// Sets one dotted `key` to `value` (YAML, e.g. `"3001"` or `"[0.1,1]"`), re-checking the whole configuration.
    ///
    /// On error `self` is left unchanged.
    pub fn apply_override(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let mut tree =
            serde_yaml_ng::to_value(&*self).map_err(|e| ConfigError::InvalidOverride {
                origin: CLI_ORIGIN.to_owned(),
                entry: format!("{key}={value}"),
                reason: format!("cannot represent the current configuration: {e}"),
            })?;
        set_in_tree(&mut tree, key, value, CLI_ORIGIN)?;
        *self = from_tree(&tree)?;
        Ok(())
    }

    /// Same as [`Config::apply_override`]: `config.set("api_server.http.port", "3001")`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        self.apply_override(key, value)
    }
}

/// Splits `TIFFIN_CONFIG_OPTIONS` text into `(key, value)` pairs.
///
/// Entries are separated by whitespace; single or double quotes group text
/// containing spaces and are removed, as a shell would
/// (`api_server.metrics.duration.buckets="[0.1, 1]"`).
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let invalid = |entry: &str, reason: &str| ConfigError::InvalidOverride {
        origin: OPTIONS_ENV.to_owned(),
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in options.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(invalid(&word, "unterminated quote"));
    }
    if in_word {
        words.push(word);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(invalid(&w, "expected key=value")),
        })
        .collect()
}

/// One `key=value` of [`OPTIONS_ENV`] or of the command line, in the order applied.
struct Override {
    /// [`OPTIONS_ENV`] or [`CLI_ORIGIN`].
    origin: &'static str,
    /// Dotted key as written.
    key: String,
    /// YAML value as written.
    value: String,
}

impl Override {
    fn describe(&self) -> String {
        format!("{} '{}={}'", self.origin, self.key, self.value)
    }
}

/// A value in the tree that override number `by` replaced.
struct Replaced {
    /// Dotted path of the replaced node: the key itself, or a section on its
    /// way that was not a mapping.
    path: Vec<String>,
    /// The node as it was.
    value: Value,
    /// Index of the override that replaced it.
    by: usize,
}

/// How errors name the configuration file.
fn file_origin(path: &Path) -> String {
    format!("configuration file '{}'", path.display())
}

/// What setting dotted `key` would replace in `tree`: the value at the key,
/// or the first section on its way that is neither a mapping nor empty
/// (`set_in_tree` turns it into a mapping). An empty (`null`) section is
/// "all defaults" and replaces nothing.
fn replaced_by(tree: &Value, key: &str) -> Option<(Vec<String>, Value)> {
    let segments: Vec<&str> = key.split('.').collect();
    let mut node = tree;
    for (i, segment) in segments.iter().enumerate() {
        let child = node.as_mapping()?.get(*segment)?;
        let path = || segments[..=i].iter().map(|s| (*s).to_owned()).collect();
        if i + 1 == segments.len() {
            return Some((path(), child.clone()));
        }
        match child {
            Value::Null => return None,
            Value::Mapping(_) => node = child,
            other => return Some((path(), other.clone())),
        }
    }
    None
}

/// Puts a replaced value back into the merged tree and checks the result;
/// an error at (or under) the replaced key is that value's fault and is
/// reported with the source that set it. Errors elsewhere (a cross-field
/// rule such as `max > min` now failing against the overriding values) are
/// not: the replaced value alone is not to blame.
fn check_replaced(
    merged: &Value,
    replaced: &Replaced,
    overrides: &[Override],
    file_origin: &str,
) -> Result<(), ConfigError> {
    let mut probe = merged.clone();
    let mut node = &mut probe;
    for segment in &replaced.path {
        let Some(child) = node
            .as_mapping_mut()
            .and_then(|m| m.get_mut(segment.as_str()))
        else {
            // The override put a mapping on this path; nothing else can remove it.
            return Ok(());
        };
        node = child;
    }
    *node = replaced.value.clone();
    let Err(error) = from_tree(&probe) else {
        return Ok(());
    };
    let Some(key) = error_key(&error) else {
        return Ok(());
    };
    let path = replaced.path.join(".");
    if !is_within(key, &path) {
        return Ok(());
    }
    // The last earlier override that wrote this key (or a section holding
    // it) set the bad value; if none did, it came from the file.
    let origin = overrides[..replaced.by]
        .iter()
        .rev()
        .find(|o| is_within(key, &o.key))
        .map_or_else(|| file_origin.to_owned(), Override::describe);
    Err(ConfigError::Overridden {
        origin,
        overridden_by: overrides[replaced.by].describe(),
        error: Box::new(error),
    })
}

/// The dotted key an error of [`from_tree`] names.
fn error_key(error: &ConfigError) -> Option<&str> {
    match error {
        ConfigError::InvalidValue { key, .. } | ConfigError::UnknownKey { key, .. } => Some(key),
        _ => None,
    }
}

/// Whether dotted `key` is `path` or lies under it (`path.x`, `path[0]`).
fn is_within(key: &str, path: &str) -> bool {
    key.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::FileNotFound {
                path: shown.clone(),
            }
        } else {
            ConfigError::Read {
                path: shown.clone(),
                source,
            }
        }
    })?;
    parse_yaml(&text, &format!("configuration file '{shown}'"))
}

/// Parses YAML text into a mapping tree; empty text is an empty mapping.
fn parse_yaml(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        origin: origin.to_owned(),
        message,
    };
    let mut tree: Value = serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?;
    tree.apply_merge().map_err(|e| syntax(e.to_string()))?;
    match tree {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(_) => Ok(tree),
        other => Err(syntax(format!(
            "the top level must be a mapping of configuration keys, got {}",
            render(&other)
        ))),
    }
}

/// Sets `key` (dotted) in `tree` to `value` parsed as YAML, creating sections as needed.
fn set_in_tree(tree: &mut Value, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidOverride {
        origin: origin.to_owned(),
        entry: format!("{key}={value}"),
        reason,
    };
    let segments: Vec<&str> = key.split('.').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || s.chars().any(char::is_whitespace))
    {
        return Err(invalid(
            "the key must be dotted names such as api_server.http.port".to_owned(),
        ));
    }
    let parsed: Value = serde_yaml_ng::from_str(value)
        .map_err(|e| invalid(format!("the value is not valid YAML: {e}")))?;
    let mut node = tree;
    for segment in segments {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            unreachable!("node was just made a mapping");
        };
        node = map
            .entry(Value::String(segment.to_owned()))
            .or_insert(Value::Null);
    }
    *node = parsed;
    Ok(())
}

/// The top level of the tree as deserialized in one go: every section but
/// `runners`, which [`RunnersConfig`] reads from its tree.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Sections {
    api_server: ApiServerConfig,
    runners: Value,
    supervisor: SupervisorConfig,
    logging: LoggingConfig,
    tracing: TracingConfig,
}

impl Default for Sections {
    fn default() -> Self {
        let config = Config::default();
        Sections {
            api_server: config.api_server,
            runners: Value::Null,
            supervisor: config.supervisor,
            logging: config.logging,
            tracing: config.tracing,
        }
    }
}

/// Deserializes and validates a merged tree, turning serde errors into keyed [`ConfigError`]s.
fn from_tree(tree: &Value) -> Result<Config, ConfigError> {
    let sections: Sections = deserialize(tree, str::to_owned)?;
    let config = Config {
        api_server: sections.api_server,
        runners: RunnersConfig::from_tree(&sections.runners)?,
        supervisor: sections.supervisor,
        logging: sections.logging,
        tracing: sections.tracing,
    };
    config.validate()?;
    Ok(config)
}

/// Reads a configuration from any serde format the way [`Config::load`]
/// reads a file: the same merge of runner sections, checks and messages.
impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tree = Value::deserialize(deserializer)?;
        from_tree(&tree).map_err(serde::de::Error::custom)
    }
}

/// Deserializes `tree` as a `T`, turning a serde error into a
/// [`ConfigError`] whose key is `key` of the dotted path within `tree`
/// (empty at its root).
///
/// A reason that states its own rule and value (`must be ...`, as
/// [`crate::Seconds`] gives) is kept as it is; serde's own "expected X" is
/// put in plain words, with the value found.
pub(crate) fn deserialize<T: DeserializeOwned>(
    tree: &Value,
    key: impl FnOnce(&str) -> String,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|err| {
        let path = err.path().to_string();
        let key = key(if path == "." { "" } else { &path });
        let message = err.inner().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let hint = rest
                .split_once(", ")
                .map(|(_, expected)| format!(" ({})", expected.replace('`', "")))
                .unwrap_or_default();
            return ConfigError::UnknownKey { key, hint };
        }
        if message.starts_with("must ") {
            return ConfigError::InvalidValue {
                key,
                reason: message,
            };
        }
        let got = lookup(tree, err.path()).map_or_else(|| "nothing".to_owned(), render);
        let reason = match message.rsplit_once(", expected ") {
            Some((_, expected)) => format!("expected {}, got {got}", friendly(expected)),
            None => format!("{message} (got {got})"),
        };
        ConfigError::InvalidValue { key, reason }
    })
}

/// Plain-words version of what serde says it expected.
fn friendly(expected: &str) -> String {
    match expected {
        "u8" => "an integer 0-255",
        "u16" => "an integer 0-65535",
        "u32" | "u64" | "usize" => "a whole number >= 0",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        other if other.starts_with("struct ") => "a mapping",
        other => other,
    }
    .to_owned()
}

/// The value at `path` in `tree`, if the path leads anywhere.
fn lookup<'a>(tree: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    path.iter().try_fold(tree, |node, segment| match segment {
        Segment::Map { key } => node.as_mapping()?.get(key.as_str()),
        Segment::Seq { index } => node.as_sequence()?.get(*index),
        _ => None,
    })
}

/// Compact one-line YAML-ish rendering of a value, strings quoted.
pub(crate) fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| match k {
                    Value::String(k) => format!("{k}: {}", render(v)),
                    _ => format!("{}: {}", render(k), render(v)),
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, render(&tagged.value)),
    }
}
