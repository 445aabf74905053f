//! Which metric and label names are allowed, and why some are taken.
//!
//! A name that Prometheus cannot parse breaks the whole scrape, not just one
//! family, so names are checked when a metric is defined (and the configured
//! namespace when the configuration is loaded), never when it is rendered.
//! The rules are the Prometheus data model's:
//!
//! - metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*` ([`METRIC_NAME_PATTERN`]);
//!   a namespace is the start of a metric name, so it follows the same rule;
//! - label names match `[a-zA-Z_][a-zA-Z0-9_]*` ([`LABEL_NAME_PATTERN`]) and
//!   must not start with `__`, which Prometheus keeps for itself;
//! - a label name may appear only once per metric;
//! - some label names are added by the exposition or by the merge, so a user
//!   label of that name would be overwritten or duplicated: `le` on
//!   histograms, `quantile` on summaries, and `worker` on gauges merged with
//!   [`GaugeMode::All`].
//!
//! [`NameError`] says which rule failed; the registry and the configuration
//! each wrap it with their own context (the metric, or the dotted key).

use crate::snapshot::{GaugeMode, Kind};

/// The pattern every metric name (and namespace) must match.
pub const METRIC_NAME_PATTERN: &str = "[a-zA-Z_:][a-zA-Z0-9_:]*";

/// The pattern every label name must match.
pub const LABEL_NAME_PATTERN: &str = "[a-zA-Z_][a-zA-Z0-9_]*";

/// Which naming rule a metric or label name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A metric name does not match [`METRIC_NAME_PATTERN`].
    #[error("metric names must match {METRIC_NAME_PATTERN}")]
    MetricPattern,
    /// A label name does not match [`LABEL_NAME_PATTERN`].
    #[error("label names must match {LABEL_NAME_PATTERN}")]
    LabelPattern,
    /// A label name starts with `__`.
    #[error("label names starting with `__` are reserved")]
    LabelPrefixReserved,
    /// A label name is listed more than once.
    #[error("label name given twice")]
    LabelTwice,
    /// A label name that the exposition or the merge adds to this kind of metric.
    #[error("label name is reserved for a {0}")]
    LabelReserved(Kind),
}

/// Whether `name` matches [`METRIC_NAME_PATTERN`] (the empty string does not).
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| metric_char(c) && !c.is_ascii_digit())
        && chars.all(metric_char)
}

/// Checks a metric name against [`METRIC_NAME_PATTERN`].
pub fn check_metric_name(name: &str) -> Result<(), NameError> {
    if is_metric_name(name) {
        Ok(())
    } else {
        Err(NameError::MetricPattern)
    }
}

/// Checks the label names of a metric of `kind`; on failure returns the
/// offending label with the rule it breaks.
pub fn check_label_names<'a>(
    kind: Kind,
    labelnames: &[&'a str],
) -> Result<(), (&'a str, NameError)> {
    for (i, &label) in labelnames.iter().enumerate() {
        let broken = if !is_label_name(label) {
            Some(NameError::LabelPattern)
        } else if label.starts_with("__") {
            Some(NameError::LabelPrefixReserved)
        } else if labelnames[..i].contains(&label) {
            Some(NameError::LabelTwice)
        } else if reserved_label(kind) == Some(label) {
            Some(NameError::LabelReserved(kind))
        } else {
            None
        };
        if let Some(err) = broken {
            return Err((label, err));
        }
    }
    Ok(())
}

/// The label name that rendering or merging adds to metrics of `kind`, if any.
fn reserved_label(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Histogram => Some("le"),
        Kind::Summary => Some("quantile"),
        // Mode `all` adds a `worker` label when merging processes.
        Kind::Gauge(GaugeMode::All) => Some("worker"),
        _ => None,
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| label_char(c) && !c.is_ascii_digit())
        && chars.all(label_char)
}

fn metric_char(c: char) -> bool {
    label_char(c) || c == ':'
}

fn label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_and_label_rules() {
        for good in ["a", "_a", ":a", "a:b_9", "bentoml_api_server"] {
            assert!(is_metric_name(good), "{good:?}");
        }
        for bad in ["", "1abc", "a-b", "a b", "é"] {
            assert_eq!(
                check_metric_name(bad),
                Err(NameError::MetricPattern),
                "{bad:?}"
            );
        }
        assert_eq!(check_label_names(Kind::Counter, &["a", "_b", "c9"]), Ok(()));
        assert_eq!(
            check_label_names(Kind::Counter, &["a", ":b"]),
            Err((":b", NameError::LabelPattern))
        );
        assert_eq!(
            check_label_names(Kind::Histogram, &["le"]),
            Err(("le", NameError::LabelReserved(Kind::Histogram)))
        );
        assert_eq!(
            NameError::LabelReserved(Kind::Gauge(GaugeMode::All)).to_string(),
            "label name is reserved for a gauge (all)"
        );
        assert_eq!(
            check_label_names(Kind::Gauge(GaugeMode::Max), &["worker"]),
            Ok(())
        );
    }
}
