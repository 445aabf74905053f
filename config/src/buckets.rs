//! Histogram bucket bounds: request durations (from `duration` settings) and adaptive batch sizes.
//!
//! Buckets are checked here, when the configuration is loaded, so that a bad
//! list is reported with the dotted key and the list as written, before any
//! process starts, instead of as a metrics error inside a worker. The rule
//! itself (finite, strictly increasing, a trailing `+Inf` dropped) is the
//! metrics crate's [`finite_bounds`], the same one the registry applies, so a
//! list accepted here is never refused there; this module adds only what is
//! configuration policy: at least one bound, and the `{min, max, factor}`
//! generator.
//!
//! The lists returned here never contain `+Inf`; the metrics layer appends it,
//! as Prometheus requires. The defaults are BentoML's and are re-exported from
//! the metrics crate, so both crates always agree on them.

use tiffin_metrics::buckets::finite_bounds;

use crate::{ConfigError, DurationConfig};

pub use tiffin_metrics::{DEFAULT_DURATION_BUCKETS, batch_size_buckets};

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
        // The names of the generator fields that are (or are not) set.
        let fields = |set: bool| -> Vec<&str> {
            generated
                .iter()
                .filter(|(_, v)| v.is_some() == set)
                .map(|(name, _)| *name)
                .collect()
        };

        if let Some(list) = &self.buckets {
            if any_generated {
                let set = fields(true);
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
            let missing = fields(false);
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

/// A `buckets: [...]` list: the shared [`finite_bounds`] rule, plus at least one finite bound.
fn explicit_buckets(list: &[f64], key: &str) -> Result<Vec<f64>, ConfigError> {
    let shown = || {
        let items: Vec<String> = list.iter().map(|b| format_bound(*b)).collect();
        format!("[{}]", items.join(", "))
    };
    let finite = finite_bounds(list)
        .map_err(|e| ConfigError::invalid(key, format!("{e}, got {}", shown())))?;
    if finite.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("must list at least one finite bound, got {}", shown()),
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
