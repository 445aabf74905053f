//! Runner settings (`runners.*`): the ones every runner shares, and one
//! runner's own section (`runners.<name>.*`) over them.
//!
//! As in BentoML, `runners:` holds the shared settings (`workers`,
//! `max_failed_starts`, `batching`, `autoscaling`, plus `metrics`, which
//! only the whole set of runners has) and, under any other key, the section
//! of one runner by name. Both describe the same thing, the settings one
//! runner runs with, so there is one type for it, [`RunnerSettings`]: a
//! runner's section is merged over the shared settings as YAML, key by key
//! (a key it leaves out or sets to `null` is inherited), and the result is
//! read as a [`RunnerSettings`] like the shared one. Every rule therefore
//! applies to both, written once; an error in the merged settings names
//! the key that set the value at fault, the runner's own
//! (`runners.nltk.batching.max_batch_size`) or the shared one
//! (`runners.batching.max_batch_size`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::load::{deserialize, render};
use crate::validate::{
    DEFAULT_RUNNER_MAX_FAILED_STARTS, MAX_BATCH_SIZE, MAX_FAILED_STARTS, MAX_LATENCY_MS,
    MAX_WORKERS, int_range,
};
use crate::{AutoscalingConfig, ConfigError, MetricsConfig, batch_size_buckets};

/// Adaptive-batching settings of a runner (`runners.batching.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingConfig {
    /// Whether batchable methods are batched (default true).
    pub enabled: bool,
    /// Largest batch handed to a batchable method (default 100; 1 to
    /// [`MAX_BATCH_SIZE`]).
    pub max_batch_size: usize,
    /// Latency budget of a request in milliseconds; beyond it requests are
    /// rejected (default 10000; 1 to [`MAX_LATENCY_MS`], an hour).
    pub max_latency_ms: u64,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            enabled: true,
            max_batch_size: 100,
            max_latency_ms: 10_000,
        }
    }
}

/// The settings one runner runs with: `runners.*` shared by every runner,
/// with its own `runners.<name>.*` over them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerSettings {
    /// Worker processes (default 1; 1 to [`MAX_WORKERS`]).
    pub workers: usize,
    /// Exits in a row of a worker slot's process before it ever became
    /// ready after which the supervisor stops restarting it and shuts the
    /// service down with an error (0 to [`MAX_FAILED_STARTS`], default
    /// [`DEFAULT_RUNNER_MAX_FAILED_STARTS`]). 0 never gives up: a runner
    /// whose model cannot load is retried with backoff while the service's
    /// other APIs keep serving (503 for its own).
    pub max_failed_starts: u32,
    /// Adaptive batching (`batching.*`).
    pub batching: BatchingConfig,
    /// Autoscaling (`autoscaling.*`, off by default).
    pub autoscaling: AutoscalingConfig,
    /// Run the runnable inside every API-server process instead of in
    /// worker processes of its own (BentoML's `embedded`; default false;
    /// docs/models.md#embedded-runners).
    pub embedded: bool,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            workers: 1,
            max_failed_starts: DEFAULT_RUNNER_MAX_FAILED_STARTS,
            batching: BatchingConfig::default(),
            autoscaling: AutoscalingConfig::default(),
            embedded: false,
        }
    }
}

impl RunnerSettings {
    /// Checks each count against its range; `key` names a dotted field
    /// (`batching.max_batch_size`) as the configuration key that set it.
    pub(crate) fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        int_range(&key("workers"), self.workers as u64, 1, MAX_WORKERS as u64)?;
        int_range(
            &key("max_failed_starts"),
            self.max_failed_starts.into(),
            0,
            MAX_FAILED_STARTS.into(),
        )?;
        let batching = &self.batching;
        int_range(
            &key("batching.max_batch_size"),
            batching.max_batch_size as u64,
            1,
            MAX_BATCH_SIZE as u64,
        )?;
        int_range(
            &key("batching.max_latency_ms"),
            batching.max_latency_ms,
            1,
            MAX_LATENCY_MS,
        )?;
        if self.embedded && self.autoscaling.enabled {
            return Err(ConfigError::invalid(
                key("embedded"),
                "an embedded runner runs in every API server and has no workers to autoscale: \
                 set autoscaling.enabled to false, or embedded to false",
            ));
        }
        self.autoscaling
            .validate(&|field| key(&format!("autoscaling.{field}")))
    }
}

