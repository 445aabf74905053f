//! Autoscaling of runner workers (`runners.autoscaling.*` and
//! `runners.<name>.autoscaling.*`).
//!
//! The supervisor can size each runner by itself from the calls it sees
//! running or queued (see `supervisor/src/autoscale.rs` for the decision).
//! The names and meanings follow Ray Serve's autoscaling config
//! (<https://docs.ray.io/en/latest/serve/autoscaling-guide.html>):
//! `target_in_flight` is its `target_ongoing_requests` (calls running or
//! queued per worker), `look_back_s` its `look_back_period_s`, and
//! `upscale_delay_s` / `downscale_delay_s` keep theirs; `min_workers` /
//! `max_workers` are its `min_replicas` / `max_replicas`.
//!
//! The defaults differ from Ray's where tiffin differs: a worker is a
//! process that starts in milliseconds, not a Python replica that takes
//! seconds, so waiting 30 s before adding one (Ray's `upscale_delay_s`)
//! would only lose time; the delays are shorter. Autoscaling is off unless
//! `enabled` is set, and `max_workers` defaults to the machine's CPU count
//! (more workers than cores only adds contention for a CPU-bound model).
//!
//! A runner's own section overrides the shared one key by key, as
//! `batching` does:
//!
//! ```
//! use tiffin_config::Config;
//! let config = Config::from_yaml_str(
//!     "runners: { autoscaling: { enabled: true, max_workers: 4 }, \
//!      embed: { autoscaling: { min_workers: 0 } } }",
//! ).unwrap();
//! let embed = config.runners.autoscaling_for("embed").unwrap();
//! assert_eq!((embed.min_workers, embed.max_workers), (0, 4));
//! assert_eq!(config.runners.autoscaling_for("other").unwrap().min_workers, 1);
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::seconds::{LookBack, ScaleDelay, Seconds};
use crate::validate::int_range;
use crate::{ConfigError, MAX_WORKERS, RunnersConfig};

/// Largest `target_in_flight`: far past any worker's useful queue.
pub const MAX_TARGET_IN_FLIGHT: f64 = 1_000_000.0;

/// Autoscaling settings of a runner (`runners.autoscaling.*`, and
/// `runners.<name>.autoscaling.*` over them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscalingConfig {
    /// Whether the supervisor sizes the runner by itself (default false).
    pub enabled: bool,
    /// Fewest workers (default 1; 0 to [`MAX_WORKERS`]). 0 lets an idle
    /// runner stop every worker; the next call waits while one starts.
    pub min_workers: usize,
    /// Most workers (1 to [`MAX_WORKERS`]; default: the CPU count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<usize>,
    /// Calls running or queued per worker that the autoscaler aims for
    /// (Ray Serve's `target_ongoing_requests`; default 2; > 0 and at most
    /// [`MAX_TARGET_IN_FLIGHT`]).
    pub target_in_flight: f64,
    /// Seconds of samples averaged into one decision (Ray Serve's
    /// `look_back_period_s`; default 10; > 0, at most
    /// [`MAX_AUTOSCALING_SECONDS`](crate::MAX_AUTOSCALING_SECONDS)).
    pub look_back_s: Seconds<LookBack>,
    /// Seconds a desire for more workers must hold before workers are added
    /// (default 3; >= 0, at most
    /// [`MAX_AUTOSCALING_SECONDS`](crate::MAX_AUTOSCALING_SECONDS)).
    pub upscale_delay_s: Seconds<ScaleDelay>,
    /// Seconds a desire for fewer workers must hold before workers are
    /// drained (default 60; >= 0, at most
    /// [`MAX_AUTOSCALING_SECONDS`](crate::MAX_AUTOSCALING_SECONDS)).
    pub downscale_delay_s: Seconds<ScaleDelay>,
}

impl Default for AutoscalingConfig {
    fn default() -> Self {
        AutoscalingConfig {
            enabled: false,
            min_workers: 1,
            max_workers: None,
            target_in_flight: 2.0,
            look_back_s: Seconds::trusted(10.0),
            upscale_delay_s: Seconds::trusted(3.0),
            downscale_delay_s: Seconds::trusted(60.0),
        }
    }
}

/// The autoscaling of one runner as it applies: shared and own keys
/// merged, `max_workers` resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Autoscaling {
    /// Fewest workers.
    pub min_workers: usize,
    /// Most workers.
    pub max_workers: usize,
    /// Calls running or queued per worker aimed for.
    pub target_in_flight: f64,
    /// Window of samples averaged into a decision.
    pub look_back: Duration,
    /// How long a desire for more workers must hold.
    pub upscale_delay: Duration,
    /// How long a desire for fewer workers must hold.
    pub downscale_delay: Duration,
}

