//! Histogram bucket bounds: request durations (from `duration` settings) and adaptive batch sizes.
//!
//! The lists returned here never contain `+Inf`; the metrics layer appends it,
//! as Prometheus requires.

use crate::{ConfigError, DurationConfig};

/// BentoML's default request-duration buckets in seconds (`+Inf` is implicit, added by the metrics layer).
pub const DEFAULT_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Most buckets that `{min, max, factor}` may generate; more is reported as a configuration error.
pub const MAX_GENERATED_BUCKETS: usize = 1000;

impl DurationConfig {
    /// The bucket bounds this setting asks for, without `+Inf`; errors name `<key_prefix>.duration.<field>`.
    ///
    /// - nothing set: [`DEFAULT_DURATION_BUCKETS`];
    /// - `buckets`: the list as given; it must be non-empty, finite and strictly
    ///   increasing (a trailing `+Inf`, `.inf` in YAML, is accepted and dropped);
    /// - `min`, `max`, `factor` (all three, and not with `buckets`): `min`,
    ///   `min·factor`, `min·factor²`, … while below `max`, then `max`; requires
    ///   `min > 0`, `max > min`, `factor > 1`.
    ///
    /// ```
    /// use tiffin_config::DurationConfig;
    /// let d = DurationConfig { min: Some(0.1), max: Some(5.0), factor: Some(2.0), buckets: None };
    /// assert_eq!(d.buckets("api_server.metrics").unwrap(), [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]);
    /// ```
    pub fn buckets(&self, key_prefix: &str) -> Result<Vec<f64>, ConfigError> {
        let key = |field: &str| {
            if key_prefix.is_empty() {
                format!("duration.{field}")
            } else {
                format!("{key_prefix}.duration.{field}")
            }
        };
        let generated = [
            ("min", self.min),
            ("max", self.max),
            ("factor", self.factor),
        ];
        let any_generated = generated.iter().any(|(_, v)| v.is_some());

        if let Some(list) = &self.buckets {
            if any_generated {
                let set: Vec<&str> = generated
                    .iter()
                    .filter(|(_, v)| v.is_some())
                    .map(|(name, _)| *name)
                    .collect();
                return Err(ConfigError::invalid(
                    key("buckets"),
                    format!(
                        "give either 'buckets' or 'min', 'max' and 'factor', not both (got buckets together with {})",
                        set.join(", ")
                    ),
                ));
            }
            return explicit_buckets(list, &key("buckets"));
        }
        if !any_generated {
            return Ok(DEFAULT_DURATION_BUCKETS.to_vec());
        }
        let (Some(min), Some(max), Some(factor)) = (self.min, self.max, self.factor) else {
            let missing: Vec<&str> = generated
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(name, _)| *name)
                .collect();
            return Err(ConfigError::invalid(
                key(missing[0]),
                format!(
                    "'min', 'max' and 'factor' must be set together, got no {}",
                    missing.join(" and no ")
                ),
            ));
        };
        if !(min.is_finite() && min > 0.0) {
            return Err(ConfigError::invalid(
                key("min"),
                format!("must be a number > 0, got {min}"),
            ));
        }
        if !(max.is_finite() && max > min) {
            return Err(ConfigError::invalid(
                key("max"),
                format!("must be a number > min ({min}), got {max}"),
            ));
        }
        if !(factor.is_finite() && factor > 1.0) {
            return Err(ConfigError::invalid(
                key("factor"),
                format!("must be a number > 1, got {factor}"),
            ));
        }
        let mut out = Vec::new();
        let mut bound = min;
        while bound < max {
            if out.len() >= MAX_GENERATED_BUCKETS {
                return Err(ConfigError::invalid(
                    key("factor"),
                    format!(
                        "factor {factor} from min {min} to max {max} would make more than {MAX_GENERATED_BUCKETS} buckets"
                    ),
                ));
            }
            out.push(bound);
            bound *= factor;
        }
        out.push(max);
        Ok(out)
    }
}

fn explicit_buckets(list: &[f64], key: &str) -> Result<Vec<f64>, ConfigError> {
    let shown = || {
        let items: Vec<String> = list.iter().map(|b| format_bound(*b)).collect();
        format!("[{}]", items.join(", "))
    };
    let finite = match list.split_last() {
        Some((last, rest)) if *last == f64::INFINITY => rest,
        _ => list,
    };
    if finite.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("must list at least one finite bound, got {}", shown()),
        ));
    }
    if finite.iter().any(|b| !b.is_finite()) {
        return Err(ConfigError::invalid(
            key,
            format!(
                "bounds must be finite numbers (only a last +Inf is allowed), got {}",
                shown()
            ),
        ));
    }
    if finite.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ConfigError::invalid(
            key,
            format!("bounds must be strictly increasing, got {}", shown()),
        ));
    }
    Ok(finite.to_vec())
}

fn format_bound(b: f64) -> String {
    if b == f64::INFINITY {
        ".inf".to_owned()
    } else if b == f64::NEG_INFINITY {
        "-.inf".to_owned()
    } else if b.is_nan() {
        ".nan".to_owned()
    } else {
        b.to_string()
    }
}

/// Buckets of `bentoml_runner_adaptive_batch_size`: 1, 2, 4, … while below `max_batch_size`, then `max_batch_size` (`+Inf` implicit).
///
/// ```
/// assert_eq!(tiffin_config::batch_size_buckets(100), [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0]);
/// assert_eq!(tiffin_config::batch_size_buckets(8), [1.0, 2.0, 4.0, 8.0]);
/// ```
pub fn batch_size_buckets(max_batch_size: usize) -> Vec<f64> {
    let max = max_batch_size.max(1);
    let mut out = Vec::new();
    let mut size: usize = 1;
    while size < max {
        out.push(size as f64);
        match size.checked_mul(2) {
            Some(next) => size = next,
            None => break,
        }
    }
    out.push(max as f64);
    out
}