/// One named runner's section (`runners.<name>`).
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerConfig {
    /// The section as written: the keys this runner sets itself.
    own: Value,
    /// `own` over the shared settings.
    settings: RunnerSettings,
}

impl RunnerConfig {
    /// The settings this runner runs with.
    pub fn settings(&self) -> &RunnerSettings {
        &self.settings
    }

    /// Whether the runner's own section sets dotted `field`
    /// (`max_failed_starts`, `batching.max_batch_size`) rather than
    /// inheriting it.
    pub fn sets(&self, field: &str) -> bool {
        sets(&self.own, field)
    }
}

/// Written as the section was written, so the effective configuration
/// handed to child processes keeps inheriting what the runner did not set.
impl Serialize for RunnerConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.own.serialize(serializer)
    }
}

/// Runner settings (`runners.*`): the shared ones, plus one [`RunnerConfig`] per named runner.
///
/// In YAML the named runners sit next to the shared keys, as in BentoML, so a
/// runner cannot be called `workers`, `max_failed_starts`, `batching`,
/// `metrics` or `autoscaling`. A named runner's settings are resolved when
/// the configuration is loaded: change them through [`crate::Config::set`]
/// so that every runner sees the change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunnersConfig {
    /// The settings of every runner unless its own section says otherwise
    /// (`runners.workers`, `runners.batching`, ...).
    #[serde(flatten)]
    pub shared: RunnerSettings,
    /// The runners' default metrics (namespace `bentoml_runner`).
    pub metrics: MetricsConfig,
    /// Settings of individual runners, by runner name (`runners.<name>`).
    #[serde(flatten)]
    pub per_runner: BTreeMap<String, RunnerConfig>,
}

impl Default for RunnersConfig {
    fn default() -> Self {
        RunnersConfig {
            shared: RunnerSettings::default(),
            metrics: MetricsConfig::with_namespace("bentoml_runner"),
            per_runner: BTreeMap::new(),
        }
    }
}

/// The keys of [`RunnerSettings`]: under `runners:`, the shared settings.
const SETTINGS_KEYS: [&str; 5] = [
    "workers",
    "max_failed_starts",
    "batching",
    "autoscaling",
    "embedded",
];

impl RunnersConfig {
    /// The keys directly under `runners:` that are settings, not runner names.
    pub const SHARED_KEYS: [&'static str; 5] = [
        SETTINGS_KEYS[0],
        SETTINGS_KEYS[1],
        SETTINGS_KEYS[2],
        "metrics",
        SETTINGS_KEYS[3],
    ];

    /// The settings `runner` runs with (the shared ones when it has no section).
    pub fn settings(&self, runner: &str) -> &RunnerSettings {
        self.per_runner
            .get(runner)
            .map_or(&self.shared, RunnerConfig::settings)
    }

    /// Whether `runner` runs inside the API servers (`embedded`).
    pub fn embedded(&self, runner: &str) -> bool {
        self.settings(runner).embedded
    }

    /// Number of worker processes to start for `runner`.
    pub fn workers_for(&self, runner: &str) -> usize {
        self.settings(runner).workers
    }

    /// Failed starts in a row after which `runner`'s slots give up (0: never).
    pub fn max_failed_starts_for(&self, runner: &str) -> u32 {
        self.settings(runner).max_failed_starts
    }

    /// Batching settings of `runner`: its own fields over the shared `runners.batching`.
    pub fn batching_for(&self, runner: &str) -> BatchingConfig {
        self.settings(runner).batching.clone()
    }

    /// The configuration key that sets dotted `field` for `runner`:
    /// `runners.<runner>.<field>` when its own section sets it, else the
    /// shared `runners.<field>`.
    pub fn key_of(&self, runner: &str, field: &str) -> String {
        match self.per_runner.get(runner) {
            Some(own) => key_in(&own.own, runner, field),
            None => dotted("runners", field),
        }
    }