/// The CPU count, `max_workers`' default (1 when it cannot be read).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl AutoscalingConfig {
    /// The autoscaling these settings ask for; `None` when it is off (a
    /// fixed worker count).
    pub fn resolve(&self) -> Option<Autoscaling> {
        self.enabled.then(|| Autoscaling {
            min_workers: self.min_workers,
            max_workers: self.max_workers.unwrap_or_else(cpu_count),
            target_in_flight: self.target_in_flight,
            look_back: self.look_back_s.duration(),
            upscale_delay: self.upscale_delay_s.duration(),
            downscale_delay: self.downscale_delay_s.duration(),
        })
    }

    /// Checks the counts and that `min_workers <= max_workers`; `key`
    /// names a field as the configuration key that set it. (The seconds
    /// keys were checked as they were read.)
    pub(crate) fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let min_key = key("min_workers");
        int_range(&min_key, self.min_workers as u64, 0, MAX_WORKERS as u64)?;
        let (max, max_key) = match self.max_workers {
            Some(max) => (max, key("max_workers")),
            None => (
                cpu_count(),
                format!("{} (default: the CPU count)", key("max_workers")),
            ),
        };
        int_range(&max_key, max as u64, 1, MAX_WORKERS as u64)?;
        if self.min_workers > max {
            return Err(ConfigError::invalid(
                min_key,
                format!(
                    "must be at most {max_key} ({max}), got {}",
                    self.min_workers
                ),
            ));
        }
        let target = self.target_in_flight;
        if !(target > 0.0 && target <= MAX_TARGET_IN_FLIGHT) {
            return Err(ConfigError::invalid(
                key("target_in_flight"),
                format!(
                    "must be a number of calls > 0 and <= {MAX_TARGET_IN_FLIGHT}, got {target}"
                ),
            ));
        }
        Ok(())
    }
}

impl RunnersConfig {
    /// The autoscaling of `runner` when it is enabled (its own keys over
    /// `runners.autoscaling`); `None` when the runner has a fixed worker count.
    pub fn autoscaling_for(&self, runner: &str) -> Option<Autoscaling> {
        self.settings(runner).autoscaling.resolve()
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_yaml_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_a_runner_inherits_the_shared_keys_it_does_not_set() {
        let config = load("runners: { r: { workers: 2 } }").unwrap();
        assert!(config.runners.autoscaling_for("r").is_none());
        let config = load(
            "runners: { autoscaling: { enabled: true, target_in_flight: 4, look_back_s: 2.5 }, \
             r: { autoscaling: { max_workers: 3, downscale_delay_s: 0 } }, \
             off: { autoscaling: { enabled: false } } }",
        )
        .unwrap();
        let r = config.runners.autoscaling_for("r").unwrap();
        assert_eq!((r.min_workers, r.max_workers), (1, 3));
        assert_eq!(r.target_in_flight, 4.0);
        assert_eq!(r.look_back, std::time::Duration::from_millis(2500));
        assert_eq!(r.downscale_delay, std::time::Duration::ZERO);
        assert_eq!(r.upscale_delay, std::time::Duration::from_secs(3));
        let other = config.runners.autoscaling_for("other").unwrap();
        assert_eq!(
            other.max_workers,
            super::cpu_count(),
            "max defaults to the CPUs"
        );
        assert!(config.runners.autoscaling_for("off").is_none());
        // The effective configuration handed to children round-trips.
        let yaml = serde_yaml_ng::to_string(&config).unwrap();
        assert_eq!(load(&yaml).unwrap(), config);
    }

    #[test]
    fn bad_values_name_the_key_that_set_them() {
        let cases = [
            (
                "runners: { autoscaling: { min_workers: 3, max_workers: 2 } }",
                "runners.autoscaling.min_workers",
            ),
            (
                "runners: { autoscaling: { max_workers: 2 }, r: { autoscaling: { min_workers: 5 } } }",
                "runners.r.autoscaling.min_workers",
            ),
            (
                "runners: { r: { autoscaling: { max_workers: 0 } } }",
                "runners.r.autoscaling.max_workers",
            ),
            (
                "runners: { autoscaling: { target_in_flight: 0 } }",
                "runners.autoscaling.target_in_flight",
            ),
            (
                "runners: { autoscaling: { target_in_flight: .nan } }",
                "runners.autoscaling.target_in_flight",
            ),
            (
                "runners: { r: { autoscaling: { upscale_delay_s: -1 } } }",
                "runners.r.autoscaling.upscale_delay_s",
            ),
            (
                "runners: { autoscaling: { look_back_s: 0 } }",
                "runners.autoscaling.look_back_s",
            ),
        ];
        for (yaml, key) in cases {
            let err = load(yaml).expect_err(yaml);
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }
}