    /// Buckets of `bentoml_runner_adaptive_batch_size`: up to the largest `max_batch_size` among `runners`.
    pub fn adaptive_batch_size_buckets(&self, runners: &[&str]) -> Vec<f64> {
        let largest = runners
            .iter()
            .map(|r| self.settings(r).batching.max_batch_size)
            .max()
            .unwrap_or(self.shared.batching.max_batch_size);
        batch_size_buckets(largest)
    }

    /// Reads the `runners:` section: the shared settings and metrics, then
    /// each runner's section merged over the shared settings (see the
    /// module docs). Ranges are checked by [`RunnersConfig::validate`].
    pub(crate) fn from_tree(tree: &Value) -> Result<Self, ConfigError> {
        let map = match tree {
            Value::Null => return Ok(RunnersConfig::default()),
            Value::Mapping(map) => map,
            other => {
                return Err(ConfigError::invalid(
                    "runners",
                    format!(
                        "expected a mapping of runner settings, got {}",
                        render(other)
                    ),
                ));
            }
        };
        let mut shared = Mapping::new();
        let mut metrics = Value::Null;
        let mut named = Vec::new();
        for (key, value) in map {
            let Value::String(name) = key else {
                return Err(ConfigError::invalid(
                    "runners",
                    format!("expected runner names as keys, got {}", render(key)),
                ));
            };
            if name == "metrics" {
                metrics = value.clone();
            } else if SETTINGS_KEYS.contains(&name.as_str()) {
                shared.insert(key.clone(), value.clone());
            } else {
                named.push((name, value));
            }
        }
        let shared: RunnerSettings =
            deserialize(&Value::Mapping(shared), |path| dotted("runners", path))?;
        // Unset metrics keys keep the runners' defaults, not the API server's.
        let defaults = RunnersConfig::default();
        let metrics = deserialize(&merged(&to_tree(&defaults.metrics)?, &metrics), |path| {
            dotted("runners.metrics", path)
        })?;
        let base = to_tree(&shared)?;
        let mut per_runner = BTreeMap::new();
        for (name, own) in named {
            let own = match own {
                Value::Null => Value::Mapping(Mapping::new()),
                other => other.clone(),
            };
            let settings = deserialize(&merged(&base, &own), |path| key_in(&own, name, path))?;
            per_runner.insert(name.clone(), RunnerConfig { own, settings });
        }
        Ok(RunnersConfig {
            shared,
            metrics,
            per_runner,
        })
    }

    /// Checks the ranges of the shared settings and of every runner's,
    /// naming the key that set the value at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.shared.validate(&|field| dotted("runners", field))?;
        for (name, runner) in &self.per_runner {
            runner
                .settings
                .validate(&|field| key_in(&runner.own, name, field))?;
        }
        Ok(())
    }
}

/// A typed value as a YAML tree, to merge a section over.
fn to_tree(value: &impl Serialize) -> Result<Value, ConfigError> {
    serde_yaml_ng::to_value(value)
        .map_err(|e| ConfigError::invalid("runners", format!("cannot be represented: {e}")))
}

/// `over` merged into a copy of `base`, key by key: a mapping goes into a
/// mapping, `null` keeps what `base` has, anything else replaces it.
fn merged(base: &Value, over: &Value) -> Value {
    let mut out = base.clone();
    merge(&mut out, over);
    out
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (_, Value::Null) => {}
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(slot) => merge(slot, value),
                    None if value.is_null() => {}
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// Whether the section `own` sets dotted `field`: the key holds a value,
/// or a section on its way is set to something that is not a mapping.
fn sets(own: &Value, field: &str) -> bool {
    let mut node = own;
    for segment in field.split('.').filter(|s| !s.is_empty()) {
        let segment = segment.split('[').next().unwrap_or(segment);
        let Value::Mapping(map) = node else {
            return true;
        };
        match map.get(segment) {
            None | Some(Value::Null) => return false,
            Some(child) => node = child,
        }
    }
    true
}

/// The key of dotted `field` (empty: the section itself) for runner `name`
/// whose section is `own`: its own key if it sets the field, else the shared one.
fn key_in(own: &Value, name: &str, field: &str) -> String {
    if sets(own, field) {
        dotted(&format!("runners.{name}"), field)
    } else {
        dotted("runners", field)
    }
}

/// `prefix.field`, or `prefix` alone for an empty field.
fn dotted(prefix: &str, field: &str) -> String {
    if field.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_yaml_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_runner_inherits_every_key_it_does_not_set_itself() {
        let config = load(
            "runners: { workers: 3, max_failed_starts: 0, \
             batching: { max_batch_size: 7 }, autoscaling: { enabled: true, max_workers: 4 }, \
             a: { batching: { max_latency_ms: 20, enabled: null }, autoscaling: { min_workers: 0 } } }",
        )
        .unwrap();
        let runners = &config.runners;
        let a = runners.settings("a");
        assert_eq!((a.workers, a.max_failed_starts), (3, 0));
        assert_eq!(
            (
                a.batching.enabled,
                a.batching.max_batch_size,
                a.batching.max_latency_ms
            ),
            (true, 7, 20)
        );
        assert_eq!(
            (a.autoscaling.min_workers, a.autoscaling.max_workers),
            (0, Some(4))
        );
        assert_eq!(runners.settings("unnamed"), &runners.shared);
        // The effective configuration writes the section as it was written.
        let printed = serde_yaml_ng::to_string(&config).unwrap();
        assert!(!printed.contains("a:\n    workers"), "{printed}");
        assert_eq!(load(&printed).unwrap(), config);
    }

    #[test]
    fn the_key_of_a_field_is_the_runners_own_only_when_it_sets_it() {
        let config = load("runners: { a: { max_failed_starts: 2, batching: {} }, b: {} }").unwrap();
        let runners = &config.runners;
        assert_eq!(
            runners.key_of("a", "max_failed_starts"),
            "runners.a.max_failed_starts"
        );
        assert_eq!(
            runners.key_of("a", "batching.max_batch_size"),
            "runners.batching.max_batch_size"
        );
        assert_eq!(runners.key_of("b", "workers"), "runners.workers");
        assert_eq!(runners.key_of("other", "workers"), "runners.workers");
        assert!(runners.per_runner["a"].sets("max_failed_starts"));
        assert!(!runners.per_runner["a"].sets("batching.enabled"));
    }

    #[test]
    fn a_bad_value_is_named_by_the_key_that_set_it() {
        let cases = [
            // Set by the runner itself.
            (
                "runners: { r: { batching: { max_batch_size: 0 } } }",
                "invalid value for 'runners.r.batching.max_batch_size': must be at least 1, got 0",
            ),
            (
                "runners: { r: { autoscaling: { look_back_s: 0 } } }",
                "invalid value for 'runners.r.autoscaling.look_back_s': must be a number of \
                 seconds > 0 and <= 86400, got 0",
            ),
            (
                "runners: { r: { batching: 3 } }",
                "invalid value for 'runners.r.batching': expected a mapping, got 3",
            ),
            (
                "runners: { r: 3 }",
                "invalid value for 'runners.r': expected a mapping, got 3",
            ),
            // Inherited: the shared key is at fault, whatever the order.
            (
                "runners: { r: { workers: 2 }, batching: { max_latency_ms: 0 } }",
                "invalid value for 'runners.batching.max_latency_ms': must be at least 1, got 0",
            ),
            (
                "runners: { r: {}, metrics: { namespace: 3 } }",
                "invalid value for 'runners.metrics.namespace': expected a string, got 3",
            ),
            (
                "runners: 3",
                "invalid value for 'runners': expected a mapping of runner settings, got 3",
            ),
        ];
        for (yaml, expected) in cases {
            assert_eq!(load(yaml).unwrap_err(), expected, "{yaml}");
        }
        let e = load("runners: { r: { metrics: { enabled: false } } }").unwrap_err();
        assert_eq!(
            e,
            "unknown configuration key 'runners.r.metrics' (expected one of workers, \
             max_failed_starts, batching, autoscaling, embedded)"
        );
        let e =
            load("runners: { r: { embedded: true, autoscaling: { enabled: true } } }").unwrap_err();
        assert!(
            e.starts_with("invalid value for 'runners.r.embedded': an embedded runner runs in every API server"),
            "{e}"
        );
    }
}
